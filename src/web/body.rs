//! The response body of every answer keypin gives: an upstream's body streamed as it
//! arrives, or a page keypin made itself. A leaf of the request path: the modules
//! that build answers import it, it imports none of them.

use bytes::Bytes;
use http_body_util::{Either, Full};

use crate::transport::pool::UpstreamBody;

/// Response body: an upstream's streamed body, or a page keypin made itself.
pub type Body = Either<UpstreamBody, Full<Bytes>>;

/// A body keypin made itself.
pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}
