//! keypin under test: in-process (`TestGateway`, shut down on drop) or as the real
//! binary in a child process (`GatewayProcess`), with a fresh dev certificate.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keypin::config::{Config, SESSION_KEYS_ENV};
use keypin::ops::app::App;
use keypin::state::secrets::SecretStore;
use tokio::sync::oneshot;

use super::client::{HttpsClient, Proto, https_client};

/// The `[server]` table every test config starts from; `extra` adds keys to it.
pub fn server_table(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nself_signed = true\n\
         tls_cert = \"{cert}\"\ntls_key = \"{key}\"\n{extra}\n",
        cert = dir.join("cert.pem").display(),
        key = dir.join("key.pem").display(),
    )
}

/// The session key test gateways use unless a config brings its own.
pub const TEST_SESSION_KEY: &str =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

fn text_has_keys(config: &str) -> bool {
    config.lines().any(|l| l.trim_start().starts_with("keys"))
}

/// A route table to `upstream` with `extra` keys.
pub fn route_table(upstream: &str, extra: &str) -> String {
    format!("[[route]]\nname = \"app\"\nupstream = \"{upstream}\"\n{extra}\n")
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The plain HTTP/1.1 listener, when the config has `plain_listen`.
    pub plain: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    /// For a gateway started with `start_watched`: its config file, the `[server]`
    /// extras, and the reload trigger.
    watched: Option<(PathBuf, String, Arc<tokio::sync::Notify>)>,
}

impl TestGateway {
    /// Start keypin in this process with the secret store its config names.
    /// `config` is everything after the `[server]` table; `server_extra` adds keys to
    /// that table. A session key is supplied unless the config has its own.
    pub async fn start(server_extra: &str, config: &str) -> Self {
        Self::start_inner(server_extra, config, None).await
    }

    /// As `start`, with the given secret store.
    pub async fn with_store(server_extra: &str, config: &str, store: Arc<dyn SecretStore>) -> Self {
        Self::start_inner(server_extra, config, Some(store)).await
    }

    async fn start_inner(server_extra: &str, config: &str, store: Option<Arc<dyn SecretStore>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}{config}", server_table(dir.path(), server_extra));
        let supply_key = !text_has_keys(config);
        let env = move |name: &str| (name == SESSION_KEYS_ENV && supply_key).then(|| TEST_SESSION_KEY.to_owned());
        let config = Config::parse(&text, "test.toml", &env).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let app = match store {
            Some(store) => App::bind_with_store(config, store).await.unwrap(),
            None => App::bind(config).await.unwrap(),
        };
        Self::launch(app, dir, None)
    }

    /// Start keypin from a config file that it watches and reloads. The config must
    /// carry its own `[session] keys`.
    pub async fn start_watched(server_extra: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keypin.toml");
        std::fs::write(&path, format!("{}{config}", server_table(dir.path(), server_extra))).unwrap();
        let loaded = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let app = App::bind(loaded).await.unwrap().watch(path.clone());
        let trigger = app.reload_trigger();
        Self::launch(app, dir, Some((path, server_extra.to_owned(), trigger)))
    }

    fn launch(app: App, dir: tempfile::TempDir, watched: Option<(PathBuf, String, Arc<tokio::sync::Notify>)>) -> Self {
        let (addr, admin, plain) = (app.local_addr(), app.admin_addr(), app.plain_addr());
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Self { addr, admin, plain, dir, stop: Some(stop), done: Some(done), watched }
    }

    /// Rewrite the watched config file (same `[server]` table) and reload now.
    pub async fn reconfigure(&self, config: &str) {
        let (path, server_extra, trigger) = self.watched.as_ref().expect("started with start_watched");
        std::fs::write(path, format!("{}{config}", server_table(self.dir.path(), server_extra))).unwrap();
        trigger.notify_one();
        // The reload itself takes milliseconds.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// A plain GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path).await
    }

    pub async fn readyz(&self) -> u16 {
        self.admin_get("/readyz").await.0
    }

    pub async fn metrics(&self) -> std::collections::HashMap<String, f64> {
        metrics(self.admin).await
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn client(&self, proto: Proto) -> HttpsClient {
        https_client(&self.cert(), proto)
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Stop accepting and wait for in-flight requests.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap().await.unwrap();
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A plain GET on an admin listener: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// `/metrics` of an admin listener, parsed: `name{labels}` -> value.
pub async fn metrics(admin: SocketAddr) -> std::collections::HashMap<String, f64> {
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("sample line");
            (name.to_owned(), value.parse().unwrap_or_else(|_| panic!("bad sample {l}")))
        })
        .collect()
}

