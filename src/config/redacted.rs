//! Secret text in configuration and beyond: passwords, tokens and session keys that
//! print as `[redacted]` and are zeroized on drop. At the bottom of the house, so
//! configuration can hold them without importing the layers that use them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

/// Length of a session key: 512 bits, split by the cookie crate into signing and
/// encryption halves.
pub const SESSION_KEY_BYTES: usize = 64;

/// Least length of `pin.pin_key`: 256 bits, HMAC-SHA256's own.
pub const PIN_KEY_MIN_BYTES: usize = 32;

/// Why text is not a session key (or PIN key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not base64 (create one with `keypin gen-key`)")]
    NotBase64,
    #[error("must decode to {SESSION_KEY_BYTES} bytes, not {0} (create one with `keypin gen-key`)")]
    Length(usize),
    #[error("must decode to at least {PIN_KEY_MIN_BYTES} bytes, not {0} (create one with `keypin gen-key`)")]
    TooShort(usize),
}

/// The key secret names are derived from PINs with (`pin.pin_key`): at least 32
/// bytes. Prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct PinKey(Zeroizing<Vec<u8>>);

impl PinKey {
    /// Decode a key written as standard base64 of at least 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let cleaned: String = text.split_whitespace().collect();
        let bytes = Zeroizing::new(BASE64.decode(cleaned).map_err(|_| KeyError::NotBase64)?);
        if bytes.len() < PIN_KEY_MIN_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinKey([redacted])")
    }
}

impl<'de> serde::Deserialize<'de> for PinKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        Self::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

/// A secret string (password, token, client secret). Prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A 64-byte session key. Prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(Zeroizing<Vec<u8>>);

impl SessionKey {
    /// Decode a key written as standard base64 of exactly 64 bytes.
    /// Whitespace anywhere is ignored: `openssl rand -base64 64` wraps its lines.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let cleaned = Zeroizing::new(text.split_whitespace().collect::<String>());
        let bytes = Zeroizing::new(BASE64.decode(cleaned.as_bytes()).map_err(|_| KeyError::NotBase64)?);
        if bytes.len() != SESSION_KEY_BYTES {
            return Err(KeyError::Length(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; SESSION_KEY_BYTES]);
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE64.encode(&self.0[..]))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let t = SecretText::new("hunter2".into());
        assert_eq!(format!("{t:?}"), "[redacted]");
        let k = SessionKey::generate();
        let printed = format!("{k:?}");
        assert!(!printed.contains(&*k.to_base64()));
    }

    #[test]
    fn session_keys_round_trip_and_reject_wrong_sizes() {
        let k = SessionKey::generate();
        assert_eq!(SessionKey::from_base64(&k.to_base64()).unwrap(), k);
        assert_eq!(SessionKey::from_base64("c2hvcnQ="), Err(KeyError::Length(5)));
        assert!(KeyError::Length(5).to_string().contains("64 bytes"));
        assert_eq!(SessionKey::from_base64("not base64!"), Err(KeyError::NotBase64));
    }
}
