//! Unit tests of the in-process limit store: rates, lockouts, devices, attack
//! mode, reloads, and attempts held in flight until settled.

use super::*;
use crate::state::limits::store::{Pending, retry_after_secs};

/// One admitted attempt with a wrong PIN.
async fn fail(store: &dyn LimitStore, key: ClientKey, device: Option<&str>) -> FailureOutcome {
    let attempt = store.admit_attempt(key, device).await.expect("admitted");
    store.settle(attempt, Verdict::Failed).await
}

async fn admitted(store: &dyn LimitStore, key: ClientKey, device: Option<&str>) -> Result<(), Refusal> {
    let attempt = store.admit_attempt(key, device).await?;
    store.settle(attempt, Verdict::Succeeded).await;
    Ok(())
}

pub(crate) fn limits(per_ip: &str, after: u32, base: u64, max: u64) -> LimitsConfig {
    LimitsConfig {
        login_per_ip: per_ip.parse().unwrap(),
        lockout_after: after,
        lockout_base: Duration::from_secs(base),
        lockout_max: Duration::from_secs(max),
        ..LimitsConfig::default()
    }
}

#[tokio::test]
async fn a_reload_hands_out_no_fresh_global_budget() {
    let config = LimitsConfig {
        login_global: "3/hour".parse().unwrap(),
        attack_failures: "2/hour".parse().unwrap(),
        ..limits("1000/s", 0, 60, 3600)
    };
    let store = MemoryLimitStore::new(&config);
    let key = |i: u8| ClientKey::of(std::net::IpAddr::from([192, 0, 2, i]));
    assert!(!fail(&store, key(1), None).await.attack_mode_started);
    assert!(!fail(&store, key(2), None).await.attack_mode_started);
    // A reload (a certificate renewal, SIGHUP) with the same limits.
    let reloaded = store.reconfigure(&config);
    assert!(fail(&*reloaded, key(3), None).await.attack_mode_started, "the failure budget carries over");
    let known = Some("laptop");
    assert!(admitted(&*reloaded, key(4), known).await.is_err(), "so does the global login limit");
    // A changed rate is a new limit.
    let raised = LimitsConfig { login_global: "100/hour".parse().unwrap(), ..config };
    assert!(admitted(&*reloaded.reconfigure(&raised), key(4), known).await.is_ok());
}

#[tokio::test]
async fn a_streak_locks_a_key() {
    let store = MemoryLimitStore::new(&limits("1000/s", 3, 60, 3600));
    let key = ClientKey::of("192.0.2.1".parse().unwrap());
    let other = ClientKey::of("192.0.2.2".parse().unwrap());
    assert!(fail(&store, key, None).await.client_lockout.is_none());
    assert!(fail(&store, key, None).await.client_lockout.is_none());
    let third = fail(&store, key, None).await;
    assert_eq!(third.client_lockout, Some(Lockout { duration: Duration::from_secs(60) }));
    let Err(Refusal::Wait(wait)) = admitted(&store, key, None).await else { panic!("locked out") };
    assert!(wait > Duration::from_secs(58) && wait <= Duration::from_secs(60));
    assert!(admitted(&store, other, None).await.is_ok(), "other clients are not affected");
    assert_eq!(store.active_lockouts(), 1);
}

#[tokio::test]
async fn the_rate_admits_exactly_its_burst_even_when_raced() {
    let store = Arc::new(MemoryLimitStore::new(&limits("5/min", 10, 60, 3600)));
    let key = ClientKey::of("192.0.2.1".parse().unwrap());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { admitted(&*store, key, None).await.is_ok() })
        })
        .collect();
    let mut count = 0;
    for t in tasks {
        count += usize::from(t.await.unwrap());
    }
    assert_eq!(count, 5);
    let Err(Refusal::Wait(wait)) = admitted(&*store, key, None).await else { panic!("limited") };
    assert_eq!(retry_after_secs(wait), 12, "one slot replenishes every 12 s at 5/min");
}

#[tokio::test]
async fn a_device_is_locked_out_whatever_address_it_comes_from() {
    let store = MemoryLimitStore::new(&limits("1000/s", 2, 60, 3600));
    let (a, b) = (ClientKey::of("192.0.2.1".parse().unwrap()), ClientKey::of("198.51.100.1".parse().unwrap()));
    fail(&store, a, Some("laptop")).await;
    let second = fail(&store, b, Some("laptop")).await;
    assert!(second.device_lockout.is_some() && second.client_lockout.is_none());
    let c = ClientKey::of("203.0.113.1".parse().unwrap());
    assert!(admitted(&store, c, Some("laptop")).await.is_err(), "the device is locked on any address");
    assert!(admitted(&store, c, None).await.is_ok(), "the address itself is not");
}

