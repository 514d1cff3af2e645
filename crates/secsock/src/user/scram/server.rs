//! [`Server`]: the server's side of one SCRAM-SHA-256-PLUS authentication, as a state
//! machine fed the client's messages, with decoys for unknown users.
//!
//! Not here: where verifiers come from (the caller's lookup, `crate::users`), framing and
//! transport, or failure throttling (`crate::user::throttle`).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::message::{
    attribute, check_extensions, check_len, check_nonce, decode_base64, decode_key,
    decode_saslname, shorten,
};
use super::primitives::{hmac_sha256, new_nonce, saslprep_user, sha256};
#[cfg(test)]
use super::MIN_ITERATIONS;
use super::{malformed, RandomSource, ScramError, Verifier, CHANNEL_BINDING, DEFAULT_ITERATIONS};
#[cfg(doc)]
use super::{MAX_ITERATIONS, MIN_ITERATIONS};

enum ServerState {
    AwaitingClientFirst,
    AwaitingClientFinal {
        /// The GS2 header exactly as the client sent it; `c=` must repeat it.
        gs2_header: String,
        user: String,
        verifier: Verifier,
        is_decoy: bool,
        nonce: String,
        /// client-first-bare "," server-first: the start of the AuthMessage.
        auth_message_start: String,
    },
    Done,
    Failed,
}

