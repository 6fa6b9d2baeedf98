//! Replicas that act as one: two and three keypin processes on one real
//! `redis-server` share per-client and global limits, lockouts, the attack-mode
//! budget and attack mode, and logout revocations; concurrent attempts across
//! replicas cannot overshoot; Redis going away refuses sign-ins (503) but not
//! sessions, and nothing needs a restart when it returns.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use support::browser::Browser;
use support::gateway::{GatewayProcess, TestGateway, metrics, route_table};
use support::redis::{RedisServer, require};
use support::upstream::Upstream;

/// One cluster's shared pieces: Redis, an upstream and a secrets file.
struct Cluster {
    redis: RedisServer,
    upstream: Upstream,
    secrets: tempfile::TempDir,
    limits: String,
}

impl Cluster {
    async fn new(limits: &str) -> Self {
        let secrets = tempfile::tempdir().unwrap();
        let path = secrets.path().join("secrets.toml");
        std::fs::write(&path, "\"secret-1234\" = \"alice:wonderland\"\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        Self { redis: RedisServer::start(), upstream: Upstream::spawn().await, secrets, limits: limits.to_owned() }
    }

    fn config(&self) -> String {
        format!(
            "[secrets]\npath = \"{}\"\n[pin]\nmin_response = \"1ms\"\n[limits]\nstore = \"{}\"\n{}\n{}",
            self.secrets.path().join("secrets.toml").display(),
            self.redis.url(),
            self.limits,
            route_table(&self.upstream.url(), ""),
        )
    }

    /// A replica: the real binary, trusting loopback as its proxy.
    fn replica(&self) -> GatewayProcess {
        GatewayProcess::start("trusted_proxies = [\"127.0.0.1\"]", &self.config())
    }
}

fn browser_at(gw: &GatewayProcess) -> Browser {
    Browser::connect(gw.addr.port(), &gw.cert())
}

/// Poll `check` every 50 ms until it holds; the time it took.
async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn logout(browser: &mut Browser) {
    let csrf = browser.get("/.keypin/logout").await.field("csrf");
    assert_eq!(browser.post_form("/.keypin/logout", &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); cargo test -- --include-ignored"]
async fn a_logout_on_one_replica_is_refused_by_every_other_within_a_second() {
    require();
    let cluster = Cluster::new("").await;
    let (a, b, c) = (cluster.replica(), cluster.replica(), cluster.replica());
    let mut alice = browser_at(&a);
    assert_eq!(alice.login("1234", "/echo").await.status, StatusCode::SEE_OTHER);
    let stolen = alice.cookies.clone();
    for replica in [&b, &c] {
        alice.switch_to(replica.addr.port(), &replica.cert());
        assert_eq!(alice.get("/echo").await.status, StatusCode::OK, "one session, every replica");
    }
    alice.switch_to(a.addr.port(), &a.cert());
    logout(&mut alice).await;

    for replica in [&b, &c] {
        let mut thief = browser_at(replica);
        thief.cookies = stolen.clone();
        let took = within(Duration::from_secs(1), "revocation reaches the replica", async || {
            thief.get("/echo").await.status == StatusCode::FOUND
        })
        .await;
        eprintln!("revoked on another replica after {took:?}");
    }
    // A replica that joins later loads the revocations still in force.
    let d = cluster.replica();
    let mut thief = browser_at(&d);
    thief.cookies = stolen;
    within(Duration::from_secs(2), "a joining replica knows the revocation", async || {
        thief.get("/echo").await.status == StatusCode::FOUND
    })
    .await;
    assert!(cluster.redis.cli(&["TTL", "keypin:revoked"]).parse::<i64>().unwrap() > 0, "every key has a TTL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); cargo test -- --include-ignored"]
async fn replicas_share_one_per_client_budget_and_one_lockout() {
    require();
    let cluster = Cluster::new("login_per_ip = \"4/min\"\nlockout_after = 100").await;
    let replicas = [cluster.replica(), cluster.replica()];
    let mut statuses = Vec::new();
    for i in 0..6 {
        let replica = &replicas[i % 2];
        let mut browser = browser_at(replica);
        statuses.push(browser.attempt(&format!("90{i:02}"), Some("198.51.100.7")).await.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429], "two replicas, one budget of 4");

    let cluster = Cluster::new("login_per_ip = \"1000/s\"\nlockout_after = 3\nlockout_base = \"1h\"").await;
    let (a, b) = (cluster.replica(), cluster.replica());
    let mut browser = browser_at(&a);
    for pin in ["9001", "9002", "9003"] {
        assert_eq!(browser.attempt(pin, Some("198.51.100.8")).await.status, StatusCode::UNAUTHORIZED);
    }
    let mut elsewhere = browser_at(&b);
    let page = elsewhere.attempt("1234", Some("198.51.100.8")).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "locked out on A, locked out on B");
    assert!(elsewhere.attempt("1234", Some("198.51.100.9")).await.status == StatusCode::SEE_OTHER);
    for key in cluster.redis.cli(&["KEYS", "keypin:*"]).lines().filter(|l| l.starts_with("keypin:")) {
        // -1: no TTL; -2: gone already (a short one ran out).
        let ttl: i64 = cluster.redis.cli(&["PTTL", key]).parse().unwrap();
        assert_ne!(ttl, -1, "{key} has no TTL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); cargo test -- --include-ignored"]
async fn replicas_share_the_global_rate_and_a_device_lockout() {
    require();
    let cluster = Cluster::new("login_global = \"3/min\"\nlockout_after = 100").await;
    let (a, b) = (cluster.replica(), cluster.replica());
    let mut statuses = Vec::new();
    for i in 0..4 {
        let mut browser = browser_at(if i % 2 == 0 { &a } else { &b });
        statuses.push(browser.attempt("9999", Some(&format!("198.51.100.{}", 20 + i))).await.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429], "one global budget of 3 for both replicas");

    // A known device locked out on A is locked out on B, from any address.
    let cluster = Cluster::new("lockout_after = 2\nlockout_base = \"1h\"\nlogin_per_ip = \"1000/s\"").await;
    let (a, b) = (cluster.replica(), cluster.replica());
    let mut laptop = browser_at(&a);
    assert_eq!(laptop.login("1234", "/").await.status, StatusCode::SEE_OTHER, "the device becomes known");
    for (pin, address) in [("9001", "198.51.100.30"), ("9002", "198.51.100.31")] {
        assert_eq!(laptop.attempt(pin, Some(address)).await.status, StatusCode::UNAUTHORIZED);
    }
    laptop.switch_to(b.addr.port(), &b.cert());
    let page = laptop.attempt("1234", Some("198.51.100.32")).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "the device's lockout holds on B, from a fresh address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); cargo test -- --include-ignored"]
async fn concurrent_guesses_across_three_replicas_cannot_overshoot_the_lockout() {
    require();
    let cluster = Cluster::new("login_per_ip = \"1000/s\"\nlockout_after = 5\n").await;
    let replicas = [cluster.replica(), cluster.replica(), cluster.replica()];
    let mut tasks = Vec::new();
    for i in 0..60 {
        let mut browser = browser_at(&replicas[i % 3]);
        let csrf = browser.csrf().await;
        tasks.push(tokio::spawn(async move {
            let body = format!("pin=9{i:03}&csrf={csrf}");
            browser.post_raw_from("/.keypin/login", body, "203.0.113.50").await.status.as_u16()
        }));
    }
    let mut wrong = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!(status == 401 || status == 429, "{status}");
        wrong += usize::from(status == 401);
    }
    assert!((1..=5).contains(&wrong), "{wrong} guesses reached the PIN check; lockout_after is 5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); cargo test -- --include-ignored"]
async fn failures_spread_over_replicas_start_attack_mode_on_all_of_them() {
    require();
    let cluster = Cluster::new("login_per_ip = \"1000/s\"\nattack_failures = \"4/hour\"").await;
    let (a, b) = (cluster.replica(), cluster.replica());
    for i in 0..5 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let mut browser = browser_at(replica);
        let page = browser.attempt("9999", Some(&format!("198.51.100.{}", 10 + i))).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    for replica in [&a, &b] {
        let mut stranger = browser_at(replica);
        let page = stranger.attempt("1234", Some("192.0.2.200")).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "attack mode holds on every replica");
        assert!(page.body.contains("restricted"), "{}", page.body);
        within(Duration::from_secs(2), "the gauge follows", async || {
            metrics(replica.admin).await.get("keypin_attack_mode") == Some(&1.0)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); cargo test -- --include-ignored"]
async fn a_redis_outage_refuses_sign_ins_keeps_sessions_and_heals_without_a_restart() {
    require();
    let mut cluster = Cluster::new("").await;
    let gw = TestGateway::start("", &cluster.config()).await;
    let other = cluster.replica();
    let mut alice = Browser::new(&gw);
    assert_eq!(alice.login("1234", "/echo").await.status, StatusCode::SEE_OTHER);
    let stolen = alice.cookies.clone();

    cluster.redis.kill();
    let mut bob = Browser::new(&gw);
    let page = bob.attempt("1234", None).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "no sign-in without the shared store");
    assert!(page.headers.contains_key(http::header::RETRY_AFTER));
    assert_eq!(bob.attempt("9999", None).await.status, StatusCode::SERVICE_UNAVAILABLE, "nor any guess");
    assert_eq!(alice.get("/echo").await.status, StatusCode::OK, "sessions are served");
    let (status, body) = gw.admin_get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("limit store: shared, unreachable"), "{body}");
    let sample = gw.metrics().await;
    assert_eq!(sample["keypin_store_up"], 0.0);
    assert!(sample["keypin_store_errors_total"] >= 1.0);
    assert_eq!(sample["keypin_login_attempts_total{result=\"invalid_pin\"}"], 0.0, "nothing counted as a failure");

    // A logout during the outage revokes here at once, elsewhere once Redis is back.
    logout(&mut alice).await;
    let mut thief = Browser::new(&gw);
    thief.cookies = stolen.clone();
    assert_eq!(thief.get("/echo").await.status, StatusCode::FOUND);

    cluster.redis.restart();
    let mut thief = browser_at(&other);
    thief.cookies = stolen;
    within(Duration::from_secs(6), "the revocation is published when Redis returns", async || {
        thief.get("/echo").await.status == StatusCode::FOUND
    })
    .await;
    let mut carol = Browser::new(&gw);
    within(Duration::from_secs(6), "sign-in resumes", async || {
        carol.attempt("1234", None).await.status == StatusCode::SEE_OTHER
    })
    .await;
    assert_eq!(gw.metrics().await["keypin_store_up"], 1.0);
    assert!(gw.admin_get("/readyz").await.1.contains("limit store: shared, up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); cargo test -- --include-ignored"]
async fn a_slow_redis_is_an_unavailable_one_within_a_bounded_time() {
    require();
    let cluster = Cluster::new("").await;
    let gw = TestGateway::start("", &cluster.config()).await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.attempt("9999", None).await.status, StatusCode::UNAUTHORIZED, "Redis answers");
    // Redis hangs: connected, silent.
    cluster.redis.pause();
    let csrf = browser.csrf().await;
    let started = Instant::now();
    let page = browser.post_raw_from("/.keypin/login", format!("pin=1234&csrf={csrf}"), "127.0.0.1").await;
    let took = started.elapsed();
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_millis(1500), "bounded by the store timeout, not Redis's stall: {took:?}");
    cluster.redis.resume();
    let mut carol = Browser::new(&gw);
    within(Duration::from_secs(8), "sign-in resumes when Redis does", async || {
        carol.attempt("1234", None).await.status == StatusCode::SEE_OTHER
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (apt-get install redis-server); cargo test -- --include-ignored"]
async fn a_redis_that_evicts_keys_gets_no_sign_in_through() {
    require();
    let cluster = Cluster::new("").await;
    let gw = TestGateway::start("", &cluster.config()).await;
    let mut browser = Browser::new(&gw);
    assert_eq!(browser.attempt("9999", None).await.status, StatusCode::UNAUTHORIZED);
    // Memory pressure under an evicting policy: keys (lockouts among them) vanish.
    cluster.redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]);
    cluster.redis.cli(&["CONFIG", "SET", "maxmemory", "2mb"]);
    let junk = "x".repeat(64 * 1024);
    for i in 0..64 {
        cluster.redis.cli(&["SET", &format!("junk:{i}"), &junk]);
    }
    assert!(cluster.redis.cli(&["INFO", "stats"]).contains("evicted_keys:"), "Redis reports evictions");
    let mut bob = Browser::new(&gw);
    within(Duration::from_secs(3), "evictions close sign-in", async || {
        bob.attempt("1234", None).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_answers_garbage_lets_no_guess_through() {
    // Not Redis at all: something on the port that answers nonsense.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 || tcp.write_all(b"*2\r\n$2\r\nok\r\n:zz\r\n$-7\r\n\x00\xff").await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let upstream = Upstream::spawn().await;
    let config = format!(
        "[pin]\nmin_response = \"1ms\"\n[limits]\nstore = \"redis://127.0.0.1:{port}/\"\n{}",
        route_table(&upstream.url(), "")
    );
    let gw = TestGateway::with_store("", &config, std::sync::Arc::new(support::store::CountingStore::demo())).await;
    let mut browser = Browser::new(&gw);
    for pin in ["9999", "1234"] {
        assert_eq!(browser.attempt(pin, None).await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(gw.readyz().await, 200);
}
