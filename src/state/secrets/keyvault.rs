//! The Azure Key Vault secret store, on the official SDK: which credential to use
//! (decided from config and environment without building it), the client with a
//! bounded transport and retry policy, and the classification of every answer into
//! found / not found / backend error.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorResponse;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, StatusCode, Transport};
use azure_core::time::OffsetDateTime;
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientSecretCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_secrets::models::Secret;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};

use super::store::{BackendError, BoxFuture, Lookup, SecretName, SecretStore};
use crate::config::{CredentialConfig, KeyVaultConfig, SecretText};

/// Environment variable whose presence makes `credential = "default"` pick workload
/// identity (it is set by the AKS workload identity webhook).
pub const FEDERATED_TOKEN_FILE_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Bound on opening a connection to the vault.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Retries of one lookup (429, 5xx, I/O); the whole lookup is also bounded by
/// `secrets.request_timeout`, since the SDK's defaults can wait ~80 s.
const MAX_RETRIES: u32 = 2;
const RETRY_INITIAL_DELAY: Duration = Duration::from_millis(200);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(2);
/// The vault's error code for a secret that does not exist.
const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// Lifetime given to a static token; the SDK refreshes tokens near expiry.
const STATIC_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The credential keypin will use: `default` resolved against the environment, to
/// workload identity when the federated token file is announced (AKS), else managed
/// identity (VMs, App Service, Container Apps); every other kind is itself. Pure
/// data: resolving never contacts anything, and the result is never `Default`.
pub fn resolve(config: &CredentialConfig, env: &dyn Fn(&str) -> Option<String>) -> CredentialConfig {
    match config {
        CredentialConfig::Default { client_id } if env(FEDERATED_TOKEN_FILE_ENV).is_some_and(|v| !v.is_empty()) => {
            CredentialConfig::WorkloadIdentity { client_id: client_id.clone(), tenant_id: None }
        }
        CredentialConfig::Default { client_id } => CredentialConfig::ManagedIdentity { client_id: client_id.clone() },
        other => other.clone(),
    }
}

/// Whether the vault must prove it belongs to the challenge's resource. Only
/// emulators on loopback (static token) are excused.
pub fn verifies_challenge_resource(credential: &CredentialConfig) -> bool {
    !matches!(credential, CredentialConfig::StaticToken { .. })
}

/// Build the SDK credential. Only called when serving for real: every kind but the
/// static token talks to Entra ID or the instance metadata service.
fn build(
    credential: &CredentialConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    Ok(match credential {
        CredentialConfig::Default { .. } => return build(&resolve(credential, env), env),
        CredentialConfig::StaticToken { token } => Arc::new(StaticToken(token.clone())),
        CredentialConfig::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                ..Default::default()
            };
            ManagedIdentityCredential::new(Some(options))?
        }
        CredentialConfig::WorkloadIdentity { client_id, tenant_id } => {
            let options = WorkloadIdentityCredentialOptions {
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                ..Default::default()
            };
            WorkloadIdentityCredential::new(Some(options))?
        }
        CredentialConfig::AzureCli { tenant_id } => {
            let options = AzureCliCredentialOptions { tenant_id: tenant_id.clone(), ..Default::default() };
            AzureCliCredential::new(Some(options))?
        }
        CredentialConfig::ClientSecret { tenant_id, client_id, secret } => {
            ClientSecretCredential::new(tenant_id, client_id.clone(), secret.expose().to_owned().into(), None)?
        }
    })
}

/// Why the Key Vault store could not be built. Each message is whole: no variant
/// chains a `source` (the command line prints chains in full).
#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error("secrets.credential: {kind}: {error}")]
    Credential { kind: &'static str, error: azure_core::Error },
    #[error("secrets.ca_cert: {path}: {error}")]
    CaCertRead { path: PathBuf, error: std::io::Error },
    #[error("secrets.ca_cert: {path}: {error}")]
    CaCertParse { path: PathBuf, error: reqwest::Error },
    #[error("building the Key Vault HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("secrets.vault_url: {0}")]
    VaultUrl(azure_core::Error),
}

/// A fixed bearer token, for Key Vault emulators.
struct StaticToken(SecretText);

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken([redacted])")
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let expires = OffsetDateTime::now_utc() + STATIC_TOKEN_LIFETIME;
        Ok(AccessToken::new(self.0.expose().to_owned(), expires))
    }
}

