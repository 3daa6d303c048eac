//! argus-detector: OTLP in, anomalies out — Alertmanager alerts,
//! self-healing webhooks, per-series metrics for Grafana.
//!
//! The service ([`service`]) wires these together:
//!
//! - [`config`]: `DetectorConfig` — YAML, embedded defaults,
//!   `ARGUS_DETECTOR__…` environment overrides, every problem at once.
//! - [`ingest`] (+ [`registry`], [`template`]): OTLP payloads → one value
//!   per series per step, with exemplar trace ids and log templates.
//! - [`engine`] (+ [`model`]): the per-series streaming models and their
//!   calibrated score with hysteresis.
//! - [`scoring`]: the step clock (`wall` | `event`) and what is kept per
//!   series.
//! - [`incident`]: concurrent anomalies per entity → incidents with an
//!   explanation; [`incident::alert`] turns them into alerts.
//! - [`alert`]: the Alertmanager v2 client (Prometheus' resend semantics).
//! - [`remediation`]: signed webhooks inside safeguards.
//! - [`maintenance`]: windows that neither page nor train.
//! - [`snapshot`]: model state on disk across restarts.
//! - [`outputs`]: per-series score/expected/band gauges on `/metrics`.
//! - [`api`]: `/api/v1/*` on the ops server.
//! - [`cli`]: the `argus-detector` (and `argus detector`) commands.

pub mod alert;
pub mod api;
pub mod cli;
pub mod config;
pub mod engine;
pub mod incident;
pub mod ingest;
pub mod maintenance;
pub mod model;
pub mod outputs;
pub mod registry;
pub mod remediation;
pub mod scoring;
pub mod service;
pub mod snapshot;
pub mod template;
