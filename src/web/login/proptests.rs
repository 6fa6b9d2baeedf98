//! Property tests of the login form's parsers: `read_form` on any body, whole or in
//! any chunking, agrees with a one-shot urlencoded parse and refuses what is too
//! large; `parse_pin` takes exactly one ASCII-digit PIN of an allowed length;
//! `safe_redirect` and `query_rd` only ever answer a local path.

use std::convert::Infallible;

use http_body::Frame;
use http_body_util::StreamBody;
use proptest::prelude::*;

use crate::proptest_config as config;

use super::*;
use crate::web::redirect::{MAX_REDIRECT_BYTES, login_url};
use percent_encoding::percent_decode_str;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// A body that arrives as `chunks`, one frame each, as a slow client sends it.
fn chunked(chunks: Vec<Bytes>) -> impl FormBody {
    StreamBody::new(futures_util::stream::iter(chunks.into_iter().map(|c| Ok::<_, Infallible>(Frame::data(c)))))
}

/// `bytes` cut at `cuts` (taken modulo its length), in order.
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.windows(2).map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]])).collect()
}

/// What the form must hold: the fields of a one-shot urlencoded parse.
fn reference_form(bytes: &[u8]) -> (Vec<String>, Option<String>, Vec<String>) {
    let (mut pins, mut rd, mut csrf) = (Vec::new(), None, Vec::new());
    for (key, value) in form_urlencoded::parse(bytes) {
        match &*key {
            "pin" => pins.push(value.into_owned()),
            "rd" => rd = Some(value.into_owned()),
            "csrf" => csrf.push(value.into_owned()),
            _ => {}
        }
    }
    (pins, rd, csrf)
}

fn fields(form: &Form) -> (Vec<String>, Option<String>, Vec<String>) {
    (form.pins.clone(), form.rd.clone(), form.csrf.clone())
}

/// Bodies that look like forms, and break like them: the three fields, other keys,
/// `&`, `=`, `+`, escapes valid and broken, bytes that are not UTF-8.
fn form_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"pin=".to_vec()),
        Just(b"rd=".to_vec()),
        Just(b"csrf=".to_vec()),
        Just(b"&".to_vec()),
        Just(b"=".to_vec()),
        Just(b"+".to_vec()),
        Just(b"%".to_vec()),
        Just(vec![0xff, 0xc3]),
        "%[0-9a-fA-Fg]{0,2}".prop_map(String::into_bytes),
        "[a-z0-9/]{1,6}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

/// Local paths and attempts to leave the site, as `rd` values.
fn redirect_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("\\".to_owned()),
        Just("%".to_owned()),
        Just("%2F".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%25".to_owned()),
        Just("%252F".to_owned()),
        Just("%09".to_owned()),
        Just("%20".to_owned()),
        Just("%C3%A9".to_owned()),
        Just("%FF".to_owned()),
        Just("https:".to_owned()),
        Just(" ".to_owned()),
        Just("\t".to_owned()),
        Just("\u{e9}".to_owned()),
        "[a-z0-9.?=&#:@]{1,5}",
    ];
    (any::<bool>(), proptest::collection::vec(piece, 0..10)).prop_map(|(slash, pieces)| {
        let body = pieces.concat();
        if slash { format!("/{body}") } else { body }
    })
}

