//! Prometheus metrics, one registry per running keypin (so tests can run several):
//! login outcomes, secret lookups, requests per route and status, upstream latency,
//! lockouts, attack mode, connections, TLS handshake failures, build info. Labels are
//! bounded: route names from the config, status codes, fixed result words — never
//! paths, addresses or users.

use std::collections::HashMap;

use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Upstream latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Outcome of a login POST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoginResult {
    Success,
    InvalidPin,
    Malformed,
    RateLimited,
    Csrf,
    BackendError,
}

impl LoginResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::InvalidPin => "invalid_pin",
            Self::Malformed => "malformed",
            Self::RateLimited => "rate_limited",
            Self::Csrf => "csrf",
            Self::BackendError => "backend_error",
        }
    }
}

/// Outcome of a secret lookup through the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LookupResult {
    /// Answered from the cache.
    Hit,
    /// Went to the backend, which found it.
    Miss,
    /// The backend (or the negative cache) says there is no such secret.
    NotFound,
    Error,
}

impl LookupResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::NotFound => "not_found",
            Self::Error => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NamespaceLabel {
    namespace: String,
}

/// The hasher of `request_counters`, whose keys are configured route names.
type FastHash = foldhash::fast::RandomState;
/// A route's request counters by status code.
type ByCode = HashMap<u16, Counter, FastHash>;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    code: u16,
}

pub struct Metrics {
    registry: Registry,
    login_attempts: Family<ResultLabel, Counter>,
    sign_ins: Family<NamespaceLabel, Counter>,
    secret_lookups: Family<ResultLabel, Counter>,
    requests: Family<RequestLabels, Counter>,
    /// `requests`' counters by route and code, found without building a label set
    /// (the family hashes an owned `String` with SipHash, a request's cost).
    /// Bounded: configured routes and status codes.
    request_counters: RwLock<HashMap<Box<str>, ByCode, FastHash>>,
    upstream_duration: Histogram,
    pub active_lockouts: Gauge,
    pub attack_mode: Gauge,
    pub open_connections: Gauge,
    pub parked_connections: Gauge,
    pub tls_handshake_failures: Counter,
    /// 1 while the limit store answers (always, for `memory`).
    pub store_up: Gauge,
    pub store_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keypin");
        let login_attempts = Family::<ResultLabel, Counter>::default();
        let sign_ins = Family::<NamespaceLabel, Counter>::default();
        let secret_lookups = Family::<ResultLabel, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let upstream_duration = Histogram::new(LATENCY_BUCKETS);
        let (active_lockouts, attack_mode) = (Gauge::default(), Gauge::default());
        let (open_connections, parked_connections) = (Gauge::default(), Gauge::default());
        let tls_handshake_failures = Counter::default();
        let (store_up, store_errors) = (Gauge::default(), Counter::default());
        store_up.set(1);
        registry.register("login_attempts", "Login POSTs by outcome", login_attempts.clone());
        registry.register("sign_ins", "Successful sign-ins by PIN namespace (the secret prefix)", sign_ins.clone());
        registry.register("secret_lookups", "Secret lookups by outcome", secret_lookups.clone());
        registry.register("requests", "Requests by route and status code", requests.clone());
        registry.register(
            "upstream_request_duration_seconds",
            "Time to the upstream's response head",
            upstream_duration.clone(),
        );
        registry.register("active_lockouts", "Client keys locked out now", active_lockouts.clone());
        registry.register("attack_mode", "1 while attack mode restricts sign-in", attack_mode.clone());
        registry.register("open_connections", "Client connections open now", open_connections.clone());
        registry.register(
            "parked_connections",
            "Open HTTP/1.1 client connections waiting, parked, for a request (no HTTP buffers held)",
            parked_connections.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "store_up",
            "1 while the limit store (memory, or the shared Redis) answers",
            store_up.clone(),
        );
        registry.register(
            "store_errors",
            "Calls to the shared limit store that failed or timed out",
            store_errors.clone(),
        );
        registry.register("build", "keypin build information", Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]));
        // Every login outcome shows from the start, at zero.
        for r in [
            LoginResult::Success,
            LoginResult::InvalidPin,
            LoginResult::Malformed,
            LoginResult::RateLimited,
            LoginResult::Csrf,
            LoginResult::BackendError,
        ] {
            drop(login_attempts.get_or_create(&ResultLabel { result: r.as_str() }));
        }
        for r in [LookupResult::Hit, LookupResult::Miss, LookupResult::NotFound, LookupResult::Error] {
            drop(secret_lookups.get_or_create(&ResultLabel { result: r.as_str() }));
        }
        Self {
            registry,
            login_attempts,
            sign_ins,
            secret_lookups,
            requests,
            request_counters: RwLock::default(),
            upstream_duration,
            active_lockouts,
            attack_mode,
            open_connections,
            parked_connections,
            tls_handshake_failures,
            store_up,
            store_errors,
        }
    }

    pub fn login(&self, result: LoginResult) {
        self.login_attempts.get_or_create(&ResultLabel { result: result.as_str() }).inc();
    }

    /// A successful sign-in in the namespace of secret prefix `namespace` (a
    /// configured prefix: bounded, never a PIN).
    pub fn sign_in(&self, namespace: &str) {
        self.sign_ins.get_or_create(&NamespaceLabel { namespace: namespace.to_owned() }).inc();
    }

    pub fn lookup(&self, result: LookupResult) {
        self.secret_lookups.get_or_create(&ResultLabel { result: result.as_str() }).inc();
    }

    pub fn request(&self, route: &str, code: u16) {
        if let Some(counter) = self.request_counters.read().get(route).and_then(|codes| codes.get(&code)) {
            counter.inc();
            return;
        }
        let counter = self.requests.get_or_create(&RequestLabels { route: route.to_owned(), code }).clone();
        counter.inc();
        self.request_counters.write().entry(route.into()).or_default().insert(code, counter);
    }

    pub fn upstream_duration(&self, seconds: f64) {
        self.upstream_duration.observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_per_route_and_code_through_the_remembered_counters() {
        let m = Metrics::new();
        for (route, code) in [("app", 200), ("app", 200), ("app", 404), ("wiki", 200), ("app", 200)] {
            m.request(route, code);
        }
        let text = m.render();
        for line in [
            "keypin_requests_total{route=\"app\",code=\"200\"} 3",
            "keypin_requests_total{route=\"app\",code=\"404\"} 1",
            "keypin_requests_total{route=\"wiki\",code=\"200\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn renders_the_documented_names() {
        let m = Metrics::new();
        m.login(LoginResult::RateLimited);
        m.lookup(LookupResult::Hit);
        m.request("app", 200);
        m.upstream_duration(0.003);
        m.active_lockouts.set(2);
        let text = m.render();
        for line in [
            "keypin_login_attempts_total{result=\"rate_limited\"} 1",
            "keypin_login_attempts_total{result=\"success\"} 0",
            "keypin_secret_lookups_total{result=\"hit\"} 1",
            "keypin_requests_total{route=\"app\",code=\"200\"} 1",
            "keypin_upstream_request_duration_seconds_count 1",
            "keypin_active_lockouts 2",
            "keypin_attack_mode 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.contains("keypin_build_info{version="));
    }
}
