//! The request path in its one canonical spelling, or a refusal. Pure: no HTTP
//! types, its own error, converted into `GatewayError::BadPath` in one place.

use std::borrow::Cow;

/// Why a path was refused: it could be read two ways by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("not an absolute path")]
    NotAbsolute,
    #[error("broken percent-escape")]
    BrokenEscape,
    #[error("encoded separator or control byte")]
    EncodedSeparator,
    #[error("backslash, space or control byte")]
    RawSeparator,
    #[error("dot-segment")]
    DotSegment,
    #[error("encoded percent before an encoded dot or separator")]
    DoubleEncoded,
    #[error("escapes that are not UTF-8")]
    NotUtf8,
}

/// The request path in its one canonical spelling: percent-encoded unreserved
/// characters (`%41` for `A`, `%2E` for `.`) are decoded, every other escape is kept
/// as written with upper-case hex. A path that could be read two ways by the
/// upstream is refused rather than guessed at, so no spelling reaches past a public
/// prefix: encoded `/`, `\` or control bytes; raw `\`, space or control bytes; `.`
/// or `..` segments, also once their `;` parameters are cut off (servlet containers
/// read `/pub/..;x/admin` as `/admin`) and in full-width dots; an encoded `%`
/// before an encoded dot, separator, `;` or `%` (decoded twice, it would be one);
/// and escapes that do not decode to UTF-8 (overlong dots such as `%C0%AE`).
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    // An escape of a byte past ASCII: the decoded path must then be UTF-8.
    let mut high = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let value = escaped(bytes, i).ok_or(PathError::BrokenEscape)?;
            if matches!(value, b'/' | b'\\') || value.is_ascii_control() {
                return Err(PathError::EncodedSeparator);
            }
            high |= !value.is_ascii();
            let buf = out.get_or_insert_with(|| bytes[..i].to_vec());
            if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                buf.push(value);
            } else {
                buf.push(b'%');
                buf.extend(bytes[i + 1..i + 3].iter().map(u8::to_ascii_uppercase));
            }
            i += 3;
            continue;
        }
        if b == b'\\' || b.is_ascii_control() || b == b' ' {
            return Err(PathError::RawSeparator);
        }
        if let Some(buf) = out.as_mut() {
            buf.push(b);
        }
        i += 1;
    }
    let path = match out {
        // Only ASCII was decoded into a valid string: still valid.
        Some(buf) => Cow::Owned(String::from_utf8(buf).map_err(|_| PathError::NotUtf8)?),
        None => Cow::Borrowed(raw),
    };
    if high {
        // Escapes of non-ASCII characters: the decoded path must be UTF-8, and its
        // segments are checked as well (an encoded full-width dot).
        let decoded = percent_encoding::percent_decode_str(&path).decode_utf8().map_err(|_| PathError::NotUtf8)?;
        if decoded.split('/').any(is_dot_segment) {
            return Err(PathError::DotSegment);
        }
    }
    if path.contains("%25") && double_encoded(path.as_bytes()) {
        return Err(PathError::DoubleEncoded);
    }
    if path.split('/').any(is_dot_segment) {
        return Err(PathError::DotSegment);
    }
    Ok(path)
}

/// The byte `%XY` at `at` encodes, if `bytes[at]` starts one.
fn escaped(bytes: &[u8], at: usize) -> Option<u8> {
    match bytes.get(at..at + 3)? {
        [b'%', hi, lo] => Some((hex(*hi)? << 4) | hex(*lo)?),
        _ => None,
    }
}

