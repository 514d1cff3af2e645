//! The blocking front end: secured sockets over `std::net`, their listeners and streams.
//! Each moves bytes and waits on its socket; the decisions are the core's.

pub(crate) mod deadline;
pub mod listener;
pub mod socket;
pub mod stream;
