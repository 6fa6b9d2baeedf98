//! Real ingresses in front of keypin: Debian's nginx and Caddy (installed by
//! `.ci/run`), each started on a free loopback port with the shipped example
//! config (`deploy/ingress/`) rendered for the test: its example host,
//! certificate and addresses replaced by the test's. Stopped on drop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Ingress {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// What the shipped configs name, and what the test puts in their place.
pub struct Render<'a> {
    /// keypin's plain listener (the examples say 127.0.0.1:8081).
    pub keypin: SocketAddr,
    /// The app (the examples say 127.0.0.1:8080).
    pub app: SocketAddr,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Fail, saying what to install, when `program` cannot be run here. The tests
/// that call it are `#[ignore]`d with that reason.
pub fn require(program: &str) {
    let found = Command::new(program).arg("-v").output().is_ok_and(|o| o.status.success())
        || Command::new(program).arg("version").output().is_ok_and(|o| o.status.success());
    assert!(found, "this test needs {program}: apt-get install {program} (.ci/run installs it)");
}

fn shipped(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/ingress").join(name);
    std::fs::read_to_string(path).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn replace_all(mut text: String, pairs: &[(&str, String)]) -> String {
    for (from, to) in pairs {
        assert!(text.contains(from), "the shipped config no longer says {from:?}");
        text = text.replace(from, to);
    }
    text
}

impl Ingress {
    /// nginx with `deploy/ingress/nginx.conf` inside a minimal main config.
    pub fn nginx(r: &Render<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let site = replace_all(
            shipped("nginx.conf"),
            &[
                ("listen 443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
                ("server_name app.example.com;", "server_name localhost;".into()),
                ("/etc/nginx/tls/app.example.com.crt", r.cert.display().to_string()),
                ("/etc/nginx/tls/app.example.com.key", r.key.display().to_string()),
                ("server 127.0.0.1:8081;", format!("server {};", r.keypin)),
                ("server 127.0.0.1:8080;", format!("server {};", r.app)),
            ],
        );
        std::fs::write(dir.path().join("site.conf"), site).unwrap();
        let d = dir.path().display();
        let main = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 256; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &d.to_string(), "-e", "stderr", "-c"])
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        Self::started(child, port, dir)
    }

    /// Caddy with `deploy/ingress/Caddyfile`, its admin API off.
    pub fn caddy(r: &Render<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let caddyfile = replace_all(
            shipped("Caddyfile"),
            &[
                ("app.example.com {", format!("https://localhost:{port} {{")),
                ("/etc/caddy/tls/app.example.com.crt", r.cert.display().to_string()),
                ("/etc/caddy/tls/app.example.com.key", r.key.display().to_string()),
                ("127.0.0.1:8081", r.keypin.to_string()),
                ("127.0.0.1:8080", r.app.to_string()),
            ],
        );
        let caddyfile = format!(
            "{{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system {}\n}}\n\n{caddyfile}",
            dir.path().display()
        );
        let path = dir.path().join("Caddyfile");
        std::fs::write(&path, caddyfile).unwrap();
        let child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("caddy starts");
        Self::started(child, port, dir)
    }

    fn started(mut child: Child, port: u16, dir: tempfile::TempDir) -> Self {
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the ingress exited: {status}");
            }
            assert!(Instant::now() < deadline, "the ingress did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, _dir: dir }
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        // TERM, not KILL: nginx's master stops its workers on TERM, while a
        // killed master leaves them running (holding the test's stderr open).
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
