//! Test support: a test upstream, TLS clients, and keypin started in-process or as
//! a child process, all on 127.0.0.1 with ephemeral ports.
#![allow(dead_code)]

pub mod browser;
pub mod client;
pub mod gateway;
pub mod ingress;
pub mod redis;
pub mod store;
pub mod upstream;
pub mod vault;

/// An address that refuses connections: a port that was bound and released.
pub fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
