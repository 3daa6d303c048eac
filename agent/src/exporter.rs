//! Delivery: ships each [`Payload`] to an OTLP/gRPC endpoint (the detector,
//! an OpenTelemetry Collector, Grafana Alloy…) and says precisely how it went.
//!
//! The drain loop in front of us reads a record from the disk queue, decodes
//! it and calls [`Exporter::export`]; it acknowledges (deletes) the record
//! only when `export` returned `Ok`, or an error for which
//! [`ExportError::is_retryable`] is false. So the exporter's contract is:
//!
//! - `Ok(Delivered)`: the endpoint accepted the data, fully or partially
//!   (items it rejected are counted as dropped, reason `rejected_by_endpoint`,
//!   and never retried: the spec says a partial success is final).
//! - `Err(e)` with `!e.is_retryable()`: the exporter gave up on the data for
//!   a reason retrying cannot fix (permanent status, `retry.max_elapsed`
//!   spent, an item larger than the endpoint accepts); already logged and
//!   counted in `records_dropped_total`.
//! - `Err(ExportError::Shutdown)`: shutdown fired before the endpoint took
//!   the data; the record must stay in the queue for the next start.
//!
//! # Retry policy
//! Failures are classified exactly per the OTLP spec (see the `status` module).
//! Retryable ones are retried with exponential backoff and jitter
//! ([`argus_common::backoff`]), never sooner than a server's `RetryInfo`
//! asks; by default **forever**, because the durable queue behind us is the
//! buffer for an outage and giving up early would turn an outage into loss.
//! Retrying one record blocks nothing else: requests are retried in place
//! while other `export` calls proceed, up to `concurrency` on the wire.
//!
//! # Requests
//! A queue record is sent as the bytes it holds (the `request` module: no
//! decode, no clone per attempt, no re-encode; a pass-through gRPC codec).
//! A payload larger than `max_request_bytes` is split along resource, scope
//! and item boundaries (the `split` module) and its parts are delivered concurrently;
//! the call returns when every part is settled. If an endpoint still refuses
//! a part as too large (its limit is lower than ours), that part is halved
//! and resent rather than retried verbatim or dropped. A shutdown while some
//! parts were already accepted returns `Shutdown`: the record is redelivered
//! whole after restart, so those parts arrive twice — at-least-once, never
//! at-most-once.
//!
//! # Connection
//! One lazily connected tonic [`Channel`](tonic::transport::Channel) (HTTP/2, one TCP connection,
//! requests multiplexed) that reconnects by itself, re-resolving DNS, with
//! HTTP/2 keep-alive pings so a dead connection is noticed within ~40 s
//! instead of hanging until the request deadline.
//!
//! # Compression
//! gRPC message compression, `zstd` by default: on OTLP logs it compresses
//! better than gzip at about a quarter of the CPU (gzip at tonic's fixed
//! level 6 was the largest single cost per log line). The Collector's and
//! Argus's receivers take zstd; an endpoint that cannot decompress what we
//! send (UNIMPLEMENTED naming the encoding, or a `grpc-accept-encoding`
//! without it) makes the exporter step down — zstd → gzip → none — by
//! itself, once, logged, and resend at once, rather than losing data to a
//! config mismatch. Credentials are resolved once at build and files re-read when
//! they change (the `credentials` module).
//!
//! # Shutdown
//! Shutdown interrupts waiting (for a retry delay, for a free slot) at once.
//! An attempt already on the wire is allowed to finish, bounded by `timeout`:
//! cutting it would likely make the endpoint's work a duplicate. No new
//! attempt starts after shutdown fired.

mod codec;
pub mod config;
mod credentials;
pub mod request;
pub(crate) mod split;
pub(crate) mod status;
mod telemetry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::pipeline::DroppedRecords;
use argus_common::error::chain;
use argus_common::otlp::{Payload, Signal};
use argus_common::shutdown::Shutdown;

use codec::{PassThrough, Precompressed, Wire};
use config::Scheme;
pub use config::{
    Compression, DEFAULT_MAX_REQUEST_BYTES, ExporterConfig, FromEnv, FromFile, HeaderValueSource,
    RetryConfig, TlsConfig,
};
use credentials::Credentials;
pub use request::{EncodedRequest, Packing, RecordCompression, RecordEncoder};
use status::Verdict;
use telemetry::{DropReason, Telemetry};

