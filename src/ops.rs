//! Layer 5, running keypin: start-up (`App`), live reload, the admin listener, the
//! warnings `check-config` prints, and the one-command demo.

pub(crate) mod admin;
pub mod app;
pub mod check;
pub mod demo;
pub(crate) mod reload;
