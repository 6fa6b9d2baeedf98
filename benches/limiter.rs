//! The brute-force limiter: the cost of one login attempt (lockout and in-flight
//! checks, per-client GCRA, global GCRA, then settling it), and — printed once, not timed — the memory after
//! one million distinct client keys, which the LRU cap keeps bounded. With
//! `KEYPIN_BENCH_REDIS` set, the same attempt through the shared Redis store.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use keypin::config::{LimitsConfig, Rate};
use std::sync::Arc;

use keypin::state::limits::{ClientKey, LimitStore, MAX_TRACKED_CLIENTS, MemoryLimitStore, RedisLimitStore, Verdict};
use keypin::state::session::Revocations;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn limiter(c: &mut Criterion) {
    let config = LimitsConfig {
        login_per_ip: Rate::per(1_000_000, Duration::from_secs(1)),
        login_global: Rate::per(1_000_000_000, Duration::from_secs(1)),
        ..LimitsConfig::default()
    };
    let store = MemoryLimitStore::new(&config);
    // One attempt: admitted (the checks and the reservations), then settled.
    let attempt = |key: ClientKey| {
        if let Some(Ok(attempt)) = store.admit_attempt(key, None).now_or_never() {
            let _ = store.settle(attempt, Verdict::Succeeded).now_or_never();
        }
    };

    let before = rss_kib();
    for i in 0..1_000_000u32 {
        let key = ClientKey::of(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i)));
        attempt(key);
    }
    let after = rss_kib();
    println!(
        "limiter memory: 1,000,000 distinct client keys -> {} tracked (cap {MAX_TRACKED_CLIENTS}); \
         RSS {before} KiB -> {after} KiB (+{} KiB)",
        store.tracked_keys(),
        after.saturating_sub(before)
    );

    let key = ClientKey::of("192.0.2.1".parse().unwrap());
    c.bench_function("limiter_admit", |b| b.iter(|| attempt(black_box(key))));
}

/// The same attempt through the shared store, when `KEYPIN_BENCH_REDIS` names a
/// Redis to use (e.g. `redis-server --port 6390 --save ""` started by hand):
/// one script round trip to admit, one to settle. Also printed once: Redis's
/// memory for 10,000 distinct clients with one failure each.
fn limiter_redis(c: &mut Criterion) {
    let Ok(url) = std::env::var("KEYPIN_BENCH_REDIS") else {
        println!("limiter_redis: skipped (set KEYPIN_BENCH_REDIS=redis://127.0.0.1:PORT/)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = LimitsConfig {
        login_per_ip: Rate::per(1_000_000, Duration::from_secs(1)),
        login_global: Rate::per(1_000_000_000, Duration::from_secs(1)),
        attack_failures: Rate::per(1_000_000_000, Duration::from_secs(1)),
        lockout_after: 0,
        ..LimitsConfig::default()
    };
    let store: Arc<dyn LimitStore> = rt.block_on(async {
        Arc::new(RedisLimitStore::open(&url, &config, Arc::default(), Revocations::default()).unwrap())
    });
    let store = &store;
    let attempt = |key: ClientKey, verdict: Verdict| async move {
        let attempt = store.admit_attempt(key, None).await.expect("admitted: is Redis up?");
        store.settle(attempt, verdict).await
    };
    let used = || {
        let out = std::process::Command::new("redis-cli").args(["-u", &url, "INFO", "memory"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    rt.block_on(attempt(ClientKey::of("192.0.2.1".parse().unwrap()), Verdict::Succeeded));
    let before = used();
    rt.block_on(async {
        for i in 0..10_000u32 {
            attempt(ClientKey::of(IpAddr::V4(Ipv4Addr::from(0x0B00_0000 + i))), Verdict::Failed).await;
        }
    });
    let after = used();
    println!(
        "redis memory: 10,000 clients with one failure each -> +{} KiB ({} bytes a client)",
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) / 10_000
    );
    let key = ClientKey::of("192.0.2.1".parse().unwrap());
    c.bench_function("limiter_attempt_redis", |b| b.iter(|| rt.block_on(attempt(black_box(key), Verdict::Succeeded))));
}

criterion_group!(benches, limiter, limiter_redis);
criterion_main!(benches);