#[tokio::test]
async fn exceeding_the_failure_budget_starts_attack_mode_until_the_cooldown_ends() {
    let config = LimitsConfig {
        attack_failures: "3/hour".parse().unwrap(),
        attack_cooldown: Duration::from_millis(300),
        ..limits("1000/s", 1000, 60, 3600)
    };
    let store = MemoryLimitStore::new(&config);
    let key = ClientKey::of("192.0.2.1".parse().unwrap());
    for _ in 0..3 {
        assert!(!fail(&store, key, None).await.attack_mode_started);
    }
    assert_eq!(store.attack_mode(), AttackMode::Off);
    assert!(fail(&store, key, None).await.attack_mode_started);
    assert!(matches!(admitted(&store, key, None).await, Err(Refusal::AttackMode(_))), "unknown browsers wait");
    let known = Some("laptop");
    assert!(!fail(&store, key, known).await.attack_mode_started, "already on: extended, not restarted");
    assert!(matches!(store.attack_mode(), AttackMode::On(left) if left <= Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(store.attack_mode(), AttackMode::Ended { failures: 2 });
    assert_eq!(store.attack_mode(), AttackMode::Off);
}

/// Admit `n` attempts at once from `key_of(i)`, none settled: how many got in.
async fn admitted_at_once(store: &Arc<dyn LimitStore>, n: u32, key_of: fn(u32) -> ClientKey) -> Vec<Pending> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { crate::state::limits::admit(&store, key_of(i), None).await.ok() })
        })
        .collect();
    let mut pending = Vec::new();
    for t in tasks {
        pending.extend(t.await.unwrap());
    }
    pending
}

#[tokio::test]
async fn concurrent_guesses_cannot_overshoot_a_lockout() {
    let store: Arc<dyn LimitStore> = Arc::new(MemoryLimitStore::new(&limits("1000/s", 5, 60, 3600)));
    let one = |_| ClientKey::of("192.0.2.1".parse().unwrap());
    let pending = admitted_at_once(&store, 200, one).await;
    assert_eq!(pending.len(), 5, "at most lockout_after attempts of one client in flight");
    let mut lockouts = 0;
    for p in pending {
        lockouts += usize::from(p.settle(Verdict::Failed).await.client_lockout.is_some());
    }
    assert_eq!(lockouts, 1);
    assert!(matches!(admitted(&*store, one(0), None).await, Err(Refusal::Wait(w)) if w > Duration::from_secs(50)));
}

#[tokio::test]
async fn concurrent_guesses_from_many_addresses_cannot_overshoot_the_failure_budget() {
    let config = LimitsConfig { attack_failures: "20/hour".parse().unwrap(), ..limits("1000/s", 5, 60, 3600) };
    let store: Arc<dyn LimitStore> = Arc::new(MemoryLimitStore::new(&config));
    let many = |i: u32| ClientKey::of(std::net::IpAddr::from((0xC000_0200 + i).to_be_bytes()));
    let pending = admitted_at_once(&store, 200, many).await;
    assert_eq!(pending.len(), 21, "the budget, and the one failure that starts attack mode");
    let mut started = 0;
    for p in pending {
        started += usize::from(p.settle(Verdict::Failed).await.attack_mode_started);
    }
    assert_eq!(started, 1);
    assert!(matches!(admitted(&*store, many(500), None).await, Err(Refusal::AttackMode(_))));
}

#[tokio::test]
async fn a_settled_success_or_a_dropped_attempt_gives_its_place_back() {
    let store: Arc<dyn LimitStore> = Arc::new(MemoryLimitStore::new(&limits("1000/s", 2, 60, 3600)));
    let key = ClientKey::of("192.0.2.1".parse().unwrap());
    let first = crate::state::limits::admit(&store, key, None).await.unwrap();
    let second = crate::state::limits::admit(&store, key, None).await.unwrap();
    assert_eq!(admitted(&*store, key, None).await, Err(Refusal::Wait(IN_FLIGHT_WAIT)), "two in flight");
    assert_eq!(first.settle(Verdict::Succeeded).await, FailureOutcome::default());
    let third = crate::state::limits::admit(&store, key, None).await.expect("a success frees its place");
    drop(second);
    tokio::task::yield_now().await;
    let fourth = crate::state::limits::admit(&store, key, None).await.expect("so does a dropped attempt");
    assert!(third.settle(Verdict::Failed).await.client_lockout.is_none());
    assert!(fourth.settle(Verdict::Failed).await.client_lockout.is_some(), "two failures: locked");
}
