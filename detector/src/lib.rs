//! argus-detector: streaming anomaly detection.

pub mod engine;
pub mod model;