/// What the endpoint did with a payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Items (log records, spans, metric data points) the endpoint accepted.
    pub items: u64,
    /// Items not accepted: rejected by the endpoint in a partial success, or
    /// in a part of a split payload that failed permanently. Already counted
    /// in `records_dropped_total`.
    pub rejected: u64,
    /// The endpoint's explanation (partial success `error_message`, or the
    /// failed part's error), when there is one.
    pub message: Option<String>,
}

/// Why a payload was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Shutdown fired before the endpoint accepted the data. Do not ack:
    /// the record must be delivered after restart.
    #[error("shutdown before the {signal} export was delivered; keep the record queued")]
    Shutdown { signal: &'static str },
    /// The endpoint refused the data with a non-retryable status.
    #[error("{endpoint} permanently refused {items} {signal} items: {reason}")]
    Rejected {
        endpoint: String,
        signal: &'static str,
        items: u64,
        code: tonic::Code,
        reason: String,
    },
    /// A request that had to be split (larger than `max_request_bytes`, or
    /// refused as too large) does not decode: a damaged or incompatible
    /// queue record.
    #[error("{items} {signal} items were dropped: the queued request does not decode: {reason}")]
    Undecodable {
        signal: &'static str,
        items: u64,
        reason: String,
    },
    /// `retry.max_elapsed` ran out while the failures stayed retryable.
    #[error(
        "gave up on {items} {signal} items after {attempts} attempts over {elapsed:?} (retry.max_elapsed); last error: {last}"
    )]
    RetriesExhausted {
        signal: &'static str,
        items: u64,
        attempts: u32,
        elapsed: Duration,
        last: String,
    },
    /// A single item is larger than the endpoint accepts; nothing smaller
    /// can be sent.
    #[error("{endpoint} refuses a single {signal} item of {bytes} bytes as too large: {reason}")]
    TooLarge {
        endpoint: String,
        signal: &'static str,
        items: u64,
        bytes: usize,
        reason: String,
    },
}

impl ExportError {
    /// True when the data was *not* given up on and the caller must keep
    /// the record to deliver it later (only [`ExportError::Shutdown`]).
    /// False: the exporter dropped the data for good, logged it and counted
    /// it; acknowledge the record so the queue moves on.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ExportError::Shutdown { .. })
    }

    pub fn is_shutdown(&self) -> bool {
        matches!(self, ExportError::Shutdown { .. })
    }

    /// Items given up on (0 for `Shutdown`: nothing was given up).
    pub fn dropped_items(&self) -> u64 {
        match self {
            ExportError::Shutdown { .. } => 0,
            ExportError::Rejected { items, .. }
            | ExportError::Undecodable { items, .. }
            | ExportError::RetriesExhausted { items, .. }
            | ExportError::TooLarge { items, .. } => *items,
        }
    }
}

/// An invalid configuration: every problem, each naming its field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid exporter configuration:\n  {}", .problems.join("\n  "))]
pub struct BuildError {
    pub problems: Vec<String>,
}

/// The OTLP/gRPC exporter. Cheap to clone; clones share the connection, the
/// concurrency limit and the metrics.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Wire,
    /// Stepped down for good (zstd → gzip → none) when the endpoint
    /// turns out not to decompress what we send.
    compression: CompressionState,
    credentials: Credentials,
    timeout: Duration,
    retry: RetryConfig,
    slots: Semaphore,
    max_request_bytes: usize,
    telemetry: Telemetry,
}

/// The compression in use, shared by concurrent requests.
struct CompressionState(AtomicU8);

impl CompressionState {
    const LADDER: [Compression; 3] = [Compression::Zstd, Compression::Gzip, Compression::None];

    fn new(c: Compression) -> Self {
        CompressionState(AtomicU8::new(Self::index(c)))
    }

    fn index(c: Compression) -> u8 {
        Self::LADDER
            .iter()
            .position(|l| *l == c)
            .expect("on the ladder") as u8
    }

    fn current(&self) -> Compression {
        Self::LADDER[self.0.load(Ordering::Relaxed) as usize]
    }

    /// After `refused` was refused: the next one down, if this call is the
    /// one that moved it (concurrent refusals log once).
    fn step_down(&self, refused: Compression) -> Option<Compression> {
        let from = Self::index(refused);
        let next = *Self::LADDER.get(from as usize + 1)?;
        self.0
            .compare_exchange(from, from + 1, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| next)
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("endpoint", &self.inner.telemetry.endpoint())
            .finish_non_exhaustive()
    }
}

/// The field path under which `build` reports problems.
const PATH: &str = "exporter";