pub struct KeyVaultStore {
    client: SecretClient,
}

impl KeyVaultStore {
    /// Build the client: the planned credential, a reqwest transport with
    /// `ca_cert` trusted in addition to the usual roots, no redirects or proxies,
    /// and few, short retries.
    pub fn new(config: &KeyVaultConfig, request_timeout: Duration) -> Result<Self, KeyVaultError> {
        // reqwest is built without a crypto provider of its own: it uses ring's.
        crate::transport::tls::install_default_provider();
        let env = |name: &str| std::env::var(name).ok();
        let plan = resolve(&config.credential, &env);
        let credential = build(&plan, &env).map_err(|error| KeyVaultError::Credential { kind: plan.kind(), error })?;
        let http = http_client(config, request_timeout)?;
        let retry = RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: RETRY_INITIAL_DELAY.try_into().expect("small duration"),
            max_retries: MAX_RETRIES,
            max_total_elapsed: request_timeout.try_into().unwrap_or(azure_core::time::Duration::seconds(5)),
            max_delay: RETRY_MAX_DELAY.try_into().expect("small duration"),
        });
        let options = SecretClientOptions {
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(http))),
                retry,
                ..Default::default()
            },
            verify_challenge_resource: Some(verifies_challenge_resource(&plan)),
            ..Default::default()
        };
        let url = config.vault_url.to_string();
        let client = SecretClient::new(&url, credential, Some(options)).map_err(KeyVaultError::VaultUrl)?;
        tracing::info!(vault = %url, credential = ?plan, "Key Vault secret store ready");
        Ok(Self { client })
    }
}

/// What [`KeyVaultStore::new`] reads and builds besides the credential (which
/// may reach the network as it is made): for `check-config`.
pub fn check(config: &KeyVaultConfig, request_timeout: Duration) -> Result<(), KeyVaultError> {
    crate::transport::tls::install_default_provider();
    http_client(config, request_timeout).map(drop)
}

/// The transport: `ca_cert` trusted in addition to the usual roots, no redirects
/// or proxies.
fn http_client(config: &KeyVaultConfig, request_timeout: Duration) -> Result<reqwest::Client, KeyVaultError> {
    let mut http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(path) = &config.ca_cert {
        let pem = std::fs::read(path).map_err(|error| KeyVaultError::CaCertRead { path: path.clone(), error })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| KeyVaultError::CaCertParse { path: path.clone(), error })?;
        http = http.tls_certs_merge(certs);
    }
    http.build().map_err(KeyVaultError::Client)
}

impl SecretStore for KeyVaultStore {
    fn lookup<'a>(&'a self, name: &'a SecretName) -> BoxFuture<'a, Result<Lookup, BackendError>> {
        Box::pin(async move {
            match self.client.get_secret(name.as_str(), None).await {
                Ok(resp) => {
                    let secret: Secret = resp.into_model().map_err(|e| BackendError::Unavailable(e.to_string()))?;
                    Ok(usable(secret, OffsetDateTime::now_utc()))
                }
                Err(e) => classify(e),
            }
        })
    }
}

/// A secret counts only while enabled and inside its `nbf`/`exp` window: Key
/// Vault still returns a secret whose expiry has passed.
fn usable(secret: Secret, now: OffsetDateTime) -> Lookup {
    let attrs = secret.attributes.unwrap_or_default();
    let live = attrs.enabled != Some(false)
        && attrs.not_before.is_none_or(|nbf| nbf <= now)
        && attrs.expires.is_none_or(|exp| now < exp);
    match secret.value {
        Some(value) if live => Lookup::Found(SecretText::new(value)),
        _ => Lookup::NotFound,
    }
}

