//! Raw configuration to validated `Config`: cross-key checks, each error naming
//! its key.

use std::collections::HashSet;
use std::net::IpAddr;

use http::uri::{Scheme, Uri};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::model::{
    Config, CredentialConfig, KeyVaultConfig, MAX_SESSION_TTL, PinConfig, Problem, RouteConfig, SecretBackend,
    SecretNaming, SecretsConfig, SessionConfig, UiConfig, canonical_ip,
};
use super::raw::{BackendKind, RawConfig, RawRoute, RawSecrets, RawSession, RawUi};
use super::redacted::{SecretText, SessionKey};

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Problem {
    Problem::new(key, reason)
}

pub(super) fn validate(raw: RawConfig, file: &str) -> Result<Config, Problem> {
    let server = raw.server;
    if server.max_connections == 0 {
        return Err(invalid("server.max_connections", "must be at least 1"));
    }
    for (key, d) in [
        ("server.header_read_timeout", server.header_read_timeout),
        ("server.keepalive_timeout", server.keepalive_timeout),
        ("server.upstream_timeout", server.upstream_timeout),
    ] {
        if d.is_zero() {
            return Err(invalid(key, "must be longer than zero"));
        }
    }

    let pin = raw.pin;
    if pin.min_digits == 0 || pin.min_digits > pin.max_digits {
        return Err(invalid("pin.min_digits", "must be between 1 and pin.max_digits"));
    }
    check_prefix("pin.secret_prefix", &pin.secret_prefix, &pin)?;
    if pin.max_digits > 32 {
        return Err(invalid("pin.max_digits", "must be at most 32"));
    }
    match (pin.secret_name, &pin.pin_key) {
        (SecretNaming::Hmac, None) => {
            return Err(invalid(
                "pin.pin_key",
                "is required with pin.secret_name = \"hmac\": base64 of at least 32 bytes \
                 (e.g. from `keypin gen-key`), best as \"env:NAME\"",
            ));
        }
        (SecretNaming::Plain, Some(_)) => {
            return Err(invalid("pin.pin_key", "is only used with pin.secret_name = \"hmac\""));
        }
        (SecretNaming::Hmac, Some(_)) if pin.secret_prefix.len() + 32 > 127 => {
            return Err(invalid("pin.secret_prefix", "is too long: with \"hmac\" names it may have 95 characters"));
        }
        _ => {}
    }

    let secrets = validate_secrets(raw.secrets)?;
    let mut session = validate_session(raw.session)?;
    session.deployment = deployment(&secrets, &pin, &session.cookie_name);

    let limits = raw.limits;
    if limits.lockout_base > limits.lockout_max {
        return Err(invalid("limits.lockout_base", "must not exceed limits.lockout_max"));
    }

    if raw.route.is_empty() {
        return Err(invalid("route", "at least one [[route]] is required"));
    }
    let mut names = HashSet::new();
    let mut routes = Vec::with_capacity(raw.route.len());
    for (i, r) in raw.route.into_iter().enumerate() {
        let mut route = validate_route(i, r)?;
        if let Some(prefix) = &route.secret_prefix {
            check_prefix(&format!("route[{i}].secret_prefix"), prefix, &pin)?;
            if *prefix == pin.secret_prefix {
                // The default namespace, said again.
                route.secret_prefix = None;
            }
        }
        if !names.insert(route.name.clone()) {
            return Err(invalid(format!("route[{i}].name"), format!("{:?} is used twice", route.name)));
        }
        routes.push(route);
    }

    let ui = validate_ui(raw.ui)?;
    Ok(Config { source: file.to_owned(), server, pin, secrets, session, limits, routes, ui })
}

/// The deployment's identity for cookie keys: the secret source, the naming of
/// secrets and the cookie name. Replicas of one deployment share all three.
fn deployment(secrets: &SecretsConfig, pin: &PinConfig, cookie_name: &str) -> String {
    let source = match &secrets.backend {
        SecretBackend::File { path } => format!("file {}", path.display()),
        SecretBackend::KeyVault(kv) => format!("keyvault {}", kv.vault_url),
    };
    let naming = match pin.secret_name {
        SecretNaming::Plain => "plain",
        SecretNaming::Hmac => "hmac",
    };
    format!("{source}\n{naming} {}\n{cookie_name}", pin.secret_prefix)
}

