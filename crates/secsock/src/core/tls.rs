//! Turns a crypto policy and the machine identity into rustls configurations, and keeps
//! the client's resumption tickets apart per peer target name.
//!
//! One [`CryptoContext`] exists per `[crypto.NAME]` section: a server configuration shared
//! by every accepted connection, and a client configuration that each connection copies to
//! install its own verifier (which knows that connection's target name) and its own view
//! of the ticket store.
//!
//! Why per-target ticket stores: rustls keys its client session cache by the TLS server
//! name only, and a resumed session skips certificate verification. A ticket obtained
//! while talking to `host/a` must never be offered when the socket expects `host/b`, even
//! if both live at one address or share a DNS host, so tickets live in a store per target
//! name (see [`TicketRegistry`]); the session layer also re-validates the stored chain
//! after every resumption.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, NamedGroup, ServerConfig};
use rustls_pki_types::ServerName;

use crate::core::ticketer::SessionTicketer;
use crate::policy::{CryptoPolicy, Identity};
use crate::verify::{ChainValidator, ClientIdentityVerifier, ServerIdentityVerifier};

/// Tickets kept per target name; rustls servers send two per connection.
const TICKETS_PER_TARGET: usize = 8;
/// Target names remembered; beyond this the least recently used target is forgotten.
const TARGETS_REMEMBERED: usize = 1024;

/// The rustls configurations for one crypto policy.
pub(crate) struct CryptoContext {
    pub policy: CryptoPolicy,
    /// User authentication and account mapping (the policy's `[users]`, `[[accounts]]`).
    pub users: Arc<crate::user::users::UserDirectory>,
    /// The policy's `[defaults] handshake_timeout`.
    pub handshake_timeout: Duration,
    /// The policy's `[defaults] user_max_iterations`: the most PBKDF2 iterations a
    /// server's SCRAM challenge may ask of our clients.
    pub user_max_iterations: u32,
    pub provider: Arc<CryptoProvider>,
    /// The server configuration (with the user-authentication ALPN when `[users]` is on).
    pub server: Arc<ServerConfig>,
    /// The same without any ALPN, for clients that do not offer the user-authentication
    /// step: rustls refuses a client whose ALPN offer has no protocol in common with the
    /// server's, so a listener with `[users]` must not present one to such a client.
    server_without_alpn: Arc<ServerConfig>,
    client: ClientConfig,
    pub validator: Arc<ChainValidator>,
    tickets: TicketRegistry,
    ids: IdSource,
    /// Targets (at an address) a client handshake completed with: never a clear-text
    /// fallback for them (see `fallback::client_fallback`).
    tls_peers: TlsPeers,
}

/// The peers a context's clients completed a TLS handshake with, as `target at address`,
/// the most recent [`TLS_PEERS_REMEMBERED`]. Like HSTS, but kept for the life of the
/// process (a new platform starts empty).
#[derive(Default)]
struct TlsPeers {
    seen: Mutex<HashMap<String, Instant>>,
}

/// Peers remembered to speak TLS; beyond this the least recently seen is forgotten.
const TLS_PEERS_REMEMBERED: usize = 4096;

impl TlsPeers {
    fn remember(&self, peer: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = seen.get_mut(peer) {
            *at = Instant::now();
            return;
        }
        if seen.len() >= TLS_PEERS_REMEMBERED {
            if let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(peer.to_string(), Instant::now());
    }

    fn contains(&self, peer: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(peer)
    }
}

/// The session and connection identifiers of one context (`SecurityInfo::session_id`,
/// `connection_id`): unique and local, not secret. Each is the context's 64-bit prefix,
/// drawn once from the provider's RNG, followed by a 64-bit counter: unique within the
/// context by construction and, by the random prefix, across contexts and restarts
/// (two contexts share a prefix with probability 2^-64). Drawing every identifier from the
/// RNG cost four RNG calls per handshake (two per side), about 2,400 instructions each
/// (docs/PERFORMANCE.md).
struct IdSource {
    prefix: u64,
    next: AtomicU64,
}

impl IdSource {
    fn new(provider: &CryptoProvider) -> Result<Self, String> {
        let mut bytes = [0u8; 8];
        provider
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| "the crypto provider's random generator failed".to_string())?;
        Ok(Self {
            prefix: u64::from_be_bytes(bytes),
            next: AtomicU64::new(1),
        })
    }

