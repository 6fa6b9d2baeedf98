//! The real binary: memory stays flat while 100 MB bodies stream through, the
//! allocator purges in the background, SIGTERM lets in-flight requests finish, and
//! the configuration commands' exit codes.

mod support;

/// These tests are about proxying, not login: every path of the route is public
/// (identity headers are still stripped).
const PUBLIC: &str = "public_paths = [\"/\"]";

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use support::client::{Proto, empty, https_client, send};
use support::gateway::{GatewayProcess, route_table};
use support::upstream::Upstream;

const HUNDRED_MB: u64 = 100 * 1024 * 1024;
/// The most the gateway's resident memory may grow while 100 MB pass each way.
const MAX_GROWTH_KIB: u64 = 20 * 1024;

fn keypin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keypin")).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_bodies_stream_with_flat_memory() {
    let upstream = Upstream::spawn().await;
    let gw = GatewayProcess::start("", &route_table(&upstream.url(), PUBLIC));
    let client = https_client(&gw.cert(), Proto::H1);
    // Warm up: connections, pools and buffers exist before the baseline.
    for _ in 0..3 {
        let (resp, _) = send(&client, Request::get(gw.url("/bytes/1048576")).body(empty()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let baseline = gw.memory_kib("VmRSS");

    // Download: read and drop each chunk as it arrives.
    let resp = client.request(Request::get(gw.url(&format!("/bytes/{HUNDRED_MB}"))).body(empty()).unwrap());
    let mut body = resp.await.unwrap().into_body();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().into_data().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, HUNDRED_MB);

    // Upload: generated on the fly, never held whole by the client either.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let mut left = HUNDRED_MB;
    let stream = futures_util::stream::poll_fn(move |_| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = left.min(chunk.len() as u64);
        left -= n;
        std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n as usize)))))
    });
    let upload = Request::put(gw.url("/sink")).body(BodyExt::boxed(StreamBody::new(stream))).unwrap();
    let (resp, body) = send(&client, upload).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body, format!("{{\"bytes\":{HUNDRED_MB}}}"));

    let peak = gw.memory_kib("VmHWM");
    let growth = peak.saturating_sub(baseline);
    eprintln!("gateway RSS: baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB");
    assert!(growth < MAX_GROWTH_KIB, "RSS grew {growth} KiB while streaming 2 x 100 MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_zero() {
    let upstream = Upstream::spawn().await;
    let mut gw = GatewayProcess::start("", &route_table(&upstream.url(), PUBLIC));
    let client = https_client(&gw.cert(), Proto::H1);
    let req = Request::get(gw.url("/slow/1500")).body(empty()).unwrap();
    let in_flight = tokio::spawn(async move { send(&client, req).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    gw.signal("TERM");
    let (resp, body) = in_flight.await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(&body[..], b"slow done");
    let status = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(15))).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// jemalloc's background thread, which purges freed pages while keypin idles,
/// runs; without it a burst's pages would stay resident until the next
/// allocations. (That it purges is measured by `benches/memory.py`.)
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_allocators_background_thread_runs() {
    let upstream = Upstream::spawn().await;
    let gw = GatewayProcess::start("", &route_table(&upstream.url(), PUBLIC));
    let threads = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/task", gw.pid()))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect()
    };
    // Started with the runtime, before keypin listens; a few tries spare a slow host.
    let mut names = threads();
    for _ in 0..20 {
        if names.iter().any(|n| n == "jemalloc_bg_thd") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        names = threads();
    }
    assert!(names.iter().any(|n| n == "jemalloc_bg_thd"), "threads: {names:?}");
}

