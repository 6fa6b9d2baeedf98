//! Unit tests of sessions: sealing, opening, expiry, revocation, rotation, the
//! memory of opened cookies, deployment binding and padding.

use http::header::COOKIE;

use super::*;
use crate::config::SessionKey;

fn config(keys: Vec<SessionKey>, ttl: u64, idle: u64) -> SessionConfig {
    SessionConfig {
        deployment: String::new(),
        cookie_name: "__Host-keypin".into(),
        keys,
        ttl: Duration::from_secs(ttl),
        idle_timeout: Duration::from_secs(idle),
    }
}

#[test]
fn a_cookie_of_another_deployment_sharing_the_key_opens_nothing() {
    let key = SessionKey::generate();
    let prod = Sessions::new(
        &SessionConfig { deployment: "keyvault prod".into(), ..config(vec![key.clone()], 3600, 600) },
        revocations(),
    );
    let staging = Sessions::new(
        &SessionConfig { deployment: "keyvault staging".into(), ..config(vec![key], 3600, 600) },
        revocations(),
    );
    let (_, cookie) = prod.mint(secret(), "alice");
    assert!(prod.open(&request_with(&cookie)).is_some());
    assert!(staging.open(&request_with(&cookie)).is_none(), "same key, another deployment");
}

#[test]
fn a_session_cookie_does_not_tell_the_pins_length() {
    let sessions = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    let lengths: Vec<usize> = ["1234", "1234567", "1234567890"]
        .iter()
        .map(|pin| sessions.mint(SecretName::for_pin("secret-", pin), "alice").1.len())
        .collect();
    assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{lengths:?}");
    let (_, cookie) = sessions.mint(SecretName::for_pin("secret-", "1234567890"), "alice");
    assert_eq!(sessions.open(&request_with(&cookie)).unwrap().session.secret.as_str(), "secret-1234567890");
}

fn request_with(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut h = HeaderMap::new();
    h.insert(COOKIE, HeaderValue::try_from(format!("theme=dark; {pair}")).unwrap());
    h
}

fn secret() -> SecretName {
    SecretName::for_pin("secret-", "1234")
}

#[test]
fn only_the_first_two_cookies_of_our_name_are_tried() {
    let sessions = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    let (_, cookie) = sessions.mint(secret(), "user1");
    let pair = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
    let with = |forged: usize| {
        let mut cookies: Vec<String> = (0..forged).map(|i| format!("__Host-keypin=forged{i}")).collect();
        cookies.push(pair.clone());
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::try_from(cookies.join("; ")).unwrap());
        h
    };
    assert!(sessions.open(&with(0)).is_some());
    assert!(sessions.open(&with(1)).is_some());
    assert!(sessions.open(&with(2)).is_none(), "a third cookie of our name is never decrypted");
    assert!(sessions.open(&with(200)).is_none());
}

#[test]
fn a_short_idle_timeout_is_refreshed_every_quarter_of_it() {
    let sessions = Sessions::new(&config(vec![SessionKey::generate()], 3600, 2), revocations());
    let (mut session, _) = sessions.mint(secret(), "user1");
    // Seen one second ago: a 2 s idle timeout would lapse before the next minute.
    session.seen -= 1;
    session.issued -= 1;
    let cookie = sessions.seal_session("__Host-keypin", &session);
    let opened = sessions.open(&request_with(&cookie)).expect("still live");
    assert!(opened.refresh.is_some(), "re-issued at a quarter of the idle timeout, not after a minute");
    let long = Sessions::new(&config(vec![SessionKey::generate()], 3600, 1800), revocations());
    let (mut session, _) = long.mint(secret(), "user1");
    session.seen -= 1;
    session.issued -= 1;
    let opened = long.open(&request_with(&long.seal_session("__Host-keypin", &session))).expect("live");
    assert!(opened.refresh.is_none(), "a long idle timeout is still re-issued at most once a minute");
}

#[test]
fn sealed_sessions_open_and_carry_the_right_attributes() {
    let sessions = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    let (session, cookie) = sessions.mint(secret(), "user1");
    let text = cookie.to_str().unwrap();
    for attr in ["__Host-keypin=", "Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(text.contains(attr), "{attr} missing in {text}");
    }
    assert!(!text.contains("user1") && !text.contains("1234"), "the cookie is sealed: {text}");
    let opened = sessions.open(&request_with(&cookie)).unwrap();
    assert_eq!(opened.session, session);
    assert!(opened.refresh.is_none(), "a fresh session is not re-issued");
}

#[test]
fn tampered_truncated_and_foreign_cookies_do_not_open() {
    let sessions = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    let (_, cookie) = sessions.mint(secret(), "user1");
    let text = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
    let (name, value) = text.split_once('=').unwrap();
    let mut flipped = value.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let cases = [
        format!("{name}={}", String::from_utf8(flipped).unwrap()),
        format!("{name}={}", &value[..value.len() / 2]),
        format!("{name}="),
        format!("{name}=not-base64!!"),
        format!("__Host-other={value}"),
    ];
    for case in cases {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::try_from(case.clone()).unwrap());
        assert!(sessions.open(&h).is_none(), "{case} opened");
    }
    let foreign = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    assert!(foreign.open(&request_with(&cookie)).is_none(), "another key must not open it");
}

