//! What `connect` does, decided before any byte is sent, and what it does when securing
//! the connection fails: the connect plan both front ends follow. The front end connects
//! TCP, drives the handshake, and on a failure asks the plan whether to connect again in
//! clear text (`ALLOW_INSECURE`, only where the peer plainly does not speak TLS: see
//! [`crate::core::fallback`]) or report the error.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::core::fallback;
use crate::core::session::{Clear, Session};
use crate::core::tls::CryptoContext;
use crate::error::{Error, NegotiationError};
use crate::name::PeerTargetName;
use crate::settings::{SecuritySettings, UserCredentials};

/// Security turned on: the settings and the crypto they resolved to.
#[derive(Clone, Debug)]
pub(crate) struct Secured {
    pub settings: SecuritySettings,
    pub ctx: Arc<CryptoContext>,
}

/// What connecting to one address does beyond its first [`Plan`]: the user to prove, and
/// what a failure leads to.
pub(crate) struct ConnectPlan {
    allow_insecure: bool,
    /// The user identity to prove after the handshake.
    pub user: Option<UserCredentials>,
    pub ctx: Arc<CryptoContext>,
}

/// TLS, or clear because the socket skips enforcement.
#[allow(clippy::large_enum_variant)] // short-lived, and TLS is the common case
pub(crate) enum Plan {
    Tls(Session),
    Skip(Clear),
}

impl ConnectPlan {
    /// The plan for connecting to `addr` expecting `target` (raw if the settings say so):
    /// how to secure the connection, and the rest of the plan.
    pub(crate) fn new(
        secured: Secured,
        target: Option<PeerTargetName>,
        addr: SocketAddr,
    ) -> Result<(Plan, Self), Error> {
        let settings = &secured.settings;
        let first = if settings.skips_enforcement() {
            Plan::Skip(Clear::new(
                NegotiationError::EnforcementSkipped,
                &secured.ctx,
            ))
        } else {
            let target = target.map(|t| {
                if settings.raw_peer_name() {
                    t.to_raw()
                } else {
                    t
                }
            });
            Plan::Tls(Session::client(
                secured.ctx.clone(),
                target,
                settings.optional_name_verification(),
                addr,
            )?)
        };
        let rest = Self {
            allow_insecure: settings.allows_insecure(),
            user: settings.user.clone(),
            ctx: secured.ctx,
        };
        Ok((first, rest))
    }

    /// After securing the connection with `session` failed with `error`: the clear-text
    /// connection to make instead (`Ok`, with the reason the query will give), or the error
    /// to report. The front end then connects again, to the same address from the same
    /// local IP, within the same deadline.
    pub(crate) fn after_failure(&self, error: Error, session: &Session) -> Result<Clear, Error> {
        match error {
            Error::Negotiation(e) if self.allow_insecure => {
                let reason = fallback::client_fallback(
                    e,
                    session.first_peer_byte(),
                    session.peer_spoke_tls_before(),
                )?;
                Ok(Clear::new(reason, &self.ctx))
            }
            other => Err(other),
        }
    }
}