/// Server side of one SCRAM-SHA-256-PLUS authentication.
///
/// Steps: feed the client-first message to [`Server::handle_client_first`] → send its
/// server-first; feed the client-final to [`Server::handle_client_final`] → send its
/// server-final and take the authenticated user name. On an error, send
/// [`ScramError::server_error_message`] (or the transport's own failure) and stop.
pub struct Server {
    binding: Vec<u8>,
    decoy_secret: Vec<u8>,
    decoy_iterations: u32,
    canonical: fn(&str) -> Result<String, String>,
    server_nonce: String,
    /// Test hook: accept the `n,,` header so that the RFC 7677 vector (plain
    /// SCRAM-SHA-256) can run; never set outside tests.
    accept_unbound: bool,
    state: ServerState,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ServerState::AwaitingClientFirst => "awaiting client-first".to_string(),
            ServerState::AwaitingClientFinal { user, .. } => {
                format!("awaiting client-final from {user:?}")
            }
            ServerState::Done => "done".to_string(),
            ServerState::Failed => "failed".to_string(),
        };
        f.debug_struct("Server")
            .field("decoy_iterations", &self.decoy_iterations)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts serving one authentication on a TLS connection whose `tls-exporter` value
    /// is `binding`. `decoy_secret` is a server-wide random (see [`Verifier::decoy`]);
    /// `random` must be a cryptographic random source (it makes the server nonce; its
    /// failure is [`ScramError::RandomFailed`]).
    /// Unknown users get decoys with [`DEFAULT_ITERATIONS`]; see
    /// [`Server::with_decoy_iterations`]. An empty `binding` refuses every client with
    /// [`ScramError::ChannelBindingNotSupported`].
    pub fn new(
        binding: &[u8],
        decoy_secret: &[u8],
        random: &(impl RandomSource + ?Sized),
    ) -> Result<Server, ScramError> {
        Ok(Server {
            binding: binding.to_vec(),
            decoy_secret: decoy_secret.to_vec(),
            decoy_iterations: DEFAULT_ITERATIONS,
            canonical: |user| Ok(user.to_string()),
            server_nonce: new_nonce(random)?,
            accept_unbound: false,
            state: ServerState::AwaitingClientFirst,
        })
    }

    /// Sets the iteration count of decoy verifiers ([`DEFAULT_ITERATIONS`] unless set).
    /// Make it the count new verifiers get, never one read from the existing users: a
    /// decoy count copied from them tells an attacker that count, and any user whose
    /// verifier has another count stands out from the decoys (keep it within
    /// [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`] too, or clients refuse decoys with
    /// [`ScramError::WeakParameters`] — an oracle).
    pub fn with_decoy_iterations(mut self, iterations: u32) -> Server {
        self.decoy_iterations = iterations;
        self
    }

    /// Sets how a user name (as sent, after SASLprep) becomes the one name the server
    /// knows it by: that name is looked up, makes the decoy and is the name proven, so
    /// that two spellings of one user can neither be told apart nor prove two principals.
    /// An `Err` refuses the name as [`ScramError::Malformed`]. Unless set, names are taken
    /// as they are.
    pub fn with_canonical_names(mut self, canonical: fn(&str) -> Result<String, String>) -> Server {
        self.canonical = canonical;
        self
    }

    /// The (canonical) name of the user being authenticated, once the client-first message
    /// was accepted and until the exchange ends.
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            ServerState::AwaitingClientFinal { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Reads the client-first message and returns the server-first message
    /// (`r=<client nonce><server nonce>,s=<salt>,i=<iterations>`). `lookup` gives the
    /// verifier of a user name (SASLprep'ed, then made canonical, see
    /// [`Server::with_canonical_names`]), or `None`: then a decoy verifier answers and
    /// the exchange fails only at the proof, as with a wrong password.
    pub fn handle_client_first(
        &mut self,
        message: &str,
        lookup: &dyn Fn(&str) -> Option<Verifier>,
    ) -> Result<String, ScramError> {
        if !matches!(self.state, ServerState::AwaitingClientFirst) {
            return Err(malformed("client-first: unexpected at this step"));
        }
        self.state = ServerState::Failed;
        check_len(message, "client-first")?;

        // gs2-header = gs2-cbind-flag "," [authzid] ","
        let (flag, rest) = message
            .split_once(',')
            .ok_or_else(|| malformed("gs2 header: missing"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| malformed("gs2 header: missing second `,`"))?;
        let unbound_allowed = self.accept_unbound && flag == "n";
        if !unbound_allowed {
            match flag.strip_prefix("p=") {
                Some(CHANNEL_BINDING) => {}
                // `n`: the client does not do channel binding; `y`: it could, but thinks
                // the server cannot; `p=other`: a binding type secsock does not use.
                Some(_) => return Err(ScramError::ChannelBindingNotSupported),
                None if flag == "n" || flag == "y" => {
                    return Err(ScramError::ChannelBindingNotSupported)
                }
                None => {
                    return Err(malformed(format!(
                        "gs2 header: `{}` is not a channel binding flag",
                        shorten(flag)
                    )))
                }
            }
            if self.binding.is_empty() {
                return Err(ScramError::ChannelBindingNotSupported);
            }
        }
        if !authzid.is_empty() {
            return Err(malformed("a: authorization identities are not supported"));
        }
        let gs2_header = &message[..flag.len() + authzid.len() + 2];

        let mut fields = bare.split(',');
        let user = attribute(fields.next(), 'n', "the user name")?;
        let client_nonce = attribute(fields.next(), 'r', "the nonce")?;
        check_extensions(fields)?;
        let user = saslprep_user(&decode_saslname(user)?)?;
        let user = (self.canonical)(&user).map_err(|e| malformed(format!("n: {e}")))?;
        check_nonce(client_nonce, "client nonce")?;

        let (verifier, is_decoy) = match lookup(&user) {
            Some(verifier) => (verifier, false),
            None => (
                Verifier::decoy(&self.decoy_secret, &user, self.decoy_iterations),
                true,
            ),
        };
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&verifier.salt),
            verifier.iterations
        );
        self.state = ServerState::AwaitingClientFinal {
            gs2_header: gs2_header.to_string(),
            user,
            verifier,
            is_decoy,
            nonce,
            auth_message_start: format!("{bare},{server_first}"),
        };
        Ok(server_first)
    }

    /// Reads the client-final message, checks the channel binding (constant time; a
    /// binding from another connection is [`ScramError::ChannelBindingMismatch`]) and the
    /// proof (constant time; wrong password and unknown user are both
    /// [`ScramError::AuthenticationFailed`]). On success returns the server-final message
    /// (`v=<server signature>`) and the authenticated user name.
    pub fn handle_client_final(&mut self, message: &str) -> Result<(String, String), ScramError> {
        if !matches!(self.state, ServerState::AwaitingClientFinal { .. }) {
            return Err(malformed("client-final: unexpected at this step"));
        }
        let state = std::mem::replace(&mut self.state, ServerState::Failed);
        let ServerState::AwaitingClientFinal {
            gs2_header,
            user,
            verifier,
            is_decoy,
            nonce,
            auth_message_start,
        } = state
        else {
            return Err(malformed("client-final: unexpected at this step"));
        };
        check_len(message, "client-final")?;

        // c=..,r=..[,extensions],p=..
        let (without_proof, proof) = message
            .rsplit_once(',')
            .ok_or_else(|| malformed("client-final: too few attributes"))?;
        let proof = attribute(Some(proof), 'p', "the proof (last)")?;
        let mut fields = without_proof.split(',');
        let channel_binding = attribute(fields.next(), 'c', "the channel binding")?;
        let final_nonce = attribute(fields.next(), 'r', "the nonce")?;
        check_extensions(fields)?;
        let channel_binding = decode_base64(channel_binding, "c")?;
        let proof = decode_key(proof, "p")?;
        if final_nonce != nonce {
            return Err(malformed("r: not the nonce of this exchange"));
        }

        let mut expected_binding = gs2_header.into_bytes();
        expected_binding.extend_from_slice(&self.binding);
        if !bool::from(channel_binding.as_slice().ct_eq(&expected_binding)) {
            return Err(ScramError::ChannelBindingMismatch);
        }

        let auth_message = [
            auth_message_start.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac_sha256(&verifier.stored_key, &auth_message);
        let mut client_key = proof;
        client_key
            .iter_mut()
            .zip(client_signature)
            .for_each(|(k, s)| *k ^= s);
        let proof_ok = sha256(&client_key).ct_eq(&verifier.stored_key);
        client_key.zeroize();
        // A decoy's StoredKey is unknowable, so its check cannot pass; refusing decoys
        // explicitly as well costs nothing and survives any mistake in that reasoning.
        if !bool::from(proof_ok) || is_decoy {
            return Err(ScramError::AuthenticationFailed);
        }
        let server_signature = hmac_sha256(&verifier.server_key, &auth_message);
        self.state = ServerState::Done;
        Ok((format!("v={}", BASE64.encode(server_signature)), user))
    }
}

