//! Layer 5, running keypin: start-up (`App`), live reload, the admin listener, the
//! warnings `check-config` prints and what it loads, the one-command demo, and provisioning
//! (`keypin secret-name`).

pub(crate) mod admin;
pub mod app;
pub mod check;
pub mod demo;
pub mod preflight;
pub mod provision;
pub(crate) mod reload;
