//! keypin: a TLS reverse proxy that gives legacy web apps PIN login without code
//! changes. A request arrives on the TLS listener (`server`), is normalized and
//! routed (`route`), passes keypin's own `/.keypin/` pages and the session check
//! (`gateway`), and is streamed to its upstream with the mapped identity injected
//! (`proxy`). Configuration is parsed once into typed values (`config`); every
//! failure maps to one status table (`error`).
//!
//! # Layout
//! - `config`  TOML -> validated `Config`; errors name file and key
//! - `app`     start-up: bind listeners, build the gateway, run until shutdown
//! - `server`  accept loop, TLS handshake, worker threads, graceful shutdown
//! - `allocator` the allocator's upkeep: memory a burst used goes back when idle
//! - `connection` one client connection: HTTP/2, or HTTP/1.1 parked while idle
//! - `tls`     PEM -> rustls config, the crypto provider, dev certificates
//! - `tls_stream` the TLS server stream: rustls unbuffered, no buffer while idle
//! - `gateway` the request path: login pages, session check, identity, proxy
//! - `login`   the PIN form, CSRF, redirect targets, logout, known devices
//! - `page`    keypin's pages: template, `[ui]`, security headers
//! - `session` sealed session cookies, rotation, expiry, revocation
//! - `audit`   one JSON line per security event
//! - `route`   path normalization and route selection
//! - `proxy`   upstream client, header rewriting, identity injection, upgrades
//! - `reload`  SIGHUP / file-change reload: validate, then swap the gateway
//! - `limits`  per-client and global login limits, lockouts, the guessing budget
//! - `metrics` the Prometheus registry
//! - `admin`   /healthz /readyz /metrics
//! - `demo`    `keypin demo`: embedded config and a built-in legacy app
//! - `secrets` the secret store trait, file store, cache; redacted newtypes
//! - `error`   `GatewayError` and its status table
#![forbid(unsafe_code)]

pub mod admin;
pub mod allocator;
pub mod app;
pub mod audit;
pub mod config;
pub mod connection;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod login;
pub mod metrics;
pub mod page;
pub mod pool;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod secrets;
pub mod server;
pub mod session;
pub mod tls;
pub mod tls_stream;
