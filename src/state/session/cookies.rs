//! Reading and stripping the `Cookie` headers of a request, as bytes: a sibling
//! app's cookie that is not ASCII hides no other cookie and passes as it came.

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

/// The values of every cookie `name` in the request's `Cookie` headers (HTTP/2
/// may send several).
pub(super) fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    request_cookies(headers)
        .filter(move |(n, _)| *n == name.as_bytes())
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
}

/// Every `name=value` pair of the request's `Cookie` headers, as bytes: a sibling
/// app's cookie that is not ASCII (`theme=José`) hides no other cookie.
fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    headers.get_all(COOKIE).iter().flat_map(|v| cookie_pairs(v.as_bytes()))
}

/// The trimmed `name=value` pairs of one `Cookie` header (a pair without `=` is a
/// name with an empty value).
fn cookie_pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|b| *b == b';').map(<[u8]>::trim_ascii).filter(|pair| !pair.is_empty()).map(|pair| {
        match pair.iter().position(|b| *b == b'=') {
            Some(at) => (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()),
            None => (pair, &pair[pair.len()..]),
        }
    })
}

/// Remove keypin's own cookies from the `Cookie` headers before forwarding: the
/// upstream has no business with them. `ours` tells a name is keypin's. Works on
/// bytes: other cookies pass as they came, ASCII or not.
pub fn strip_cookies(headers: &mut HeaderMap, ours: impl Fn(&str) -> bool) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';').map(<[u8]>::trim_ascii).filter(|p| !p.is_empty()) {
            let name = pair.split(|b| *b == b'=').next().unwrap_or(pair).trim_ascii();
            if std::str::from_utf8(name).is_ok_and(&ours) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_bytes(&kept)
    {
        headers.insert(COOKIE, value);
    }
}
