//! argus-detector: streaming anomaly detection.

pub mod alert;
pub mod engine;
pub mod model;
pub mod remediation;
