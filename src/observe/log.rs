//! What the operational log may show of other crates. The Azure SDK and its HTTP
//! client write each request's URL at INFO and below, and a Key Vault URL holds the
//! secret's name, which holds the PIN: their events pass at WARN and above only,
//! whatever `RUST_LOG` asks.

use tracing::{Level, Metadata};

/// Targets of the crates that log Key Vault request URLs (their modules included).
const URL_LOGGING_CRATES: [&str; 4] = ["typespec", "azure_", "reqwest", "hyper_util::client::legacy"];

/// Whether an event may reach the operational log at all, before `RUST_LOG`.
pub fn allowed(meta: &Metadata<'_>) -> bool {
    allowed_target(meta.target(), *meta.level())
}

fn allowed_target(target: &str, level: Level) -> bool {
    level <= Level::WARN || !URL_LOGGING_CRATES.iter().any(|prefix| target.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_speaks_only_of_warnings_and_errors() {
        for target in [
            "typespec_client_core::http::policies::logging",
            "typespec_client_core::http::clients::reqwest",
            "azure_core::http",
            "azure_identity",
            "azure_security_keyvault_secrets::clients",
            "reqwest::connect",
        ] {
            assert!(allowed_target(target, Level::WARN), "{target}");
            assert!(allowed_target(target, Level::ERROR), "{target}");
            for quiet in [Level::INFO, Level::DEBUG, Level::TRACE] {
                assert!(!allowed_target(target, quiet), "{target} at {quiet}");
            }
        }
        for ours in ["keypin::access", "keypin::web::gateway", "hyper::proto", "h2::codec"] {
            assert!(allowed_target(ours, Level::DEBUG), "{ours}");
        }
    }
}
