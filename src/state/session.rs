//! Sealed cookies: the session (AES-256-GCM through the cookie crate's private jar),
//! key rotation (the first key seals, all open), absolute and idle expiry, sliding
//! re-issue, and server-side revocation. Also seals keypin's other cookies (CSRF).

use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use cookie::{Cookie, CookieJar, Key, SameSite};
use http::HeaderMap;
use http::header::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::config::SessionConfig;

mod cookies;
mod revoked;
use crate::state::secrets::SecretName;
use cookies::cookie_values;
pub use cookies::strip_cookies;
pub use revoked::{MAX_REVOKED, Revocations};

/// A session is re-sealed with a new last-seen time at most this often (and at most
/// every quarter of its idle timeout, when that is shorter).
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// Cookies of one name tried at most per request (the first ones): each try is up
/// to one AES-GCM opening per key, and a request may carry hundreds.
const MAX_TRIED: usize = 2;
/// How long an opened session cookie is remembered, in seconds (less when sessions
/// are re-issued more often), so a browser's further requests skip AES-GCM and JSON. Expiry and revocation are still checked
/// on every request; a due re-issue is sealed once and handed out for this long.
const RECENT_SECS: u64 = 10;
/// Slots of the memory of opened cookies (each holds at most one).
const RECENT_SLOTS: usize = 4096;

/// Secret names in session cookies are padded to a multiple of this many bytes.
const SECRET_NAME_PAD: usize = 32;

/// Bytes of a cookie key (the cookie crate splits them into signing and
/// encryption halves).
const COOKIE_KEY_BYTES: usize = 64;

/// The key cookies are sealed with: HKDF-SHA256 of a session key, bound to the
/// deployment, so a cookie of another deployment that shares the session key
/// opens nothing here.
fn cookie_key(session_key: &[u8], deployment: &str) -> Key {
    struct Len;
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            COOKIE_KEY_BYTES
        }
    }
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"keypin cookie key v1").extract(session_key);
    let mut bytes = zeroize::Zeroizing::new([0u8; COOKIE_KEY_BYTES]);
    prk.expand(&[deployment.as_bytes()], Len)
        .and_then(|okm| okm.fill(&mut bytes[..]))
        .expect("64 bytes is a valid HKDF-SHA256 length");
    Key::from(&bytes[..])
}

/// An empty revocation table.
pub fn revocations() -> Revocations {
    Revocations::default()
}

/// Random bytes in a session id.
const SESSION_ID_BYTES: usize = 16;

/// What the session cookie holds, sealed. Field names are short: it rides on every
/// request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random id, for revocation.
    #[serde(rename = "i")]
    pub id: String,
    /// The secret this session resolves on every request.
    #[serde(rename = "s")]
    pub secret: SecretName,
    #[serde(rename = "u")]
    pub user: String,
    /// Unix seconds of the login.
    #[serde(rename = "t")]
    pub issued: u64,
    /// Unix seconds of the last re-issue.
    #[serde(rename = "l")]
    pub seen: u64,
}

/// A session opened from a request, and a re-sealed cookie when it is due.
#[derive(Debug)]
pub struct Opened {
    pub session: Session,
    /// `Set-Cookie` value to send with the answer, when the idle timer slid.
    pub refresh: Option<HeaderValue>,
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A fresh random token, URL-safe base64.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    BASE64URL.encode(buf)
}

pub struct Sessions {
    /// The first seals; all open.
    keys: Vec<Key>,
    cookie_name: String,
    ttl: Duration,
    idle: Duration,
    /// Seconds between re-issues of a session in use.
    refresh_every: u64,
    revoked: Revocations,
    /// Recently opened session cookies. Only cookies that opened are kept, so
    /// forged ones cannot fill it.
    recent: Recent,
}

impl Sessions {
    /// `config.keys` must not be empty (start-up refuses that earlier).
    pub fn new(config: &SessionConfig, revoked: Revocations) -> Self {
        assert!(!config.keys.is_empty(), "at least one session key");
        // Often enough that an idle timeout under a few minutes never lapses while
        // the session is in use; a remembered opening (and its re-issue decision)
        // is not kept longer than that.
        let refresh_every = REFRESH_EVERY.min(config.idle_timeout / 4).as_secs();
        Self {
            keys: config.keys.iter().map(|k| cookie_key(k.bytes(), &config.deployment)).collect(),
            cookie_name: config.cookie_name.clone(),
            ttl: config.ttl,
            idle: config.idle_timeout,
            refresh_every,
            revoked,
            recent: Recent::new(RECENT_SECS.min(refresh_every)),
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Name of a companion cookie (`__Host-keypin-csrf`), sharing the prefix.
    pub fn companion_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.cookie_name)
    }