    fn next(&self) -> u128 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (u128::from(self.prefix) << 64) | u128::from(n)
    }
}

impl fmt::Debug for CryptoContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoContext")
            .field("policy", &self.policy.name)
            .finish()
    }
}

/// The crypto provider restricted to a policy's groups and suites.
pub(crate) fn provider_for(policy: &CryptoPolicy) -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = policy.key_exchange.clone();
    provider.cipher_suites = policy.cipher_suites.clone();
    provider
}

impl CryptoContext {
    /// Builds both configurations. Errors are rustls's refusals (a key that does not match
    /// its certificate, an unusable group list), as text.
    pub(crate) fn new(
        policy: &CryptoPolicy,
        identity: &Identity,
        validator: Arc<ChainValidator>,
        handshake_timeout: Duration,
        user_max_iterations: u32,
        users: Arc<crate::user::users::UserDirectory>,
    ) -> Result<Self, String> {
        let provider = Arc::new(provider_for(policy));
        let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(ClientIdentityVerifier {
                validator: validator.clone(),
                allowed: Vec::new(),
            }))
            .with_single_cert(identity.chain.clone(), identity.private_key.clone_key())
            .map_err(|e| format!("identity {}: {e}", identity.certificate_file.display()))?;
        // The policy, not the client, decides which of the allowed suites and groups win.
        server.ignore_client_order = true;
        // Stateless tickets: resumption costs the server no memory per session.
        server.session_storage = Arc::new(NoServerSessionStorage {});
        if policy.session_lifetime.is_zero() {
            server.send_tls13_tickets = 0;
        } else {
            server.ticketer =
                Arc::new(SessionTicketer::new(policy.session_lifetime).map_err(|e| e.to_string())?);
        }
        // The same, ticketer included, with and without the user-authentication ALPN.
        let server_without_alpn = Arc::new(server.clone());
        server.alpn_protocols = server_alpn(&users);

        let mut client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerIdentityVerifier::new(
                validator.clone(),
                None,
                false,
            )))
            .with_client_auth_cert(identity.chain.clone(), identity.private_key.clone_key())
            .map_err(|e| format!("identity {}: {e}", identity.certificate_file.display()))?;
        client.resumption = Resumption::disabled();
        // Offered always: a server that requires user authentication can then say so
        // (a server with it off configures no ALPN and ignores the offer).
        client.alpn_protocols = vec![crate::user::step::ALPN.to_vec()];

        Ok(Self {
            ids: IdSource::new(&provider)?,
            users,
            server_without_alpn,
            policy: policy.clone(),
            handshake_timeout,
            user_max_iterations,
            provider,
            server: Arc::new(server),
            client,
            validator,
            tickets: TicketRegistry::new(policy.session_lifetime),
            tls_peers: TlsPeers::default(),
        })
    }

    /// A client configuration for one connection to `target_key`: the target's verifier
    /// (made by `verifier` the first time) and this connection's window onto the target's
    /// tickets.
    ///
    /// The verifier must be the same object for every connection to a target: rustls only
    /// resumes a session with the verifier instance that verified it.
    pub(crate) fn client_config(
        &self,
        target_key: &str,
        verifier: impl FnOnce() -> ServerIdentityVerifier,
        sni: bool,
    ) -> (Arc<ClientConfig>, Arc<ConnectionTickets>) {
        let target = self.tickets.for_target(target_key, verifier);
        let mut config = self.client.clone();
        config
            .dangerous()
            .set_certificate_verifier(target.verifier.clone());
        config.enable_sni = sni;
        let tickets = Arc::new(ConnectionTickets {
            target,
            offered: Mutex::new(None),
            session: Arc::new(SessionCell::default()),
        });
        if !self.policy.session_lifetime.is_zero() {
            config.resumption = Resumption::store(tickets.clone());
        }
        (Arc::new(config), tickets)
    }

    /// A server configuration that admits only clients proving one of `allowed` (a
    /// listener's peer target names for some addresses). It issues and accepts no session
    /// tickets: a resumed session skips the client's certificate, so every connection from
    /// a restricted address proves its name in a full handshake.
    pub(crate) fn restricted_server_config(
        &self,
        allowed: Vec<crate::name::PeerTargetName>,
        user_alpn: bool,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut server = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(ClientIdentityVerifier {
                validator: self.validator.clone(),
                allowed,
            }))
            .with_cert_resolver(self.server.cert_resolver.clone());
        server.ignore_client_order = true;
        if user_alpn {
            server.alpn_protocols = server_alpn(&self.users);
        }
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        Ok(Arc::new(server))
    }

    /// Forgets every ticket of `target_key` (after a resumed session failed re-validation).
    pub(crate) fn forget_tickets(&self, target_key: &str) {
        self.tickets.forget(target_key);
    }

    /// Records that a client handshake with `peer` (`target at address`) completed.
    pub(crate) fn remember_tls_peer(&self, peer: &str) {
        self.tls_peers.remember(peer);
    }

    /// Whether a client handshake with `peer` completed before.
    pub(crate) fn spoke_tls(&self, peer: &str) -> bool {
        self.tls_peers.contains(peer)
    }

    /// A new session or connection identifier, never given out before by this context.
    pub(crate) fn new_id(&self) -> u128 {
        self.ids.next()
    }
}

