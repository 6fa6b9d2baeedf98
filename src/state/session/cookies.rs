//! Reading and stripping the `Cookie` headers of a request, as bytes: a sibling
//! app's cookie that is not ASCII hides no other cookie and passes as it came.

use http::HeaderMap;
use http::header::{COOKIE, Entry, HeaderValue};

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
    cookie_segments(header).map(name_and_value)
}

/// One trimmed `name=value` part, split at its first `=` (none: an empty value).
fn name_and_value(pair: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'=', pair) {
        Some(at) => (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()),
        None => (pair, &pair[pair.len()..]),
    }
}

/// The trimmed, non-empty `;`-separated parts of one `Cookie` header, found with
/// `memchr` (a session cookie is a few hundred bytes, read twice a request).
fn cookie_segments(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        loop {
            let left = rest?;
            let (segment, after) = match memchr::memchr(b';', left) {
                Some(at) => (&left[..at], Some(&left[at + 1..])),
                None => (left, None),
            };
            rest = after;
            let segment = segment.trim_ascii();
            if !segment.is_empty() {
                return Some(segment);
            }
        }
    })
}

/// Remove keypin's own cookies from the `Cookie` headers before forwarding: the
/// upstream has no business with them. `ours` tells a name is keypin's. Works on
/// bytes: other cookies pass as they came, ASCII or not.
pub fn strip_cookies(headers: &mut HeaderMap, ours: impl Fn(&str) -> bool) {
    // One lookup takes every `Cookie` header out; what is kept goes back as one.
    let Entry::Occupied(cookies) = headers.entry(COOKIE) else {
        return;
    };
    let mut kept: Vec<u8> = Vec::new();
    for value in cookies.remove_entry_mult().1 {
        for pair in cookie_segments(value.as_bytes()) {
            let (name, _) = name_and_value(pair);
            if std::str::from_utf8(name).is_ok_and(&ours) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
    }
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_bytes(&kept)
    {
        headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::cookie_pairs;
    use crate::proptest_config as config;

    /// The pairs as the plain definition gives them: split on every `;`, trim,
    /// skip the empty, split at the first `=`.
    fn by_definition(header: &[u8]) -> Vec<(&[u8], &[u8])> {
        let pairs = header.split(|b| *b == b';').map(<[u8]>::trim_ascii).filter(|p| !p.is_empty());
        pairs
            .map(|pair| match pair.iter().position(|b| *b == b'=') {
                Some(at) => (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()),
                None => (pair, &b""[..]),
            })
            .collect()
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Any bytes, long runs and separators included, split as the definition says.
        #[test]
        fn pairs_are_those_of_the_definition(
            header in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                proptest::collection::vec(prop_oneof![Just(b';'), Just(b'='), Just(b' '), Just(b'a')], 0..300),
                "([ -~]{0,70}; ?){0,5}".prop_map(String::into_bytes),
            ],
        ) {
            prop_assert_eq!(cookie_pairs(&header).collect::<Vec<_>>(), by_definition(&header));
        }
    }
}