impl ExporterConfig {
    /// Validates the configuration, reads certificates and credentials, and
    /// registers the exporter's metrics. Problems are reported under
    /// `exporter.`. Must run inside a tokio runtime (the channel's worker is
    /// spawned here); connects lazily, so an endpoint that is down at start
    /// is not an error.
    ///
    /// Registers its own `records_dropped_total`; an agent whose other
    /// stages drop too uses [`build_with`](Self::build_with) to share one.
    pub fn build(&self, registry: &mut Registry) -> Result<Exporter, BuildError> {
        let dropped = DroppedRecords::register(registry);
        self.build_with(registry, dropped)
    }

    /// [`build`](Self::build), counting drops in `dropped` (already
    /// registered by the caller).
    pub fn build_with(
        &self,
        registry: &mut Registry,
        dropped: DroppedRecords,
    ) -> Result<Exporter, BuildError> {
        let problems = self.problems(PATH);
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let uri: http::Uri = self.endpoint.parse().map_err(|e| BuildError {
            problems: vec![format!("{PATH}.endpoint: not a valid URI: {e}")],
        })?;
        let scheme = Scheme::of(&self.endpoint);
        let endpoint_label = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );

        let mut problems = Vec::new();
        let credentials = Credentials::resolve(self, PATH)
            .map_err(|p| problems.extend(p))
            .ok();
        let tls = if scheme == Some(Scheme::Https) {
            client_tls(&self.tls, self.timeout)
                .map_err(|p| problems.extend(p))
                .ok()
        } else {
            None
        };
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let one = |p: String| BuildError { problems: vec![p] };

        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| one(format!("{PATH}.endpoint: {}", chain(&e))))?
            .user_agent(format!("argus-agent/{}", env!("CARGO_PKG_VERSION")))
            .map_err(|e| one(format!("{PATH}.endpoint: {}", chain(&e))))?
            .connect_timeout(self.timeout)
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).map_err(|e| {
                let hint = if self.tls.ca_file.is_none() {
                    " (no tls.ca_file: the node's CA store was used)"
                } else {
                    ""
                };
                one(format!("{PATH}.tls: {}{hint}", chain(&e)))
            })?;
        }
        let channel = endpoint.connect_lazy();

        if scheme == Some(Scheme::Http)
            && (self.bearer_token_file.is_some() || self.bearer_token_env.is_some())
            && !config::is_loopback(&self.endpoint)
        {
            tracing::warn!(endpoint = %endpoint_label, "the bearer token is sent over plaintext http://; use https:// unless a service mesh encrypts this hop");
        }

        let telemetry = Telemetry::register(registry, endpoint_label, dropped);
        Ok(Exporter {
            inner: Arc::new(Inner {
                channel: Wire(channel),
                compression: CompressionState::new(self.compression),
                credentials: credentials.expect("resolved above"),
                timeout: self.timeout,
                retry: self.retry.clone(),
                slots: Semaphore::new(self.concurrency),
                max_request_bytes: self.max_request_bytes,
                telemetry,
            }),
        })
    }
}

/// TLS client settings from files, checked field by field so a wrong file
/// is named (tonic itself would only say "invalid certificate").
fn client_tls(cfg: &TlsConfig, timeout: Duration) -> Result<ClientTlsConfig, Vec<String>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut problems = Vec::new();
    let mut tls = ClientTlsConfig::new().timeout(timeout);
    let read = |field: &str, path: &std::path::Path, problems: &mut Vec<String>| {
        std::fs::read(path)
            .map_err(|e| {
                problems.push(format!(
                    "{PATH}.tls.{field}: cannot read {}: {e}",
                    path.display()
                ))
            })
            .ok()
    };
    let certs = |field: &str, path: &std::path::Path, pem: &[u8], problems: &mut Vec<String>| {
        let n = CertificateDer::pem_slice_iter(pem)
            .filter(|c| c.is_ok())
            .count();
        if n == 0 {
            problems.push(format!(
                "{PATH}.tls.{field}: no PEM certificate in {}",
                path.display()
            ));
        }
    };

    match &cfg.ca_file {
        Some(path) => {
            if let Some(pem) = read("ca_file", path, &mut problems) {
                certs("ca_file", path, &pem, &mut problems);
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
        }
        None => tls = tls.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
        let cert_pem = read("cert_file", cert, &mut problems);
        if let Some(pem) = &cert_pem {
            certs("cert_file", cert, pem, &mut problems);
        }
        let key_pem = read("key_file", key, &mut problems);
        if let Some(pem) = &key_pem
            && PrivateKeyDer::from_pem_slice(pem).is_err()
        {
            problems.push(format!(
                "{PATH}.tls.key_file: no PEM private key in {}",
                key.display()
            ));
        }
        if let (Some(c), Some(k)) = (cert_pem, key_pem) {
            tls = tls.identity(Identity::from_pem(c, k));
        }
    }
    if let Some(name) = &cfg.server_name {
        tls = tls.domain_name(name.clone());
    }
    if problems.is_empty() {
        Ok(tls)
    } else {
        Err(problems)
    }
}