    /// The session cookie of a PIN namespace: the session cookie itself for the
    /// default one (`None`), `<cookie_name>-ns-<prefix>` for a route's own. The
    /// name is sealed into the cookie: a session of one namespace never opens
    /// as another's.
    pub fn namespace_cookie(&self, prefix: Option<&str>) -> String {
        match prefix {
            None => self.cookie_name.clone(),
            Some(prefix) => format!("{}-ns-{prefix}", self.cookie_name),
        }
    }

    /// A new session with a new id: a login never upgrades a cookie it was shown.
    pub fn mint(&self, secret: SecretName, user: &str) -> (Session, HeaderValue) {
        self.mint_as(&self.cookie_name, secret, user)
    }

    /// As [`Sessions::mint`], in the cookie `name` (see [`Sessions::namespace_cookie`]).
    pub fn mint_as(&self, name: &str, secret: SecretName, user: &str) -> (Session, HeaderValue) {
        let t = now();
        let session = Session { id: random_token(SESSION_ID_BYTES), secret, user: user.to_owned(), issued: t, seen: t };
        let cookie = self.seal_session(name, &session);
        (session, cookie)
    }

    fn seal_session(&self, cookie_name: &str, session: &Session) -> HeaderValue {
        let mut json = serde_json::to_string(session).expect("a session serializes");
        // Trailing blanks (JSON allows them) round the secret name's length up to
        // a multiple of 32: a cookie's length does not tell a PIN's.
        let name = session.secret.as_str().len();
        json.extend(std::iter::repeat_n(' ', name.next_multiple_of(SECRET_NAME_PAD) - name));
        let left = (session.issued + self.ttl.as_secs()).saturating_sub(now());
        self.seal(cookie_name, json, Duration::from_secs(left), SameSite::Lax)
    }

    /// Open the session cookie of a request: sealed by one of our keys, within its
    /// absolute and idle lifetime, not revoked.
    pub fn open(&self, headers: &HeaderMap) -> Option<Arc<Opened>> {
        self.open_as(headers, &self.cookie_name)
    }

    /// As [`Sessions::open`], for the cookie `name` (a namespace's).
    pub fn open_as(&self, headers: &HeaderMap, name: &str) -> Option<Arc<Opened>> {
        let t = now();
        cookie_values(headers, name).take(MAX_TRIED).find_map(|value| {
            let opened = match self.recent.get(name, value, t) {
                Some(opened) => opened,
                None => {
                    let opened = Arc::new(self.unseal(name, value, t)?);
                    self.recent.insert(name, value, opened.clone(), t);
                    opened
                }
            };
            self.is_live(&opened.session, t).then_some(opened)
        })
    }

    /// Decrypt a session cookie's value and decide its re-issue.
    fn unseal(&self, name: &str, value: &str, t: u64) -> Option<Opened> {
        let sealed = Cookie::new(name.to_owned(), value.to_owned());
        let json = self.decrypt(sealed)?;
        let session: Session = serde_json::from_str(&json).ok()?;
        if !self.is_live(&session, t) {
            return None;
        }
        let refresh = (t.saturating_sub(session.seen) >= self.refresh_every).then(|| {
            let slid = Session { seen: t, ..session.clone() };
            self.seal_session(name, &slid)
        });
        Some(Opened { session, refresh })
    }

    /// Within its absolute and idle lifetime at `t`, and not revoked.
    fn is_live(&self, s: &Session, t: u64) -> bool {
        t < s.issued.saturating_add(self.ttl.as_secs())
            && t < s.seen.saturating_add(self.idle.as_secs())
            && s.seen >= s.issued
            && !self.revoked.contains(&s.id)
    }

    /// Whether a session opened earlier still holds now: not revoked, not past its
    /// absolute end (an upgraded connection, which sends no cookie, asks this).
    pub fn still_holds(&self, s: &Session) -> bool {
        now() < s.issued.saturating_add(self.ttl.as_secs()) && !self.revoked.contains(&s.id)
    }

