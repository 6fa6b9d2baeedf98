//! A client that behaves like a browser towards keypin: keeps cookies (honouring
//! removal), sends `Origin` on POSTs, reads the CSRF field from forms, and does not
//! follow redirects by itself.

use std::collections::BTreeMap;

use http::{HeaderMap, Request, StatusCode, header};

use super::client::{HttpsClient, Proto, bytes, empty, send};
use super::gateway::TestGateway;

pub struct Browser {
    client: HttpsClient,
    origin: String,
    pub cookies: BTreeMap<String, String>,
}

/// One answer, body as text.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get(header::LOCATION).map_or("", |v| v.to_str().unwrap())
    }

    /// The value of hidden field `name` in the page's form.
    pub fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start =
            self.body.find(&marker).unwrap_or_else(|| panic!("no {name} field in {}", self.body)) + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].replace("&amp;", "&").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">")
    }

    /// `Set-Cookie` header of cookie `name`, if the answer sets it.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

impl Browser {
    pub fn new(gw: &TestGateway) -> Self {
        Self::connect(gw.addr.port(), &gw.cert())
    }

    /// A browser for the gateway on `https://localhost:{port}` trusting `cert`.
    pub fn connect(port: u16, cert: &std::path::Path) -> Self {
        Self::connect_from(port, cert, None)
    }

    /// As `connect`, from the loopback address `local` (another client address).
    pub fn connect_from(port: u16, cert: &std::path::Path, local: Option<std::net::IpAddr>) -> Self {
        Self {
            client: super::client::https_client_from(cert, Proto::H1, local),
            origin: format!("https://localhost:{port}"),
            cookies: BTreeMap::new(),
        }
    }

    /// Talk to another replica (as a load balancer would send the next request
    /// elsewhere), keeping every cookie.
    pub fn switch_to(&mut self, port: u16, cert: &std::path::Path) {
        let cookies = std::mem::take(&mut self.cookies);
        *self = Self::connect(port, cert);
        self.cookies = cookies;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty())
            .then(|| self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let c = cookie::Cookie::parse(value.to_str().unwrap().to_owned()).unwrap();
            let removed = c.max_age().is_some_and(|age| age.is_zero() || age.is_negative());
            if removed {
                self.cookies.remove(c.name());
            } else {
                self.cookies.insert(c.name().to_owned(), c.value().to_owned());
            }
        }
    }

    /// A navigation: `GET` accepting HTML.
    pub async fn get(&mut self, path: &str) -> Page {
        let mut req = Request::get(self.url(path)).header(header::ACCEPT, "text/html,application/xhtml+xml");
        if let Some(c) = self.cookie_header() {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(empty()).unwrap()).await
    }

    /// A form `POST` with this site's `Origin`.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = self.origin.clone();
        self.post_form_from(path, fields, Some(&origin)).await
    }

    pub async fn post_form_from(&mut self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        self.post_raw(path, body, origin).await
    }

    pub async fn post_raw(&mut self, path: &str, body: String, origin: Option<&str>) -> Page {
        let mut req = Request::post(self.url(path))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "text/html");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        if let Some(c) = self.cookie_header() {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(bytes(body)).unwrap()).await
    }

    pub async fn send(&mut self, req: Request<super::client::Body>) -> Page {
        let (resp, body) = send(&self.client, req).await;
        self.keep_cookies(resp.headers());
        Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Open the login form for `rd`, type `pin`, submit.
    pub async fn login(&mut self, pin: &str, rd: &str) -> Page {
        let form = self.get(&format!("/.keypin/login?rd={}", urlencode(rd))).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = form.field("csrf");
        let rd_field = form.field("rd");
        self.post_form("/.keypin/login", &[("pin", pin), ("rd", &rd_field), ("csrf", &csrf)]).await
    }

    /// POST a PIN with a fresh CSRF token, as the client behind `xff` (an
    /// `X-Forwarded-For` value, believed only from trusted proxies) when given.
    pub async fn attempt(&mut self, pin: &str, xff: Option<&str>) -> Page {
        let csrf = self.csrf().await;
        let mut req = Request::post(self.url("/.keypin/login"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, self.url(""));
        if let Some(xff) = xff {
            req = req.header("x-forwarded-for", xff);
        }
        if let Some(c) = self.cookie_header() {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(bytes(format!("pin={pin}&csrf={csrf}"))).unwrap()).await
    }

    /// The CSRF token a fresh login form carries.
    /// A form POST as the client behind `xff` (believed only from trusted proxies).
    pub async fn post_raw_from(&mut self, path: &str, body: String, xff: &str) -> Page {
        let mut req = Request::post(self.url(path))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ORIGIN, self.url(""))
            .header("x-forwarded-for", xff);
        if let Some(c) = self.cookie_header() {
            req = req.header(header::COOKIE, c);
        }
        self.send(req.body(bytes(body)).unwrap()).await
    }

    pub async fn csrf(&mut self) -> String {
        self.get("/.keypin/login").await.field("csrf")
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
