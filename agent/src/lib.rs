//! argus-agent: the per-node collector.

pub mod batch;
pub mod config;
pub mod exporter;
pub mod pipeline;
pub mod queue;
pub mod sources;
pub mod transform;
