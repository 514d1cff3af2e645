//! [`Client`]: the client's side of one SCRAM-SHA-256-PLUS authentication, as a state
//! machine fed the server's messages.
//!
//! Not here: framing and transport (the user-authentication step), or the server's side.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::message::{
    attribute, check_extensions, check_len, check_nonce, decode_base64, encode_saslname,
    parse_iterations,
};
use super::primitives::{
    check_iterations, check_salt, derive_keys, hmac_sha256, new_nonce, saslprep_password,
    saslprep_user,
};
#[cfg(doc)]
use super::MIN_ITERATIONS;
use super::{malformed, RandomSource, ScramError, GS2_HEADER_PLUS, MAX_ITERATIONS};

enum ClientState {
    /// `client_first` sent (or about to be); waiting for server-first.
    AwaitingServerFirst,
    /// Client-final sent; the server-final must carry this signature.
    AwaitingServerFinal { server_signature: [u8; 32] },
    /// A step failed; the exchange is over.
    Failed,
}

/// Client side of one SCRAM-SHA-256-PLUS authentication.
///
/// Steps: [`Client::client_first`] → send; feed the answer to
/// [`Client::handle_server_first`] → send its client-final; feed the answer to
/// [`Client::handle_server_final`], which proves the server knew the verifier.
pub struct Client {
    gs2_header: String,
    binding: Vec<u8>,
    /// SASLprep'ed; wiped once used, and when the client is dropped.
    password: Zeroizing<String>,
    client_first_bare: String,
    client_nonce: String,
    max_iterations: u32,
    state: ClientState,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ClientState::AwaitingServerFirst => "awaiting server-first",
            ClientState::AwaitingServerFinal { .. } => "awaiting server-final",
            ClientState::Failed => "failed",
        };
        f.debug_struct("Client")
            .field("client_first_bare", &self.client_first_bare)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts an authentication. `user` is the SCRAM user name (already the full principal
    /// text the server looks up, e.g. `alice@EXAMPLE.TEST`); `binding` is the 32-byte
    /// `tls-exporter` value of this TLS connection; `random` must be a cryptographic
    /// random source (it makes the client nonce; its failure is
    /// [`ScramError::RandomFailed`]). User name and password are prepared
    /// with SASLprep; a refused password is [`ScramError::InvalidPassword`], a refused
    /// user name [`ScramError::Malformed`], an empty `binding`
    /// [`ScramError::ChannelBindingNotSupported`].
    pub fn new(
        user: &str,
        password: &str,
        binding: &[u8],
        random: &(impl RandomSource + ?Sized),
    ) -> Result<Client, ScramError> {
        if binding.is_empty() {
            return Err(ScramError::ChannelBindingNotSupported);
        }
        Client::with_parts(user, password, GS2_HEADER_PLUS, binding, new_nonce(random)?)
    }

    fn with_parts(
        user: &str,
        password: &str,
        gs2_header: &str,
        binding: &[u8],
        client_nonce: String,
    ) -> Result<Client, ScramError> {
        let user = saslprep_user(user)?;
        let password = saslprep_password(password)?;
        let client_first_bare = format!("n={},r={client_nonce}", encode_saslname(&user));
        check_len(&client_first_bare, "client-first")?;
        Ok(Client {
            gs2_header: gs2_header.to_string(),
            binding: binding.to_vec(),
            password: Zeroizing::new(password),
            client_first_bare,
            client_nonce,
            max_iterations: MAX_ITERATIONS,
            state: ClientState::AwaitingServerFirst,
        })
    }

    /// Sets the most PBKDF2 iterations this client computes for a server that asks
    /// ([`MAX_ITERATIONS`] unless set; a larger `limit` counts as that): a server asking
    /// for more is refused with [`ScramError::TooManyIterations`] before any is computed.
    pub fn with_max_iterations(mut self, limit: u32) -> Client {
        self.max_iterations = limit.min(MAX_ITERATIONS);
        self
    }

    /// The client-first message: `p=tls-exporter,,n=<user>,r=<nonce>`.
    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2_header, self.client_first_bare)
    }

    /// Reads the server-first message (`r=..,s=..,i=..`), computes the proof and returns
    /// the client-final message (`c=..,r=..,p=..`). This runs PBKDF2 with the server's
    /// iteration count, which must lie in [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub fn handle_server_first(&mut self, message: &str) -> Result<String, ScramError> {
        if !matches!(self.state, ClientState::AwaitingServerFirst) {
            return Err(malformed("server-first: unexpected at this step"));
        }
        self.state = ClientState::Failed;
        let result = self.answer_server_first(message);
        self.password.zeroize();
        let (client_final, server_signature) = result?;
        self.state = ClientState::AwaitingServerFinal { server_signature };
        Ok(client_final)
    }

    fn answer_server_first(&self, message: &str) -> Result<(String, [u8; 32]), ScramError> {
        check_len(message, "server-first")?;
        let mut fields = message.split(',');
        let nonce = attribute(fields.next(), 'r', "the nonce")?;
        let salt = attribute(fields.next(), 's', "the salt")?;
        let iterations = attribute(fields.next(), 'i', "the iteration count")?;
        check_extensions(fields)?;

        check_nonce(nonce, "nonce")?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(malformed(
                "r: the server nonce does not extend the client nonce",
            ));
        }
        let salt = decode_base64(salt, "s")?;
        let iterations = parse_iterations(iterations)?;
        check_iterations(iterations)?;
        if iterations > self.max_iterations {
            return Err(ScramError::TooManyIterations {
                iterations,
                limit: self.max_iterations,
            });
        }
        check_salt(&salt)?;

        let mut keys = derive_keys(&self.password, &salt, iterations);
        let mut channel_binding = self.gs2_header.as_bytes().to_vec();
        channel_binding.extend_from_slice(&self.binding);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(&channel_binding));
        let auth_message = [
            self.client_first_bare.as_bytes(),
            b",",
            message.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac_sha256(&keys.stored_key, &auth_message);
        let mut proof = keys.client_key;
        proof
            .iter_mut()
            .zip(client_signature)
            .for_each(|(p, s)| *p ^= s);
        let server_signature = hmac_sha256(&keys.server_key, &auth_message);
        keys.client_key.zeroize();
        keys.server_key.zeroize();
        Ok((
            format!("{without_proof},p={}", BASE64.encode(proof)),
            server_signature,
        ))
    }

    /// Checks the server-final message: `v=<server signature>` must match (constant-time
    /// comparison), which proves the server holds this user's verifier. A server error
    /// (`e=...`) becomes the matching [`ScramError`] (`invalid-proof` →
    /// [`ScramError::AuthenticationFailed`]).
    pub fn handle_server_final(&self, message: &str) -> Result<(), ScramError> {
        let ClientState::AwaitingServerFinal { server_signature } = &self.state else {
            return Err(malformed("server-final: unexpected at this step"));
        };
        check_len(message, "server-final")?;
        let mut fields = message.split(',');
        let first = fields.next().unwrap_or_default();
        if let Some(error) = first.strip_prefix("e=") {
            return Err(match error {
                "channel-bindings-dont-match" => ScramError::ChannelBindingMismatch,
                "server-does-support-channel-binding"
                | "channel-binding-not-supported"
                | "unsupported-channel-binding-type" => ScramError::ChannelBindingNotSupported,
                "invalid-encoding" | "extensions-not-supported" | "invalid-username-encoding" => {
                    malformed(format!("the server found our message malformed ({error})"))
                }
                _ => ScramError::AuthenticationFailed,
            });
        }
        let signature = attribute(Some(first), 'v', "the server signature")?;
        check_extensions(fields)?;
        let signature = decode_base64(signature, "v")?;
        if bool::from(signature.as_slice().ct_eq(server_signature)) {
            Ok(())
        } else {
            Err(ScramError::ServerSignatureMismatch)
        }
    }
}

