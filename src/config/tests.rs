//! Unit tests of configuration parsing and validation.

use std::path::Path;
use std::time::Duration;

use super::*;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";

fn env(name: &str) -> Option<String> {
    match name {
        "KEYPIN_SESSION_KEY" | "TEST_KEY" => Some(KEY.into()),
        "AZURE_CLIENT_SECRET" => Some("s3cret".into()),
        "KEYPIN_KV_TOKEN" => Some("token".into()),
        "KEYPIN_PIN_KEY" => Some(KEY.into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml", &env)
}

const MINIMAL: &str = "[[route]]\nupstream = \"http://127.0.0.1:8080\"\n";

#[test]
fn every_shipped_config_file_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("keypin") {
            let cfg = Config::parse(&text, &name, &env).unwrap_or_else(|e| panic!("{e}"));
            assert!(!cfg.routes.is_empty());
        } else {
            // Secret files are flat `name = "value"` tables.
            let table: toml::Table = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(table.values().all(toml::Value::is_str), "{name}");
        }
        seen += 1;
    }
    assert!(seen >= 2, "config/ should ship keypin.toml and keypin.example.toml");
}

#[test]
fn defaults_follow_the_contract() {
    let cfg = parse(MINIMAL).unwrap();
    assert_eq!(cfg.server.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(cfg.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(cfg.server.hsts_max_age, Duration::from_secs(365 * 24 * 3600));
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(cfg.server.worker_count(), cpus, "one worker per CPU by default");
    assert_eq!(cfg.pin.min_digits, 4);
    assert_eq!(cfg.pin.max_digits, 10);
    assert_eq!(cfg.limits.login_per_ip, Rate::per(5, Duration::from_secs(60)));
    assert_eq!(cfg.session.cookie_name, "__Host-keypin");
    assert_eq!(cfg.routes[0].name, "route0");
    assert_eq!(cfg.routes[0].inject, Inject::Basic);
    assert_eq!(cfg.routes[0].user_header, "x-forwarded-user");
    assert!(matches!(cfg.secrets.backend, SecretBackend::File { .. }));
}

#[test]
fn rates_parse_in_the_documented_forms() {
    assert_eq!("5/min".parse::<Rate>().unwrap(), Rate::per(5, Duration::from_secs(60)));
    assert_eq!("100/s".parse::<Rate>().unwrap(), Rate::per(100, Duration::from_secs(1)));
    assert_eq!("200/hour".parse::<Rate>().unwrap(), Rate::per(200, Duration::from_secs(3600)));
    assert_eq!("3/10m".parse::<Rate>().unwrap(), Rate::per(3, Duration::from_secs(600)));
    for bad in ["0/min", "5", "five/min", "5/fortnight", "5/0s", "-1/s"] {
        assert!(bad.parse::<Rate>().is_err(), "{bad}");
    }
}

#[test]
fn errors_name_the_file_and_the_key() {
    let cases = [
        ("[server]\nlisten_addr = \"x\"\n", "server", "unknown field"),
        ("[server]\nheader_read_timeout = \"10 parsecs\"\n", "server.header_read_timeout", "not a duration"),
        ("[limits]\nlogin_per_ip = \"5/fortnight\"\n", "limits.login_per_ip", "not a rate"),
        ("[server]\nworkers = 0\n", "server.workers", "0 is not a whole number above zero; e.g. workers = 2"),
        (
            "[server]\nlisten = \"localhost:18443\"\n",
            "server.listen",
            "\"localhost:18443\" is not an IP address and port; e.g. listen = \"127.0.0.1:8443\"",
        ),
        ("[pin]\nmax_digits = 300\n", "pin.max_digits", "300 is not a whole number from 1 to 32"),
        ("[session]\nkeys = [\"env:NOPE\"]\n", "session.keys[0]", "NOPE is not set"),
        ("[[route]]\nupstream = \"htp://x\"\n", "route[0].upstream", "\"htp://x\" is not an http(s) URL"),
        ("[[route]]\nupstream = \"ftp://x\"\n", "route[0].upstream", "not an http(s) URL"),
        ("[session]\nkeys = [\"c2hvcnQ=\"]\n", "session.keys[0]", "64 bytes"),
        ("[pin]\nmin_digits = 8\nmax_digits = 6\n", "pin.min_digits", "between"),
        ("[secrets]\nbackend = \"keyvault\"\n", "secrets.vault_url", "required"),
        ("[secrets]\nbackend = \"s3\"\n", "secrets.backend", "unknown variant"),
        ("", "route", "at least one"),
    ];
    for (text, key, reason) in cases {
        let text =
            if text.is_empty() || text.contains("[[route]]") { text.to_owned() } else { format!("{text}{MINIMAL}") };
        let e = parse(&text).expect_err(&text);
        assert_eq!(e.file, "test.toml");
        assert!(e.first().key.starts_with(key), "{text}: key {:?} should name {key}", e.first().key);
        assert!(e.first().reason.contains(reason), "{text}: reason {:?} should say {reason}", e.first().reason);
        assert!(e.to_string().starts_with(&format!("test.toml: {}", e.first().key)));
    }
}

#[test]
fn every_problem_in_a_file_is_reported_at_once() {
    let text = "[server]\nlisten = \"localhost:18443\"\nlisten_adress = \"x\"\nworkers = \"two\"\n\
                [pin]\nmin_digits = 8\nmax_digits = 6\n[session]\nkeys = [\"env:NOPE\"]\nttl = \"ten\"\n\
                [[route]]\nupstream = \"htp://x\"\npublic_paths = [\"nope\"]\n";
    let e = parse(text).unwrap_err();
    let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "session.keys[0]",
        "server.listen",
        "server.listen_adress",
        "server.workers",
        "session.ttl",
        "route[0].upstream",
        "pin.min_digits",
        "route[0].public_paths[0]",
    ] {
        assert!(keys.contains(&key), "{key} not reported: {e}");
    }
    assert_eq!(e.to_string().lines().count(), e.problems.len(), "one line each: {e}");
    assert!(e.to_string().lines().all(|l| l.starts_with("test.toml: ")), "{e}");
}

#[test]
fn a_syntax_error_says_where() {
    let e = parse("[server]\nlisten = \"127.0.0.1:8443\"\nworkers = = 2\n").unwrap_err();
    let said = e.to_string();
    assert!(said.starts_with("test.toml: not valid TOML at line 3, column 11"), "{said}");
    assert!(said.contains("3 | workers = = 2"), "{said}");
}

#[test]
fn unknown_key_error_names_the_key() {
    let e = parse(&format!("[server]\nlisten_addr = \"x\"\n{MINIMAL}")).unwrap_err();
    assert!(e.to_string().contains("listen_addr"), "{e}");
}

#[test]
fn env_references_resolve_anywhere_and_keys_can_be_overridden() {
    let text = format!("[session]\nkeys = [\"env:TEST_KEY\"]\n{MINIMAL}");
    assert_eq!(parse(&text).unwrap().session.keys.len(), 1);
    let two = format!("{KEY}, {KEY}");
    let over = |n: &str| {
        if n == SESSION_KEYS_ENV { Some(two.clone()) } else { env(n) }
    };
    let cfg = Config::parse(MINIMAL, "t", &over).unwrap();
    assert_eq!(cfg.session.keys.len(), 2);
}

#[test]
fn an_unknown_credential_is_refused_whatever_the_backend_and_every_kind_is_named() {
    for backend in ["backend = \"file\"", "backend = \"keyvault\"\nvault_url = \"https://v.example.net/\""] {
        let e = parse(&format!("[secrets]\n{backend}\ncredential = \"bogus\"\n{MINIMAL}")).unwrap_err();
        assert_eq!(e.first().key, "secrets.credential", "{e}");
        assert!(
            e.first().reason.contains("\"bogus\"") && e.first().reason.contains("managed_identity, workload_identity"),
            "{e}"
        );
    }
    let secret = || SecretText::new("s".into());
    let every = [
        CredentialConfig::Default { client_id: None },
        CredentialConfig::ManagedIdentity { client_id: None },
        CredentialConfig::WorkloadIdentity { client_id: None, tenant_id: None },
        CredentialConfig::AzureCli { tenant_id: None },
        CredentialConfig::ClientSecret { tenant_id: "t".into(), client_id: "c".into(), secret: secret() },
        CredentialConfig::StaticToken { token: secret() },
    ];
    let kinds: Vec<_> = every.iter().map(CredentialConfig::kind).collect();
    assert_eq!(kinds, CredentialConfig::KINDS, "one name per kind, in the listed order");
    for kind in CredentialConfig::KINDS {
        let extra = "client_id = \"c\"\ntenant_id = \"t\"\nclient_secret = \"s\"\nstatic_token = \"x\"\n";
        let text = format!(
            "[secrets]\nbackend = \"keyvault\"\nvault_url = \"https://127.0.0.1/\"\ncredential = \"{kind}\"\n{extra}{MINIMAL}"
        );
        let SecretBackend::KeyVault(kv) = parse(&text).unwrap_or_else(|e| panic!("{kind}: {e}")).secrets.backend else {
            panic!("a Key Vault backend")
        };
        assert_eq!(kv.credential.kind(), kind);
    }
}

#[test]
fn values_read_from_the_environment_are_never_echoed_in_errors() {
    let env = |name: &str| match name {
        "RATE" => Some("s3cret-rate-value".to_owned()),
        "KV_URL" => Some("http://admin:hunter2@vault.example/".to_owned()),
        "STORE" => Some("memcache://user:pa55word@cache:11211".to_owned()),
        "KEY" => Some("not-a-key-but-secret".to_owned()),
        _ => None,
    };
    for (text, key, variable, value) in [
        ("[limits]\nlogin_per_ip = \"env:RATE\"\n", "limits.login_per_ip", "RATE", "s3cret-rate-value"),
        ("[limits]\nstore = \"env:STORE\"\n", "limits.store", "STORE", "pa55word"),
        ("[secrets]\nbackend = \"keyvault\"\nvault_url = \"env:KV_URL\"\n", "secrets.vault_url", "KV_URL", "hunter2"),
        ("[session]\nkeys = [\"env:KEY\"]\n", "session.keys[0]", "KEY", "not-a-key-but-secret"),
    ] {
        let e = Config::parse(&format!("{text}{MINIMAL}"), "test.toml", &env).unwrap_err();
        assert_eq!(e.first().key, key);
        let shown = e.to_string();
        assert!(!shown.contains(value), "{shown}");
        if shown.contains('$') {
            assert!(shown.contains(&format!("${{{variable}}}")), "{shown}");
        }
    }
}

#[test]
fn static_token_is_for_loopback_unless_allowed() {
    let kv = |url: &str, extra: &str| {
        format!(
            "[secrets]\nbackend = \"keyvault\"\nvault_url = \"{url}\"\ncredential = \"static_token\"\n\
             static_token = \"env:KEYPIN_KV_TOKEN\"\n{extra}{MINIMAL}"
        )
    };
    assert!(parse(&kv("https://127.0.0.1:8443/", "")).is_ok());
    assert!(parse(&kv("https://localhost:8443/", "")).is_ok());
    let e = parse(&kv("https://myvault.example.net/", "")).unwrap_err();
    assert_eq!(e.first().key, "secrets.credential");
    assert!(parse(&kv("https://myvault.example.net/", "allow_static_token = true\n")).is_ok());
}

#[test]
fn upstream_urls_keep_their_base_path() {
    let u: UpstreamUrl = "https://app.internal:8443/legacy/".parse().unwrap();
    assert_eq!(u.base_path, "/legacy");
    assert_eq!(u.to_string(), "https://app.internal:8443/legacy");
    assert!("http://u:p@host/".parse::<UpstreamUrl>().is_err());
    assert!("http://host/?q=1".parse::<UpstreamUrl>().is_err());
}

#[test]
fn the_limit_store_is_memory_or_a_redis_url_and_a_bad_url_keeps_its_password() {
    let with = |store: &str| parse(&format!("[limits]\nstore = \"{store}\"\n{MINIMAL}"));
    assert_eq!(with("memory").unwrap().limits.store, LimitStoreKind::Memory);
    for url in ["redis://127.0.0.1:6379/0", "rediss://:pw@cache.example:6380/2", "redis://redis"] {
        assert_eq!(with(url).unwrap().limits.store, LimitStoreKind::Redis(url.into()), "{url}");
    }
    for bad in ["redis://:hunter2@host:notaport/0", "rediss://:hunter2@[::1/0"] {
        let text = with(bad).unwrap_err().to_string();
        assert!(text.contains("limits.store") && text.contains("redis://redis:6379/0"), "{text}");
        assert!(!text.contains("hunter2"), "the password stays out of the error: {text}");
    }
    let text = with("mem0ry").unwrap_err().to_string();
    assert!(text.contains("\"mem0ry\""), "a value that is no URL is shown: {text}");
    let debug = format!("{:?}", with("redis://:hunter2@host:6379").unwrap().limits);
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn a_routes_ca_cert_is_a_pem_bundle_for_an_https_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["app.internal".into()]).unwrap().cert.pem();
    std::fs::write(&pem, cert).unwrap();
    let with = |upstream: &str, ca: &std::path::Path| {
        parse(&format!("[[route]]\nupstream = \"{upstream}\"\nca_cert = \"{}\"\n", ca.display()))
    };
    assert_eq!(with("https://app.internal", &pem).unwrap().routes[0].upstream_roots.len(), 1);
    let e = with("http://app.internal", &pem).unwrap_err();
    assert!(e.first().key == "route[0].ca_cert" && e.to_string().contains("https upstream"), "{e}");
    let e = with("https://app.internal", &dir.path().join("missing.pem")).unwrap_err();
    assert_eq!(e.first().key, "route[0].ca_cert");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    assert!(with("https://app.internal", &junk).unwrap_err().to_string().contains("no certificate"));
    // A route used only through forward-auth needs no upstream.
    assert!(parse("[[route]]\nhost = \"hr.test\"\n").unwrap().routes[0].upstream.is_none());
}

