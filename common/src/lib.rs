//! What both Argus binaries share, and nothing more (DESIGN.md: "only if earned").
//!
//! - [`otlp`]: OTLP/gRPC and OTLP/HTTP receivers with OpenTelemetry Collector status semantics,
//!   size and decompression limits, bearer-token auth and optional mTLS. Agent and detector both
//!   receive OTLP exactly the same way, so the code lives once.
//! - [`ops`]: the `/metrics`, `/healthz`, `/readyz` HTTP server.
//! - [`shutdown`]: the shutdown signal every task takes, with a grace period.
//! - [`backoff`]: exponential backoff with full jitter.
//! - [`error`]: errors on one line, causes included.

pub mod backoff;
pub mod error;
pub mod ops;
pub mod otlp;
pub mod shutdown;