/// `%25` followed by the hex of a dot, separator, `;` or `%` (in the normalized
/// path, whose `%` only start escapes): decoded twice, it is one of those.
fn double_encoded(path: &[u8]) -> bool {
    path.windows(5).any(|w| {
        w[..3] == *b"%25"
            && hex(w[3]).zip(hex(w[4])).is_some_and(|(h, l)| matches!((h << 4) | l, b'.' | b'/' | b'\\' | b';' | b'%'))
    })
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// `.` or `..` once the segment's parameters (from `;`, raw or `%3B`) are cut off,
/// in ASCII or full-width dots.
fn is_dot_segment(segment: &str) -> bool {
    // Only a segment that starts with a dot (ASCII, or the first byte of U+FF0E,
    // U+FE52 or U+2024) can be one.
    if !matches!(segment.as_bytes().first(), Some(b'.' | 0xEF | 0xE2)) {
        return false;
    }
    let end = segment.find(';').unwrap_or(segment.len());
    let end = segment[..end].find("%3B").unwrap_or(end);
    let name = &segment[..end];
    let dots = name.chars().take_while(|&c| matches!(c, '.' | '\u{FF0E}' | '\u{FE52}' | '\u{2024}')).count();
    (dots == 1 || dots == 2) && dots == name.chars().count()
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_decodes_unreserved_and_refuses_ambiguity() {
        assert_eq!(normalize_path("/a/b").unwrap(), "/a/b");
        assert!(matches!(normalize_path("/plain/path").unwrap(), Cow::Borrowed(_)));
        assert_eq!(normalize_path("/%70ublic/x").unwrap(), "/public/x");
        assert_eq!(normalize_path("/a%20b%3f").unwrap(), "/a%20b%3F");
        for bad in [
            "/public/..%2Fadmin",
            "/public/%2e%2e/admin",
            "/public/%2E/admin",
            "/a/../b",
            "/a/./b",
            "/a/..",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/a%0ab",
            "/a%zz",
            "/a%2",
            "*",
            "relative",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad} should be refused");
        }
        // Dots inside names are fine.
        assert_eq!(normalize_path("/a/.well-known/x..y").unwrap(), "/a/.well-known/x..y");
    }

    #[test]
    fn dot_segments_with_parameters_are_dot_segments() {
        for bad in [
            "/pub/..;/secret",
            "/pub/%2e%2e;/secret",
            "/pub/..%3B/secret",
            "/pub/..%3b/secret",
            "/pub/..;jsessionid=1/secret",
            "/pub/..;/..;/x",
            "/pub/.;x/secret",
            "/pub/%2E;/secret",
            "/pub/\u{FF0E}\u{FF0E}/secret",
            "/pub/%EF%BC%8E%EF%BC%8E/secret",
            "/pub/.\u{FF0E};a/secret",
        ] {
            assert_eq!(normalize_path(bad), Err(PathError::DotSegment), "{bad}");
        }
        // Dots with more than the parameters, and parameters on names, are names.
        for good in ["/pub/..x;a/y", "/pub/a;..", "/pub/...;/y", "/pub/;/y", "/pub/a;b=c/d"] {
            assert!(normalize_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn double_encoding_and_escapes_that_are_not_utf8_are_refused() {
        for bad in ["/pub/%252e%252e/secret", "/pub/..%252f/secret", "/a%255Cb", "/a%253Bb", "/a%2525", "/a%25%32%65"] {
            assert_eq!(normalize_path(bad), Err(PathError::DoubleEncoded), "{bad}");
        }
        assert!(normalize_path("/a%2541").is_ok(), "an encoded percent before other text is fine");
        for bad in ["/pub/%c0%ae%c0%ae/secret", "/a%ff", "/a%e2%82"] {
            assert_eq!(normalize_path(bad), Err(PathError::NotUtf8), "{bad}");
        }
        assert_eq!(normalize_path("/caf%C3%A9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn non_ascii_paths_keep_their_characters_next_to_escapes() {
        assert_eq!(normalize_path("/café/%41b").unwrap(), "/café/Ab");
        assert_eq!(normalize_path("/日本/%7e").unwrap(), "/日本/~");
    }

    #[test]
    fn no_escape_out_of_a_public_folder() {
        assert_eq!(normalize_path("/static/..%2Fadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/static/%2e%2e/admin"), Err(PathError::DotSegment));
    }
}
