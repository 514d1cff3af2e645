//! The core shared by every front end: the TLS session and secsock's rules around it, the
//! decisions about what a listener admits and when clear text is allowed, the resumption
//! tickets, and the bounds on handshakes in progress. No socket, runtime or thread
//! credential is touched here: the front ends (`blocking`, `tokio`) move the bytes.

pub(crate) mod admission;
pub(crate) mod connect;
pub(crate) mod drain;
pub mod fallback;
pub mod handshakes;
pub(crate) mod readahead;
pub(crate) mod session;
pub(crate) mod ticketer;
pub(crate) mod tls;
pub(crate) mod user_auth;
