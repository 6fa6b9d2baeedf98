//! `keypin demo`: the whole tour with nothing to set up. The gateway runs with the
//! embedded default configuration and demo secrets, an ephemeral session key and a
//! development certificate in a private directory of its own under the temp
//! directory, in front of a built-in "legacy app" that demands HTTP Basic auth and
//! greets the user.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::{Config, SESSION_KEYS_ENV, SessionKey};
use crate::ops::app::{App, StartError};
use crate::state::secrets::OpenError;
use crate::state::secrets::file::FileStore;
use crate::state::session::random_token;
use crate::web::page::escape;

/// The default configuration, compiled in (the same file as `config/keypin.toml`).
pub const CONFIG: &str = include_str!("../../config/keypin.toml");
/// The demo users, compiled in (the same file as `config/dev-secrets.toml`).
pub const SECRETS: &str = include_str!("../../config/dev-secrets.toml");

/// A prepared demo: the gateway, ready to run, and what to tell the person.
pub struct Demo {
    pub app: App,
    /// Where the development certificate is, until the demo ends.
    pub dir: DemoDir,
    /// The built-in legacy app's address.
    pub app_addr: SocketAddr,
    /// `(PIN, username)` of every demo user.
    pub users: Vec<(String, String)>,
}

/// The demo configuration: the embedded default with a fresh session key, the
/// certificate in the temp directory, the admin listener on a free port, and the
/// route pointed at the built-in app.
pub fn config(listen: SocketAddr, app_addr: SocketAddr, certs: &Path) -> Config {
    let key = SessionKey::generate().to_base64();
    let env = |name: &str| (name == SESSION_KEYS_ENV).then(|| key.to_string());
    let mut config = Config::parse(CONFIG, "embedded config/keypin.toml", &env).expect("the embedded config is valid");
    config.server.listen = listen;
    config.server.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.self_signed = true;
    // A browser must not pin HTTPS for localhost because of a demo.
    config.server.hsts_max_age = std::time::Duration::ZERO;
    config.server.tls_cert = certs.join("keypin.pem");
    config.server.tls_key = certs.join("keypin-key.pem");
    for route in &mut config.routes {
        route.upstream = Some(format!("http://{app_addr}").parse().expect("a socket address is a valid upstream"));
    }
    config
}

/// The directory of one demo run, for its development certificate: made new, with
/// a random name and mode 0700, so no other local user can have planted it (or a
/// symlink in its place) or read it; removed when the demo ends.
pub struct DemoDir(PathBuf);

