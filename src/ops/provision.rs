//! Provisioning a person: `keypin secret-name` turns a PIN (read from standard
//! input, never from the command line, never printed back) into the name of the
//! secret to create for it, as the running gateway will look it up; or makes a
//! fresh random PIN of the configured length and names its secret.

use zeroize::Zeroizing;

use crate::config::PinConfig;
use crate::state::secrets::SecretName;

/// Why the text read is no PIN. Messages never repeat the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinInputError {
    #[error("no PIN on standard input (e.g. `read -s PIN; echo \"$PIN\" | keypin secret-name`)")]
    Empty,
    #[error("a PIN is digits only")]
    NotDigits,
    #[error("this configuration takes PINs of {min} to {max} digits")]
    Length { min: u8, max: u8 },
}

/// The secret name for the PIN in `input` (one line; surrounding whitespace,
/// the newline included, is ignored).
pub fn secret_name_for(config: &PinConfig, input: &str) -> Result<String, PinInputError> {
    let pin = input.trim();
    if pin.is_empty() {
        return Err(PinInputError::Empty);
    }
    if !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PinInputError::NotDigits);
    }
    if !(usize::from(config.min_digits)..=usize::from(config.max_digits)).contains(&pin.len()) {
        return Err(PinInputError::Length { min: config.min_digits, max: config.max_digits });
    }
    Ok(SecretName::of(config, pin).as_str().to_owned())
}

/// A fresh random PIN of `min_digits` digits (every digit uniform, leading zeros
/// included).
pub fn random_pin(config: &PinConfig) -> Zeroizing<String> {
    Zeroizing::new((0..config.min_digits).map(|_| char::from(b'0' + rand::random_range(0..10u8))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PinKey, SecretNaming};

    fn hmac() -> PinConfig {
        let key = PinKey::from_base64(&base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]));
        PinConfig { secret_name: SecretNaming::Hmac, pin_key: Some(key.unwrap()), ..PinConfig::default() }
    }

    #[test]
    fn a_pin_names_its_secret_as_the_gateway_looks_it_up() {
        assert_eq!(secret_name_for(&PinConfig::default(), "482913\n").unwrap(), "secret-482913");
        let name = secret_name_for(&hmac(), " 482913 \n").unwrap();
        assert_eq!(name, SecretName::of(&hmac(), "482913").as_str());
        let hex = name.strip_prefix("secret-").unwrap();
        assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{name}");
        assert!(!name.contains("482913"));
        assert_ne!(name, secret_name_for(&hmac(), "482914").unwrap(), "one PIN, one name");
    }

    #[test]
    fn bad_input_is_refused_without_being_repeated() {
        for (input, error) in [
            ("", PinInputError::Empty),
            ("12a4", PinInputError::NotDigits),
            ("123", PinInputError::Length { min: 4, max: 10 }),
            ("12345678901", PinInputError::Length { min: 4, max: 10 }),
        ] {
            let refused = secret_name_for(&PinConfig::default(), input).unwrap_err();
            assert_eq!(refused, error);
            assert!(input.is_empty() || !refused.to_string().contains(input), "{refused}");
        }
    }

    #[test]
    fn random_pins_have_the_configured_length_and_every_digit() {
        let config = PinConfig { min_digits: 6, ..PinConfig::default() };
        let pins: Vec<_> = (0..200).map(|_| random_pin(&config)).collect();
        assert!(pins.iter().all(|p| p.len() == 6 && secret_name_for(&config, p).is_ok()));
        let digits: std::collections::HashSet<char> = pins.iter().flat_map(|p| p.chars()).collect();
        assert_eq!(digits.len(), 10);
    }
}
