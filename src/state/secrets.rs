//! Secret material and where it comes from: the `SecretStore` trait and its
//! answers (`store`), the file and Key Vault stores, and the cache in front of them.
//! Secret names embed PINs and secret values hold passwords: both print redacted.

pub mod cache;
pub mod file;
pub mod keyvault;
mod recent;
mod store;

use std::sync::Arc;

pub use store::*;

use crate::config::{SecretBackend, SecretsConfig};
use file::{FileError, FileStore};
use keyvault::{KeyVaultError, KeyVaultStore};

/// Why the configured secret store could not be opened. The store's error is part
/// of the message, not a chained `source`.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("secrets: {0}")]
    File(FileError),
    #[error("secrets: {0}")]
    KeyVault(KeyVaultError),
}

impl From<FileError> for OpenError {
    fn from(e: FileError) -> Self {
        Self::File(e)
    }
}

impl From<KeyVaultError> for OpenError {
    fn from(e: KeyVaultError) -> Self {
        Self::KeyVault(e)
    }
}

/// Read what [`open`] reads, without starting anything or reaching the network
/// (the Key Vault credential is not made): for `check-config`.
pub fn check(config: &SecretsConfig) -> Result<(), OpenError> {
    match &config.backend {
        SecretBackend::File { path } => FileStore::load(path).map(drop).map_err(OpenError::from),
        SecretBackend::KeyVault(kv) => keyvault::check(kv, config.request_timeout).map_err(OpenError::KeyVault),
    }
}

/// The secret store a configuration names; a file store is watched for changes.
pub fn open(config: &SecretsConfig) -> Result<Arc<dyn SecretStore>, OpenError> {
    Ok(match &config.backend {
        SecretBackend::File { path } => {
            let store = Arc::new(FileStore::load(path)?);
            store.watch();
            store
        }
        SecretBackend::KeyVault(kv) => Arc::new(KeyVaultStore::new(kv, config.request_timeout)?),
    })
}
