//! The ops server: `/metrics`, `/healthz`, `/readyz`, plus whatever routes
//! the binary merges in (the detector's `/api/v1/*`).
//!
//! - `/metrics` encodes the process' one prometheus-client [`Registry`] on
//!   every scrape, followed by the standard unprefixed `process_*` metrics
//!   ([`process`]: CPU, memory, file descriptors), so neither binary has
//!   to wire them. A scraper that asks for OpenMetrics (`Accept:
//!   application/openmetrics-text`, as Prometheus does) gets it verbatim;
//!   anything else (curl, older agents) gets the Prometheus text format 0.0.4,
//!   converted by [`exposition`] — prometheus-client only speaks OpenMetrics,
//!   whose exemplars and `# EOF` a 0.0.4 parser rejects.
//! - `/healthz` is liveness: 200 while the process can answer at all.
//!   Nothing else is checked, so Kubernetes restarts only a wedged process,
//!   never a busy one.
//! - `/readyz` is readiness: 200 when every component registered with the
//!   [`Readiness`] says it is ready, else 503 with the reasons, so a rollout
//!   waits for (say) the disk queue's replay and a draining pod leaves the
//!   Service before it stops taking data.
//!
//! The server takes the registry as `Arc<Registry>`: components register
//! while they are built (with `&mut`), then the binary freezes it and hands
//! it here.

pub mod exposition;
pub mod logging;
pub mod process;
pub mod readiness;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use readiness::{Readiness, ReadinessHandle};

use crate::otlp::config::normalize_endpoint;
use crate::shutdown::Shutdown;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where the ops server listens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsServerConfig {
    /// `host:port`; `:port` means all interfaces. The default, 8888, is the
    /// Collector's own telemetry port; binaries may choose another.
    pub listen: String,
    /// How long open requests get after shutdown fires.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for OpsServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8888".into(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Why the ops server could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Permanent: fix the config.
    #[error("invalid ops server config: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("ops server cannot listen on {listen}: {source}")]
    Bind {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ops server failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl OpsServerConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        match normalize_endpoint(&self.listen) {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("{path}.listen: {e}: {:?}", self.listen)],
        }
    }

    /// Validates and builds the server around the shared registry and
    /// readiness.
    pub fn build(
        &self,
        registry: Arc<Registry>,
        readiness: Readiness,
    ) -> Result<OpsServer, OpsError> {
        let problems = self.problems("ops");
        if !problems.is_empty() {
            return Err(OpsError::Config(problems));
        }
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector));
        let state = Arc::new(OpsState {
            registry,
            process,
            readiness,
        });
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(state);
        Ok(OpsServer {
            listen: normalize_endpoint(&self.listen).unwrap_or_else(|_| self.listen.clone()),
            grace: self.shutdown_grace,
            router,
        })
    }
}

struct OpsState {
    registry: Arc<Registry>,
    /// Unprefixed: `process_*` (the binaries' registries carry a prefix).
    process: Registry,
    readiness: Readiness,
}

/// The ops server, built, not yet listening.
pub struct OpsServer {
    listen: String,
    grace: Duration,
    router: Router,
}

impl OpsServer {
    /// Adds the caller's routes (e.g. the detector's `/api/v1/*`). The
    /// three ops paths are taken: merging a route onto one of them panics
    /// (axum's rule), which a binary's first test run shows.
    pub fn merge(mut self, routes: Router) -> Self {
        self.router = self.router.merge(routes);
        self
    }

    pub async fn bind(self) -> Result<BoundOpsServer, OpsError> {
        let listener = TcpListener::bind(&self.listen)
            .await
            .map_err(|source| OpsError::Bind {
                listen: self.listen.clone(),
                source,
            })?;
        let local = listener.local_addr().map_err(OpsError::Serve)?;
        Ok(BoundOpsServer {
            listener,
            local,
            grace: self.grace,
            router: self.router,
        })
    }

    pub async fn serve(self, shutdown: Shutdown) -> Result<(), OpsError> {
        self.bind().await?.serve(shutdown).await
    }
}

/// The ops server with its socket open.
pub struct BoundOpsServer {
    listener: TcpListener,
    local: SocketAddr,
    grace: Duration,
    router: Router,
}

impl BoundOpsServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown`, then gives open requests the grace period.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), OpsError> {
        tracing::info!(addr = %self.local, "ops server listening");
        let stop = shutdown.clone();
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stop.wait().await });
        let server = std::pin::pin!(server.into_future());
        let grace = self.grace;
        let result = tokio::select! {
            r = server => r,
            // Graceful shutdown waits for every connection, including idle
            // keep-alive ones a scraper holds; the grace period bounds that.
            _ = async { shutdown.wait().await; tokio::time::sleep(grace).await } => Ok(()),
        };
        tracing::info!("ops server stopped");
        result.map_err(OpsError::Serve)
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<OpsState>>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reasons}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<OpsState>>, headers: HeaderMap) -> Response {
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let mut text = String::new();
    let encoded = encode_registry(&mut text, &state.registry)
        .and_then(|()| encode_registry(&mut text, &state.process))
        .and_then(|()| encode_eof(&mut text));
    if let Err(e) = encoded {
        tracing::error!(error = %e, "could not encode metrics");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode metrics\n",
        )
            .into_response();
    }
    let (content_type, body) = if wants_openmetrics(&headers) {
        (OPENMETRICS_CONTENT_TYPE, text)
    } else {
        (
            PROMETHEUS_CONTENT_TYPE,
            exposition::openmetrics_to_prometheus(&text),
        )
    };
    (
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// True when `Accept` lists `application/openmetrics-text` with q > 0.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        // What Prometheus 2.x/3.x sends.
        assert!(wants_openmetrics(&accept(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(&accept("*/*")));
        assert!(!wants_openmetrics(&accept("text/plain")));
        assert!(!wants_openmetrics(&accept(
            "application/openmetrics-text;q=0"
        )));
        assert!(!wants_openmetrics(&HeaderMap::new()));
    }

    #[test]
    fn listen_is_validated() {
        let cfg = OpsServerConfig {
            listen: "nope".into(),
            ..Default::default()
        };
        assert!(cfg.problems("ops")[0].starts_with("ops.listen:"));
        assert!(OpsServerConfig::default().problems("ops").is_empty());
    }
}