/// What the endpoint said to a successful request.
struct Accepted {
    rejected: i64,
    message: String,
}

impl Exporter {
    /// Delivers `request` (a queue record's bytes, or a [`Payload`]),
    /// retrying per policy; see the module docs for what each result means
    /// to the caller.
    pub async fn export(
        &self,
        request: impl Into<EncodedRequest>,
        shutdown: &Shutdown,
    ) -> Result<Delivered, ExportError> {
        let request = request.into();
        let signal = request.signal();
        if shutdown.is_triggered() {
            return Err(ExportError::Shutdown {
                signal: signal.as_str(),
            });
        }
        if request.is_empty() {
            return Ok(Delivered::default());
        }
        let max = self.inner.max_request_bytes;
        if request.len() <= max {
            return self.deliver(request, shutdown).await;
        }
        let parts = self.split(&request, max)?;
        for p in &parts {
            if p.len() > max {
                self.inner.telemetry.oversized_item(signal, p.len(), max);
            }
        }
        let results = join_all(parts.into_iter().map(|p| self.deliver(p, shutdown))).await;
        combine(results)
    }

    /// The rare path that looks inside a request: split into parts of at
    /// most `max` bytes (one oversized item stays whole).
    fn split(
        &self,
        request: &EncodedRequest,
        max: usize,
    ) -> Result<Vec<EncodedRequest>, ExportError> {
        let signal = request.signal();
        match request.decode() {
            Ok(payload) => Ok(split::split(payload, max)
                .iter()
                .map(EncodedRequest::from_payload)
                .collect()),
            Err(e) => {
                let reason = e.to_string();
                let items = request.items() as u64;
                self.inner
                    .telemetry
                    .dropped(signal, DropReason::Undecodable, items, &reason);
                Err(ExportError::Undecodable {
                    signal: signal.as_str(),
                    items,
                    reason,
                })
            }
        }
    }

