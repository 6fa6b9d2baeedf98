//! keypin under test: in-process (`TestGateway`, shut down on drop) or as the real
//! binary in a child process (`GatewayProcess`), with a fresh dev certificate.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use keypin::app::App;
use keypin::config::Config;
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

/// A route table to `upstream` with `extra` keys.
pub fn route_table(upstream: &str, extra: &str) -> String {
    format!("[[route]]\nname = \"app\"\nupstream = \"{upstream}\"\n{extra}\n")
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Start keypin in this process. `config` is everything after the `[server]`
    /// table; `server_extra` adds keys to that table.
    pub async fn start(server_extra: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}{config}", server_table(dir.path(), server_extra));
        let config =
            Config::parse(&text, "test.toml", &|_| None).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let app = App::bind(config).await.unwrap();
        let (addr, admin) = (app.local_addr(), app.admin_addr());
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            dir,
            stop: Some(stop),
            done: Some(done),
        }
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

/// The real binary, started with a config file, killed on drop.
pub struct GatewayProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Lines the process wrote to stderr after start-up.
    pub log: mpsc::Receiver<String>,
}

impl GatewayProcess {
    pub fn start(server_extra: &str, config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keypin.toml");
        std::fs::write(
            &path,
            format!("{}{config}", server_table(dir.path(), server_extra)),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_keypin"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (addr, log) = wait_for_listen(child.stderr.take().unwrap());
        Self {
            child,
            addr,
            dir,
            log,
        }
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
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "keypin did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read stderr until the "keypin listening" line; keep forwarding the rest.
fn wait_for_listen(stderr: ChildStderr) -> (SocketAddr, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Some(rest) = line.split("listen=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                return (addr, rx);
            }
            seen.push(line);
        }
    }
    panic!(
        "keypin did not report its address; stderr:\n{}",
        seen.join("\n")
    );
}