#[test]
fn check_config_accepts_the_shipped_files_and_names_the_key_of_broken_ones() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = keypin(&["check-config", "--config", &format!("{root}/config/keypin.toml")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning:"), "missing session keys warn");

    let dir = tempfile::tempdir().unwrap();
    let route = "[[route]]\nupstream = \"http://127.0.0.1:8080\"\n";
    let cases = [
        ("[server]\nlisten_adress = \"x\"\n", "listen_adress"),
        ("[server]\nheader_read_timeout = \"ten seconds\"\n", "server.header_read_timeout"),
        ("[limits]\nlogin_per_ip = \"5 per minute\"\n", "limits.login_per_ip"),
        ("[session]\nkeys = [\"env:KEYPIN_TEST_UNSET_VARIABLE\"]\n", "session.keys[0]"),
        ("", "route[0].upstream"),
        ("[pin]\nmax_digits = \"ten\"\n", "pin.max_digits"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("broken{i}.toml"));
        let body =
            if text.is_empty() { "[[route]]\nupstream = \"htp://x\"\n".to_owned() } else { format!("{text}{route}") };
        std::fs::write(&path, body).unwrap();
        let out = keypin(&["check-config", "--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "{text}: file not named: {stderr}");
        assert!(stderr.contains(key), "{text}: key {key} not named: {stderr}");
    }
    let out = keypin(&["check-config", "--config", "/nonexistent/keypin.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_loads_what_serve_loads_and_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = support::vault::test_ca_and_leaf();
    let (_, _, other_key) = support::vault::test_ca_and_leaf();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (cert, key, other_key) = (write("c.pem", &cert), write("k.pem", &key), write("o.pem", &other_key));
    let secrets = write("secrets.toml", "\"secret-12345678\" = \"u:p\"\n");
    let route = "[[route]]\nupstream = \"http://127.0.0.1:8080\"\n";
    let check = |server: &str, secrets_path: &str| {
        let text = format!("[server]\n{server}\n[secrets]\npath = \"{secrets_path}\"\n{route}");
        let path = write("keypin.toml", &text);
        let out = keypin(&["check-config", "--config", &path]);
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let pair = |c: &str, k: &str| format!("tls_cert = \"{c}\"\ntls_key = \"{k}\"");
    let (code, said) = check(&pair(&cert, &key), &secrets);
    assert_eq!(code, Some(0), "{said}");
    for (server, secrets_path, says) in [
        (pair("/nonexistent/c.pem", &key), secrets.as_str(), "/nonexistent/c.pem"),
        (pair(&cert, "/nonexistent/k.pem"), secrets.as_str(), "/nonexistent/k.pem"),
        (pair(&key, &key), secrets.as_str(), "certificate"),
        (pair(&cert, &other_key), secrets.as_str(), "match"),
        (pair(&cert, &key), "/nonexistent/secrets.toml", "/nonexistent/secrets.toml"),
    ] {
        let (code, said) = check(&server, secrets_path);
        assert_eq!(code, Some(2), "{server} {secrets_path}: {said}");
        assert!(said.contains("error:") && said.contains(says), "{says}: {said}");
    }
    // A Redis store that does not answer: serve would start (and refuse sign-ins), so a warning.
    let port = support::closed_port().port();
    let server = format!("{}\n[limits]\nstore = \"redis://127.0.0.1:{port}/0\"", pair(&cert, &key));
    let (code, said) = check(&server, &secrets);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("limits.store: the Redis server refused the connection"), "{said}");
    // Every problem at once, in words, with the value and an example.
    let text = format!("[server]\nlisten = \"localhost:18443\"\nworkers = \"two\"\n[pin]\nmax_digits = 300\n{route}");
    let out = keypin(&["check-config", "--config", &write("many.toml", &text)]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    for line in [
        "server.listen: \"localhost:18443\" is not an IP address and port; e.g. listen = \"127.0.0.1:8443\"",
        "server.workers: \"two\" is not a whole number above zero; e.g. workers = 2",
        "pin.max_digits: 300 is not a whole number from 1 to 32; e.g. max_digits = 8",
    ] {
        assert!(said.contains(line), "{line}: {said}");
    }
    assert!(!said.contains("u8") && !said.contains("usize"), "Rust type names: {said}");
    let out = keypin(&["check-config", "--config", &write("syntax.toml", "[server]\nlisten = = 1\n")]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("not valid TOML at line 2, column 10") && said.contains("2 | listen = = 1"), "{said}");
}

#[test]
fn a_broken_secrets_file_is_named_once_without_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(&secrets, "\"secret-5678\" = \"u:hunter2\"\nbroken = [\n").unwrap();
    std::fs::set_permissions(&secrets, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("keypin.toml");
    let server = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";
    let route = "[[route]]\nupstream = \"http://127.0.0.1:8080\"\n";
    std::fs::write(&config, format!("{server}[secrets]\npath = \"{}\"\n{route}", secrets.display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keypin"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("KEYPIN_SESSION_KEYS", keypin::config::SessionKey::generate().to_base64().as_str())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.matches(secrets.to_str().unwrap()).count(), 1, "the file is named once: {stderr}");
    assert_eq!(stderr.matches("line ").count(), 1, "the error is told once: {stderr}");
    assert!(!stderr.contains("hunter2") && !stderr.contains("5678"), "{stderr}");
}

#[test]
fn gen_key_prints_a_usable_session_key() {
    let out = keypin(&["gen-key"]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap();
    keypin::config::SessionKey::from_base64(key.trim()).expect("a valid 64-byte key");
    let again = keypin(&["gen-key"]);
    assert_ne!(key, String::from_utf8(again.stdout).unwrap(), "keys are random");
}

#[test]
fn secret_name_reads_the_pin_from_stdin_only_and_never_prints_it() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keypin.toml");
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [5u8; 32]);
    let text = format!(
        "[pin]\nsecret_name = \"hmac\"\npin_key = \"{key}\"\n[[route]]\nupstream = \"http://127.0.0.1:8080\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keypin"))
            .args(["secret-name", "--config", config.to_str().unwrap()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&[], "48291357\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let name = printed.trim();
    assert!(name.starts_with("secret-") && name.len() == "secret-".len() + 32, "{printed}");
    assert!(!printed.contains("48291357") && !String::from_utf8_lossy(&out.stderr).contains("48291357"));

    let refused = run(&[], "4829x357\n");
    assert!(!refused.status.success());
    assert!(!String::from_utf8_lossy(&refused.stderr).contains("4829x357"), "the input is not echoed");
    let argv = run(&["48291357"], "");
    assert!(!argv.status.success(), "a PIN on the command line (shell history, ps) is refused");

    let random = run(&["--random-pin"], "");
    let text = String::from_utf8(random.stdout).unwrap();
    let pin = text.lines().find_map(|l| l.strip_prefix("pin: ")).expect("the new PIN");
    assert!(pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit()), "{text}");
    let again = run(&[], pin);
    assert!(text.contains(&format!("secret name: {}", String::from_utf8(again.stdout).unwrap().trim())));
}

#[test]
fn the_shipped_example_works_with_keypin_session_keys_and_limits_needs_no_key() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = format!("{root}/config/keypin.example.toml");
    // Its certificate paths are a container's (/etc/keypin/tls): here, a pair made for the test.
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = support::vault::test_ca_and_leaf();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(text.contains("\"/etc/keypin/tls/tls.crt\"") && text.contains("\"/etc/keypin/tls/tls.key\""));
    let text = text
        .replace("/etc/keypin/tls/tls.crt", cert_path.to_str().unwrap())
        .replace("/etc/keypin/tls/tls.key", key_path.to_str().unwrap());
    let copy = dir.path().join("keypin.toml");
    std::fs::write(&copy, text).unwrap();
    let key = String::from_utf8(keypin(&["gen-key"]).stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keypin"))
        .args(["check-config", "--config", copy.to_str().unwrap()])
        .env("KEYPIN_SESSION_KEYS", key.trim())
        .env("KEYPIN_PIN_KEY", key.trim())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "the production example warns: {stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_keypin"))
        .args(["limits", "--config", &example])
        .env_remove("KEYPIN_SESSION_KEYS")
        .output()
        .unwrap();
    assert!(out.status.success(), "arithmetic needs no key: {}", String::from_utf8_lossy(&out.stderr));
}
