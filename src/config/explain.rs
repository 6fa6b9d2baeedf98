//! Configuration errors in an operator's words: where a TOML syntax error is (line,
//! column and the line itself), serde's type names as plain words, and for keys of
//! a fixed form the value given beside an example of a good one.

use super::model::Problem;

/// Keys whose values no message shows: they hold keys, passwords or URLs with passwords.
const SECRET_KEYS: [&str; 5] = ["keys", "pin_key", "client_secret", "static_token", "store"];

/// Quoted strings at least this long are elided from a quoted line: a session key
/// on a line of its own is 88 characters.
const LONG_STRING: usize = 40;

/// A TOML syntax error: the position and the offending line, with a caret.
pub(super) fn syntax(text: &str, error: &toml::de::Error) -> Problem {
    let message = error.message().trim_end();
    let Some(at) = error.span().map(|span| span.start.min(text.len())) else {
        return Problem::new("", format!("not valid TOML: {message}"));
    };
    let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let number = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let gutter = " ".repeat(number.to_string().len());
    Problem::new(
        "",
        format!(
            "not valid TOML at line {number}, column {column}: {message}\n  {number} | {}\n  {gutter} | {}^",
            shown_line(line),
            " ".repeat(column - 1)
        ),
    )
}

/// A line of the file as it may be shown: the value of a secret key, and any long
/// quoted string, elided.
fn shown_line(line: &str) -> String {
    if let Some((key, _)) = line.split_once('=')
        && SECRET_KEYS.contains(&key.trim().trim_matches('"'))
    {
        return format!("{} …", &line[..=key.len()]);
    }
    let mut out = String::new();
    for (i, part) in line.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        let quoted = i % 2 == 1;
        out.push_str(if quoted && part.chars().count() >= LONG_STRING { "…" } else { part });
    }
    out
}

/// A message from serde about `key`, whose value in the file is `value`, in plain words.
pub(super) fn value_error(key: &str, message: &str, value: Option<&toml::Value>) -> String {
    let field = key.rsplit('.').next().unwrap_or(key);
    let field = field.split('[').next().unwrap_or(field);
    let generic = ["invalid type: ", "invalid value: ", "invalid socket address", "invalid IP address"]
        .iter()
        .any(|p| message.starts_with(p));
    if generic && let Some((what, example)) = expected_form(field) {
        let given = match value {
            Some(v) if !SECRET_KEYS.contains(&field) => v.to_string(),
            _ => "the value given".to_owned(),
        };
        return format!("{given} is not {what}; e.g. {field} = {example}");
    }
    plain_words(message)
}

/// What a key of a fixed form takes, and an example of it.
fn expected_form(field: &str) -> Option<(&'static str, &'static str)> {
    Some(match field {
        "listen" => ("an IP address and port", "\"127.0.0.1:8443\""),
        "admin_listen" => ("an IP address and port", "\"127.0.0.1:9443\""),
        "plain_listen" => ("an IP address and port", "\"127.0.0.1:8081\""),
        "max_connections" => ("a whole number", "10000"),
        "workers" => ("a whole number above zero", "2"),
        "min_digits" | "max_digits" => ("a whole number from 1 to 32", "8"),
        "lockout_after" => ("a whole number", "5"),
        "self_signed" | "allow_static_token" | "preserve_host" => ("true or false", "true"),
        "trusted_proxies" => ("a list of addresses or networks", "[\"10.0.0.0/8\"]"),
        "public_paths" => ("a list of paths", "[\"/favicon.ico\"]"),
        "keys" => ("a list of base64 keys", "[\"env:MY_KEY\"]"),
        "header_read_timeout"
        | "keepalive_timeout"
        | "upstream_timeout"
        | "hsts_max_age"
        | "min_response"
        | "cache_ttl"
        | "negative_cache_ttl"
        | "stale_if_error"
        | "request_timeout"
        | "ttl"
        | "idle_timeout"
        | "lockout_base"
        | "lockout_max"
        | "attack_cooldown" => ("a duration in quotes", "\"10s\""),
        "login_per_ip" | "login_global" | "attack_failures" => ("a rate in quotes", "\"5/min\""),
        _ => return None,
    })
}

/// serde's `invalid type: integer `300`, expected u8` as `300 is not a whole number
/// from 0 to 255`; other messages as they are.
fn plain_words(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((found, expected)) = message.strip_prefix(prefix).and_then(|m| m.rsplit_once(", expected ")) {
            return format!("{} is not {}", found_words(found), expected_words(expected));
        }
    }
    message.to_owned()
}

fn found_words(found: &str) -> String {
    for kind in ["integer ", "floating point ", "boolean ", "string "] {
        if let Some(value) = found.strip_prefix(kind) {
            return value.trim_matches('`').to_owned();
        }
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        other => other.into(),
    }
}

fn expected_words(expected: &str) -> &str {
    match expected {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number (0 or more)",
        "i64" | "i32" => "a whole number",
        "f64" | "f32" => "a number",
        "a nonzero usize" | "a nonzero u32" | "a nonzero u64" => "a whole number above zero",
        "a sequence" => "a list",
        "a borrowed string" => "a string",
        "a map" => "a table",
        other if other.starts_with("struct ") => "a table",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_become_words() {
        assert_eq!(plain_words("invalid value: integer `300`, expected u8"), "300 is not a whole number from 0 to 255");
        assert_eq!(
            plain_words("invalid type: string \"ten\", expected u8"),
            "\"ten\" is not a whole number from 0 to 255"
        );
        assert_eq!(plain_words("invalid type: sequence, expected struct RawUi"), "a list is not a table");
        assert_eq!(plain_words("missing field `x`"), "missing field `x`");
    }

    #[test]
    fn a_fixed_form_echoes_the_value_with_an_example() {
        let value = toml::Value::String("localhost:18443".into());
        let said = value_error("server.listen", "invalid socket address syntax", Some(&value));
        assert_eq!(said, "\"localhost:18443\" is not an IP address and port; e.g. listen = \"127.0.0.1:8443\"");
        let said = value_error("session.keys", "invalid type: string \"x\", expected a sequence", None);
        assert!(said.starts_with("the value given is not a list"), "{said}");
    }

    #[test]
    fn a_syntax_error_points_at_its_line_and_hides_secrets() {
        let text = "[server]\nlisten = \"127.0.0.1:8443\n";
        let error = text.parse::<toml::Table>().unwrap_err();
        let said = syntax(text, &error).reason;
        assert!(said.starts_with("not valid TOML at line 2, column "), "{said}");
        assert!(said.contains("2 | listen = \"127.0.0.1:8443"), "{said}");
        let key = "A".repeat(88);
        let text = format!("[session]\nkeys = [\"{key}\"\n");
        let said = syntax(&text, &text.parse::<toml::Table>().unwrap_err()).reason;
        assert!(said.contains("line 2") && !said.contains(&key), "{said}");
        let text = format!("[session]\nkeys = [\n  \"{key}\" \"\n]\n");
        let said = syntax(&text, &text.parse::<toml::Table>().unwrap_err()).reason;
        assert!(!said.contains(&key), "{said}");
    }
}