/// Map an SDK error: the vault's own `SecretNotFound` and a disabled secret are
/// answers ("no such PIN"); everything else, a 404 without that code included (a
/// wrong vault path, a proxy in between), is the backend failing, which must never
/// look like a wrong PIN: it would count as a failure and end every session.
fn classify(err: azure_core::Error) -> Result<Lookup, BackendError> {
    let Some(status) = err.http_status() else {
        return Err(BackendError::Unavailable(format!("{err}")));
    };
    match status {
        StatusCode::NotFound => match inner_error_code(err).as_deref() {
            Some(SECRET_NOT_FOUND) => Ok(Lookup::NotFound),
            other => Err(BackendError::Unavailable(format!("HTTP 404 ({})", other.unwrap_or("no error code")))),
        },
        StatusCode::Forbidden if inner_error_code(err).as_deref() == Some("SecretDisabled") => Ok(Lookup::NotFound),
        StatusCode::Unauthorized | StatusCode::Forbidden => {
            Err(BackendError::Denied(format!("HTTP {}", u16::from(status))))
        }
        StatusCode::TooManyRequests => Err(BackendError::Throttled),
        StatusCode::RequestTimeout => Err(BackendError::Timeout),
        other => Err(BackendError::Unavailable(format!("HTTP {}", u16::from(other)))),
    }
}

/// The innermost error code of a Key Vault error body (`error.innererror.code`,
/// else `error.code`).
fn inner_error_code(err: azure_core::Error) -> Option<String> {
    let detail = ErrorResponse::try_from(err).ok()?.error?;
    let mut code = detail.code.clone();
    let mut inner = detail.inner_error;
    while let Some(i) = inner {
        if i.code.is_some() {
            code = i.code.clone();
        }
        inner = i.inner_error.map(|b| *b);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn default_picks_workload_identity_only_when_announced() {
        let config = CredentialConfig::Default { client_id: Some("app".into()) };
        assert_eq!(
            resolve(&config, &env_with(&[])),
            CredentialConfig::ManagedIdentity { client_id: Some("app".into()) }
        );
        assert_eq!(
            resolve(&config, &env_with(&[(FEDERATED_TOKEN_FILE_ENV, "/var/run/token")])),
            CredentialConfig::WorkloadIdentity { client_id: Some("app".into()), tenant_id: None }
        );
        assert_eq!(
            resolve(&config, &env_with(&[(FEDERATED_TOKEN_FILE_ENV, "")])),
            CredentialConfig::ManagedIdentity { client_id: Some("app".into()) }
        );
    }

    #[test]
    fn every_other_kind_is_itself_and_only_emulators_skip_verification() {
        let cases = [
            CredentialConfig::ManagedIdentity { client_id: None },
            CredentialConfig::WorkloadIdentity { client_id: Some("c".into()), tenant_id: Some("t".into()) },
            CredentialConfig::AzureCli { tenant_id: None },
            CredentialConfig::ClientSecret {
                tenant_id: "t".into(),
                client_id: "c".into(),
                secret: SecretText::new("hunter2".into()),
            },
            CredentialConfig::StaticToken { token: SecretText::new("x".into()) },
        ];
        for config in cases {
            let resolved = resolve(&config, &env_with(&[(FEDERATED_TOKEN_FILE_ENV, "/var/run/token")]));
            assert_eq!(resolved, config);
            let emulator = matches!(config, CredentialConfig::StaticToken { .. });
            assert_eq!(verifies_challenge_resource(&resolved), !emulator);
            assert!(!format!("{resolved:?}").contains("hunter2"), "no secret in what is logged");
        }
    }

    #[test]
    fn expired_disabled_and_future_secrets_are_not_found() {
        let now = OffsetDateTime::now_utc();
        let hour = azure_core::time::Duration::hours(1);
        let secret = |enabled: Option<bool>, nbf: Option<OffsetDateTime>, exp: Option<OffsetDateTime>| {
            let json = serde_json::json!({
                "value": "u:p",
                "attributes": {
                    "enabled": enabled,
                    "nbf": nbf.map(OffsetDateTime::unix_timestamp),
                    "exp": exp.map(OffsetDateTime::unix_timestamp),
                }
            });
            serde_json::from_value::<Secret>(json).unwrap()
        };
        assert!(matches!(usable(secret(Some(true), None, None), now), Lookup::Found(_)));
        assert!(matches!(usable(secret(None, Some(now - hour), Some(now + hour)), now), Lookup::Found(_)));
        assert!(matches!(usable(secret(Some(false), None, None), now), Lookup::NotFound));
        assert!(matches!(usable(secret(Some(true), Some(now + hour), None), now), Lookup::NotFound));
        assert!(matches!(usable(secret(Some(true), None, Some(now - hour)), now), Lookup::NotFound));
    }
}
