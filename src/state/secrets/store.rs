//! The store interface: the `SecretStore` trait, its answers and errors, secret
//! names (which embed PINs, so never print) and the parsed `username:password`
//! credentials.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use crate::config::{PinConfig, SecretNaming, SecretText};

/// A secret name no PIN can produce (PINs are digits): looked up to warm the
/// backend client and to probe readiness.
pub const PROBE_SECRET: &str = "keypin-readiness-probe";

/// Longest secret value accepted from a backend; anything longer is bad data.
pub const MAX_SECRET_VALUE_BYTES: usize = 4096;

/// A boxed future, so stores can be chosen at run time (`Arc<dyn SecretStore>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where secrets live: the file backend or Azure Key Vault.
pub trait SecretStore: Send + Sync {
    /// Look up one secret by name. `NotFound` is an answer, not an error.
    fn lookup<'a>(&'a self, name: &'a SecretName) -> BoxFuture<'a, Result<Lookup, BackendError>>;

    /// A number that changes whenever the store knows its content changed (a
    /// re-read file), so a cache in front drops what it remembered. Stores that
    /// cannot tell (a remote vault) keep the default.
    fn generation(&self) -> u64 {
        0
    }
}

/// A store's answer.
#[derive(Debug)]
pub enum Lookup {
    Found(SecretText),
    NotFound,
}

/// The backend could not answer. None of these is a wrong PIN: they never count
/// toward a lockout and never end a session early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("secret backend unavailable: {0}")]
    Unavailable(String),
    #[error("secret backend refused access: {0}")]
    Denied(String),
    #[error("secret backend is throttling requests")]
    Throttled,
    #[error("secret backend did not answer in time")]
    Timeout,
    /// The secret exists but its value is not `username:password`.
    #[error("secret value is not \"username:password\"")]
    InvalidValue,
}

impl BackendError {
    /// Short label for the audit log and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Denied(_) => "denied",
            Self::Throttled => "throttled",
            Self::Timeout => "timeout",
            Self::InvalidValue => "invalid_value",
        }
    }
}

/// A secret's name. It may embed the PIN, so it prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretName(pub(crate) String);

/// Hex characters of the HMAC in a `secret_name = "hmac"` name (128 bits).
const HMAC_HEX: usize = 32;

impl SecretName {
    /// `prefix` + `pin`; the PIN must already be validated (ASCII digits).
    pub fn for_pin(prefix: &str, pin: &str) -> Self {
        Self(format!("{prefix}{pin}"))
    }

    /// The name of `pin`'s secret as `config` names secrets: `<prefix><PIN>`, or
    /// `<prefix>` + 32 lowercase hex characters of HMAC-SHA256(`pin_key`, PIN).
    pub fn of(config: &PinConfig, pin: &str) -> Self {
        Self::in_namespace(config, &config.secret_prefix, pin)
    }

    /// As [`SecretName::of`], under a route's own `prefix` (its PIN namespace).
    pub fn in_namespace(config: &PinConfig, prefix: &str, pin: &str) -> Self {
        match (config.secret_name, &config.pin_key) {
            (SecretNaming::Hmac, Some(key)) => {
                let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.bytes()), pin.as_bytes());
                let mut name = String::with_capacity(prefix.len() + HMAC_HEX);
                name.push_str(prefix);
                for byte in &tag.as_ref()[..HMAC_HEX / 2] {
                    name.push_str(&format!("{byte:02x}"));
                }
                Self(name)
            }
            // Validation pairs `hmac` with a key: a plain name is what is left.
            _ => Self::for_pin(prefix, pin),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretName([redacted])")
    }
}

/// A resolved secret, ready to inject: the username and the finished
/// `Authorization` value, computed once per cache fill rather than per request.
pub struct Credentials {
    pub username: String,
    /// `Basic base64(username:password)`, marked sensitive (never HPACK-indexed).
    pub basic: HeaderValue,
    /// The username as a header value.
    pub user: HeaderValue,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

const BASIC: &[u8] = b"Basic ";

/// Bytes zeroized when dropped, to own a `Bytes`.
struct Wiped(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Credentials {
    /// Split a secret value at the first `:` into username and password. Backend
    /// data is hostile: an empty username, control bytes or an oversized value are
    /// refused.
    pub fn parse(value: &SecretText) -> Result<Self, BackendError> {
        let value = value.expose();
        if value.len() > MAX_SECRET_VALUE_BYTES || value.bytes().any(|b| b.is_ascii_control()) {
            return Err(BackendError::InvalidValue);
        }
        let (username, _password) = value.split_once(':').ok_or(BackendError::InvalidValue)?;
        if username.is_empty() {
            return Err(BackendError::InvalidValue);
        }
        let encoded = Zeroizing::new(BASE64.encode(value.as_bytes()));
        let mut text = Zeroizing::new(Vec::with_capacity(BASIC.len() + encoded.len()));
        text.extend_from_slice(BASIC);
        text.extend_from_slice(encoded.as_bytes());
        // The header's bytes are wiped when the last request holding them is done.
        let mut basic = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(Wiped(text)))
            .map_err(|_| BackendError::InvalidValue)?;
        basic.set_sensitive(true);
        let user = HeaderValue::from_bytes(username.as_bytes()).map_err(|_| BackendError::InvalidValue)?;
        Ok(Self { username: username.to_owned(), basic, user })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_split_at_the_first_colon() {
        let c = Credentials::parse(&SecretText::new("user1:pa:ss:word".into())).unwrap();
        assert_eq!(c.username, "user1");
        let expected = format!("Basic {}", BASE64.encode("user1:pa:ss:word"));
        assert_eq!(c.basic, expected.as_str());
        assert!(c.basic.is_sensitive());
        assert_eq!(c.user, "user1");
        let c = Credentials::parse(&SecretText::new("user2:".into())).unwrap();
        assert_eq!(c.username, "user2");
    }

    #[test]
    fn hostile_secret_values_are_bad_data() {
        for bad in ["no-colon", ":password", "us\r\ner:pw", "user:pw\n", &"x".repeat(5000)] {
            let err = Credentials::parse(&SecretText::new(bad.to_string())).unwrap_err();
            assert_eq!(err, BackendError::InvalidValue, "{bad:?}");
        }
    }

    #[test]
    fn names_and_credentials_never_print_the_pin_or_password() {
        let name = SecretName::for_pin("secret-", "8675309");
        assert!(!format!("{name:?}").contains("8675309"));
        let c = Credentials::parse(&SecretText::new("u:hunter2".into())).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{c:?}").contains(BASE64.encode("u:hunter2").as_str()));
    }
}
