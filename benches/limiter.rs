//! The brute-force limiter: the cost of one login attempt (lockout and in-flight
//! checks, per-client GCRA, global GCRA, then settling it), and — printed once, not timed — the memory after
//! one million distinct client keys, which the LRU cap keeps bounded.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use keypin::config::{LimitsConfig, Rate};
use keypin::state::limits::{ClientKey, LimitStore, MAX_TRACKED_CLIENTS, MemoryLimitStore, Verdict};

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

criterion_group!(benches, limiter);
criterion_main!(benches);
