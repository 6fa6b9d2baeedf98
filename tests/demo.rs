//! `keypin demo` from the real binary: a person's tour from a deep link to the
//! greeting of the built-in legacy app, and back out.

mod support;

use std::process::Command;

use http::StatusCode;
use support::browser::Browser;
use support::gateway::GatewayProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tour_works_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keypin"));
    // Run from an empty directory: everything the demo needs is in the binary.
    cmd.args(["demo", "--listen", "127.0.0.1:0"]).current_dir(dir.path()).env("RUST_LOG", "info");
    let mut gw = GatewayProcess::spawn(cmd, dir);
    // The demo's certificate is in a private directory of this run, named in its log.
    let started = gw.output();
    let cert = started.split("\"cert\":\"").nth(1).and_then(|rest| rest.split('"').next()).expect("the cert is named");
    let cert = std::path::PathBuf::from(cert);
    assert!(cert.starts_with(std::env::temp_dir()) && cert.exists(), "{}", cert.display());
    let mut browser = Browser::connect(gw.addr.port(), &cert);

    let page = browser.get("/reports?year=2026").await;
    assert_eq!(page.status, StatusCode::FOUND);
    let form = browser.get(page.location()).await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = form.field("csrf");
    let rd = form.field("rd");
    assert_eq!(rd, "/reports?year=2026");

    let wrong = browser.post_form("/.keypin/login", &[("pin", "0000"), ("rd", &rd), ("csrf", &csrf)]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Invalid PIN"));
    // The form comes back with a new token: each serves one try.
    let csrf = wrong.field("csrf");
    let right = browser.post_form("/.keypin/login", &[("pin", "1234"), ("rd", &rd), ("csrf", &csrf)]).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let app = browser.get(right.location()).await;
    assert_eq!(app.status, StatusCode::OK, "{}", app.body);
    assert!(app.body.contains("Hello, user1!"), "{}", app.body);
    assert!(app.body.contains("/reports?year=2026"));
    assert!(!app.body.contains("p@ssw0rd1"), "the person never sees the password");

    let csrf = browser.get("/.keypin/logout").await.field("csrf");
    let out = browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.location(), "/.keypin/login?signed_out=1");
    assert_eq!(browser.get("/reports").await.status, StatusCode::FOUND);

    let printed = gw.output();
    for pin in ["1234", "4567", "1212"] {
        assert!(printed.contains(pin), "the demo prints its PINs:\n{printed}");
    }

    // Ctrl-C: the demo stops and takes its certificate's directory with it.
    gw.signal("INT");
    let status = tokio::task::spawn_blocking(move || gw.wait_exit(std::time::Duration::from_secs(40))).await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(!cert.parent().unwrap().exists(), "{} is left behind", cert.display());
}

#[test]
fn a_port_in_use_is_one_line_naming_the_flag_the_user_set() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_keypin")).args(["demo", "--listen", &addr]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("keypin:")).expect("one error line");
    assert!(line.contains(&addr) && line.contains("--listen") && !line.contains("server.listen"), "{line}");
    assert_eq!(line.matches("Address already in use").count(), 1, "{line}");
}
