//! User (application) authentication after the handshake: the step itself (`step`), the
//! SCRAM-SHA-256-PLUS mechanism (`scram`), the users file (`users`) and the throttling of
//! failed attempts (`throttle`).

pub mod scram;
pub(crate) mod step;
pub(crate) mod throttle;
pub mod users;
