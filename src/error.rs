//! `GatewayError` and its one status table: every failure on the request path ends
//! here as a plain page that says what happened and never how.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::gateway::{Body, full_body};

/// Why a request could not be served. `Display` is for logs (it may hold internals);
/// clients only ever see [`GatewayError::into_response`].
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Encoded separators, dot-segments or control bytes in the path: refused rather
    /// than guessed at, so no spelling of a path can skip a check.
    #[error("refused path: {0}")]
    BadPath(&'static str),
    #[error("no route matches")]
    NoRoute,
    #[error("cross-site WebSocket upgrade refused")]
    CrossSiteUpgrade,
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(#[source] hyper_util::client::legacy::Error),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("building the upstream request: {0}")]
    UpstreamRequest(#[from] http::Error),
}

impl GatewayError {
    /// The status table. No `_` arm: a new variant must be placed here on purpose.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::CrossSiteUpgrade => StatusCode::FORBIDDEN,
            Self::UpstreamUnreachable(_) | Self::UpstreamRequest(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The sentence shown to the client.
    fn public_message(&self) -> &'static str {
        match self {
            Self::BadPath(_) => "The request path is not acceptable.",
            Self::NoRoute => "Nothing is served at this address.",
            Self::CrossSiteUpgrade => "Cross-site connections are not allowed.",
            Self::UpstreamUnreachable(_) | Self::UpstreamRequest(_) => {
                "The application is not reachable right now. Please try again shortly."
            }
            Self::UpstreamTimeout => "The application took too long to answer. Please try again.",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        error_page(self.status(), self.public_message())
    }
}

/// A small self-contained HTML page for an error status.
pub fn error_page(status: StatusCode, message: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{code} {reason}</title></head>\n<body><h1>{reason}</h1><p>{message}</p></body></html>\n",
        code = status.as_u16(),
    );
    let mut resp = Response::new(full_body(Bytes::from(html)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        assert_eq!(GatewayError::BadPath("x").status(), 400);
        assert_eq!(GatewayError::NoRoute.status(), 404);
        assert_eq!(GatewayError::CrossSiteUpgrade.status(), 403);
        assert_eq!(GatewayError::UpstreamTimeout.status(), 504);
        let build = http::Request::builder()
            .header("bad\nname", "x")
            .body(())
            .unwrap_err();
        assert_eq!(GatewayError::UpstreamRequest(build).status(), 502);
    }

    #[test]
    fn pages_hold_no_internals() {
        let resp = GatewayError::BadPath("%2F in path").into_response();
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let http_body_util::Either::Right(body) = resp.into_body() else {
            panic!("static page")
        };
        let text = format!("{body:?}");
        assert!(!text.contains("%2F"), "{text}");
    }
}
