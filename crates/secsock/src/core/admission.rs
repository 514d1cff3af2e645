//! What a listener admits, and the accept sequence of one connection, for both front
//! ends: the mode a client's address gets (TLS; a look at the first bytes with
//! `ALLOW_INSECURE`; none with `SKIP_ENFORCEMENT`), the peer target names that apply to it,
//! the bound on handshakes in progress from its source, and the decisions made on the
//! bytes the front end peeks at ([`Accept`]). The front end accepts, peeks and runs the
//! handshake the sequence hands it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rustls::ServerConfig;

use crate::core::connect::Secured;
use crate::core::fallback::{self, FirstBytes, CLEAR_TEXT_WAIT};
use crate::core::handshakes::{SourceCounts, SourceKey, DEFAULT_MAX_HANDSHAKES_PER_SOURCE};
use crate::core::session::{Clear, Session};
use crate::core::tls::client_hello_offers;
use crate::error::{Error, NegotiationError};
use crate::name::PeerTargetName;
use crate::peers::{AddressPrefix, PeerNames};

/// How an accepted connection is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// TLS, always.
    Tls,
    /// Look at the first bytes: TLS for a ClientHello, clear for anything else
    /// (`ALLOW_INSECURE`).
    Peek,
    /// No handshake (`SKIP_ENFORCEMENT`).
    Skip,
}

/// The names a configuration admits, and whether it carries the user-authentication ALPN.
type RestrictedKey = (Vec<PeerTargetName>, bool);

/// What a listener requires of the connections it accepts.
#[derive(Debug)]
pub(crate) struct Admission {
    pub secured: Secured,
    names: RwLock<PeerNames>,
    /// Server configurations restricted to a set of names, built once per set (and per
    /// whether the user-authentication ALPN is offered).
    restricted: Mutex<HashMap<RestrictedKey, Arc<ServerConfig>>>,
    /// Handshakes in progress per source address.
    sources: Mutex<SourceCounts>,
}

/// One handshake in progress, counted against its source until dropped.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    admission: Arc<Admission>,
    key: SourceKey,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.admission
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .end(self.key);
    }
}

impl Admission {
    pub(crate) fn new(secured: Secured, name: Option<PeerTargetName>) -> Arc<Self> {
        let admission = Self {
            secured,
            names: RwLock::default(),
            restricted: Mutex::default(),
            sources: Mutex::new(SourceCounts::new(DEFAULT_MAX_HANDSHAKES_PER_SOURCE)),
        };
        if let Some(name) = name {
            admission.bind(name, AddressPrefix::Any);
        }
        Arc::new(admission)
    }

    /// How a connection from `ip` is treated. An address that peer target names apply to
    /// always gets TLS, also with `ALLOW_INSECURE`: a client restricted to proving a name
    /// must not get in by not speaking TLS at all.
    pub(crate) fn mode_for(&self, ip: IpAddr) -> Mode {
        let settings = &self.secured.settings;
        if settings.skips_enforcement() {
            Mode::Skip
        } else if settings.allows_insecure() && !self.restricts(ip) {
            Mode::Peek
        } else {
            Mode::Tls
        }
    }

    /// Whether peer target names apply to `ip`.
    fn restricts(&self, ip: IpAddr) -> bool {
        self.names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .bindings()
            .iter()
            .any(|(_, prefix)| prefix.contains(ip))
    }

    pub(crate) fn bind(&self, name: PeerTargetName, peers: AddressPrefix) {
        let name = if self.secured.settings.raw_peer_name() {
            name.to_raw()
        } else {
            name
        };
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .bind(name, peers);
    }

    pub(crate) fn delete(&self, peers: AddressPrefix) -> usize {
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .delete(peers)
    }

    pub(crate) fn names(&self) -> PeerNames {
        self.names.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The server session for a client at `ip` (restricted to the names that apply
    /// there) that does or does not offer the user-authentication ALPN.
    pub(crate) fn session_for(&self, ip: IpAddr, user_alpn: bool) -> Result<Session, Error> {
        let ctx = &self.secured.ctx;
        let allowed = self
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .applicable(ip);
        if allowed.is_empty() {
            return Session::server(ctx.clone(), Some(ctx.server_config(user_alpn)));
        }
        let mut restricted = self.restricted.lock().unwrap_or_else(|p| p.into_inner());
        let key = (allowed, user_alpn);
        let config = match restricted.get(&key) {
            Some(config) => config.clone(),
            None => {
                let config = ctx
                    .restricted_server_config(key.0.clone(), user_alpn)
                    .map_err(|e| Error::Config {
                        policy: ctx.policy.name.clone(),
                        reason: e.to_string(),
                    })?;
                restricted.insert(key, config.clone());
                config
            }
        };
        Session::server(ctx.clone(), Some(config))
    }

    /// A connection in clear text, with `reason`.
    pub(crate) fn clear(&self, reason: NegotiationError) -> Clear {
        Clear::new(reason, &self.secured.ctx)
    }

    /// Counts a handshake from `ip` against its source, or refuses it (`None`: close the
    /// connection at once) when the source already has the most handshakes in progress it
    /// may have. Refusals are logged at most once a second.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let key = SourceKey::of(ip);
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.try_start(key) {
            return Some(SourceSlot {
                admission: self.clone(),
                key,
            });
        }
        if let Some(count) = sources.refused(Instant::now()) {
            tracing::warn!(
                "closed {count} connection(s) at once (the latest from {ip}): their source had \
                 {} handshakes in progress, the most one source may have \
                 (set_max_handshakes_per_source)",
                sources.limit()
            );
        }
        None
    }

    /// See `SecureListener::set_max_handshakes_per_source` (both front ends).
    pub(crate) fn set_max_handshakes_per_source(&self, max: usize) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_limit(max);
    }
}

