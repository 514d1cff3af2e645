//! The SCRAM tests' fixtures (deterministic randomness, a user and a full exchange) and
//! the tests of whole exchanges: RFC 7677's vectors, success, wrong passwords, unknown
//! users, relayed bindings, weak parameters, SASLprep, steps out of order, mangled input.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::message::decode_saslname;
use super::*;
use std::cell::Cell;

/// Deterministic "random" bytes for tests (xorshift, distinct per call).
pub(crate) fn test_random(seed: u64) -> impl Fn(&mut [u8]) {
    let state = Cell::new(seed | 1);
    move |buf: &mut [u8]| {
        for b in buf.iter_mut() {
            let mut x = state.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            state.set(x);
            *b = (x >> 24) as u8;
        }
    }
}

pub(crate) const USER: &str = "alice@EXAMPLE.TEST";
pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const BINDING: [u8; 32] = [0x42; 32];

pub(crate) fn verifier(password: &str) -> Verifier {
    Verifier::generate(password, MIN_ITERATIONS, &test_random(7)).unwrap()
}

pub(crate) fn lookup_alice(stored: Verifier) -> impl Fn(&str) -> Option<Verifier> {
    move |user: &str| (user == USER).then(|| stored.clone())
}

pub(crate) fn new_server(binding: &[u8], seed: u64) -> Server {
    Server::new(binding, b"decoy secret", &test_random(seed))
        .unwrap()
        .with_decoy_iterations(MIN_ITERATIONS)
}

/// One full exchange; the client's result of the last step, the server's of its last.
pub(crate) struct Outcome {
    pub(crate) server: Result<(String, String), ScramError>,
    pub(crate) client: Option<Result<(), ScramError>>,
}

pub(crate) fn exchange(
    user: &str,
    password: &str,
    client_binding: &[u8],
    server_binding: &[u8],
    stored: Verifier,
) -> Outcome {
    let mut client = Client::new(user, password, client_binding, &test_random(1)).unwrap();
    let mut server = new_server(server_binding, 2);
    let server_first = server
        .handle_client_first(&client.client_first(), &lookup_alice(stored))
        .unwrap();
    let client_final = client.handle_server_first(&server_first).unwrap();
    let result = server.handle_client_final(&client_final);
    let client_result = result
        .as_ref()
        .ok()
        .map(|(server_final, _)| client.handle_server_final(server_final));
    Outcome {
        server: result,
        client: client_result,
    }
}

/// Server after a valid client-first, and that message's full nonce.
pub(crate) fn server_awaiting_final() -> (Server, String) {
    let client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
    let mut server = new_server(&BINDING, 2);
    let first = server
        .handle_client_first(&client.client_first(), &lookup_alice(verifier(PASSWORD)))
        .unwrap();
    let nonce = first.split(',').next().unwrap()[2..].to_string();
    (server, nonce)
}

pub(crate) fn is_malformed<T: fmt::Debug>(result: Result<T, ScramError>) -> bool {
    matches!(result, Err(ScramError::Malformed(_)))
}

pub(crate) fn server_with_seed(seed: u64) -> Server {
    new_server(&BINDING, seed)
}