/// Whether `s` is a path on this site that no reading can take elsewhere: its
/// first segment visible ASCII, nothing in it a control character or `\\`.
fn is_local(s: &str) -> bool {
    let first = s.get(1..).map_or("", |rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    s.starts_with('/')
        && !s.starts_with("//")
        && !s.starts_with("/\\")
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
        && first.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn assert_local_redirect(input: &str, out: &str) -> Result<(), TestCaseError> {
    prop_assert!(out == "/" || out == input, "{input:?} -> {out:?}: neither itself nor /");
    prop_assert!(out.starts_with('/'), "{input:?} -> {out:?}");
    prop_assert!(!out.starts_with("//") && !out.starts_with("/\\"), "{input:?} -> {out:?} leaves the site");
    prop_assert!(!out.chars().any(char::is_control), "{input:?} -> {out:?} has a control character");
    prop_assert!(out.len() <= MAX_REDIRECT_BYTES);
    // Decoded as often as anyone might, it stays local.
    let mut current = out.to_owned();
    for _ in 0..4 {
        prop_assert!(is_local(&current), "{input:?} -> {out:?} decodes to {current:?}");
        current = percent_decode_str(&current).decode_utf8_lossy().into_owned();
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn any_body_in_any_chunking_reads_as_the_one_shot_parse(
        body in prop_oneof![proptest::collection::vec(any::<u8>(), 0..600), form_like()],
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let reference = reference_form(&body);
        let (whole, parts) = block_on(async {
            let whole = read_form(&HeaderMap::new(), http_body_util::Full::new(Bytes::from(body.clone()))).await;
            let parts = read_form(&HeaderMap::new(), chunked(split(&body, &cuts))).await;
            (whole, parts)
        });
        let whole = whole.map_err(|e| TestCaseError::fail(format!("whole body refused: {e}")))?;
        let parts = parts.map_err(|e| TestCaseError::fail(format!("chunked body refused: {e}")))?;
        prop_assert_eq!(fields(&whole), reference.clone());
        prop_assert_eq!(fields(&parts), reference);
    }

    #[test]
    fn a_valid_form_in_any_chunking_gives_its_fields(
        pin in "[0-9]{4,10}",
        csrf in "[A-Za-z0-9_-]{43}",
        rd in prop_oneof!["(/[a-z0-9._~-]{0,6}){1,4}(\\?[a-z]=[a-z0-9 &]{0,5})?", any::<String>()],
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("pin", &pin)
            .append_pair("csrf", &csrf)
            .append_pair("rd", &rd)
            .finish();
        let form = block_on(read_form(&HeaderMap::new(), chunked(split(body.as_bytes(), &cuts))))
            .map_err(|e| TestCaseError::fail(format!("{body:?} refused: {e}")))?;
        prop_assert_eq!(&form.pins, &vec![pin.clone()]);
        prop_assert_eq!(form.csrf.as_slice(), [csrf.clone()]);
        prop_assert_eq!(form.rd.as_deref(), Some(rd.as_str()));
        let pin_config = PinConfig { secret_prefix: "s-".into(), min_digits: 4, max_digits: 10, min_response: Duration::ZERO, ..PinConfig::default() };
        prop_assert_eq!(parse_pin(&form.pins, &pin_config).ok(), Some(pin.as_str()));
    }

    #[test]
    fn a_body_too_large_is_refused_in_any_chunking(
        extra in 1..2000usize,
        byte in any::<u8>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        declare in any::<bool>(),
    ) {
        let body = vec![byte; MAX_FORM_BYTES + extra];
        let mut headers = HeaderMap::new();
        if declare {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let result = block_on(read_form(&headers, chunked(split(&body, &cuts))));
        prop_assert!(matches!(result, Err(GatewayError::FormTooLarge)), "{:?}", result.map(|f| fields(&f)));
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading(
        declared in (MAX_FORM_BYTES as u64 + 1)..=u64::MAX,
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(declared));
        let result = block_on(read_form(&headers, http_body_util::Full::new(Bytes::from(body))));
        prop_assert!(matches!(result, Err(GatewayError::FormTooLarge)));
    }

    #[test]
    fn parse_pin_takes_exactly_one_pin_of_digits_in_bounds(
        pins in proptest::collection::vec(
            prop_oneof!["[0-9]{0,14}", "[0-9]{0,6}[^0-9][0-9]{0,6}", any::<String>(), "[٠-٩０-９0-9]{2,8}"],
            0..3,
        ),
        min in 0u8..16,
        max in 0u8..16,
    ) {
        let pin_config = PinConfig { secret_prefix: "s-".into(), min_digits: min, max_digits: max, min_response: Duration::ZERO, ..PinConfig::default() };
        let reference = match pins.as_slice() {
            [pin] => {
                let len = pin.len();
                len >= usize::from(min) && len <= usize::from(max) && pin.chars().all(|c| c.is_ascii_digit())
            }
            _ => false,
        };
        match parse_pin(&pins, &pin_config) {
            Ok(pin) => {
                prop_assert!(reference, "{pins:?} accepted with digits {min}..={max}");
                prop_assert_eq!(pin, pins[0].as_str());
            }
            Err(e) => {
                prop_assert!(!reference, "{pins:?} refused with digits {min}..={max}");
                prop_assert!(matches!(e, GatewayError::MalformedPin));
            }
        }
    }

    #[test]
    fn safe_redirect_only_answers_a_local_path(rd in prop_oneof![any::<String>(), redirect_like()]) {
        let out = safe_redirect(&rd);
        assert_local_redirect(&rd, &out)?;
        // A redirect target that was let through is let through again.
        prop_assert_eq!(safe_redirect(&out), out);
    }

    #[test]
    fn a_plain_local_path_is_kept(path in "(/[A-Za-z0-9._~-]{1,8}){1,5}/?(\\?[a-z]{1,4}=[a-z0-9]{0,4})?") {
        prop_assert_eq!(safe_redirect(&path), path);
    }

    #[test]
    fn query_rd_answers_a_local_path_or_nothing(query in prop_oneof![
        any::<String>(),
        form_like().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        let reference = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "rd").map(|(_, v)| v.into_owned());
        match (query_rd(&query), reference) {
            (Some(out), Some(rd)) => assert_local_redirect(&rd, &out)?,
            (None, None) => {}
            (got, want) => {
                return Err(TestCaseError::fail(format!("{query:?}: query_rd {got:?}, an rd field {want:?}")));
            }
        }
    }

    #[test]
    fn the_login_url_brings_any_target_back(target in prop_oneof![any::<String>(), redirect_like()]) {
        let url = login_url(&target);
        let (path, query) = url.split_once('?').expect("a query");
        prop_assert_eq!(path, LOGIN_PATH);
        prop_assert_eq!(query_rd(query), Some(safe_redirect(&target)));
    }
}