impl CryptoContext {
    /// Whether listeners must look at a ClientHello's ALPN before choosing a configuration
    /// (see [`CryptoContext::server_config`]).
    pub(crate) fn needs_alpn_choice(&self) -> bool {
        self.users.authentication != crate::policy::UserAuthentication::Off
    }

    /// The server configuration for a client that does (or does not) offer the
    /// user-authentication ALPN.
    pub(crate) fn server_config(&self, user_alpn: bool) -> Arc<ServerConfig> {
        if user_alpn {
            self.server.clone()
        } else {
            self.server_without_alpn.clone()
        }
    }
}

/// Whether the ClientHello at the start of `bytes` offers the ALPN `protocol`: `None` while
/// the ClientHello is incomplete. Parsed by rustls itself; bytes that are not a ClientHello
/// count as no offer (the handshake then fails on them properly).
pub(crate) fn client_hello_offers(bytes: &[u8], protocol: &[u8]) -> Option<bool> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut input = bytes;
    if acceptor.read_tls(&mut input).is_err() {
        return Some(false);
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Some(
            accepted
                .client_hello()
                .alpn()
                .is_some_and(|mut offered| offered.any(|p| p == protocol)),
        ),
        Ok(None) => None,
        Err(_) => Some(false),
    }
}

/// The ALPN a listener selects: the user-authentication step, unless it is off.
fn server_alpn(users: &crate::user::users::UserDirectory) -> Vec<Vec<u8>> {
    match users.authentication {
        crate::policy::UserAuthentication::Off => Vec::new(),
        _ => vec![crate::user::step::ALPN.to_vec()],
    }
}

/// The session id of one connection, settled when its handshake completes; tickets it
/// receives carry it to the connections that resume from them.
#[derive(Debug, Default)]
pub(crate) struct SessionCell {
    id: Mutex<u128>,
}

impl SessionCell {
    pub(crate) fn set(&self, id: u128) {
        *self.id.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }

    pub(crate) fn get(&self) -> u128 {
        *self.id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct StoredTicket {
    value: Tls13ClientSessionValue,
    session: Arc<SessionCell>,
    stored: Instant,
}

/// The verifier, tickets and key-exchange hint for one target name.
pub(crate) struct TargetTickets {
    verifier: Arc<ServerIdentityVerifier>,
    /// This side's `session_lifetime`: older tickets are not offered, whatever lifetime
    /// the server announced.
    lifetime: Duration,
    tickets: Mutex<VecDeque<StoredTicket>>,
    kx_hint: Mutex<Option<NamedGroup>>,
}

/// Every target's tickets, for one crypto policy.
struct TicketRegistry {
    lifetime: Duration,
    targets: Mutex<HashMap<String, (Arc<TargetTickets>, Instant)>>,
}

impl TicketRegistry {
    fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            targets: Mutex::new(HashMap::new()),
        }
    }

