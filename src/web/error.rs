//! `GatewayError` and its one status table: every failure on the request path ends
//! here as a page that says what happened and never how, rendered like the
//! sign-in page (the operator's `[ui]`, the same CSP and headers).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Response, StatusCode};

use crate::config::UiConfig;
use crate::observe::audit::FailureReason;
use crate::observe::metrics::LoginResult;
use crate::state::limits::Refusal;
use crate::state::secrets::BackendError;
use crate::web::body::{Body, full_body};
use crate::web::page::{self, Page};
use crate::web::path::PathError;

/// `Retry-After` while the shared limit store is unreachable, in seconds.
const STORE_RETRY_AFTER: &str = "5";

/// Why a request could not be served. `Display` is for logs (it may hold internals);
/// clients only ever see [`GatewayError::into_response`].
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Encoded separators, dot-segments or control bytes in the path: refused rather
    /// than guessed at, so no spelling of a path can skip a check.
    #[error("refused path: {0}")]
    BadPath(#[from] PathError),
    #[error("no route matches")]
    NoRoute,
    /// No `Host`, two, or one that is not a plain `host[:port]`.
    #[error("missing, repeated or malformed host")]
    BadHost,
    #[error("method not allowed on a keypin page")]
    MethodNotAllowed,
    /// No valid session on a protected path. Browsers navigating (`GET`/`HEAD` that
    /// accept HTML) are redirected to `location`; anything else gets `401`.
    #[error("login required")]
    LoginRequired { location: String, redirect: bool },
    #[error("malformed PIN or form")]
    MalformedPin,
    #[error("unknown PIN")]
    InvalidPin,
    #[error("CSRF token or Origin mismatch")]
    Csrf,
    #[error("form body too large")]
    FormTooLarge,
    /// The client's request body broke off or was malformed while it was being
    /// forwarded: the client's fault, not the upstream's.
    #[error("malformed request body")]
    BadRequestBody,
    /// A form of keypin's own that did not arrive whole in time.
    #[error("form body too slow")]
    BodyTimeout,
    /// Too many attempts, or locked out: try again after `retry_after`.
    #[error("rate limited")]
    RateLimited { retry_after: std::time::Duration },
    /// Attack mode: only known devices may sign in for `retry_after`.
    #[error("attack mode: sign-in restricted to known devices")]
    AttackMode { retry_after: std::time::Duration },
    /// The secret backend failed. Never a wrong PIN: no lockout counts it.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The shared limit store did not answer: no attempt goes ahead uncounted.
    #[error("the shared limit store is unavailable")]
    StoreUnavailable,
    /// No new session could be revoked: none is signed in until entries run out.
    #[error("the revocation table is full")]
    RevocationsFull,
    #[error("cross-site WebSocket upgrade refused")]
    CrossSiteUpgrade,
    /// A forward-auth question from a peer that is not a trusted proxy.
    #[error("forward-auth from an untrusted peer")]
    UntrustedForwardAuth,
    /// A forward-auth question without a usable original request.
    #[error("forward-auth without a valid original URI and host")]
    BadForwardAuth,
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(#[source] crate::transport::pool::UpstreamError),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("building the upstream request: {0}")]
    UpstreamRequest(#[from] http::Error),
}

/// A wait in words, rounded up to its largest unit: "9 seconds", "1 minute",
/// "2 hours".
fn in_words(secs: u64) -> String {
    let (n, unit) = match secs {
        0..60 => (secs.max(1), "second"),
        60..3600 => (secs.div_ceil(60), "minute"),
        _ => (secs.div_ceil(3600), "hour"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl From<Refusal> for GatewayError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Wait(retry_after) => Self::RateLimited { retry_after },
            Refusal::AttackMode(retry_after) => Self::AttackMode { retry_after },
            Refusal::StoreUnavailable => Self::StoreUnavailable,
        }
    }
}

impl GatewayError {
    /// The status table. No `_` arm: a new variant must be placed here on purpose.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadPath(_) | Self::BadHost | Self::BadRequestBody => StatusCode::BAD_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::LoginRequired { redirect: true, .. } => StatusCode::FOUND,
            Self::LoginRequired { redirect: false, .. } | Self::InvalidPin => StatusCode::UNAUTHORIZED,
            Self::MalformedPin => StatusCode::BAD_REQUEST,
            Self::Csrf => StatusCode::FORBIDDEN,
            Self::FormTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } | Self::AttackMode { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Backend(_) | Self::StoreUnavailable | Self::RevocationsFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::CrossSiteUpgrade | Self::UntrustedForwardAuth => StatusCode::FORBIDDEN,
            Self::BadForwardAuth => StatusCode::BAD_REQUEST,
            Self::UpstreamUnreachable(_) | Self::UpstreamRequest(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The sentence shown to the client.
    pub fn public_message(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::RateLimited { retry_after } => {
                let wait = in_words(crate::state::limits::retry_after_secs(*retry_after));
                format!("Too many sign-in attempts. Please try again in {wait}.").into()
            }
            Self::AttackMode { retry_after } => {
                let wait = in_words(crate::state::limits::retry_after_secs(*retry_after));
                format!(
                    "Sign-in is temporarily restricted to devices that signed in before. Please try again in {wait}."
                )
                .into()
            }
            other => other.fixed_message().into(),
        }
    }

    /// Seconds until a refused sign-in may be tried again, for answers that say.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } | Self::AttackMode { retry_after } => {
                Some(crate::state::limits::retry_after_secs(*retry_after))
            }
            _ => None,
        }
    }

    /// `Retry-After` for answers that have one.
    pub fn retry_after(&self) -> Option<HeaderValue> {
        match self {
            Self::RateLimited { .. } | Self::AttackMode { .. } => self.retry_after_secs().map(HeaderValue::from),
            Self::StoreUnavailable => Some(HeaderValue::from_static(STORE_RETRY_AFTER)),
            Self::BadPath(_)
            | Self::BadHost
            | Self::NoRoute
            | Self::MethodNotAllowed
            | Self::LoginRequired { .. }
            | Self::MalformedPin
            | Self::InvalidPin
            | Self::Csrf
            | Self::FormTooLarge
            | Self::BodyTimeout
            | Self::BadRequestBody
            | Self::Backend(_)
            | Self::RevocationsFull
            | Self::CrossSiteUpgrade
            | Self::UntrustedForwardAuth
            | Self::BadForwardAuth
            | Self::UpstreamUnreachable(_)
            | Self::UpstreamTimeout
            | Self::UpstreamRequest(_) => None,
        }
    }

    /// How a refused sign-in counts: its metric, and its audit reason (none for a
    /// backend failure, which is no attempt's fault).
    pub fn login_outcome(&self) -> (LoginResult, Option<FailureReason>) {
        match self {
            Self::Csrf => (LoginResult::Csrf, Some(FailureReason::Csrf)),
            Self::RateLimited { .. } => (LoginResult::RateLimited, Some(FailureReason::RateLimited)),
            Self::AttackMode { .. } => (LoginResult::RateLimited, Some(FailureReason::AttackMode)),
            Self::InvalidPin => (LoginResult::InvalidPin, Some(FailureReason::InvalidPin)),
            Self::FormTooLarge => (LoginResult::Malformed, Some(FailureReason::FormTooLarge)),
            Self::Backend(_) | Self::StoreUnavailable | Self::RevocationsFull => (LoginResult::BackendError, None),
            Self::MalformedPin
            | Self::BodyTimeout
            | Self::BadRequestBody
            | Self::BadPath(_)
            | Self::BadHost
            | Self::NoRoute
            | Self::MethodNotAllowed
            | Self::LoginRequired { .. }
            | Self::CrossSiteUpgrade
            | Self::UntrustedForwardAuth
            | Self::BadForwardAuth
            | Self::UpstreamUnreachable(_)
            | Self::UpstreamTimeout
            | Self::UpstreamRequest(_) => (LoginResult::Malformed, Some(FailureReason::Malformed)),
        }
    }

    fn fixed_message(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "Too many sign-in attempts. Please try again later.",
            Self::AttackMode { .. } => "Sign-in is temporarily restricted. Please try again later.",
            Self::MethodNotAllowed => "This method is not allowed here.",
            Self::LoginRequired { .. } => "Please sign in.",
            Self::MalformedPin => "A PIN is a short number: please check it and try again.",
            Self::InvalidPin => "Invalid PIN. Please try again.",
            Self::Csrf => "This form has expired. Please try again.",
            Self::FormTooLarge => "The form is too large.",
            Self::BodyTimeout => "The form took too long to arrive. Please try again.",
            Self::Backend(_) | Self::StoreUnavailable | Self::RevocationsFull => {
                "Sign-in is temporarily unavailable. Please try again in a moment."
            }
            Self::BadPath(_) => "The request path is not acceptable.",
            Self::BadHost => "The request's host is not acceptable.",
            Self::BadRequestBody => "The request's body is malformed.",
            Self::NoRoute => "Nothing is served at this address.",
            Self::CrossSiteUpgrade => "Cross-site connections are not allowed.",
            Self::UntrustedForwardAuth => "Only a trusted proxy may ask this.",
            Self::BadForwardAuth => "The original request is missing or malformed.",
            Self::UpstreamUnreachable(_) | Self::UpstreamRequest(_) => {
                "The application is not reachable right now. Please try again shortly."
            }
            Self::UpstreamTimeout => "The application took too long to answer. Please try again.",
        }
    }

    /// The answer the client sees; pages are rendered with `ui`.
    pub fn into_response(self, ui: &UiConfig) -> Response<Body> {
        let status = self.status();
        match self {
            Self::LoginRequired { location, redirect: true } => {
                let mut resp = Response::new(full_body(Bytes::new()));
                *resp.status_mut() = status;
                if let Ok(location) = HeaderValue::try_from(location) {
                    resp.headers_mut().insert(LOCATION, location);
                }
                resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                resp
            }
            Self::LoginRequired { location, redirect: false } => {
                let json = serde_json::json!({ "error": "login required", "login": location });
                let mut resp = Response::new(full_body(json.to_string()));
                *resp.status_mut() = status;
                resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                resp
            }
            other => {
                let mut resp = error_page(ui, status, &other.public_message());
                if let Some(retry) = other.retry_after() {
                    resp.headers_mut().insert(http::header::RETRY_AFTER, retry);
                }
                resp
            }
        }
    }
}

