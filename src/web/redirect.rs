//! Where a person goes after signing in: the login URL that carries the target
//! (`rd`), and the rule that keeps a target on this site.

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::web::route::LOGIN_PATH;

/// Longest `rd` target kept; longer goes to `/`.
pub(crate) const MAX_REDIRECT_BYTES: usize = 2048;

/// The login URL that returns to `path_and_query` after sign-in.
pub fn login_url(path_and_query: &str) -> String {
    format!("{LOGIN_PATH}?rd={}", utf8_percent_encode(path_and_query, NON_ALPHANUMERIC))
}

/// The `rd` of a query, made safe.
pub fn query_rd(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "rd").map(|(_, v)| safe_redirect(&v))
}

/// `rd` if it is a local path, else `/`: as written, visible ASCII only; and as
/// written and after each percent-decoding (repeated, as a browser or the upstream
/// might), one leading `/` (not `//` or `/\`), no `\` and no control character, and
/// a first segment of visible ASCII only, where `/%09/evil.example` would turn into
/// another host. An encoded space or letter further on (`/app/page?y=a%20b`) is a
/// deep link's own and is kept, still encoded.
pub fn safe_redirect(rd: &str) -> String {
    fn local(s: &str) -> bool {
        let Some(rest) = s.strip_prefix('/') else {
            return false;
        };
        let first_segment = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        !rest.starts_with(['/', '\\'])
            && !s.contains('\\')
            && !s.chars().any(char::is_control)
            && first_segment.bytes().all(|b| (0x21..=0x7e).contains(&b))
    }
    if rd.len() > MAX_REDIRECT_BYTES || !rd.bytes().all(|b| (0x21..=0x7e).contains(&b)) || !local(rd) {
        return "/".into();
    }
    let mut current = rd.to_owned();
    for _ in 0..3 {
        let decoded = percent_decode_str(&current).decode_utf8_lossy().into_owned();
        if decoded == current {
            return rd.to_owned();
        }
        if !local(&decoded) {
            return "/".into();
        }
        current = decoded;
    }
    "/".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets_stay_local() {
        for (rd, expected) in [
            ("/app/page?x=1", "/app/page?x=1"),
            ("/", "/"),
            ("/a%20b", "/"), // whitespace in the first segment after decoding
            ("/%20/evil.example", "/"),
            ("/%09/evil.example", "/"),
            ("/app/a%0d%0aSet-Cookie:x", "/"),
            ("/app/page?x=1&y=a%20b", "/app/page?x=1&y=a%20b"),
            ("/app/a%20b/c", "/app/a%20b/c"),
            ("/app?q=%C2%A0x", "/app?q=%C2%A0x"),
            ("/app/a b", "/"), // raw space
            ("/a%41b", "/a%41b"),
            ("//evil.example", "/"),
            ("https://evil.example/", "/"),
            ("/\\evil.example", "/"),
            ("%2F%2Fevil.example", "/"),
            ("/%2F/evil.example", "/"),
            ("/%252F/evil.example", "/"),
            ("/%5Cevil.example", "/"),
            ("/%09/evil.example", "/"),
            ("/a\tb", "/"),
            ("/a b", "/"),
            ("javascript:alert(1)", "/"),
            ("", "/"),
            ("/caf\u{e9}", "/"),
        ] {
            assert_eq!(safe_redirect(rd), expected, "{rd:?}");
        }
        assert_eq!(safe_redirect(&format!("/{}", "a".repeat(3000))), "/");
    }

    #[test]
    fn login_url_round_trips_through_the_query() {
        let url = login_url("/reports/q3?year=2026&x=a b");
        let query = url.split_once('?').unwrap().1;
        assert_eq!(query_rd(query).unwrap(), "/");
        let url = login_url("/reports/q3?year=2026");
        assert_eq!(query_rd(url.split_once('?').unwrap().1).unwrap(), "/reports/q3?year=2026");
    }
}