#[cfg(test)]
impl Client {
    /// The RFC 7677 vector's client: fixed nonce and GS2 header (plain SCRAM-SHA-256).
    pub(super) fn for_test(
        user: &str,
        password: &str,
        gs2_header: &str,
        binding: &[u8],
        nonce: &str,
    ) -> Result<Client, ScramError> {
        Client::with_parts(user, password, gs2_header, binding, nonce.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::scram::tests::*;
    use crate::user::scram::*;

    #[test]
    fn client_first_uses_tls_exporter_binding_and_a_printable_nonce() {
        let client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let first = client.client_first();
        let bare = first
            .strip_prefix("p=tls-exporter,,n=alice@EXAMPLE.TEST,r=")
            .unwrap();
        assert_eq!(bare.len(), 32);
        check_nonce(bare, "nonce").unwrap();
    }

    #[test]
    fn tampered_server_signature_is_refused_by_the_client() {
        let stored = verifier(PASSWORD);
        let mut client = Client::new(USER, PASSWORD, &BINDING, &test_random(1)).unwrap();
        let mut server = new_server(&BINDING, 2);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(stored))
            .unwrap();
        let client_final = client.handle_server_first(&first).unwrap();
        let (server_final, _) = server.handle_client_final(&client_final).unwrap();
        let mut signature = BASE64.decode(&server_final[2..]).unwrap();
        signature[0] ^= 1;
        let tampered = format!("v={}", BASE64.encode(&signature));
        assert_eq!(
            client.handle_server_final(&tampered),
            Err(ScramError::ServerSignatureMismatch)
        );
        // Shorter or empty signatures too.
        assert_eq!(
            client.handle_server_final("v="),
            Err(ScramError::ServerSignatureMismatch)
        );
        assert_eq!(
            client.handle_server_final(&format!("v={}", BASE64.encode(&signature[..31]))),
            Err(ScramError::ServerSignatureMismatch)
        );
        // A server that holds another verifier for the user (knows a different password).
        let impostor = verifier("another password");
        let mut client = Client::new(USER, PASSWORD, &BINDING, &test_random(3)).unwrap();
        let mut server = new_server(&BINDING, 4);
        let salt_of_real = verifier(PASSWORD);
        let first = server
            .handle_client_first(&client.client_first(), &lookup_alice(salt_of_real))
            .unwrap();
        let client_final = client.handle_server_first(&first).unwrap();
        server.handle_client_final(&client_final).unwrap();
        let forged = hmac_sha256(&impostor.server_key, &[b"anything"]);
        assert_eq!(
            client.handle_server_final(&format!("v={}", BASE64.encode(forged))),
            Err(ScramError::ServerSignatureMismatch)
        );
        // The final `e=` errors map to variants.
        assert_eq!(
            client.handle_server_final("e=invalid-proof"),
            Err(ScramError::AuthenticationFailed)
        );
        assert_eq!(
            client.handle_server_final("e=channel-bindings-dont-match"),
            Err(ScramError::ChannelBindingMismatch)
        );
    }

    #[test]
    fn malformed_server_first_messages_are_refused() {
        let salt = BASE64.encode([1u8; 16]);
        let new_client =
            || Client::for_test("user", "pencil", GS2_HEADER_PLUS, &BINDING, "cnonce").unwrap();
        let huge = format!(
            "r=cnonceS,s={salt},i=4096,x={}",
            "a".repeat(MAX_MESSAGE_LEN)
        );
        let cases = [
            String::new(),
            "r=cnonceS".to_string(),
            format!("r=cnonceS,s={salt}"),
            format!("s={salt},r=cnonceS,i=4096"),
            format!("r=cnonce,s={salt},i=4096"),
            format!("r=other,s={salt},i=4096"),
            format!("r=cnonce S,s={salt},i=4096"),
            "r=cnonceS,s=***,i=4096".to_string(),
            format!("r=cnonceS,s={salt},i="),
            format!("r=cnonceS,s={salt},i=4k"),
            format!("r=cnonceS,s={salt},i=+4096"),
            format!("r=cnonceS,s={salt},i=04096"),
            format!("r=cnonceS,s={salt},i=99999999999999999999"),
            format!("m=ext,r=cnonceS,s={salt},i=4096"),
            format!("r=cnonceS,s={salt},i=4096,"),
            format!("r=cnonceS,s={salt},i=4096,\u{e9}=1"),
            huge,
        ];
        for case in cases {
            let mut client = new_client();
            let result = client.handle_server_first(&case);
            assert!(is_malformed(result.clone()), "{case:?}: {result:?}");
            // A failed client stays failed.
            assert!(is_malformed(client.handle_server_first("r=cnonceS")));
            assert!(is_malformed(client.handle_server_final("v=")));
        }
    }

    #[test]
    fn malformed_server_final_messages_are_refused() {
        let mut client =
            Client::for_test("user", "pencil", "n,,", b"", "rOprNGfwEbeRWgbNEkqO").unwrap();
        // Out of order: no server-first yet.
        assert!(is_malformed(client.handle_server_final("v=AAAA")));
        client
            .handle_server_first(
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        let good = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        let huge = format!("{good},x={}", "a".repeat(MAX_MESSAGE_LEN));
        for case in [
            "",
            "v",
            "v=***",
            "x=1",
            "m=1,v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,",
            "e=invalid-encoding",
            &huge,
        ] {
            assert!(is_malformed(client.handle_server_final(case)), "{case:?}");
        }
        // A second server-first is out of order.
        assert!(is_malformed(client.handle_server_first("r=x,s=x,i=4096")));
        client.handle_server_final(good).unwrap();
        client
            .handle_server_final(&format!("{good},x=ext"))
            .unwrap();
    }
}