/// The real binary, started with a config file, killed on drop.
pub struct GatewayProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Everything the process printed, stdout (the audit log) and stderr.
    output: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// `keypin serve` with a config of `server_extra` (in `[server]`) and `config`.
    pub fn start(server_extra: &str, config: &str) -> Self {
        Self::start_with_log(server_extra, config, "info")
    }

    /// As `start`, with `RUST_LOG` set to `filter`.
    pub fn start_with_log(server_extra: &str, config: &str, filter: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keypin.toml");
        std::fs::write(&path, format!("{}{config}", server_table(dir.path(), server_extra))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keypin"));
        cmd.args(["serve", "--log-format", "json", "--config"])
            .arg(&path)
            .env("RUST_LOG", filter)
            .env(SESSION_KEYS_ENV, TEST_SESSION_KEY);
        Self::spawn(cmd, dir)
    }

    /// Run a prepared command of the binary and wait for its "listening" line.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Self {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take().unwrap(), output.clone(), None);
        let (tx, rx) = mpsc::channel();
        collect_lines(child.stderr.take().unwrap(), output.clone(), Some(tx));
        let (addr, admin) = wait_for_listen(&rx, &output);
        Self { child, addr, admin, dir, output }
    }

    /// All output so far, one line each.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of /proc/PID/status in KiB (e.g. "VmRSS", "VmHWM").
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn signal(&self, name: &str) {
        assert!(self.try_signal(name), "kill -{name} failed");
    }

    /// Send signal `name`; whether `kill` could (not if the process is gone).
    fn try_signal(&self, name: &str) -> bool {
        Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().is_ok_and(|s| s.success())
    }

    /// Wait for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.exit_within(limit).unwrap_or_else(|| panic!("keypin did not exit within {limit:?}"))
    }

    /// The process's exit status, if it exits within `limit`.
    fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for GatewayProcess {
    /// Stopped as an operator stops it (SIGTERM), so that what it removes on its
    /// way out goes too (the demo's certificate directory); killed if it is still
    /// there after a few seconds (requests a test left in flight).
    fn drop(&mut self) {
        if self.try_signal("TERM") && self.exit_within(Duration::from_secs(3)).is_some() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keep every line of a child's stream; also pass them to `tx` while it listens.
fn collect_lines(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>, tx: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &tx {
                let _ = tx.send(line.clone());
            }
            into.lock().unwrap().push(line);
        }
    });
}

/// The `listen` field of a log line, JSON (`"listen":"ADDR"`) or text (`listen=ADDR`).
fn listen_addr(line: &str) -> Option<SocketAddr> {
    logged_addr(line, "listen")
}

/// The address logged as `field` (`listen`, `admin`) in a JSON or text line.
fn logged_addr(line: &str, field: &str) -> Option<SocketAddr> {
    if line.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(line).ok()?;
        return json[field].as_str()?.parse().ok();
    }
    line.split(&format!("{field}=")).nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Wait for the "keypin listening … listen=ADDR" line.
fn wait_for_listen(rx: &mpsc::Receiver<String>, output: &Mutex<Vec<String>>) -> (SocketAddr, SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
            && let Some(addr) = listen_addr(&line)
        {
            return (addr, logged_addr(&line, "admin").unwrap_or(addr));
        }
    }
    panic!("keypin did not report its address; output:\n{}", output.lock().unwrap().join("\n"));
}
