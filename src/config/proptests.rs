//! Property tests of `Config::parse`: any text is answered without a panic and an
//! error names the file; blank and comment lines anywhere in a valid file change
//! nothing; any value of a key is accepted or refused naming that key.

use proptest::prelude::*;

use crate::proptest_config as config;

use super::*;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
const FILE: &str = "p.toml";
const UPSTREAM: &str = "http://127.0.0.1:8080";

fn env(name: &str) -> Option<String> {
    match name {
        "KEYPIN_SESSION_KEY" | "TEST_KEY" => Some(KEY.into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, FILE, &env)
}

/// TOML as written by hand, and as broken by hand: tables, keys, strings, numbers,
/// brackets, quotes, `env:` references and newlines in any order.
fn toml_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("[[route]]\n".to_owned()),
        Just("[server]\n".to_owned()),
        Just("[limits]\n".to_owned()),
        Just("[session]\n".to_owned()),
        Just("[pin]\n".to_owned()),
        Just("[secrets]\n".to_owned()),
        Just(format!("upstream = \"{UPSTREAM}\"\n")),
        Just("keys = [\"env:TEST_KEY\"]\n".to_owned()),
        Just("keys = [\"env:NOPE\"]\n".to_owned()),
        Just("min_digits = 8\n".to_owned()),
        Just("max_digits = 300\n".to_owned()),
        Just("workers = 0\n".to_owned()),
        Just("login_per_ip = \"5/min\"\n".to_owned()),
        Just("backend = \"keyvault\"\n".to_owned()),
        "[a-z_.]{1,12} = ",
        "\"[ -~]{0,12}\"",
        "-?[0-9]{1,20}",
        "[\\[\\]{}=,\"'#.]",
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|p| p.concat())
}

/// A line that TOML ignores.
fn ignorable_line() -> impl Strategy<Value = String> {
    prop_oneof!["[ \t]{0,4}", "[ \t]{0,3}#[^\n\r\u{0}-\u{8}\u{a}-\u{1f}\u{7f}]{0,20}",]
}

/// `value` as a TOML string, every character escaped as TOML needs.
fn quoted(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_text_is_answered_and_an_error_names_the_file(text in prop_oneof![any::<String>(), toml_like()]) {
        match parse(&text) {
            Ok(cfg) => prop_assert!(!cfg.routes.is_empty(), "{text:?} parsed without a route"),
            Err(e) => {
                prop_assert_eq!(&e.file, FILE);
                prop_assert!(e.to_string().starts_with("p.toml: "), "{}", e);
            }
        }
    }

    #[test]
    fn blank_and_comment_lines_change_nothing(
        before in proptest::collection::vec(ignorable_line(), 0..4),
        between in proptest::collection::vec(ignorable_line(), 0..4),
        after in proptest::collection::vec(ignorable_line(), 0..4),
        trailing_comment in proptest::option::of("#[ -~]{0,10}"),
    ) {
        let join = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let text = format!(
            "{}[[route]]\n{}upstream = \"{UPSTREAM}\"{}\n{}",
            join(&before),
            join(&between),
            trailing_comment.map(|c| format!(" {c}")).unwrap_or_default(),
            join(&after),
        );
        let cfg = parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let reference = parse(&format!("[[route]]\nupstream = \"{UPSTREAM}\"\n")).unwrap();
        prop_assert_eq!(cfg.routes.len(), 1);
        prop_assert_eq!(cfg.routes[0].upstream.as_ref().unwrap().to_string(), UPSTREAM);
        prop_assert_eq!(&cfg.routes[0].upstream, &reference.routes[0].upstream);
    }

    #[test]
    fn any_rate_is_taken_or_refused_naming_its_key(value in prop_oneof![
        any::<String>(),
        "[0-9]{0,12}/[0-9]{0,4}[a-z]{0,6}",
        " ?[0-9]{1,11} ?/ ?[0-9]{0,21} ?(s|sec|min|m|h|hour|d|ms|ns|us|y|w|fortnight)",
        "env:[A-Z_]{1,8}",
    ]) {
        let text = format!("[limits]\nlogin_per_ip = {}\n[[route]]\nupstream = \"{UPSTREAM}\"\n", quoted(&value));
        match parse(&text) {
            Ok(cfg) => prop_assert_eq!(Ok(cfg.limits.login_per_ip), value.parse::<Rate>(), "{:?}", value),
            Err(e) => {
                prop_assert_eq!(&e.file, FILE);
                prop_assert!(e.first().key.starts_with("limits.login_per_ip"), "{value:?}: key {:?}: {}", e.first().key, e.first().reason);
            }
        }
    }

    #[test]
    fn any_listen_address_is_taken_or_refused_naming_its_key(value in prop_oneof![
        any::<String>(),
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}:[0-9]{0,6}",
        "\\[[0-9a-f:]{0,12}\\]:[0-9]{0,6}",
    ]) {
        let text = format!("[server]\nlisten = {}\n[[route]]\nupstream = \"{UPSTREAM}\"\n", quoted(&value));
        match parse(&text) {
            Ok(cfg) => prop_assert_eq!(Ok(cfg.server.listen), value.parse(), "{:?}", value),
            Err(e) => {
                prop_assert_eq!(&e.file, FILE);
                prop_assert!(e.first().key.starts_with("server.listen"), "{value:?}: key {:?}: {}", e.first().key, e.first().reason);
            }
        }
    }

    #[test]
    fn any_upstream_is_taken_or_refused_naming_its_key(value in prop_oneof![
        any::<String>(),
        "(https?|ftp)://[a-z0-9.@:-]{0,12}(/[a-z?=]{0,6}){0,2}",
    ]) {
        let text = format!("[[route]]\nupstream = {}\n", quoted(&value));
        match parse(&text) {
            Ok(cfg) => {
                let reference: UpstreamUrl = value.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
                prop_assert_eq!(cfg.routes[0].upstream.as_ref(), Some(&reference));
            }
            Err(e) => {
                prop_assert_eq!(&e.file, FILE);
                prop_assert!(e.first().key.starts_with("route[0].upstream"), "{value:?}: key {:?}: {}", e.first().key, e.first().reason);
            }
        }
    }
}
