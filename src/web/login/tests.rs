//! Unit tests of the login form: PIN parsing, CSRF, the form body, refusals.

use super::*;
use crate::web::page::escape;

fn pin_config() -> PinConfig {
    PinConfig { min_response: Duration::ZERO, ..PinConfig::default() }
}

#[test]
fn only_one_pin_of_ascii_digits_in_bounds_is_accepted() {
    let ok = |p: &[&str]| parse_pin(&p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), &pin_config()).is_ok();
    assert!(ok(&["1234"]));
    assert!(ok(&["0123456789"]));
    for bad in [
        "12",
        "12345678901",
        "12a4",
        "1234/../x",
        "１２３４",
        "١٢٣٤",
        "12\u{0}4",
        " 1234",
        "1234 ",
        "",
        "+1234",
        "-123",
    ] {
        assert!(!ok(&[bad]), "{bad:?} accepted");
    }
    assert!(!ok(&[]), "no pin");
    assert!(!ok(&["1234", "1234"]), "duplicate pin fields");
}

#[test]
fn escaping_and_comparison() {
    assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
