//! keypin's own pages under `/.keypin/`: the PIN form and its POST (form parsing,
//! CSRF double submit plus `Origin`, the PIN check, the response-time floor, the
//! redirect-target check), and logout.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cookie::SameSite;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use crate::config::PinConfig;
use crate::config::UiConfig;
use crate::observe::audit;
use crate::observe::metrics::{LoginResult, Metrics};
use crate::state::limits::{self, ClientKey, LimitStore, Pending, Verdict};
use crate::state::secrets::SecretName;
use crate::state::secrets::cache::{Resolved, SecretCache, Staleness};
use crate::state::session::{MAX_REVOKED, Sessions, constant_time_eq, random_token};
use crate::web::body::{Body, full_body};
use crate::web::error::GatewayError;
use crate::web::redirect::{query_rd, safe_redirect};
use crate::web::route::{LOGIN_PATH, LOGOUT_PATH, Router, same_origin};

mod pages;

/// CSRF tokens remembered as spent at most (each for [`CSRF_TTL`]).
const MAX_SPENT_TOKENS: u64 = 100_000;
/// Bound on reading a form unless the gateway sets another.
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest login or logout form accepted; larger is `413`.
pub const MAX_FORM_BYTES: usize = 4096;
/// How long a CSRF token (and the form carrying it) stays usable.
const CSRF_TTL: Duration = Duration::from_secs(3600);
const CSRF_TOKEN_BYTES: usize = 32;
/// Shown on the sign-in page right after signing out.
const SIGNED_OUT: &str = "You have been signed out.";
/// Random extra on top of `min_response` (at most a fifth of it), so the floor
/// itself is not a clean edge.
const MAX_JITTER: Duration = Duration::from_millis(50);

/// A request body a form can be read from (hyper's `Incoming` in the server, any
/// body in tests and benches).
pub trait FormBody: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> {}
impl<B> FormBody for B where B: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> {}

/// The login and logout handlers.
pub struct Login {
    pin: PinConfig,
    sessions: Arc<Sessions>,
    secrets: Arc<SecretCache>,
    limits: Arc<dyn LimitStore>,
    metrics: Arc<Metrics>,
    csrf_cookie: String,
    /// CSRF tokens already used: each serves one POST.
    spent: moka::sync::Cache<String, ()>,
    device_cookie: String,
    /// `limits.attack_failures`' count, for the audit line.
    attack_budget: u32,
    ui: UiConfig,
    /// The routes, to find the namespace a sign-in is for (the route `rd` selects).
    router: Arc<Router>,
    /// `(secret prefix, session cookie)` of every PIN namespace.
    namespaces: Vec<(String, String)>,
    /// Bound on reading a whole form, however slowly it trickles in.
    body_timeout: Duration,
}

/// How long a known-device cookie lasts (re-issued at every sign-in).
pub const DEVICE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
const DEVICE_ID_BYTES: usize = 16;

/// A browser that signed in before: it carries no authority of its own (it never
/// logs anyone in); under attack mode it may still try PINs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct KnownDevice {
    #[serde(rename = "d")]
    id: String,
    #[serde(rename = "u")]
    user: String,
    #[serde(rename = "t")]
    issued: u64,
}

/// A parsed login or logout form.
#[derive(Debug, Default)]
struct Form {
    pins: Vec<String>,
    rd: Option<String>,
    /// Every `csrf` field: exactly one is accepted.
    csrf: Vec<String>,
}

impl Login {
    pub fn new(
        pin: PinConfig,
        sessions: Arc<Sessions>,
        secrets: Arc<SecretCache>,
        limits: Arc<dyn LimitStore>,
        metrics: Arc<Metrics>,
        attack_budget: u32,
        ui: UiConfig,
    ) -> Self {
        let csrf_cookie = sessions.companion_name("csrf");
        let namespaces = vec![(pin.secret_prefix.clone(), sessions.namespace_cookie(None))];
        let router = Arc::new(Router::new(Vec::new()));
        let device_cookie = sessions.companion_name("device");
        let body_timeout = DEFAULT_BODY_TIMEOUT;
        let spent = moka::sync::Cache::builder().max_capacity(MAX_SPENT_TOKENS).time_to_live(CSRF_TTL).build();
        Self {
            pin,
            sessions,
            secrets,
            limits,
            metrics,
            csrf_cookie,
            spent,
            device_cookie,
            attack_budget,
            ui,
            body_timeout,
            router,
            namespaces,
        }
    }

    /// How keypin's pages look under this configuration.
    pub fn ui(&self) -> &UiConfig {
        &self.ui
    }