/// A secret-name prefix: with the PIN (or its HMAC), a Key Vault name, at most
/// 127 characters of letters, digits and `-`.
fn check_prefix(key: &str, prefix: &str, pin: &PinConfig) -> Result<(), Problem> {
    let longest = match pin.secret_name {
        SecretNaming::Plain => usize::from(pin.max_digits),
        SecretNaming::Hmac => 32,
    };
    if !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || prefix.len() + longest > 127 {
        return Err(invalid(key, format!("{prefix:?} must be letters, digits and '-' (a Key Vault name)")));
    }
    Ok(())
}

/// The certificates of a PEM bundle, each one usable as a trust anchor.
fn upstream_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle ({e})"))?;
    if certs.is_empty() {
        return Err("holds no certificate".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in &certs {
        roots.add(cert.clone()).map_err(|e| format!("a certificate is no usable trust anchor ({e})"))?;
    }
    Ok(certs)
}

fn unknown_credential(name: &str) -> Problem {
    invalid(
        "secrets.credential",
        format!("unknown credential {name:?}; expected one of {}", CredentialConfig::KINDS.join(", ")),
    )
}

fn validate_secrets(raw: RawSecrets) -> Result<SecretsConfig, Problem> {
    // Checked whatever the backend, as serde checked it when it was an enum.
    if !CredentialConfig::KINDS.contains(&raw.credential.as_str()) {
        return Err(unknown_credential(&raw.credential));
    }
    let backend = match raw.backend {
        BackendKind::File => SecretBackend::File { path: raw.path },
        BackendKind::Keyvault => {
            let url_text =
                raw.vault_url.ok_or_else(|| invalid("secrets.vault_url", "required when backend = \"keyvault\""))?;
            let vault_url: Uri = url_text
                .parse()
                .ok()
                .filter(|u: &Uri| u.scheme() == Some(&Scheme::HTTPS) && u.host().is_some())
                .ok_or_else(|| invalid("secrets.vault_url", format!("{url_text:?} is not an https URL")))?;
            let loopback = vault_url.host().map(|h| h.trim_start_matches('[').trim_end_matches(']')).is_some_and(|h| {
                h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| canonical_ip(ip).is_loopback())
            });
            let credential = match raw.credential.as_str() {
                "default" => CredentialConfig::Default { client_id: raw.client_id },
                "managed_identity" => CredentialConfig::ManagedIdentity { client_id: raw.client_id },
                "workload_identity" => {
                    CredentialConfig::WorkloadIdentity { client_id: raw.client_id, tenant_id: raw.tenant_id }
                }
                "azure_cli" => CredentialConfig::AzureCli { tenant_id: raw.tenant_id },
                "client_secret" => {
                    let need = |v: Option<String>, key: &str| {
                        v.filter(|s| !s.is_empty()).ok_or_else(|| {
                            invalid(format!("secrets.{key}"), "required when credential = \"client_secret\"")
                        })
                    };
                    CredentialConfig::ClientSecret {
                        tenant_id: need(raw.tenant_id, "tenant_id")?,
                        client_id: need(raw.client_id, "client_id")?,
                        secret: SecretText::new(need(raw.client_secret, "client_secret")?),
                    }
                }
                "static_token" => {
                    let token = raw.static_token.filter(|t| !t.is_empty()).ok_or_else(|| {
                        invalid("secrets.static_token", "required when credential = \"static_token\"")
                    })?;
                    if !loopback && !raw.allow_static_token {
                        return Err(invalid(
                            "secrets.credential",
                            "static_token is for emulators on loopback; set allow_static_token = true to use it elsewhere",
                        ));
                    }
                    CredentialConfig::StaticToken { token: SecretText::new(token) }
                }
                other => return Err(unknown_credential(other)),
            };
            SecretBackend::KeyVault(KeyVaultConfig { vault_url, credential, ca_cert: raw.ca_cert })
        }
    };
    if raw.request_timeout.is_zero() {
        return Err(invalid("secrets.request_timeout", "must be longer than zero"));
    }
    Ok(SecretsConfig {
        backend,
        cache_ttl: raw.cache_ttl,
        negative_cache_ttl: raw.negative_cache_ttl,
        stale_if_error: raw.stale_if_error,
        request_timeout: raw.request_timeout,
    })
}