impl DemoDir {
    pub fn create() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("keypin-demo-{}", random_token(12)));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // Fails if anything, a symlink included, is already there.
        builder.create(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start the built-in app and bind the gateway on `listen`.
pub async fn prepare(listen: SocketAddr) -> Result<Demo, StartError> {
    let (app_addr, app) = bind_legacy_app(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    tokio::spawn(app);
    let users = demo_users();

    let store = Arc::new(FileStore::embedded(SECRETS).map_err(|e| StartError::Secrets(OpenError::File(e)))?);
    let dir = DemoDir::create().map_err(StartError::DemoDir)?;
    let app = App::bind_with_store(config(listen, app_addr, dir.path()), store).await.map_err(|e| match e {
        // The demo's listener is the user's --listen, not a key of a file.
        StartError::Bind { addr, key: "server.listen", error } => StartError::Bind { addr, key: "--listen", error },
        other => other,
    })?;
    let users = users.into_iter().map(|u| (u.pin, u.user)).collect();
    Ok(Demo { app, dir, app_addr, users })
}

struct DemoUser {
    pin: String,
    user: String,
    password: String,
}

fn demo_users() -> Vec<DemoUser> {
    let table: toml::Table = SECRETS.parse().expect("the embedded secrets are valid");
    let mut users: Vec<DemoUser> = table
        .iter()
        .filter_map(|(name, value)| {
            let (user, password) = value.as_str()?.split_once(':')?;
            Some(DemoUser {
                pin: name.strip_prefix("secret-")?.to_owned(),
                user: user.to_owned(),
                password: password.to_owned(),
            })
        })
        .collect();
    users.sort_by(|a, b| a.user.cmp(&b.user));
    users
}

/// Bind the built-in legacy app on `addr`; returns its address and the future that
/// serves it (for `keypin demo`, and alone as `keypin demo-app` in docker-compose).
pub async fn bind_legacy_app(
    addr: SocketAddr,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|error| StartError::Bind { addr, key: "demo app", error })?;
    let bound = listener.local_addr().expect("bound");
    let passwords: Arc<HashMap<String, String>> =
        Arc::new(demo_users().into_iter().map(|u| (u.user, u.password)).collect());
    Ok((bound, serve_legacy_app(listener, passwords)))
}

async fn serve_legacy_app(listener: TcpListener, passwords: Arc<HashMap<String, String>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let passwords = passwords.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let passwords = passwords.clone();
                async move { Ok::<_, Infallible>(legacy_app(&req, &passwords)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}

/// The "legacy app": HTTP Basic auth or 401, then a greeting and the headers it got.
fn legacy_app(req: &Request<Incoming>, passwords: &HashMap<String, String>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/favicon.ico" {
        return html(StatusCode::NO_CONTENT, String::new());
    }
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| BASE64.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (user, password) = pair.split_once(':')?;
            (passwords.get(user)? == password).then(|| user.to_owned())
        });
    let Some(user) = user else {
        let mut resp = html(StatusCode::UNAUTHORIZED, "<h1>401: this app needs HTTP Basic auth</h1>".into());
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"legacy\""));
        return resp;
    };
    let rows: String = req
        .headers()
        .iter()
        .map(|(name, value)| {
            // Show that credentials arrived, never what they are.
            let shown = if name == header::AUTHORIZATION {
                "Basic ••••••  (verified by the app)".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            format!("<tr><th>{}</th><td>{}</td></tr>", escape(name.as_str()), escape(&shown))
        })
        .collect();
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Legacy app</title></head><body>\
             <h1>Hello, {user}!</h1><p>This legacy app knows nothing about PINs: keypin signed you in \
             with HTTP Basic auth. You asked for <code>{path}</code>.</p>\
             <p><a href=\"/.keypin/logout\">Sign out</a></p>\
             <h2>Headers the app received</h2><table>{rows}</table></body></html>",
            user = escape(&user),
            path = escape(&req.uri().to_string()),
        ),
    )
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_files_are_the_shipped_ones() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(CONFIG, std::fs::read_to_string(root.join("config/keypin.toml")).unwrap());
        assert_eq!(SECRETS, std::fs::read_to_string(root.join("config/dev-secrets.toml")).unwrap());
    }

    #[test]
    fn the_demo_config_points_at_the_built_in_app_with_a_fresh_key() {
        let app: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        let dir = DemoDir::create().unwrap();
        let a = config("127.0.0.1:8443".parse().unwrap(), app, dir.path());
        let b = config("127.0.0.1:8443".parse().unwrap(), app, dir.path());
        assert_eq!(a.routes[0].upstream.as_ref().unwrap().to_string(), "http://127.0.0.1:5555");
        assert_eq!(a.session.keys.len(), 1);
        assert_ne!(a.session.keys, b.session.keys, "every demo run has its own key");
        assert!(a.server.tls_cert.starts_with(dir.path()));
        assert!(a.server.hsts_max_age.is_zero(), "the demo sends no HSTS");
    }

    #[test]
    fn each_demo_run_has_a_new_private_directory_removed_at_its_end() {
        let (a, b) = (DemoDir::create().unwrap(), DemoDir::create().unwrap());
        assert_ne!(a.path(), b.path());
        assert!(a.path().starts_with(std::env::temp_dir()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::symlink_metadata(a.path()).unwrap();
            assert!(meta.is_dir() && !meta.file_type().is_symlink());
            assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        }
        let path = a.path().to_owned();
        std::fs::write(path.join("keypin.pem"), "x").unwrap();
        drop(a);
        assert!(!path.exists(), "removed when the demo ends");
    }

    #[test]
    fn the_demo_users_are_the_documented_three() {
        let users: Vec<(String, String)> = demo_users().into_iter().map(|u| (u.pin, u.user)).collect();
        let expected = [("1234", "user1"), ("4567", "user2"), ("1212", "user3")];
        assert_eq!(users, expected.map(|(p, u)| (p.to_owned(), u.to_owned())));
    }
}
