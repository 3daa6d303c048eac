//! argus-detector: streaming anomaly detection.

pub mod alert;
pub mod engine;
pub mod ingest;
pub mod model;
pub mod registry;
pub mod remediation;
pub mod template;