    /// The routes, whose own PIN namespaces (`secret_prefix`) sign-in and logout
    /// then know: a sign-in is for the namespace of the route `rd` selects.
    pub fn with_router(mut self, router: Arc<Router>) -> Self {
        for prefix in router.namespaces() {
            if !self.namespaces.iter().any(|(p, _)| p == prefix) {
                self.namespaces.push((prefix.to_owned(), self.sessions.namespace_cookie(Some(prefix))));
            }
        }
        self.router = router;
        self
    }

    /// The session cookie of a PIN namespace (`None`: the default one), as
    /// reckoned once at start-up.
    pub(crate) fn session_cookie(&self, namespace: Option<&str>) -> &str {
        let prefix = namespace.unwrap_or(&self.pin.secret_prefix);
        self.namespaces.iter().find(|(p, _)| p == prefix).map_or(self.sessions.cookie_name(), |(_, cookie)| cookie)
    }

    /// Bound the reading of a form's whole body by `timeout` (the server's
    /// `header_read_timeout`): later is `408`.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The form of a request, read within [`Login::with_body_timeout`].
    async fn form<B: FormBody>(&self, headers: &HeaderMap, body: B) -> Result<Form, GatewayError> {
        tokio::time::timeout(self.body_timeout, read_form(headers, body))
            .await
            .unwrap_or(Err(GatewayError::BodyTimeout))
    }

