//! keypin: a TLS reverse proxy that gives legacy web apps PIN login without code
//! changes.
//!
//! # Layers
//! Six layers, each importing only those below it (docs/architecture.md draws them
//! and the request's way through them):
//!
//! | layer | what it holds |
//! |---|---|
//! | `ops` | start-up (`App`), live reload, the admin listener, `check-config`'s warnings, the demo |
//! | `web` | the request path: body, path normalization, routes, pages, the status table, login, proxy, `Gateway` |
//! | `state` | the security state: sealed sessions and revocations, login limits and lockouts, secrets |
//! | `transport` | the TLS listener and workers, keypin's TLS stream, one connection, the upstream pool, the allocator |
//! | `observe` | metrics, the audit log, what the log may show of other crates |
//! | `config` | TOML -> the validated `Config`; redacted secret text; imports nothing of keypin's |
//!
//! # A request's way
//! `transport::server` accepts and hands the socket to a worker, which completes the
//! TLS handshake (`transport::tls_stream`) and serves HTTP (`transport::connection`)
//! by calling its `Handler`: `web::gateway`. The gateway normalizes the path
//! (`web::path`), serves keypin's own pages (`web::login`, `web::page`) or picks a
//! route (`web::route`), opens the session (`state::session`), resolves the secret
//! (`state::secrets`), and streams the request upstream with the identity injected
//! (`web::proxy`, over `transport::pool`). Every failure maps to one status table
//! (`web::error`).
#![forbid(unsafe_code)]

pub mod config;
pub mod observe;
pub mod ops;
pub mod state;
pub mod transport;
pub mod web;

/// The settings of every property test: `cases` cases, and no failure file written
/// into the source tree.
#[cfg(test)]
pub(crate) fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config { cases, failure_persistence: None, ..Default::default() }
}