    /// One request's life: attempts and retries until settled.
    fn deliver<'a>(
        &'a self,
        part: EncodedRequest,
        shutdown: &'a Shutdown,
    ) -> BoxFuture<'a, Result<Delivered, ExportError>> {
        Box::pin(async move {
            let inner = &*self.inner;
            let t = &inner.telemetry;
            let signal = part.signal();
            let items = part.items() as u64;
            let bytes = part.len();
            let shut = || ExportError::Shutdown {
                signal: signal.as_str(),
            };
            let mut backoff = inner.retry.backoff().build();
            let started = Instant::now();
            let mut attempts = 0u32;
            loop {
                if shutdown.is_triggered() {
                    return Err(shut());
                }
                let permit = tokio::select! {
                    biased;
                    _ = shutdown.wait() => return Err(shut()),
                    p = inner.slots.acquire() => p.expect("the semaphore is never closed"),
                };
                attempts += 1;
                let compression = inner.compression.current();
                let began = Instant::now();
                let result = {
                    let _on_wire = t.in_flight();
                    self.attempt(&part, compression).await
                };
                let elapsed = began.elapsed();
                drop(permit);

                let status = match result {
                    Ok(acc) => {
                        let rejected = (acc.rejected.max(0) as u64).min(items);
                        let message = (!acc.message.is_empty()).then_some(acc.message);
                        t.accepted(signal, elapsed, items, bytes, rejected, message.as_deref());
                        return Ok(Delivered {
                            items: items - rejected,
                            rejected,
                            message,
                        });
                    }
                    Err(status) => status,
                };
                let verdict = status::classify(&status, compression.encoding_name());
                let detail = status::describe(&status);
                t.failed(signal, verdict.outcome(), elapsed);
                let hint = match verdict {
                    Verdict::Retryable { hint, .. } => hint,
                    Verdict::CompressionRefused => {
                        if let Some(next) = inner.compression.step_down(compression) {
                            t.compression_refused(compression, next, &detail);
                        }
                        // Not a failure of the data: resend at once.
                        continue;
                    }
                    Verdict::TooLarge => {
                        let parts = match self.split(&part, bytes / 2) {
                            Ok(parts) => parts,
                            Err(e) => return Err(e),
                        };
                        if parts.len() > 1 {
                            t.resplitting(signal, bytes, parts.len(), &detail);
                            let results =
                                join_all(parts.into_iter().map(|p| self.deliver(p, shutdown)))
                                    .await;
                            return combine(results);
                        }
                        t.dropped(signal, DropReason::TooLarge, items, &detail);
                        return Err(ExportError::TooLarge {
                            endpoint: t.endpoint().to_owned(),
                            signal: signal.as_str(),
                            items,
                            bytes,
                            reason: detail,
                        });
                    }
                    Verdict::Permanent => {
                        t.dropped(signal, DropReason::PermanentError, items, &detail);
                        return Err(ExportError::Rejected {
                            endpoint: t.endpoint().to_owned(),
                            signal: signal.as_str(),
                            items,
                            code: status.code(),
                            reason: detail,
                        });
                    }
                };
                if shutdown.is_triggered() {
                    return Err(shut());
                }
                let delay = backoff.next_with_hint(hint);
                if let Some(max) = inner.retry.max_elapsed
                    && started.elapsed() + delay > max
                {
                    t.dropped(signal, DropReason::RetriesExhausted, items, &detail);
                    return Err(ExportError::RetriesExhausted {
                        signal: signal.as_str(),
                        items,
                        attempts,
                        elapsed: started.elapsed(),
                        last: detail,
                    });
                }
                t.retrying(signal, items, attempts, delay, &detail);
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return Err(shut()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        })
    }

    /// One request on the wire, bounded by `timeout`.
    async fn attempt(
        &self,
        part: &EncodedRequest,
        compression: Compression,
    ) -> Result<Accepted, Status> {
        let inner = &*self.inner;
        let mut grpc = tonic::client::Grpc::new(inner.channel.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        // A zstd record goes out as it is when zstd is what we send;
        // otherwise its protobuf is compressed the way the endpoint takes.
        let precompressed =
            matches!(part.packing(), Packing::Zstd { .. }) && compression == Compression::Zstd;
        let message = if precompressed {
            part.body().clone()
        } else {
            if let Some(encoding) = compression.encoding() {
                grpc = grpc.send_compressed(encoding);
            }
            part.plain_body()
                .map_err(|e| Status::internal(format!("the queued record cannot be opened: {e}")))?
        };
        let (service, path) = match part.signal() {
            Signal::Logs => (
                "opentelemetry.proto.collector.logs.v1.LogsService",
                LOGS_PATH,
            ),
            Signal::Traces => (
                "opentelemetry.proto.collector.trace.v1.TraceService",
                TRACES_PATH,
            ),
            Signal::Metrics => (
                "opentelemetry.proto.collector.metrics.v1.MetricsService",
                METRICS_PATH,
            ),
        };
        let mut request = Request::new(message);
        if precompressed {
            request.extensions_mut().insert(Precompressed("zstd"));
        }
        request.set_timeout(inner.timeout);
        inner.credentials.apply(request.metadata_mut());
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new(service, "Export"));
        let path = http::uri::PathAndQuery::from_static(path);
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| Status::unknown(format!("service was not ready: {e}")))?;
            match part.signal() {
                Signal::Logs => unary::<ExportLogsServiceResponse>(&mut grpc, request, path).await,
                Signal::Traces => {
                    unary::<ExportTraceServiceResponse>(&mut grpc, request, path).await
                }
                Signal::Metrics => {
                    unary::<ExportMetricsServiceResponse>(&mut grpc, request, path).await
                }
            }
        };
        match tokio::time::timeout(inner.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {:?}",
                inner.timeout
            ))),
        }
    }
}

/// One Export call with the pass-through codec, answered by `R`.
async fn unary<R: ExportResponse>(
    grpc: &mut tonic::client::Grpc<Wire>,
    request: Request<bytes::Bytes>,
    path: http::uri::PathAndQuery,
) -> Result<Accepted, Status> {
    let response = grpc
        .unary(request, path, PassThrough::<R>::default())
        .await?;
    Ok(response.into_inner().accepted())
}

/// The three Export responses' `partial_success`, read alike.
trait ExportResponse: prost::Message + Default + Send + Sync + 'static {
    fn accepted(self) -> Accepted;
}