    /// Serve a request under `/.keypin/`; `client` is the address used for audit.
    pub async fn handle<B: FormBody>(
        &self,
        req: Request<B>,
        path: &str,
        client: IpAddr,
    ) -> Result<Response<Body>, GatewayError> {
        let (parts, body) = req.into_parts();
        match (&parts.method, path) {
            (&Method::GET | &Method::HEAD, LOGIN_PATH) => {
                let query = parts.uri.query();
                let rd = query.and_then(query_rd).unwrap_or_else(|| "/".into());
                let signed_out =
                    query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "signed_out"));
                let notice = signed_out.then_some(SIGNED_OUT);
                Ok(self.login_page(&parts.headers, StatusCode::OK, None, &rd, notice))
            }
            (&Method::POST, LOGIN_PATH) => Ok(self.login_post(parts, body, client).await),
            (&Method::GET | &Method::HEAD, LOGOUT_PATH) => Ok(self.logout_form(&parts.headers)),
            (&Method::POST, LOGOUT_PATH) => self.logout_post(parts, body, client).await,
            (_, LOGIN_PATH | LOGOUT_PATH) => Err(GatewayError::MethodNotAllowed),
            _ => Err(GatewayError::NoRoute),
        }
    }

    async fn login_post<B: FormBody>(&self, parts: Parts, body: B, client: IpAddr) -> Response<Body> {
        let started = Instant::now();
        let headers = &parts.headers;
        let form = match self.form(headers, body).await {
            Ok(form) => form,
            Err(e) => return self.refuse(headers, client, e, "/"),
        };
        let rd = safe_redirect(form.rd.as_deref().unwrap_or("/"));
        if !self.csrf_ok(&parts, &form) {
            return self.refuse(headers, client, GatewayError::Csrf, &rd);
        }
        // Limits come before the PIN is even looked at: a limited client learns
        // nothing (a valid PIN is refused too) and costs the backend nothing.
        // Under attack mode only browsers that signed in before may try at all.
        let device = self.known_device(headers);
        let device = device.as_ref().map(|d| d.id.as_str());
        let pending = match limits::admit(&self.limits, ClientKey::of(client), device).await {
            Ok(pending) => pending,
            Err(refusal) => return self.refuse(headers, client, refusal.into(), &rd),
        };
        let pin = match parse_pin(&form.pins, &self.pin) {
            Ok(pin) => pin,
            Err(e) => {
                self.failed(pending, client).await;
                return self.refuse(headers, client, e, &rd);
            }
        };

        // From here on the answer takes at least `min_response`: a known PIN and an
        // unknown one must not differ in timing.
        let namespace = self.namespace_of(&parts, &rd);
        let prefix = namespace.unwrap_or(&self.pin.secret_prefix);
        let name = SecretName::in_namespace(&self.pin, prefix, pin);
        let outcome = self.secrets.resolve(&name, Staleness::FreshOnly).await;
        let jitter_max = MAX_JITTER.min(self.pin.min_response / 5);
        let jitter = jitter_max.mul_f64(rand::random::<f64>());
        let floor = started + self.pin.min_response + jitter;
        if Instant::now() < floor {
            tokio::time::sleep_until(floor).await;
        }

        let error = match outcome {
            Ok(Resolved::Found(creds)) => {
                // A success erases no failure: they count for 24 h whatever comes
                // between (SPEC `lockout_after`), so one valid PIN is no licence
                // to guess at the full rate.
                pending.settle(Verdict::Succeeded).await;
                if !self.sessions.can_mint() {
                    tracing::error!(
                        max = MAX_REVOKED,
                        "the revocation table is full: sign-ins are refused until revoked sessions expire"
                    );
                    return self.refuse(headers, client, GatewayError::RevocationsFull, &rd);
                }
                self.metrics.login(LoginResult::Success);
                audit::login_success(&creds.username, client, prefix);
                self.metrics.sign_in(prefix);
                let (_, cookie) = self.sessions.mint_as(self.session_cookie(namespace), name, &creds.username);
                let mut resp = redirect(StatusCode::SEE_OTHER, &rd);
                let headers = resp.headers_mut();
                headers.append(header::SET_COOKIE, cookie);
                headers.append(header::SET_COOKIE, self.device_cookie(device, &creds.username));
                headers.append(header::SET_COOKIE, self.sessions.clear(&self.csrf_cookie));
                return resp;
            }
            Ok(Resolved::NotFound) => {
                self.failed(pending, client).await;
                GatewayError::InvalidPin
            }
            // An outage is not a wrong PIN: it must not count toward a lockout.
            Err(e) => {
                pending.settle(Verdict::Unanswered).await;
                GatewayError::Backend(e)
            }
        };
        self.refuse(headers, client, error, &rd)
    }

    /// A wrong or malformed PIN: one more failure in the client's (and device's)
    /// streak and in the global failure budget.
    async fn failed(&self, pending: Pending, client: IpAddr) {
        let outcome = pending.settle(Verdict::Failed).await;
        if let Some(lockout) = outcome.client_lockout.or(outcome.device_lockout) {
            audit::lockout(client, lockout.duration);
        }
        if outcome.attack_mode_started {
            self.metrics.attack_mode.set(1);
            audit::attack_mode(true, u64::from(self.attack_budget) + 1);
        }
    }

    /// The browser's known-device cookie, when it is ours, unexpired and opens.
    fn known_device(&self, headers: &HeaderMap) -> Option<KnownDevice> {
        let now = crate::state::session::now();
        self.sessions.open_sealed(headers, &self.device_cookie).find_map(|json| {
            let device: KnownDevice = serde_json::from_str(&json).ok()?;
            (now < device.issued.saturating_add(DEVICE_TTL.as_secs())).then_some(device)
        })
    }

    /// `Set-Cookie` for the known-device cookie: the device keeps its id, and
    /// remembers the user it last saw.
    fn device_cookie(&self, id: Option<&str>, user: &str) -> HeaderValue {
        let device = KnownDevice {
            id: id.map_or_else(|| random_token(DEVICE_ID_BYTES), str::to_owned),
            user: user.to_owned(),
            issued: crate::state::session::now(),
        };
        let json = serde_json::to_string(&device).expect("a device serializes");
        self.sessions.seal(&self.device_cookie, json, DEVICE_TTL, SameSite::Strict)
    }

    /// Count and audit a refused login, then show the form again saying why.
    fn refuse(&self, headers: &HeaderMap, client: IpAddr, error: GatewayError, rd: &str) -> Response<Body> {
        let (result, reason) = error.login_outcome();
        if let GatewayError::Backend(e) = &error {
            audit::backend_error(e.kind());
            tracing::warn!(error = %e, "secret lookup failed at login");
        }
        self.metrics.login(result);
        if let Some(reason) = reason {
            audit::login_failure(client, reason);
        }
        self.login_form(headers, error.status(), Some(&error), rd)
    }

    async fn logout_post<B: FormBody>(
        &self,
        parts: Parts,
        body: B,
        client: IpAddr,
    ) -> Result<Response<Body>, GatewayError> {
        let form = self.form(&parts.headers, body).await?;
        if !self.csrf_ok(&parts, &form) {
            return Err(GatewayError::Csrf);
        }
        // Every session of this browser on this host ends, whatever its namespace.
        let mut resp = redirect(StatusCode::SEE_OTHER, &format!("{LOGIN_PATH}?signed_out=1"));
        for (prefix, cookie_name) in &self.namespaces {
            if let Some(opened) = self.sessions.open_as(&parts.headers, cookie_name) {
                let until = self.sessions.revoke(&opened.session);
                self.limits.share_revocation(&opened.session.id, until);
                audit::logout(&opened.session.user, client, prefix);
            }
            resp.headers_mut().append(header::SET_COOKIE, self.sessions.clear(cookie_name));
        }
        Ok(resp)
    }

    /// The PIN namespace of the route `rd` leads to on this host: its own
    /// `secret_prefix`, or `None` for the default one.
    fn namespace_of(&self, parts: &Parts, rd: &str) -> Option<&str> {
        let host = crate::web::route::request_host_of(&parts.headers, &parts.uri);
        let path = rd.split(['?', '#']).next().unwrap_or("/");
        self.router.select(host.as_deref(), path).and_then(|route| route.secret_prefix.as_deref())
    }

    /// Double submit: the form's token must equal the one sealed in our CSRF cookie,
    /// and a browser's `Origin` (when sent) must be this site.
    /// A POST of keypin's own: one `csrf` field matching the token of the request's
    /// CSRF cookie, not used before (it is spent now), sent from this site: an
    /// `Origin` of this site, or, only when a browser sent none, a `Referer` of it.
    fn csrf_ok(&self, parts: &Parts, form: &Form) -> bool {
        let [sent] = form.csrf.as_slice() else {
            return false;
        };
        let headers = &parts.headers;
        let from_here = match headers.get(header::ORIGIN) {
            Some(_) => same_origin(headers, &parts.uri),
            None => headers.get(header::REFERER).is_some_and(|r| same_site_referer(r, headers, &parts.uri)),
        };
        if !from_here || headers.get("sec-fetch-site").is_some_and(|v| v == "cross-site") {
            return false;
        }
        let matches = self.csrf_token(headers).is_some_and(|token| constant_time_eq(token.as_bytes(), sent.as_bytes()));
        // Spent by this use, whatever the PIN: a replay of the same form is refused.
        matches && self.spent.entry(sent.clone()).or_insert(()).is_fresh()
    }

    /// The token in a valid CSRF cookie of this request, if any.
    fn csrf_token(&self, headers: &HeaderMap) -> Option<String> {
        let now = crate::state::session::now();
        self.sessions.open_sealed(headers, &self.csrf_cookie).find_map(|plain| {
            let (token, issued) = plain.split_once('.')?;
            let issued: u64 = issued.parse().ok()?;
            (now < issued.saturating_add(CSRF_TTL.as_secs())).then(|| token.to_owned())
        })
    }

    /// A token for a form: the request's own when still valid, else a new one with
    /// the `Set-Cookie` that carries it.
    fn csrf_for_form(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        if let Some(token) = self.csrf_token(headers).filter(|t| !self.spent.contains_key(t)) {
            return (token, None);
        }
        let token = random_token(CSRF_TOKEN_BYTES);
        let plain = format!("{token}.{}", crate::state::session::now());
        let cookie = self.sessions.seal(&self.csrf_cookie, plain, CSRF_TTL, SameSite::Strict);
        (token, Some(cookie))
    }
}

