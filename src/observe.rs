//! Layer 1, what keypin tells its operators: the Prometheus registry, the audit
//! log, and what the operational log may show of other crates. Below everything
//! that counts or reports; imports nothing of keypin's.

pub mod audit;
pub mod log;
pub(crate) mod metrics;