#[cfg(test)]
impl Server {
    /// A server with a fixed nonce that also accepts `n,,` (for the RFC 7677 vector).
    pub(super) fn for_test(binding: &[u8], server_nonce: &str, accept_unbound: bool) -> Server {
        Server {
            binding: binding.to_vec(),
            decoy_secret: b"decoy secret".to_vec(),
            decoy_iterations: MIN_ITERATIONS,
            canonical: |user| Ok(user.to_string()),
            server_nonce: server_nonce.to_string(),
            accept_unbound,
            state: ServerState::AwaitingClientFirst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::scram::tests::*;
    use crate::user::scram::*;

    #[test]
    fn clients_without_channel_binding_are_refused() {
        for header in ["n,,", "y,,", "p=tls-unique,,", "p=tls-server-end-point,,"] {
            let mut server = new_server(&BINDING, 2);
            let message = format!("{header}n=user,r=abcdef");
            assert_eq!(
                server.handle_client_first(&message, &|_| None),
                Err(ScramError::ChannelBindingNotSupported),
                "{header}"
            );
        }
        assert!(matches!(
            Client::new(USER, PASSWORD, b"", &test_random(1)),
            Err(ScramError::ChannelBindingNotSupported)
        ));
        let mut server = new_server(b"", 2);
        let client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        assert_eq!(
            server.handle_client_first(&client.client_first(), &|_| None),
            Err(ScramError::ChannelBindingNotSupported)
        );
    }

    #[test]
    fn client_final_claiming_another_gs2_header_is_a_binding_mismatch() {
        // A client-final whose c= says "n,," although the client-first said p=tls-exporter.
        let stored = verifier(PASSWORD);
        let client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = new_server(&BINDING, 2);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored))
            .unwrap();
        let nonce = first.split(',').next().unwrap();
        let message = format!("c=biws,{nonce},p={}", BASE64.encode([0u8; 32]));
        assert_eq!(
            server.handle_client_final(&message),
            Err(ScramError::ChannelBindingMismatch)
        );
    }

    #[test]
    fn malformed_client_first_messages_are_refused() {
        let huge = format!("p=tls-exporter,,n=user,r={}", "a".repeat(MAX_MESSAGE_LEN));
        let cases = [
            "",
            ",",
            "p=tls-exporter",
            "p=tls-exporter,",
            "p=tls-exporter,,",
            "p=tls-exporter,,n=user",
            "p=tls-exporter,,r=abc,n=user",
            "p=tls-exporter,,n=user,r=",
            "p=tls-exporter,,n=,r=abc",
            "p=tls-exporter,,n=us=er,r=abc",
            "p=tls-exporter,,n=us=2,r=abc",
            "p=tls-exporter,,n=us=2c,r=abc",
            "p=tls-exporter,,n=u\0ser,r=abc",
            "p=tls-exporter,,n=u\u{0007}ser,r=abc",
            "p=tls-exporter,,n=user,r=ab\u{e9}c",
            "p=tls-exporter,,n=user,r=ab c",
            "p=tls-exporter,,n=user,r=ab\u{7f}c",
            "p=tls-exporter,,m=ext,n=user,r=abc",
            "p=tls-exporter,,n=user,r=abc,x",
            "p=tls-exporter,,n=user,r=abc,",
            "p=tls-exporter,a=admin,n=user,r=abc",
            "q,,n=user,r=abc",
            "\u{fffd},,n=user,r=abc",
            &huge,
        ];
        for case in cases {
            let mut server = new_server(&BINDING, 2);
            let result = server.handle_client_first(case, &|_| Some(verifier(PASSWORD)));
            assert!(is_malformed(result.clone()), "{case:?}: {result:?}");
            // A failed server stays failed.
            assert!(is_malformed(server.handle_client_final("c=biws,r=x,p=x")));
        }
    }