impl ExportResponse for ExportLogsServiceResponse {
    fn accepted(self) -> Accepted {
        let p = self.partial_success.unwrap_or_default();
        Accepted {
            rejected: p.rejected_log_records,
            message: p.error_message,
        }
    }
}

impl ExportResponse for ExportTraceServiceResponse {
    fn accepted(self) -> Accepted {
        let p = self.partial_success.unwrap_or_default();
        Accepted {
            rejected: p.rejected_spans,
            message: p.error_message,
        }
    }
}

impl ExportResponse for ExportMetricsServiceResponse {
    fn accepted(self) -> Accepted {
        let p = self.partial_success.unwrap_or_default();
        Accepted {
            rejected: p.rejected_data_points,
            message: p.error_message,
        }
    }
}

const LOGS_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const TRACES_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Settles a split payload from its parts' results: shutdown wins (the
/// record must stay queued); otherwise any accepted part makes it a
/// (partial) delivery, with the failed parts' items counted as rejected.
fn combine(results: Vec<Result<Delivered, ExportError>>) -> Result<Delivered, ExportError> {
    if let Some(pos) = results
        .iter()
        .position(|r| matches!(r, Err(e) if e.is_shutdown()))
    {
        return results.into_iter().nth(pos).expect("found above");
    }
    let mut total = Delivered::default();
    let mut any_ok = false;
    let mut first_err = None;
    for r in results {
        match r {
            Ok(d) => {
                any_ok = true;
                total.items += d.items;
                total.rejected += d.rejected;
                if total.message.is_none() {
                    total.message = d.message;
                }
            }
            Err(e) => {
                total.rejected += e.dropped_items();
                if total.message.is_none() {
                    total.message = Some(e.to_string());
                }
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) if !any_ok => Err(e),
        _ => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shutdown_keeps_the_record() {
        let shut = ExportError::Shutdown { signal: "logs" };
        assert!(shut.is_retryable() && shut.dropped_items() == 0);
        let rejected = ExportError::Rejected {
            endpoint: "http://d:4317".into(),
            signal: "logs",
            items: 3,
            code: tonic::Code::InvalidArgument,
            reason: "bad".into(),
        };
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.dropped_items(), 3);
    }

    #[test]
    fn combine_prefers_shutdown_then_partial_delivery() {
        let ok = |items| {
            Ok(Delivered {
                items,
                rejected: 0,
                message: None,
            })
        };
        let bad = || {
            Err(ExportError::Rejected {
                endpoint: "e".into(),
                signal: "logs",
                items: 2,
                code: tonic::Code::InvalidArgument,
                reason: "r".into(),
            })
        };
        let d = combine(vec![ok(5), bad()]).unwrap();
        assert_eq!((d.items, d.rejected), (5, 2));
        assert!(d.message.unwrap().contains("permanently refused"));
        assert!(combine(vec![bad(), bad()]).is_err());
        assert!(
            combine(vec![ok(1), Err(ExportError::Shutdown { signal: "logs" })])
                .unwrap_err()
                .is_shutdown()
        );
    }

    #[tokio::test]
    async fn build_names_unreadable_files() {
        let mut cfg = ExporterConfig::new("https://detector:4317");
        cfg.tls.ca_file = Some("/nonexistent/ca.pem".into());
        cfg.tls.cert_file = Some("/nonexistent/c.pem".into());
        cfg.tls.key_file = Some("/nonexistent/k.pem".into());
        cfg.bearer_token_env = Some("ARGUS_TEST_SURELY_UNSET_TOKEN".into());
        let err = cfg.build(&mut Registry::default()).unwrap_err();
        for field in [
            "exporter.bearer_token_env: variable",
            "exporter.tls.ca_file: cannot read",
            "exporter.tls.cert_file: cannot read",
            "exporter.tls.key_file: cannot read",
        ] {
            assert!(
                err.problems.iter().any(|p| p.starts_with(field)),
                "missing {field} in {:#?}",
                err.problems
            );
        }
    }

    #[tokio::test]
    async fn build_refuses_files_that_are_not_pem() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let mut cfg = ExporterConfig::new("https://detector:4317");
        cfg.tls.ca_file = Some(junk.clone());
        cfg.tls.cert_file = Some(junk.clone());
        cfg.tls.key_file = Some(junk);
        let err = cfg.build(&mut Registry::default()).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with("exporter.tls.ca_file: no PEM certificate"))
        );
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with("exporter.tls.cert_file: no PEM certificate"))
        );
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with("exporter.tls.key_file: no PEM private key"))
        );
    }
}