#[test]
fn rotation_keeps_old_cookies_open() {
    let (old, new) = (SessionKey::generate(), SessionKey::generate());
    let before = Sessions::new(&config(vec![old.clone()], 3600, 600), revocations());
    let (_, cookie) = before.mint(secret(), "user1");
    let after = Sessions::new(&config(vec![new, old.clone()], 3600, 600), revocations());
    assert!(after.open(&request_with(&cookie)).is_some());
    let (_, fresh) = after.mint(secret(), "user1");
    assert!(before.open(&request_with(&fresh)).is_none(), "new cookies are sealed with the new key");
}

#[test]
fn expired_idle_and_revoked_sessions_do_not_open() {
    let sessions = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    let seal = |s: &Session| sessions.seal_session("__Host-keypin", s);
    let t = now();
    let base = Session { id: "x".into(), secret: secret(), user: "u".into(), issued: t, seen: t };
    let expired = Session { issued: t - 3601, seen: t - 10, ..base.clone() };
    assert!(sessions.open(&request_with(&seal(&expired))).is_none());
    let idle = Session { issued: t - 1000, seen: t - 601, ..base.clone() };
    assert!(sessions.open(&request_with(&seal(&idle))).is_none());
    let sliding = Session { issued: t - 1000, seen: t - 120, ..base.clone() };
    let opened = sessions.open(&request_with(&seal(&sliding))).unwrap();
    let refreshed = sessions.open(&request_with(opened.refresh.as_ref().expect("due for re-issue"))).unwrap();
    assert_eq!(refreshed.session.seen, t);
    assert_eq!(refreshed.session.id, "x");
    sessions.revoke(&base);
    assert!(sessions.open(&request_with(&seal(&base))).is_none());
}

#[test]
fn a_remembered_cookie_is_still_checked_and_its_reissue_sealed_once() {
    let sessions = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    let t = now();
    let due = Session { id: "y".into(), secret: secret(), user: "u".into(), issued: t - 1000, seen: t - 120 };
    let request = request_with(&sessions.seal_session("__Host-keypin", &due));
    let first = sessions.open(&request).unwrap();
    let again = sessions.open(&request).unwrap();
    assert!(Arc::ptr_eq(&first, &again), "the second request is answered from memory");
    assert_eq!(first.refresh, again.refresh, "one re-issue, not one per request");
    sessions.revoke(&due);
    assert!(sessions.open(&request).is_none(), "revocation reaches remembered cookies");

    let short = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    let ending = Session { id: "z".into(), secret: secret(), user: "u".into(), issued: t - 3599, seen: t - 10 };
    let request = request_with(&short.seal_session("__Host-keypin", &ending));
    assert!(short.open(&request).is_some());
    // The same remembered entry, checked against the clock of a later request.
    let value = cookie_values(&request, "__Host-keypin").next().unwrap();
    let remembered = short.recent.get("__Host-keypin", value, t).unwrap();
    assert!(!short.is_live(&remembered.session, t + 2), "expiry is checked on every request");
    assert!(short.recent.get("__Host-keypin", value, t + RECENT_SECS).is_none(), "remembered for {RECENT_SECS} s only");
}

#[test]
fn keypins_cookies_are_stripped_and_others_kept() {
    let mut h = HeaderMap::new();
    h.append(COOKIE, HeaderValue::from_static("a=1; __Host-keypin=secret; b=2"));
    h.append(COOKIE, HeaderValue::from_static("__Host-keypin-csrf=t"));
    strip_cookies(&mut h, |n| n.starts_with("__Host-keypin"));
    assert_eq!(h.get_all(COOKIE).iter().collect::<Vec<_>>(), ["a=1; b=2"]);
    let mut only = HeaderMap::new();
    only.insert(COOKIE, HeaderValue::from_static("__Host-keypin=x"));
    strip_cookies(&mut only, |n| n.starts_with("__Host-keypin"));
    assert!(!only.contains_key(COOKIE));
}

#[test]
fn a_cookie_that_is_not_ascii_hides_nothing() {
    let sessions = Sessions::new(&config(vec![SessionKey::generate()], 3600, 600), revocations());
    let (_, cookie) = sessions.mint(secret(), "user1");
    let pair = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut h = HeaderMap::new();
    h.insert(COOKIE, HeaderValue::from_bytes(format!("theme=Jos\u{e9}; {pair}; x=\u{1F600}").as_bytes()).unwrap());
    assert!(h[COOKIE].to_str().is_err(), "not plain ASCII");
    assert!(sessions.open(&h).is_some(), "the session is found next to it");
    strip_cookies(&mut h, |n| n.starts_with("__Host-keypin"));
    assert_eq!(h[COOKIE].as_bytes(), "theme=Jos\u{e9}; x=\u{1F600}".as_bytes(), "ours removed, the rest as it came");
}
