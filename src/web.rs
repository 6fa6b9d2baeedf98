//! Layer 4, the request path: the response body, path normalization, route
//! selection, keypin's pages and its one status table, the login form and where it
//! sends a person next, the upstream side (headers, streaming), upgraded
//! connections that end with their session, and the `Gateway` that joins them.

pub(crate) mod body;
pub(crate) mod error;
pub mod forward_auth;
pub mod gateway;
pub mod login;
pub(crate) mod page;
pub mod path;
pub mod proxy;
pub(crate) mod redirect;
pub mod route;
pub mod upgrade;