/// The most a listener peeks at to read a ClientHello's ALPN (a ClientHello with a
/// post-quantum key share is about 1.5 KB; rustls refuses more than 64 KiB anyway).
pub(crate) const PEEK_LIMIT: usize = 16 * 1024;

/// The first bytes a listener with `ALLOW_INSECURE` looks at before deciding TLS or clear.
const FIRST_BYTES: usize = 6;

/// The accept sequence of one connection: what to look at, and what to do with it.
///
/// The front end calls [`Accept::start`], then follows the steps: it peeks as asked (a look
/// returns when more than it saw before has arrived, or when the look's time is up) and
/// gives each look to [`Accept::peeked`], until the sequence says to serve the connection
/// in clear or hands it the session to run the handshake with.
pub(crate) struct Accept {
    admission: Arc<Admission>,
    ip: IpAddr,
    accepted: Instant,
    looking_for: LookingFor,
}

/// What the sequence is looking at the client's bytes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LookingFor {
    /// Nothing yet.
    Nothing,
    /// A TLS ClientHello, or anything else (`ALLOW_INSECURE`).
    FirstBytes { until: Instant },
    /// Whether the ClientHello offers the user-authentication ALPN.
    Alpn { until: Instant },
}

/// What the accept sequence needs next.
#[allow(clippy::large_enum_variant)] // short-lived, and the handshake is the common case
pub(crate) enum AcceptStep {
    /// Look at (peek, without consuming) up to `limit` bytes of what the client sent,
    /// waiting for more than the last look saw until `until`; then call
    /// [`Accept::peeked`]. A client that closes meanwhile has failed (`PeerClosed`).
    Peek { limit: usize, until: Instant },
    /// Serve the connection in clear text, for this reason.
    Clear(Clear),
    /// Run the handshake with this session (bounded by the handshake timeout counted from
    /// the accept).
    Handshake(Session),
}

impl Accept {
    /// The sequence for a connection from `ip` accepted at `accepted`.
    pub(crate) fn new(admission: Arc<Admission>, ip: IpAddr, accepted: Instant) -> Self {
        Self {
            admission,
            ip,
            accepted,
            looking_for: LookingFor::Nothing,
        }
    }

    /// The first step.
    pub(crate) fn start(&mut self) -> Result<AcceptStep, Error> {
        match self.admission.mode_for(self.ip) {
            Mode::Skip => Ok(AcceptStep::Clear(
                self.admission.clear(NegotiationError::EnforcementSkipped),
            )),
            Mode::Peek => {
                let wait = CLEAR_TEXT_WAIT.min(self.admission.secured.ctx.handshake_timeout);
                let until = self.accepted + wait;
                self.looking_for = LookingFor::FirstBytes { until };
                Ok(AcceptStep::Peek {
                    limit: FIRST_BYTES,
                    until,
                })
            }
            Mode::Tls => self.after_first_bytes(),
        }
    }

    /// The next step, given what the last look saw: `bytes` (the client's first bytes, at
    /// most the limit asked for) and whether the look's time was up.
    pub(crate) fn peeked(&mut self, bytes: &[u8], time_up: bool) -> Result<AcceptStep, Error> {
        match self.looking_for {
            LookingFor::FirstBytes { until } => match fallback::classify_first_bytes(bytes) {
                FirstBytes::ClientHello => self.after_first_bytes(),
                FirstBytes::NotTls => Ok(self.clear(false)),
                FirstBytes::NeedMore if time_up && bytes.is_empty() => Ok(self.clear(true)),
                // A prefix consistent with a ClientHello that then stalls: the handshake
                // judges it (and times out), it is never served in clear.
                FirstBytes::NeedMore if time_up => self.after_first_bytes(),
                FirstBytes::NeedMore => Ok(AcceptStep::Peek {
                    limit: FIRST_BYTES,
                    until,
                }),
            },
            LookingFor::Alpn { until } => {
                match client_hello_offers(bytes, crate::user::step::ALPN) {
                    Some(offers) => self.handshake(offers),
                    // Undecided at the deadline: the handshake will time out anyway.
                    None if time_up || bytes.len() >= PEEK_LIMIT => self.handshake(false),
                    None => Ok(AcceptStep::Peek {
                        limit: PEEK_LIMIT,
                        until,
                    }),
                }
            }
            LookingFor::Nothing => self.start(),
        }
    }

    /// TLS it is: look for the user-authentication ALPN where the listener must choose a
    /// configuration by it (see `CryptoContext::server_config`), else hand out the session.
    fn after_first_bytes(&mut self) -> Result<AcceptStep, Error> {
        if !self.admission.secured.ctx.needs_alpn_choice() {
            return self.handshake(true);
        }
        let until = self.accepted + self.admission.secured.ctx.handshake_timeout;
        self.looking_for = LookingFor::Alpn { until };
        Ok(AcceptStep::Peek {
            limit: PEEK_LIMIT,
            until,
        })
    }

    fn handshake(&mut self, user_alpn: bool) -> Result<AcceptStep, Error> {
        let session = self.admission.session_for(self.ip, user_alpn)?;
        Ok(AcceptStep::Handshake(session))
    }

    fn clear(&self, sent_nothing: bool) -> AcceptStep {
        let reason = fallback::server_fallback_reason(sent_nothing);
        AcceptStep::Clear(self.admission.clear(reason))
    }
}
