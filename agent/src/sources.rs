//! Where the agent's data comes from. Each source emits [`crate::pipeline::Envelope`]s
//! into the pipeline and reserves their bytes from the memory limiter first.

pub mod file;
pub mod host;
pub mod otlp;
pub mod scrape;