#[test]
fn hmac_names_need_a_pin_key_of_32_bytes_and_prefixes_are_key_vault_names() {
    let key32 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 32]);
    let key16 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 16]);
    let with = |pin: &str| parse(&format!("[pin]\n{pin}\n{MINIMAL}"));
    assert!(with(&format!("secret_name = \"hmac\"\npin_key = \"{key32}\"")).is_ok());
    for (pin, key, says) in [
        ("secret_name = \"hmac\"".to_owned(), "pin.pin_key", "required"),
        (format!("secret_name = \"hmac\"\npin_key = \"{key16}\""), "pin.pin_key", "at least 32 bytes"),
        ("secret_name = \"hmac\"\npin_key = \"not base64!\"".to_owned(), "pin.pin_key", "base64"),
        (format!("pin_key = \"{key32}\""), "pin.pin_key", "only used with"),
        ("secret_name = \"sha1\"".to_owned(), "pin.secret_name", ""),
        ("secret_prefix = \"secret_\"".to_owned(), "pin.secret_prefix", "Key Vault name"),
    ] {
        let e = with(&pin).unwrap_err();
        assert!(e.first().key == key && e.to_string().contains(says), "{pin}: {e}");
    }
    let e = parse("[[route]]\nupstream = \"http://127.0.0.1:1\"\nsecret_prefix = \"hr/\"\n").unwrap_err();
    assert_eq!(e.first().key, "route[0].secret_prefix");
    let same = parse("[[route]]\nupstream = \"http://127.0.0.1:1\"\nsecret_prefix = \"secret-\"\n").unwrap();
    assert_eq!(same.routes[0].secret_prefix, None, "the default namespace, said again");
}

#[test]
fn keypin_session_keys_replaces_the_files_keys_before_their_env_is_read_and_may_wrap() {
    let text = format!("[session]\nkeys = [\"env:A_VARIABLE_NOBODY_SET\"]\n{MINIMAL}");
    // The key as `openssl rand -base64 64` prints it: wrapped at 64 characters.
    let wrapped = format!("{}\n{}\n", &KEY[..64], &KEY[64..]);
    let env = |name: &str| (name == SESSION_KEYS_ENV).then(|| wrapped.clone());
    let config = Config::parse(&text, "test.toml", &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.session.keys.len(), 1);
    assert_eq!(config.session.keys[0].bytes(), SessionKey::from_base64(KEY).unwrap().bytes());
    // Without the variable, the file's reference is read, and its absence named.
    let e = Config::parse(&text, "test.toml", &|_| None).unwrap_err();
    assert!(e.to_string().contains("A_VARIABLE_NOBODY_SET"), "{e}");
}
