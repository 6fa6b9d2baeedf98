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
//! - `server`  accept loop, TLS handshake, HTTP/1.1 + HTTP/2, graceful shutdown
//! - `tls`     PEM -> rustls config, the crypto provider, dev certificates
//! - `gateway` the request path
//! - `route`   path normalization and route selection
//! - `proxy`   upstream client, header rewriting, identity injection, upgrades
//! - `admin`   /healthz /readyz
//! - `secrets` secret newtypes (redacted, zeroized)
//! - `error`   `GatewayError` and its status table
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod error;
pub mod gateway;
pub mod proxy;
pub mod route;
pub mod secrets;
pub mod server;
pub mod tls;
