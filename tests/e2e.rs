//! The login page in a real browser: `tests/e2e/login.mjs` drives Debian's
//! Chromium (playwright-core) through `keypin demo`, and through a gateway with a
//! custom `[ui]` template, title and logo; `attack.mjs` sees attack mode refuse an
//! unknown browser; `pages.mjs` checks contrast in light and dark, the error pages
//! and a refused sign-in that refreshes itself. Screenshots land in `target/e2e/`.
//! Ignored unless asked for (`cargo test -- --include-ignored`, as `.ci/run`
//! does after installing Chromium and the npm package): it needs both.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::gateway::{GatewayProcess, TestGateway, route_table};

const CHROMIUM: &str = "/usr/bin/chromium";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// Fail, saying what to install, when the browser test cannot run here. The
/// tests that call it are `#[ignore]`d with that reason.
fn require() {
    assert!(Path::new(CHROMIUM).exists(), "this test needs Chromium: apt-get install chromium");
    let npm = e2e_dir().join("node_modules/playwright-core");
    assert!(npm.exists(), "this test needs playwright-core: `npm ci` in tests/e2e");
}

/// Run the browser script against `port`; panics with its output on failure.
fn drive(port: u16, title: &str, screenshots: &str, greeting: &str) {
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e").join(screenshots);
    let out = Command::new("node")
        .arg(e2e_dir().join("login.mjs"))
        .args([&format!("https://localhost:{port}"), title, out_dir.to_str().unwrap(), greeting])
        .output()
        .expect("node runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser test failed:\n{text}");
    assert!(text.matches("ok - ").count() >= 20, "every check ran:\n{text}");
    for name in ["desktop-1-pin", "desktop-3-app", "mobile-1-pin", "mobile-2-wrong-pin"] {
        assert!(out_dir.join(format!("{name}.png")).exists(), "{name}.png missing");
    }
}

#[test]
#[ignore = "needs Chromium (apt-get install chromium) and `npm ci` in tests/e2e; cargo test -- --include-ignored"]
fn the_demo_tour_in_chromium() {
    require();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keypin"));
    cmd.args(["demo", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    let gw = GatewayProcess::spawn(cmd, dir);
    drive(gw.addr.port(), "Sign in", "demo", "Hello, user1!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt-get install chromium) and `npm ci` in tests/e2e; cargo test -- --include-ignored"]
async fn a_custom_template_title_and_logo_in_chromium() {
    require();
    let (app_addr, app) = keypin::ops::demo::bind_legacy_app(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    tokio::spawn(app);
    let assets = tempfile::tempdir().unwrap();
    let logo = assets.path().join("logo.svg");
    std::fs::write(
        &logo,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"160\" height=\"40\">\
         <rect width=\"160\" height=\"40\" rx=\"8\" fill=\"#0b7\"/>\
         <text x=\"16\" y=\"27\" font-size=\"20\" fill=\"#fff\">ACME</text></svg>",
    )
    .unwrap();
    let template = assets.path().join("page.html");
    std::fs::write(
        &template,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{{title}}</title>\
         <style nonce=\"{{nonce}}\">body{font-family:sans-serif;background:#f0fff4;margin:2rem}\
         .alert{color:#900}</style></head><body><main>{{logo}}<h1>{{title}}</h1><p>{{message}}</p>\
         {{alert}}{{form}}<p>Acme IT, extension 4242</p></main></body></html>",
    )
    .unwrap();
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\nlogin_per_ip = \"10000/s\"\nlockout_after = 1000\n\
         [ui]\ntitle = \"Acme Intranet\"\nmessage = \"Type your staff PIN.\"\nlogo = \"{}\"\ntemplate = \"{}\"\n{}",
        logo.display(),
        template.display(),
        route_table(&format!("http://{app_addr}"), "")
    );
    let gw = TestGateway::start("", &config).await;
    let port = gw.addr.port();
    tokio::task::spawn_blocking(move || drive(port, "Acme Intranet", "custom", "Hello, user1!")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt-get install chromium) and `npm ci` in tests/e2e; cargo test -- --include-ignored"]
async fn attack_mode_in_chromium() {
    require();
    let upstream = support::upstream::Upstream::spawn().await;
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\nlogin_per_ip = \"10000/s\"\nlockout_after = 1000\n\
         attack_failures = \"1/hour\"\n{}",
        route_table(&upstream.url(), "")
    );
    let gw = TestGateway::start("", &config).await;
    let base = format!("https://localhost:{}", gw.addr.port());
    let text = script("attack.mjs", vec![base, out_dir("attack")]).await;
    assert!(text.contains("ok - attack mode"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (apt-get install chromium) and `npm ci` in tests/e2e; cargo test -- --include-ignored"]
async fn contrast_error_pages_and_waits_that_end_in_chromium() {
    require();
    let upstream = support::upstream::Upstream::spawn().await;
    // One sign-in attempt per 3 s; /down goes to an app that is not there; a host
    // other than localhost matches no route.
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\nlogin_per_ip = \"1/3s\"\nlockout_after = 1000\n\
         [[route]]\nname = \"down\"\nhost = \"localhost\"\npath_prefix = \"/down\"\n\
         upstream = \"http://127.0.0.1:1\"\npublic_paths = [\"/down/\"]\n\
         [[route]]\nname = \"app\"\nhost = \"localhost\"\nupstream = \"{}\"\n",
        upstream.url()
    );
    let gw = TestGateway::start("", &config).await;
    let port = gw.addr.port();
    let args = vec![format!("https://localhost:{port}"), format!("https://127.0.0.1:{port}/"), out_dir("pages")];
    let text = script("pages.mjs", args).await;
    assert!(text.matches("ok - ").count() >= 30, "every check ran:\n{text}");
}

fn out_dir(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e").join(name).to_string_lossy().into_owned()
}

/// Run a browser script with `args`; its output, or a panic with it on failure.
async fn script(name: &'static str, args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(e2e_dir().join(name)).args(args).output().expect("node runs")
    })
    .await
    .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser test {name} failed:\n{text}");
    text
}