fn validate_session(raw: RawSession) -> Result<SessionConfig, Problem> {
    let name_ok = !raw.cookie_name.is_empty()
        && raw.cookie_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !name_ok {
        return Err(invalid("session.cookie_name", format!("{:?} is not a cookie name", raw.cookie_name)));
    }
    let keys = raw
        .keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| SessionKey::from_base64(&k).map_err(|e| invalid(format!("session.keys[{i}]"), e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if raw.ttl.is_zero() || raw.ttl > MAX_SESSION_TTL {
        return Err(invalid("session.ttl", "must be longer than zero and at most 7 days"));
    }
    if raw.idle_timeout.is_zero() || raw.idle_timeout > raw.ttl {
        return Err(invalid("session.idle_timeout", "must be between zero and session.ttl"));
    }
    let deployment = String::new();
    Ok(SessionConfig { cookie_name: raw.cookie_name, deployment, keys, ttl: raw.ttl, idle_timeout: raw.idle_timeout })
}

fn validate_route(i: usize, r: RawRoute) -> Result<RouteConfig, Problem> {
    let key = |k: &str| format!("route[{i}].{k}");
    let name = r.name.unwrap_or_else(|| format!("route{i}"));
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(invalid(key("name"), format!("{name:?} must be letters, digits, '-' or '_'")));
    }
    let host = match r.host {
        None => None,
        Some(h) => {
            let h = h.to_ascii_lowercase();
            if h.is_empty() || h.parse::<http::uri::Authority>().is_err() || h.contains([':', '@']) {
                return Err(invalid(key("host"), format!("{h:?} is not a host name (without port)")));
            }
            Some(h)
        }
    };
    let local_path = |p: &str| p.starts_with('/') && !p.bytes().any(|b| b.is_ascii_control() || b == b' ');
    if !local_path(&r.path_prefix) {
        return Err(invalid(key("path_prefix"), format!("{:?} must start with '/'", r.path_prefix)));
    }
    for (j, p) in r.public_paths.iter().enumerate() {
        if !local_path(p) {
            return Err(invalid(format!("route[{i}].public_paths[{j}]"), format!("{p:?} must start with '/'")));
        }
    }
    let upstream_roots = match &r.ca_cert {
        None => Vec::new(),
        Some(path) => {
            if !r.upstream.as_ref().is_some_and(|u| u.scheme == Scheme::HTTPS) {
                return Err(invalid(key("ca_cert"), "is for an https upstream"));
            }
            upstream_roots(path).map_err(|reason| invalid(key("ca_cert"), format!("{}: {reason}", path.display())))?
        }
    };
    Ok(RouteConfig {
        name,
        host,
        path_prefix: r.path_prefix,
        upstream: r.upstream,
        upstream_roots,
        secret_prefix: r.secret_prefix,
        inject: r.inject,
        user_header: r.user_header,
        public_paths: r.public_paths,
        preserve_host: r.preserve_host,
    })
}

/// Largest logo inlined into the page.
const MAX_LOGO_BYTES: u64 = 64 * 1024;
/// Largest custom page template.
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

fn read_limited(key: &str, path: &std::path::Path, max: u64) -> Result<Vec<u8>, Problem> {
    let size = std::fs::metadata(path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))?.len();
    if size > max {
        return Err(invalid(key, format!("{} is larger than {} KiB", path.display(), max / 1024)));
    }
    std::fs::read(path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))
}

fn validate_ui(raw: RawUi) -> Result<UiConfig, Problem> {
    use base64::Engine as _;
    let defaults = UiConfig::default();
    let logo = match raw.logo {
        None => None,
        Some(path) => {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            let mime = match ext.as_str() {
                "png" => "image/png",
                "svg" => "image/svg+xml",
                "jpg" | "jpeg" => "image/jpeg",
                "gif" => "image/gif",
                "webp" => "image/webp",
                _ => {
                    return Err(invalid(
                        "ui.logo",
                        format!("{}: use a .png, .svg, .jpg, .gif or .webp file", path.display()),
                    ));
                }
            };
            let bytes = read_limited("ui.logo", &path, MAX_LOGO_BYTES)?;
            Some(format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
        }
    };
    let template = match raw.template {
        None => None,
        Some(path) => {
            let bytes = read_limited("ui.template", &path, MAX_TEMPLATE_BYTES)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| invalid("ui.template", format!("{} is not UTF-8", path.display())))?;
            if !text.contains("{{form}}") {
                return Err(invalid("ui.template", format!("{} has no {{{{form}}}} placeholder", path.display())));
            }
            Some(text)
        }
    };
    Ok(UiConfig {
        title: raw.title.unwrap_or(defaults.title),
        message: raw.message.unwrap_or(defaults.message),
        logo,
        template,
    })
}
