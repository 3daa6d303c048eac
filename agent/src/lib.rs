//! argus-agent: the per-node collector (a Kubernetes DaemonSet). It takes
//! logs, host metrics and OTLP, ties them together with correlation IDs,
//! masks card numbers, and ships everything over OTLP/gRPC without losing a
//! record: nothing is acknowledged to a source before it is in a durable
//! disk queue, and nothing leaves the queue before the endpoint accepted it.
//!
//! ```text
//! sources ──▶ batch (transform, merge) ──▶ queue ──▶ pipeline::drain ──▶ exporter
//! ```
//!
//! Modules:
//! - [`cli`]: the command line (`run`, `validate-config`); `main.rs` only
//!   calls it, and the `argus agent …` subcommand delegates to it.
//! - [`config`]: [`config::AgentConfig`], the YAML document with embedded
//!   defaults, `ARGUS_AGENT__*` environment overrides, and validation that
//!   reports every problem with its field path.
//! - [`agent`]: assembly — builds every component from the config, starts
//!   the tasks, and carries out the ordered shutdown.
//! - [`pipeline`]: what flows between stages ([`pipeline::Envelope`],
//!   [`pipeline::Ack`], [`pipeline::MemoryLimiter`]), the wiring and what
//!   shares what, the drain from queue to exporter, and the pipeline's
//!   self-metrics.
//! - [`sources`]: [`sources::otlp`] (the OTLP receivers' consumer),
//!   [`sources::file`] (container log files), [`sources::host`] (host
//!   metrics), [`sources::scrape`] (Prometheus targets).
//! - [`transform`]: enrich (resource attributes), correlate (trace and
//!   request IDs from log fields), mask (card numbers, configured PII).
//! - [`batch`]: one batcher per signal — transform, merge, append to the
//!   queue, then acknowledge the sources.
//! - [`queue`]: the durable disk queue (on-disk format and guarantees in its
//!   docs).
//! - [`exporter`]: the OTLP/gRPC exporter (retries, splitting, TLS, auth).
//! - [`allocator`]: the `argus-agent` binary's global allocator (mimalloc,
//!   glibc on request).
//!
//! Self-metrics are registered by each component in one registry prefixed
//! `argus_agent` and served by the ops server with `/healthz` and `/readyz`.

pub mod agent;
pub mod allocator;
pub mod batch;
pub mod cli;
pub mod config;
pub mod exporter;
pub mod pipeline;
pub mod queue;
pub mod sources;
pub mod transform;
