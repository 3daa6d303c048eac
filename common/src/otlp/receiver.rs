//! `build` → `bind` → `serve`: the receiver's life.
//!
//! - [`OtlpReceiverConfig::build`] validates the config, reads TLS files and
//!   tokens, and registers the self-metrics. Every problem is reported at
//!   once.
//! - [`OtlpReceiver::bind`] opens the sockets; [`BoundReceiver::grpc_addr`]
//!   and [`BoundReceiver::http_addr`] are then known (tests bind port 0).
//! - [`BoundReceiver::serve`] runs until the [`Shutdown`] fires, then stops
//!   accepting, lets in-flight requests and their consumer calls finish
//!   within `shutdown_grace`, and cuts what is left.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Payload;
use super::auth::BearerAuth;
use super::config::{OtlpReceiverConfig, normalize_endpoint};
use super::consumer::{Accepted, ConsumeError, OtlpConsumer, RequestContext, Transport};
use super::grpc::GrpcHandler;
use super::http::HttpHandler;
use super::listener::Listener;
use super::telemetry::ReceiverMetrics;
use super::tls;
use crate::shutdown::Shutdown;

/// Why the receiver could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// Permanent: fix the config. One entry per problem, each naming its field.
    #[error("invalid OTLP receiver config: {}", .0.join("; "))]
    Config(Vec<String>),
    /// Could not listen. Retryable when the port is merely still in use
    /// (a previous instance shutting down); see [`ReceiverError::is_retryable`].
    #[error("OTLP/{transport} receiver cannot listen on {endpoint}: {source}")]
    Bind {
        transport: &'static str,
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
}

impl ReceiverError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ReceiverError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// What both transports share: the consumer, auth, metrics, and the tasks
/// running consumer calls.
pub(crate) struct Shared<C> {
    consumer: Arc<C>,
    pub(crate) auth: Option<Arc<BearerAuth>>,
    pub(crate) metrics: Arc<ReceiverMetrics>,
    consumes: TaskTracker,
}

impl<C: OtlpConsumer> Shared<C> {
    /// Runs the consumer call as its own task, so it completes even if the
    /// client disconnects and this future is dropped (see `consumer` docs).
    pub(crate) async fn consume(
        &self,
        payload: Payload,
        ctx: RequestContext,
    ) -> Result<Accepted, ConsumeError> {
        let consumer = self.consumer.clone();
        let task = self
            .consumes
            .spawn(async move { consumer.consume(payload, ctx).await });
        match task.await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "OTLP consumer panicked; telling the client to retry");
                Err(ConsumeError::Unavailable {
                    retry_after: None,
                    reason: "internal error while storing the data".into(),
                })
            }
        }
    }
}

/// The receivers, built and validated, not yet listening.
pub struct OtlpReceiver<C> {
    grpc: Option<(
        String,
        Option<Arc<rustls::ServerConfig>>,
        Arc<GrpcHandler<C>>,
    )>,
    http: Option<(
        String,
        Option<Arc<rustls::ServerConfig>>,
        Arc<HttpHandler<C>>,
    )>,
    shared: Arc<Shared<C>>,
    grace: Duration,
}

impl OtlpReceiverConfig {
    /// Validates and builds, naming fields under `otlp.`; see
    /// [`build_at`](Self::build_at) to name them where they sit in your file.
    pub fn build<C: OtlpConsumer>(
        &self,
        consumer: C,
        registry: &mut Registry,
    ) -> Result<OtlpReceiver<C>, ReceiverError> {
        self.build_at("otlp", consumer, registry)
    }