    fn for_target(
        &self,
        key: &str,
        verifier: impl FnOnce() -> ServerIdentityVerifier,
    ) -> Arc<TargetTickets> {
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some((tickets, used)) = targets.get_mut(key) {
            *used = now;
            return tickets.clone();
        }
        if targets.len() >= TARGETS_REMEMBERED {
            if let Some(oldest) = targets
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            {
                targets.remove(&oldest);
            }
        }
        let tickets = Arc::new(TargetTickets {
            verifier: Arc::new(verifier()),
            lifetime: self.lifetime,
            tickets: Mutex::new(VecDeque::new()),
            kx_hint: Mutex::new(None),
        });
        targets.insert(key.to_string(), (tickets.clone(), now));
        tickets
    }

    fn forget(&self, key: &str) {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// One connection's view of its target's tickets: remembers which session it offered
/// to resume, and tags the tickets it receives with its own session cell.
pub(crate) struct ConnectionTickets {
    target: Arc<TargetTickets>,
    offered: Mutex<Option<u128>>,
    pub session: Arc<SessionCell>,
}

impl fmt::Debug for ConnectionTickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionTickets").finish_non_exhaustive()
    }
}

impl ConnectionTickets {
    /// Whether the target's verifier already found `leaf` to prove the target name.
    pub(crate) fn target_proves(&self, leaf: &[u8], path: &crate::verify::ValidatedPath) -> bool {
        self.target.verifier.proves_target(leaf, path)
    }

    /// The session id of the ticket this connection offered, if it offered one.
    pub(crate) fn offered_session(&self) -> Option<u128> {
        *self.offered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientSessionStore for ConnectionTickets {
    fn set_kx_hint(&self, _server_name: ServerName<'static>, group: NamedGroup) {
        *self
            .target
            .kx_hint
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(group);
    }

    fn kx_hint(&self, _server_name: &ServerName<'_>) -> Option<NamedGroup> {
        *self
            .target
            .kx_hint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn set_tls12_session(
        &self,
        _server_name: ServerName<'static>,
        _value: Tls12ClientSessionValue,
    ) {
        // secsock speaks TLS 1.3 only.
    }

    fn tls12_session(&self, _server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _server_name: &ServerName<'static>) {}

    fn insert_tls13_ticket(
        &self,
        _server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut tickets = self
            .target
            .tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if tickets.len() >= TICKETS_PER_TARGET {
            tickets.pop_front();
        }
        tickets.push_back(StoredTicket {
            value,
            session: self.session.clone(),
            stored: Instant::now(),
        });
    }

    fn take_tls13_ticket(
        &self,
        _server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let mut tickets = self
            .target
            .tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Newest first: the most recent session is the one most likely still accepted.
        let ticket = tickets.pop_back()?;
        if ticket.stored.elapsed() > self.target.lifetime {
            // This one and every older one have outlived our session lifetime.
            tickets.clear();
            return None;
        }
        *self.offered.lock().unwrap_or_else(|p| p.into_inner()) = Some(ticket.session.get());
        Some(ticket.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_never_repeated_and_differ_between_contexts() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let (a, b) = (
            IdSource::new(&provider).unwrap(),
            IdSource::new(&provider).unwrap(),
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(a.next()), "an identifier was given out twice");
        }
        // Another context's identifiers carry another random prefix (equal with
        // probability 2^-64), so they cannot meet the first context's.
        assert_ne!(a.prefix, b.prefix);
        assert!((0..10_000).all(|_| !seen.contains(&b.next())));
        // Shared between threads, still unique.
        let shared = Arc::new(IdSource::new(&provider).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ids = shared.clone();
                std::thread::spawn(move || (0..1000).map(|_| ids.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u128> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
    }
}