    /// End a session everywhere, not just in this browser; the Unix second until
    /// which the revocation matters (the session's absolute end).
    pub fn revoke(&self, session: &Session) -> u64 {
        let until = session.issued.saturating_add(self.ttl.as_secs());
        self.revoked.insert(&session.id, until, now());
        until
    }

    /// Whether a new session could still be revoked: `false` when the revocation
    /// table is full (no sign-in until entries run out).
    pub fn can_mint(&self) -> bool {
        !self.revoked.is_full(now())
    }

    /// `Set-Cookie` that removes cookie `name`.
    pub fn clear(&self, name: &str) -> HeaderValue {
        let mut cookie = Cookie::build((name.to_owned(), "")).path("/").secure(true).http_only(true).build();
        cookie.make_removal();
        HeaderValue::try_from(cookie.to_string()).expect("cookie syntax is a valid header value")
    }

    /// `Set-Cookie` for a sealed cookie: `Secure; HttpOnly; Path=/` plus `same_site`.
    pub fn seal(&self, name: &str, value: String, max_age: Duration, same_site: SameSite) -> HeaderValue {
        let mut jar = CookieJar::new();
        let cookie = Cookie::build((name.to_owned(), value))
            .path("/")
            .secure(true)
            .http_only(true)
            .same_site(same_site)
            .max_age(cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX)));
        jar.private_mut(&self.keys[0]).add(cookie);
        let sealed = jar.get(name).expect("just added");
        HeaderValue::try_from(sealed.to_string()).expect("sealed cookies are base64")
    }

    /// The plaintexts of every cookie `name` in the request that one of our keys opens.
    pub fn open_sealed<'a>(&'a self, headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
        cookie_values(headers, name)
            .take(MAX_TRIED)
            .filter_map(move |value| self.decrypt(Cookie::new(name.to_owned(), value.to_owned())))
    }

    fn decrypt(&self, sealed: Cookie<'static>) -> Option<String> {
        let jar = CookieJar::new();
        self.keys.iter().find_map(|key| jar.private(key).decrypt(sealed.clone())).map(|c| c.value().to_owned())
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their length only
/// (no early exit: every byte is looked at; the compiler compares many at once).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A direct-mapped memory of recently opened session cookies: a hash seeded at
/// random picks one slot per cookie, and a newer cookie takes the slot of an
/// older one. O(1) with no background work, and bounded: [`RECENT_SLOTS`] entries
/// at most. (foldhash: SipHash over a cookie cost 1 % of a proxied request.)
struct Recent {
    hasher: foldhash::quality::RandomState,
    slots: Box<[Mutex<Option<Remembered>>]>,
    /// How long an opening is remembered: [`RECENT_SECS`], or less.
    for_secs: u64,
}

struct Remembered {
    /// The seeded hash of the cookie's name and value, compared first; the bytes
    /// are then compared in constant time, so timing reveals nothing of them.
    hash: u64,
    /// The name it was opened under: the same value sent under another name
    /// (another namespace's) is another cookie, opened on its own.
    name: Box<str>,
    value: Box<str>,
    opened: Arc<Opened>,
    /// Unix seconds when it was opened.
    at: u64,
}

impl Recent {
    fn new(for_secs: u64) -> Self {
        Self { hasher: Default::default(), slots: (0..RECENT_SLOTS).map(|_| Mutex::new(None)).collect(), for_secs }
    }

    fn slot(&self, hash: u64) -> &Mutex<Option<Remembered>> {
        &self.slots[(hash % RECENT_SLOTS as u64) as usize]
    }

    /// The session cookie `name=value` opened to, if remembered and opened less
    /// than `for_secs` before `t`.
    fn get(&self, name: &str, value: &str, t: u64) -> Option<Arc<Opened>> {
        let hash = self.hasher.hash_one((name, value));
        let slot = self.slot(hash).lock();
        let r = slot.as_ref()?;
        let same = |a: &str, b: &str| constant_time_eq(a.as_bytes(), b.as_bytes());
        (r.hash == hash && t.saturating_sub(r.at) < self.for_secs && same(&r.name, name) && same(&r.value, value))
            .then(|| r.opened.clone())
    }

    fn insert(&self, name: &str, value: &str, opened: Arc<Opened>, t: u64) {
        let hash = self.hasher.hash_one((name, value));
        *self.slot(hash).lock() = Some(Remembered { hash, name: name.into(), value: value.into(), opened, at: t });
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
