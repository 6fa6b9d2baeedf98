//! Property tests of the session cookie opener `Sessions::open`: any `Cookie`
//! header is answered without a panic and opens nothing, a sealed session opens
//! among any other cookies, and no single-byte change of it opens.

use proptest::prelude::*;

use crate::proptest_config as config;

use http::header::COOKIE;

use super::*;
use crate::config::SessionKey;

const NAME: &str = "__Host-keypin";

fn sessions() -> Sessions {
    let config = SessionConfig {
        deployment: String::new(),
        cookie_name: NAME.into(),
        keys: vec![SessionKey::generate()],
        ttl: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(600),
    };
    Sessions::new(&config, revocations())
}

/// A freshly minted session and the `name=value` pair a browser sends back.
fn minted(sessions: &Sessions, user: &str) -> (Session, String) {
    let (session, cookie) = sessions.mint(SecretName::for_pin("secret-", "1234"), user);
    let pair = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
    (session, pair)
}

fn request(cookie: &[u8]) -> Option<HeaderMap> {
    let value = HeaderValue::from_bytes(cookie).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, value);
    Some(headers)
}

/// Other cookies as browsers and attackers send them: any visible text, pairs
/// with and without `=`, quotes, our name with a forged value.
fn other_cookie() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -:<-~]{0,24}",
        "[A-Za-z0-9_-]{1,8}=[A-Za-z0-9+/=\"]{0,16}",
        "__Host-keypin(-csrf|-device)?=[A-Za-z0-9+/=]{0,60}",
        "=[a-z]{0,4}",
    ]
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn any_cookie_header_opens_nothing(
        cookie in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(other_cookie(), 0..6).prop_map(|c| c.join("; ").into_bytes()),
            "[A-Za-z0-9+/]{0,120}={0,2}".prop_map(|v| format!("{NAME}={v}").into_bytes()),
        ],
        more in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..60)),
    ) {
        let sessions = sessions();
        let Some(mut headers) = request(&cookie) else {
            return Ok(());
        };
        // HTTP/2 may send several `Cookie` headers.
        if let Some(value) = more.and_then(|m| HeaderValue::from_bytes(&m).ok()) {
            headers.append(COOKIE, value);
        }
        prop_assert!(sessions.open(&headers).is_none(), "{:?} opened", headers);
        prop_assert_eq!(sessions.open_sealed(&headers, NAME).count(), 0);
    }

    #[test]
    fn a_sealed_session_opens_among_any_other_cookies_unless_two_of_our_name_precede_it(
        before in proptest::collection::vec(other_cookie(), 0..5),
        after in proptest::collection::vec(other_cookie(), 0..5),
        user in "[a-z]{1,12}",
        separate_header in any::<bool>(),
    ) {
        let sessions = sessions();
        let (session, pair) = minted(&sessions, &user);
        let mut headers = HeaderMap::new();
        if separate_header {
            for others in [&before, &after] {
                if let Some(value) = Some(others.join("; ")).filter(|t| !t.is_empty())
                    .and_then(|t| HeaderValue::try_from(t).ok()) {
                    headers.append(COOKIE, value);
                }
            }
            headers.append(COOKIE, HeaderValue::try_from(pair).unwrap());
        } else {
            let all: Vec<&str> =
                before.iter().map(String::as_str).chain([pair.as_str()]).chain(after.iter().map(String::as_str)).collect();
            headers.insert(COOKIE, HeaderValue::try_from(all.join("; ")).unwrap());
        }
        // Only the first two cookies of our name are tried.
        let preceding: Vec<&String> =
            if separate_header { before.iter().chain(&after).collect() } else { before.iter().collect() };
        let ours_before = preceding.iter().filter(|c| c.split('=').next().is_some_and(|n| n.trim() == NAME)).count();
        let opened = sessions.open(&headers);
        if ours_before < 2 {
            prop_assert!(opened.is_some(), "{:?} did not open", headers);
            prop_assert_eq!(&opened.unwrap().session, &session);
        } else {
            prop_assert!(opened.is_none(), "a third cookie of our name was tried: {:?}", headers);
        }
    }

    #[test]
    fn no_single_byte_change_of_a_sealed_session_opens(at in any::<usize>(), byte in any::<u8>()) {
        let sessions = sessions();
        let (_, pair) = minted(&sessions, "user1");
        let mut bytes = pair.into_bytes();
        let at = NAME.len() + 1 + at % (bytes.len() - NAME.len() - 1);
        prop_assume!(bytes[at] != byte);
        bytes[at] = byte;
        let Some(headers) = request(&bytes) else {
            return Ok(());
        };
        prop_assert!(sessions.open(&headers).is_none(), "{:?} opened", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn no_cut_of_a_sealed_session_opens(cut in any::<usize>(), keep_tail in any::<bool>()) {
        let sessions = sessions();
        let (_, pair) = minted(&sessions, "user1");
        let value = &pair[NAME.len() + 1..];
        let cut = cut % value.len();
        let short = if keep_tail { &value[cut + 1..] } else { &value[..cut] };
        let headers = request(format!("{NAME}={short}").as_bytes()).unwrap();
        prop_assert!(sessions.open(&headers).is_none(), "{short:?} opened");
    }

    #[test]
    fn stripping_removes_every_cookie_of_ours_and_keeps_the_rest(
        cookies in proptest::collection::vec(other_cookie(), 0..8),
    ) {
        let ours = |n: &str| n.starts_with(NAME);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::try_from(cookies.join("; ")) {
            headers.insert(COOKIE, value);
        }
        strip_cookies(&mut headers, ours);
        let left: Vec<&str> = headers
            .get_all(COOKIE)
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(';'))
            .map(str::trim)
            .collect();
        for pair in &left {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            prop_assert!(!ours(name), "{pair:?} of ours left in {left:?}");
        }
        let kept: Vec<&str> = cookies
            .iter()
            .flat_map(|c| c.split(';'))
            .map(str::trim)
            .filter(|p| !p.is_empty() && !ours(p.split_once('=').map_or(*p, |(n, _)| n).trim()))
            .collect();
        prop_assert_eq!(left.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>(), kept);
    }
}