#[test]
fn rfc7677_test_vector_client() {
    let mut client =
        Client::for_test("user", "pencil", "n,,", b"", "rOprNGfwEbeRWgbNEkqO").unwrap();
    assert_eq!(client.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let client_final = client
        .handle_server_first(
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        )
        .unwrap();
    assert_eq!(
        client_final,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    client
        .handle_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        .unwrap();
}

#[test]
fn rfc7677_test_vector_server() {
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let stored = Verifier::new("pencil", &salt, 4096).unwrap();
    let mut server = Server::for_test(b"", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", true);
    let lookup = |user: &str| (user == "user").then(|| stored.clone());
    let server_first = server
        .handle_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &lookup)
        .unwrap();
    assert_eq!(
        server_first,
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let (server_final, user) = server
        .handle_client_final(
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
    assert_eq!(
        server_final,
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    assert_eq!(user, "user");
}

/// The RFC 7677 inputs with `p=tls-exporter` and a binding of 32 bytes 0x42; the
/// expected messages were computed independently (Python `hashlib`/`hmac`).
#[test]
fn rfc7677_inputs_with_tls_exporter_binding() {
    let nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let expected_final = format!(
        "c=cD10bHMtZXhwb3J0ZXIsLEJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC,r={nonce},\
         p=PZrlVaXtxMwGz+LaWPYvrCWPtN8/P9APl62cS5ZoWjY="
    );
    let expected_server_final = "v=7NeTrl5Wk3xVix31uV9Sz7hKGyIJXrmtYvGXqSSkpN4=";

    let mut client = Client::for_test(
        "user",
        "pencil",
        GS2_HEADER_PLUS,
        &BINDING,
        "rOprNGfwEbeRWgbNEkqO",
    )
    .unwrap();
    let client_final = client
        .handle_server_first(&format!("r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))
        .unwrap();
    assert_eq!(client_final, expected_final);
    client.handle_server_final(expected_server_final).unwrap();

    // The production server path (no test hook for the header) agrees.
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let stored = Verifier::new("pencil", &salt, 4096).unwrap();
    let mut server = Server::for_test(&BINDING, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", false);
    server
        .handle_client_first(&client.client_first(), &|_| Some(stored.clone()))
        .unwrap();
    let (server_final, user) = server.handle_client_final(&client_final).unwrap();
    assert_eq!(server_final, expected_server_final);
    assert_eq!(user, "user");
}

#[test]
fn rfc7677_vector_is_refused_by_the_production_server() {
    // Plain SCRAM-SHA-256 (`n,,`) is the RFC's example, not something secsock accepts.
    let mut server = new_server(&BINDING, 2);
    let stored = verifier("pencil");
    assert_eq!(
        server.handle_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &|_| Some(
            stored.clone()
        )),
        Err(ScramError::ChannelBindingNotSupported)
    );
}

#[test]
fn plus_exchange_succeeds_and_both_sides_agree_on_the_user() {
    let outcome = exchange(USER, PASSWORD, &BINDING, &BINDING, verifier(PASSWORD));
    let (server_final, user) = outcome.server.unwrap();
    assert!(server_final.starts_with("v="));
    assert_eq!(user, USER);
    assert_eq!(outcome.client, Some(Ok(())));
}

#[test]
fn wrong_password_is_authentication_failed() {
    let outcome = exchange(USER, "wrong", &BINDING, &BINDING, verifier(PASSWORD));
    assert_eq!(outcome.server, Err(ScramError::AuthenticationFailed));
    assert_eq!(
        ScramError::AuthenticationFailed.server_error_message(),
        "e=invalid-proof"
    );
}

#[test]
fn unknown_user_is_authentication_failed_and_looks_like_a_real_one() {
    let outcome = exchange(
        "mallory@EXAMPLE.TEST",
        PASSWORD,
        &BINDING,
        &BINDING,
        verifier(PASSWORD),
    );
    assert_eq!(outcome.server, Err(ScramError::AuthenticationFailed));

    // The server-first message has the same shape for real and unknown users, and the
    // unknown user's salt is stable across attempts (no "new salt = unknown" oracle).
    let stored = verifier(PASSWORD);
    let server_first = |user: &str, seed: u64| {
        let client = Client::new(user, "x", &BINDING, &test_random(seed)).unwrap();
        let mut server = new_server(&BINDING, seed + 100);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored.clone()))
            .unwrap();
        let fields: Vec<String> = first.split(',').map(str::to_string).collect();
        (fields[0].len(), fields[1].clone(), fields[2].clone())
    };
    let (real_nonce_len, real_salt, real_iterations) = server_first(USER, 1);
    let (nonce_len, salt, iterations) = server_first("mallory@EXAMPLE.TEST", 1);
    assert_eq!(nonce_len, real_nonce_len);
    assert_eq!(salt.len(), real_salt.len());
    assert_eq!(iterations, real_iterations);
    assert_eq!(server_first("mallory@EXAMPLE.TEST", 5).1, salt);
    assert_ne!(server_first("eve@EXAMPLE.TEST", 5).1, salt);
}

#[test]
fn binding_from_another_connection_is_refused() {
    // The relay attack: the client authenticates on its connection to the attacker,
    // who forwards the messages on its own connection to the server.
    let other_connection = [0x17; 32];
    let outcome = exchange(
        USER,
        PASSWORD,
        &other_connection,
        &BINDING,
        verifier(PASSWORD),
    );
    assert_eq!(outcome.server, Err(ScramError::ChannelBindingMismatch));
}

#[test]
fn weak_parameters_are_refused_on_both_sides() {
    // Client: a server asking for too few or too many iterations, or a short salt.
    let salt = BASE64.encode([1u8; 16]);
    for (case, expected) in [
        (format!("r=cnonceS,s={salt},i=4095"), "fewer"),
        (format!("r=cnonceS,s={salt},i=1"), "fewer"),
        (
            format!("r=cnonceS,s={salt},i={}", MAX_ITERATIONS + 1),
            "more",
        ),
        (
            format!("r=cnonceS,s={},i=4096", BASE64.encode([1u8; 15])),
            "salt",
        ),
        ("r=cnonceS,s=,i=4096".to_string(), "salt"),
    ] {
        let mut client =
            Client::for_test("user", "pencil", GS2_HEADER_PLUS, &BINDING, "cnonce").unwrap();
        match client.handle_server_first(&case) {
            Err(ScramError::WeakParameters(text)) => assert!(text.contains(expected), "{text}"),
            other => panic!("{case}: {other:?}"),
        }
    }
    // A client's own, lower limit: refused before any PBKDF2 is computed.
    let client = Client::for_test("user", "pencil", GS2_HEADER_PLUS, &BINDING, "cnonce")
        .unwrap()
        .with_max_iterations(8192);
    let mut client = client;
    assert_eq!(
        client.handle_server_first(&format!("r=cnonceS,s={salt},i=8193")),
        Err(ScramError::TooManyIterations {
            iterations: 8193,
            limit: 8192
        })
    );
    let mut client = Client::for_test("user", "pencil", GS2_HEADER_PLUS, &BINDING, "cnonce")
        .unwrap()
        .with_max_iterations(8192);
    assert!(client
        .handle_server_first(&format!("r=cnonceS,s={salt},i=8192"))
        .is_ok());
    // Verifier creation.
    assert!(matches!(
        Verifier::new("pencil", &[0u8; 16], 4095),
        Err(ScramError::WeakParameters(_))
    ));
    assert!(matches!(
        Verifier::new("pencil", &[0u8; 15], 4096),
        Err(ScramError::WeakParameters(_))
    ));
    assert!(matches!(
        Verifier::new("pencil", &[0u8; 16], MAX_ITERATIONS + 1),
        Err(ScramError::WeakParameters(_))
    ));
    assert!(matches!(
        Verifier::generate("pencil", 1000, &test_random(1)),
        Err(ScramError::WeakParameters(_))
    ));
}

#[test]
fn saslprep_normalizes_and_refuses() {
    // U+00A0 (no-break space) maps to a space; U+00AD (soft hyphen) to nothing;
    // U+2168 (roman numeral nine) to "IX" under NFKC.
    let salt = [9u8; 16];
    let plain = Verifier::new("pen cil", &salt, 4096).unwrap();
    assert_eq!(Verifier::new("pen\u{a0}cil", &salt, 4096).unwrap(), plain);
    assert_eq!(Verifier::new("pen\u{ad} cil", &salt, 4096).unwrap(), plain);
    assert_eq!(
        Verifier::new("\u{2168}", &salt, 4096).unwrap(),
        Verifier::new("IX", &salt, 4096).unwrap()
    );
    // A client typing the no-break space logs in against a verifier made with a space.
    let outcome = exchange(USER, "pen\u{a0}cil", &BINDING, &BINDING, plain.clone());
    assert!(outcome.server.is_ok());
    assert_eq!(outcome.client, Some(Ok(())));

    for refused in ["pen\u{7}cil", "\u{0}", "\u{e000}", "", "\u{ad}", "\u{5d0}a"] {
        match Verifier::new(refused, &salt, 4096) {
            Err(ScramError::InvalidPassword(text)) => {
                assert!(!text.contains(refused) || refused.is_empty(), "{text}");
            }
            other => panic!("{refused:?}: {other:?}"),
        }
        assert!(matches!(
            Client::new(USER, refused, &BINDING, &test_random(1)),
            Err(ScramError::InvalidPassword(_))
        ));
    }
    // User names: prepared too; a refused one is Malformed.
    assert!(is_malformed(Client::new(
        "al\u{7}ice",
        "x",
        &BINDING,
        &test_random(1)
    )));
    assert!(is_malformed(Client::new(
        "",
        "x",
        &BINDING,
        &test_random(1)
    )));
    let client = Client::new("al\u{a0}ice", "x", &BINDING, &test_random(1)).unwrap();
    assert!(client.client_first().contains(",n=al ice,"));
}

#[test]
fn user_names_with_comma_and_equals_are_escaped() {
    let user = "o=u,x@EXAMPLE.TEST";
    let client = Client::new(user, PASSWORD, &BINDING, &test_random(1)).unwrap();
    assert!(client
        .client_first()
        .starts_with("p=tls-exporter,,n=o=3Du=2Cx@EXAMPLE.TEST,r="));
    let stored = verifier(PASSWORD);
    let lookup = move |name: &str| (name == user).then(|| stored.clone());
    let mut client = client;
    let mut server = new_server(&BINDING, 2);
    let first = server
        .handle_client_first(&client.client_first(), &lookup)
        .unwrap();
    let client_final = client.handle_server_first(&first).unwrap();
    let (server_final, authenticated) = server.handle_client_final(&client_final).unwrap();
    client.handle_server_final(&server_final).unwrap();
    assert_eq!(authenticated, user);
    assert_eq!(decode_saslname("=3D=2C=3D").unwrap(), "=,=");
}

#[test]
fn steps_out_of_order_are_refused() {
    let (mut server, _) = server_awaiting_final();
    assert!(is_malformed(
        server.handle_client_first("p=tls-exporter,,n=user,r=abc", &|_| None)
    ));
    let mut fresh = server_with_seed(9);
    assert!(is_malformed(
        fresh.handle_client_final("c=biws,r=abc,p=abc")
    ));
    // After success, a second client-final is refused too.
    let outcome_server = {
        let stored = verifier(PASSWORD);
        let mut client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = server_with_seed(2);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored))
            .unwrap();
        let client_final = client.handle_server_first(&first).unwrap();
        server.handle_client_final(&client_final).unwrap();
        assert!(is_malformed(server.handle_client_final(&client_final)));
        server
    };
    assert!(format!("{outcome_server:?}").contains("done"));
}

/// Every truncation and many single-character corruptions of valid messages: errors,
/// never panics.
#[test]
fn mangled_messages_never_panic() {
    let stored = verifier(PASSWORD);
    let mut client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
    let mut server = new_server(&BINDING, 2);
    let client_first = client.client_first();
    let server_first = server
        .handle_client_first(&client_first, &lookup_alice(stored.clone()))
        .unwrap();
    let client_final = client.handle_server_first(&server_first).unwrap();
    let (server_final, _) = server.handle_client_final(&client_final).unwrap();

    let replacements = [",", "=", "", "\0", "\u{e9}", "==", "=2C", "m=", "\u{ffff}"];
    let variants = |message: &str| {
        let mut out = Vec::new();
        for (at, _) in message.char_indices().chain([(message.len(), ' ')]) {
            out.push(message[..at].to_string());
            for replacement in replacements {
                let next = message[at..].chars().next().map_or(0, char::len_utf8);
                out.push(format!(
                    "{}{replacement}{}",
                    &message[..at],
                    &message[at + next..]
                ));
            }
        }
        out
    };
    for mangled in variants(&client_first) {
        let mut server = server_with_seed(2);
        let _ = server.handle_client_first(&mangled, &lookup_alice(stored.clone()));
    }
    for mangled in variants(&client_final) {
        let mut server = server_with_seed(2);
        server
            .handle_client_first(&client_first, &lookup_alice(stored.clone()))
            .unwrap();
        let _ = server.handle_client_final(&mangled);
    }
    for mangled in variants(&server_final) {
        let _ = client.handle_server_final(&mangled);
    }
    // Server-first mangling makes the client run PBKDF2 when it still parses, so only
    // truncations (which never leave a valid salt and count at once).
    for at in 0..server_first.len() {
        let mut fresh = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let _ = fresh.handle_server_first(&server_first[..at]);
    }
}

/// A random source that fails, as a broken RNG would.
#[derive(Debug)]
pub(crate) struct FailingRandom;

impl rustls::crypto::SecureRandom for FailingRandom {
    fn fill(&self, _: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        Err(rustls::crypto::GetRandomFailed)
    }
}

#[test]
fn a_failing_random_source_is_an_error_never_a_zero_nonce_or_salt() {
    let failing: &dyn rustls::crypto::SecureRandom = &FailingRandom;
    assert_eq!(
        Client::new(USER, PASSWORD, &BINDING, failing).map(|_| ()),
        Err(ScramError::RandomFailed)
    );
    assert_eq!(
        Server::new(&BINDING, b"decoy secret", failing).map(|_| ()),
        Err(ScramError::RandomFailed)
    );
    assert_eq!(
        Verifier::generate(PASSWORD, MIN_ITERATIONS, failing),
        Err(ScramError::RandomFailed)
    );
    assert_eq!(
        ScramError::RandomFailed.server_error_message(),
        "e=other-error"
    );
    // The provider rustls uses is a random source as it is.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    assert!(Client::new(USER, PASSWORD, &BINDING, provider.secure_random).is_ok());
}
