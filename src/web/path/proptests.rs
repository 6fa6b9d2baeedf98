//! Property tests of `normalize_path`: any string is answered without a panic, an
//! accepted path is in its one canonical spelling (absolute, no raw or encoded
//! separator or control byte, no dot-segment, upper-case escapes), normalizing it
//! again changes nothing, and a plain path is accepted as written, borrowed.

use proptest::prelude::*;

use crate::proptest_config as config;

use super::*;

/// Strings built from the pieces paths are broken with: separators, dots, escapes
/// (valid, broken, lower-case, encoding separators and controls), controls, spaces.
fn path_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("\\".to_owned()),
        Just(" ".to_owned()),
        Just("%".to_owned()),
        Just("\u{0}".to_owned()),
        Just("\u{7f}".to_owned()),
        Just("\u{e9}".to_owned()),
        Just("%+1".to_owned()),
        "%[0-9a-fA-F]{2}",
        "%[0-9a-zA-Z+-]{0,2}",
        "%2[eEfF]",
        "%5[cC]",
        "%[01][0-9a-f]",
        "[a-zA-Z0-9_~-]{1,4}",
        "[!$&'()*+,;=:@?#]",
    ];
    (any::<bool>(), proptest::collection::vec(piece, 0..12)).prop_map(|(slash, pieces)| {
        let body: String = pieces.concat();
        if slash { format!("/{body}") } else { body }
    })
}

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), path_like(), any::<String>().prop_map(|s| format!("/{s}"))]
}

/// What an accepted path must look like, checked from the outside.
fn assert_canonical(raw: &str, path: &str) -> Result<(), TestCaseError> {
    prop_assert!(path.starts_with('/'), "{raw:?} -> {path:?} is not absolute");
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        prop_assert!(b != b'\\' && b != b' ' && !b.is_ascii_control(), "{raw:?} -> {path:?}: byte {b:#x} at {i}");
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            prop_assert!(
                hex.is_some_and(|h| h.iter().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))),
                "{raw:?} -> {path:?}: escape at {i} is not two upper-case hex digits"
            );
            let value = u8::from_str_radix(std::str::from_utf8(hex.unwrap()).unwrap(), 16).unwrap();
            prop_assert!(
                value != b'/' && value != b'\\' && !value.is_ascii_control(),
                "{raw:?} -> {path:?}: escape at {i} encodes {value:#x}"
            );
            prop_assert!(
                !(value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~')),
                "{raw:?} -> {path:?}: escape at {i} encodes an unreserved character"
            );
        }
    }
    prop_assert!(!path.split('/').any(|seg| seg == "." || seg == ".."), "{raw:?} -> {path:?} has a dot-segment");
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_string_is_answered_and_an_accepted_path_is_canonical(raw in any_path()) {
        if let Ok(path) = normalize_path(&raw) {
            assert_canonical(&raw, &path)?;
        } else {
            // Refused paths are refused for a reason the reference sees too.
            let plain = raw.starts_with('/')
                && raw.bytes().all(|b| b != b'%' && b != b'\\' && b != b' ' && !b.is_ascii_control())
                && !raw.split('/').any(|seg| seg == "." || seg == "..");
            prop_assert!(!plain, "{raw:?} was refused but has nothing to refuse");
        }
    }

    #[test]
    fn normalizing_twice_changes_nothing(raw in any_path()) {
        if let Ok(once) = normalize_path(&raw) {
            let twice = normalize_path(&once);
            prop_assert_eq!(twice.as_deref(), Ok(&*once), "{:?} -> {:?}", raw, once);
            // Without an escape there is nothing to rewrite: the path is not copied.
            if !once.contains('%') {
                prop_assert!(matches!(twice, Ok(Cow::Borrowed(_))), "{:?} was copied", once);
            }
        }
    }

    #[test]
    fn a_plain_path_is_accepted_as_written(segments in proptest::collection::vec("[A-Za-z0-9._~-]{0,8}", 1..8)) {
        let raw = format!("/{}", segments.join("/"));
        let has_dot_segment = segments.iter().any(|s| s == "." || s == "..");
        match normalize_path(&raw) {
            Ok(path) => {
                prop_assert!(!has_dot_segment, "{raw:?} accepted with a dot-segment");
                prop_assert!(matches!(path, Cow::Borrowed(_)), "{raw:?} was copied");
                prop_assert_eq!(&*path, raw.as_str());
            }
            Err(e) => {
                prop_assert!(has_dot_segment, "{raw:?} refused: {e}");
                prop_assert_eq!(e, PathError::DotSegment);
            }
        }
    }

    #[test]
    fn escaped_unreserved_characters_decode_to_the_plain_path(
        segments in proptest::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,6}", 1..6),
        escape_mask in any::<u64>(),
        lower in any::<bool>(),
    ) {
        // The plain path, with some of its characters written as escapes.
        let plain = format!("/{}", segments.join("/"));
        let mut raw = String::new();
        for (i, c) in plain.chars().enumerate() {
            if c != '/' && (escape_mask >> (i % 64)) & 1 == 1 {
                let hex = format!("%{:02X}", c as u32);
                raw.push_str(&if lower { hex.to_ascii_lowercase() } else { hex });
            } else {
                raw.push(c);
            }
        }
        let normalized = normalize_path(&raw);
        prop_assert_eq!(normalized.as_deref(), Ok(plain.as_str()), "{:?}", raw);
    }
}
