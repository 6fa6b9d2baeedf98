//! Layer 1, what keypin tells its operators: the Prometheus registry and the audit
//! log. Below everything that counts or reports; imports only configuration.

pub mod audit;
pub(crate) mod metrics;