    #[test]
    fn extensions_after_the_mandatory_attributes_are_ignored() {
        let mut server = new_server(&BINDING, 2);
        let first = server
            .handle_client_first("p=tls-exporter,,n=user,r=abc,x=future", &|_| None)
            .unwrap();
        assert!(first.starts_with("r=abc"));
    }

    #[test]
    fn malformed_client_final_messages_are_refused() {
        let (_, nonce) = server_awaiting_final();
        let c = BASE64.encode([GS2_HEADER_PLUS.as_bytes(), &BINDING].concat());
        let p = BASE64.encode([0u8; 32]);
        let huge = format!("c={c},r={nonce},x={},p={p}", "a".repeat(MAX_MESSAGE_LEN));
        let cases = [
            String::new(),
            format!("c={c},r={nonce}"),
            format!("r={nonce},c={c},p={p}"),
            format!("c={c},p={p}"),
            format!("c={c},r={nonce},p=!!!"),
            format!("c={c},r={nonce},p={}", BASE64.encode([0u8; 31])),
            format!("c=@@@,r={nonce},p={p}"),
            format!("c={c},r={nonce}x,p={p}"),
            format!("c={c},r=other,p={p}"),
            format!("c={c},r={nonce},m=ext,p={p}"),
            format!("c={c},r={nonce},p={p},x=1"),
            format!("c={c},r={nonce},,p={p}"),
            format!("c={c}\0,r={nonce},p={p}"),
            huge,
        ];
        for case in cases {
            let (mut server, _) = server_awaiting_final();
            let result = server.handle_client_final(&case);
            assert!(is_malformed(result.clone()), "{case:?}: {result:?}");
        }
        // Extensions between r and p are ignored.
        let (mut server, _) = server_awaiting_final();
        assert_eq!(
            server.handle_client_final(&format!("c={c},r={nonce},x=1,p={p}")),
            Err(ScramError::AuthenticationFailed)
        );
    }

    #[test]
    fn canonical_names_serve_the_lookup_the_decoy_and_the_proof() {
        let stored = verifier(PASSWORD);
        let upper_domain = |user: &str| match user.rsplit_once('@') {
            Some((name, domain)) => Ok(format!("{name}@{}", domain.to_ascii_uppercase())),
            None => Err(format!("`{user}` has no domain")),
        };
        let challenge = |user: &str| {
            let client = Client::new(user, PASSWORD, &BINDING, &test_random(1)).unwrap();
            let mut server = new_server(&BINDING, 2).with_canonical_names(upper_domain);
            let first =
                server.handle_client_first(&client.client_first(), &lookup_alice(stored.clone()));
            (first, server.user().map(str::to_string))
        };
        let (alice, name) = challenge("alice@example.test");
        assert_eq!(
            name.as_deref(),
            Some(USER),
            "the lookup got the canonical name"
        );
        assert!(alice.unwrap().contains(&BASE64.encode(&stored.salt)));
        let (a, _) = challenge("mallory@example.test");
        let (b, _) = challenge("mallory@EXAMPLE.TEST");
        let salt = |first: String| first.split(',').nth(1).unwrap().to_string();
        assert_eq!(
            salt(a.unwrap()),
            salt(b.unwrap()),
            "one decoy per canonical name"
        );
        assert!(
            matches!(challenge("alice").0, Err(ScramError::Malformed(m)) if m.contains("no domain"))
        );
        // The name proven is the canonical one.
        let mut client =
            Client::new("alice@example.test", PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = new_server(&BINDING, 2).with_canonical_names(upper_domain);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored))
            .unwrap();
        let last = client.handle_server_first(&first).unwrap();
        assert_eq!(server.handle_client_final(&last).unwrap().1, USER);
        assert_eq!(server.user(), None, "the exchange is over");
    }
}
