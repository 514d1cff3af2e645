//! secsock's integration tests, one test binary: real peers over TCP on loopback with
//! temporary trust domains (the fixtures are in `tests/support/`, compiled once here).
//! Each module is one behaviour; a test's full name is `module::test`, e.g.
//! `cargo test -p secsock --all-features --test integration attacks::`.
//!
//! A test that needs a process of its own lives beside this binary instead:
//! `slow_peers.rs` raises the open-files limit and times its clients against a flood of
//! thousands of connections, which other tests running meanwhile would slow.
//! The modules marked `tokio` (in their first lines) need the `tokio` feature; the
//! impersonation modules need root and skip, saying so, without it.

#[path = "../support/mod.rs"]
mod support;

mod attacks;
mod enforcement;
mod enforcement_tokio;
mod examples;
mod expired_crls;
mod impersonation;
mod impersonation_e2e;
mod layout;
mod negotiation_errors;
mod openssl_interop;
mod resumption;
mod robustness;
mod secured_connection;
mod tokio_api;
mod tokio_smoke;
mod usage_rules;
mod user_authentication;
mod user_authentication_tokio;
mod wire;