    /// Like [`build`](Self::build), with problems named under `path`.
    pub fn build_at<C: OtlpConsumer>(
        &self,
        path: &str,
        consumer: C,
        registry: &mut Registry,
    ) -> Result<OtlpReceiver<C>, ReceiverError> {
        let mut problems = self.problems(path);
        if !problems.is_empty() {
            return Err(ReceiverError::Config(problems));
        }
        let mut load_tls = |cfg: Option<&super::TlsServerConfig>, at: String, alpn: &[&[u8]]| {
            cfg.and_then(|t| {
                tls::server_config(t, &at, alpn)
                    .map_err(|p| problems.extend(p))
                    .ok()
            })
        };
        let grpc_tls = self
            .grpc
            .as_ref()
            .and_then(|g| load_tls(g.tls.as_ref(), format!("{path}.grpc.tls"), &[b"h2"]));
        let http_tls = self.http.as_ref().and_then(|h| {
            load_tls(
                h.tls.as_ref(),
                format!("{path}.http.tls"),
                &[b"h2", b"http/1.1"],
            )
        });
        let auth = match &self.auth {
            None => None,
            Some(a) => match BearerAuth::load(a, &format!("{path}.auth")) {
                Ok(a) => Some(Arc::new(a)),
                Err(p) => {
                    problems.push(p);
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(ReceiverError::Config(problems));
        }

        let shared = Arc::new(Shared {
            consumer: Arc::new(consumer),
            auth,
            metrics: Arc::new(ReceiverMetrics::register(registry)),
            consumes: TaskTracker::new(),
        });
        // `problems()` checked both endpoints, so these cannot fail.
        let endpoint = |e: &str| normalize_endpoint(e).unwrap_or_else(|_| e.to_string());
        Ok(OtlpReceiver {
            grpc: self.grpc.as_ref().map(|g| {
                (
                    endpoint(&g.endpoint),
                    grpc_tls,
                    Arc::new(GrpcHandler::new(shared.clone(), g)),
                )
            }),
            http: self.http.as_ref().map(|h| {
                (
                    endpoint(&h.endpoint),
                    http_tls,
                    Arc::new(HttpHandler::new(shared.clone(), h)),
                )
            }),
            shared,
            grace: self.shutdown_grace,
        })
    }
}

impl<C: OtlpConsumer> OtlpReceiver<C> {
    /// Opens the configured sockets.
    pub async fn bind(self) -> Result<BoundReceiver<C>, ReceiverError> {
        let bind_err = |transport: Transport, endpoint: &str| {
            let endpoint = endpoint.to_string();
            move |source| ReceiverError::Bind {
                transport: transport.as_str(),
                endpoint,
                source,
            }
        };
        let grpc = match self.grpc {
            None => None,
            Some((endpoint, tls, handler)) => Some((
                Listener::bind(&endpoint, tls, Transport::Grpc)
                    .await
                    .map_err(bind_err(Transport::Grpc, &endpoint))?,
                handler,
            )),
        };
        let http = match self.http {
            None => None,
            Some((endpoint, tls, handler)) => Some((
                Listener::bind(&endpoint, tls, Transport::Http)
                    .await
                    .map_err(bind_err(Transport::Http, &endpoint))?,
                handler,
            )),
        };
        Ok(BoundReceiver {
            grpc,
            http,
            shared: self.shared,
            grace: self.grace,
        })
    }

    /// [`bind`](Self::bind), then [`serve`](BoundReceiver::serve).
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), ReceiverError> {
        self.bind().await?.serve(shutdown).await
    }
}

/// The receivers with their sockets open.
pub struct BoundReceiver<C> {
    grpc: Option<(Listener, Arc<GrpcHandler<C>>)>,
    http: Option<(Listener, Arc<HttpHandler<C>>)>,
    shared: Arc<Shared<C>>,
    grace: Duration,
}

impl<C: OtlpConsumer> BoundReceiver<C> {
    /// Where the gRPC server listens (the real port when configured as 0).
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().map(|(l, _)| l.local_addr())
    }

    /// Where the HTTP server listens.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|(l, _)| l.local_addr())
    }

    /// Serves until `shutdown` fires, then drains within the grace period.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), ReceiverError> {
        let connections = TaskTracker::new();
        let hard = CancellationToken::new();
        let metrics = self.shared.metrics.clone();

        if let Some(auth) = &self.shared.auth {
            connections.spawn(
                auth.clone()
                    .run_reloader(shutdown.clone(), metrics.token_reload_failures.clone()),
            );
        }
        let grpc = async {
            if let Some((listener, handler)) = self.grpc {
                listener
                    .serve(
                        handler,
                        metrics.clone(),
                        shutdown.clone(),
                        hard.clone(),
                        connections.clone(),
                    )
                    .await;
            }
        };
        let http = async {
            if let Some((listener, handler)) = self.http {
                listener
                    .serve(
                        handler,
                        metrics.clone(),
                        shutdown.clone(),
                        hard.clone(),
                        connections.clone(),
                    )
                    .await;
            }
        };
        tokio::join!(grpc, http);

        // Sockets closed; in-flight requests get the grace period.
        connections.close();
        self.shared.consumes.close();
        let drained = tokio::time::timeout(self.grace, async {
            connections.wait().await;
            self.shared.consumes.wait().await;
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                grace = ?self.grace,
                connections = connections.len(),
                consumer_calls = self.shared.consumes.len(),
                "OTLP receiver grace period over: closing the remaining connections \
                 (clients will retry; consumer calls already started keep running)"
            );
            hard.cancel();
            // Connection tasks end promptly once cut.
            let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
        }
        tracing::info!("OTLP receiver stopped");
        Ok(())
    }
}

impl<T: OtlpConsumer> OtlpConsumer for Arc<T> {
    fn consume(
        &self,
        payload: Payload,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<Accepted, ConsumeError>> + Send {
        (**self).consume(payload, ctx)
    }
}
