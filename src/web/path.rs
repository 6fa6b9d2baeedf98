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
}

/// The request path in its one canonical spelling: percent-encoded unreserved
/// characters (`%41` for `A`, `%2E` for `.`) are decoded, every other escape is kept
/// as written with upper-case hex. A path that could be read two ways by the
/// upstream — encoded `/`, `\` or NUL, raw `\` or control bytes, `.` or `..` segments —
/// is refused rather than guessed at, so `/public/..%2Fadmin` cannot reach a public
/// prefix.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    let mut out: Option<String> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let value = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(PathError::BrokenEscape)?;
            if matches!(value, b'/' | b'\\') || value.is_ascii_control() {
                return Err(PathError::EncodedSeparator);
            }
            let buf = out.get_or_insert_with(|| raw[..i].to_owned());
            if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
                buf.push(char::from(value));
            } else {
                buf.push('%');
                buf.push_str(&raw[i + 1..i + 3].to_ascii_uppercase());
            }
            i += 3;
            continue;
        }
        if b == b'\\' || b.is_ascii_control() || b == b' ' {
            return Err(PathError::RawSeparator);
        }
        if let Some(buf) = out.as_mut() {
            buf.push(char::from(b));
        }
        i += 1;
    }
    let path = out.map_or(Cow::Borrowed(raw), Cow::Owned);
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(PathError::DotSegment);
    }
    Ok(path)
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
    fn no_escape_out_of_a_public_folder() {
        assert_eq!(normalize_path("/static/..%2Fadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/static/%2e%2e/admin"), Err(PathError::DotSegment));
    }
}
