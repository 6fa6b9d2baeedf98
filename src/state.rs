//! Layer 3, the security state: sealed sessions and their revocations, login limits
//! and lockouts, and the secrets behind the PINs (stores, cache, credentials). It
//! reads the few headers it is about (`Cookie`, `X-Forwarded-For`) but answers no
//! request: the request path above asks it questions.

pub mod limits;
pub mod secrets;
pub mod session;