/// Read a urlencoded form of at most [`MAX_FORM_BYTES`].
async fn read_form<B: FormBody>(headers: &HeaderMap, body: B) -> Result<Form, GatewayError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(GatewayError::FormTooLarge);
    }
    let bytes: Bytes =
        Limited::new(body, MAX_FORM_BYTES).collect().await.map_err(|_| GatewayError::FormTooLarge)?.to_bytes();
    let mut form = Form::default();
    for (key, value) in form_urlencoded::parse(&bytes) {
        match &*key {
            "pin" => form.pins.push(value.into_owned()),
            "rd" => form.rd = Some(value.into_owned()),
            "csrf" => form.csrf.push(value.into_owned()),
            _ => {}
        }
    }
    Ok(form)
}

/// Exactly one `pin` field of `min_digits..=max_digits` ASCII digits. Nothing else
/// ever reaches the secret store.
fn parse_pin<'a>(pins: &'a [String], config: &PinConfig) -> Result<&'a str, GatewayError> {
    let [pin] = pins else {
        return Err(GatewayError::MalformedPin);
    };
    let len_ok = (usize::from(config.min_digits)..=usize::from(config.max_digits)).contains(&pin.len());
    if len_ok && pin.bytes().all(|b| b.is_ascii_digit()) { Ok(pin) } else { Err(GatewayError::MalformedPin) }
}

/// Whether a `Referer` names this site (`https://` and the request's authority).
fn same_site_referer(referer: &HeaderValue, headers: &HeaderMap, uri: &http::Uri) -> bool {
    let (Ok(referer), Some(authority)) = (referer.to_str(), crate::web::route::request_authority(headers, uri)) else {
        return false;
    };
    referer.parse::<http::Uri>().is_ok_and(|r| {
        r.scheme() == Some(&http::uri::Scheme::HTTPS)
            && r.authority().is_some_and(|a| a.as_str().eq_ignore_ascii_case(authority))
    })
}

fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut resp = Response::new(full_body(Bytes::new()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::try_from(location).unwrap_or(HeaderValue::from_static("/")));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
