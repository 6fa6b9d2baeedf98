//! Configuration, the bottom layer: the TOML file's raw serde shape, `env:NAME`
//! references, and the validated [`Config`] the rest of keypin is built from. Every
//! error names the file and the key. Imports nothing of keypin's.

mod de;
mod explain;
mod files;
mod load;
mod model;
#[cfg(test)]
mod proptests;
mod raw;
mod redacted;
#[cfg(test)]
mod tests;
mod validate;
mod values;

pub(crate) use files::{Stamp, stamp, world_readable_mode};
pub use model::*;
pub use redacted::{KeyError, PIN_KEY_MIN_BYTES, PinKey, SESSION_KEY_BYTES, SecretText, SessionKey};
pub use values::{Inject, LimitStoreKind, Rate, UpstreamUrl, ValueError};
