//! argus-detector: streaming anomaly detection.

pub mod engine;
pub mod ingest;
pub mod model;
pub mod registry;
pub mod template;