/// The page for an error status: its reason as the heading, `message` under it.
pub fn error_page(ui: &UiConfig, status: StatusCode, message: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let page = Page { title: reason, message, alert: None, form: "", refresh: None };
    page::render(ui, status, &page, None)
}

#[cfg(test)]
mod tests {

    #[test]
    fn waits_are_written_in_words_rounded_up() {
        let cases = [
            (1, "1 second"),
            (9, "9 seconds"),
            (60, "1 minute"),
            (61, "2 minutes"),
            (3600, "1 hour"),
            (3601, "2 hours"),
        ];
        for (secs, words) in cases {
            assert_eq!(in_words(secs), words);
        }
        let e = GatewayError::AttackMode { retry_after: std::time::Duration::from_secs(3600) };
        assert!(e.public_message().contains("in 1 hour."), "{}", e.public_message());
        assert_eq!(e.retry_after_secs(), Some(3600));
    }

    use super::*;

    #[test]
    fn status_table() {
        assert_eq!(GatewayError::BadPath(PathError::DotSegment).status(), 400);
        assert_eq!(GatewayError::NoRoute.status(), 404);
        assert_eq!(GatewayError::CrossSiteUpgrade.status(), 403);
        assert_eq!(GatewayError::UpstreamTimeout.status(), 504);
        assert_eq!(GatewayError::LoginRequired { location: "/".into(), redirect: true }.status(), 302);
        assert_eq!(GatewayError::LoginRequired { location: "/".into(), redirect: false }.status(), 401);
        assert_eq!(GatewayError::MalformedPin.status(), 400);
        assert_eq!(GatewayError::InvalidPin.status(), 401);
        assert_eq!(GatewayError::Csrf.status(), 403);
        assert_eq!(GatewayError::FormTooLarge.status(), 413);
        assert_eq!(GatewayError::BodyTimeout.status(), 408);
        assert_eq!(GatewayError::BadHost.status(), 400);
        assert_eq!(GatewayError::BadRequestBody.status(), 400);
        assert_eq!(GatewayError::Backend(BackendError::Timeout).status(), 503);
        assert_eq!(GatewayError::MethodNotAllowed.status(), 405);
        let limited = GatewayError::RateLimited { retry_after: std::time::Duration::from_millis(4500) };
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.retry_after().unwrap(), "5");
        assert!(limited.public_message().contains("5 seconds"));
        let build = http::Request::builder().header("bad\nname", "x").body(()).unwrap_err();
        assert_eq!(GatewayError::UpstreamRequest(build).status(), 502);
    }

    #[test]
    fn pages_hold_no_internals() {
        let ui = UiConfig::default();
        let resp = GatewayError::Backend(BackendError::Unavailable("10.0.0.7:443 refused".into())).into_response(&ui);
        let http_body_util::Either::Right(body) = resp.into_body() else { panic!("static page") };
        assert!(!format!("{body:?}").contains("10.0.0.7"));
        let resp = GatewayError::BadPath(PathError::EncodedSeparator).into_response(&ui);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(resp.headers()[http::header::X_FRAME_OPTIONS], "DENY");
        let csp = resp.headers()[http::header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("style-src 'nonce-"), "{csp}");
        let http_body_util::Either::Right(body) = resp.into_body() else { panic!("static page") };
        let text = format!("{body:?}");
        assert!(!text.contains("%2F"), "{text}");
    }
}
