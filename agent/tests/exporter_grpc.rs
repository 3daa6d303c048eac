//! The exporter against a real in-process OTLP/gRPC server (tonic, the
//! opentelemetry-proto generated service traits) whose answers each test
//! scripts. Time-dependent tests run on tokio's paused clock: the server
//! lives on the same runtime, so virtual time only advances when both sides
//! are idle, and the server stamps each request with that clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use argus_agent::exporter::{
    Compression, EncodedRequest, ExportError, Exporter, ExporterConfig, FromEnv, HeaderValueSource,
    RecordCompression, RecordEncoder,
};
use argus_common::otlp::Payload;
use argus_common::shutdown::Shutdown;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

// ---------------------------------------------------------------- server --

/// One scripted answer.
#[derive(Clone)]
enum Reply {
    Accept,
    Partial {
        rejected: i64,
        message: &'static str,
    },
    Fail(Arc<dyn Fn() -> Status + Send + Sync>),
    /// Answer `Accept` only after this long (a slow or hung endpoint).
    Stall(Duration),
}

fn fail(code: Code) -> Reply {
    Reply::Fail(Arc::new(move || Status::new(code, "scripted failure")))
}

fn throttle(delay: Duration) -> Reply {
    Reply::Fail(Arc::new(move || {
        Status::with_error_details(
            Code::ResourceExhausted,
            "over quota",
            ErrorDetails::with_retry_info(Some(delay)),
        )
    }))
}

/// What the server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    payload: Payload,
    encoding: Option<String>,
    authorization: Option<String>,
    tenant: Option<String>,
    api_key: Option<String>,
    client_certs: usize,
}

struct State {
    script: VecDeque<Reply>,
    /// Answer once the script ran out.
    then: Reply,
    seen: Vec<Seen>,
    active: usize,
    max_active: usize,
}

#[derive(Clone)]
struct Scripted(Arc<Mutex<State>>);

impl Scripted {
    fn new(script: impl IntoIterator<Item = Reply>, then: Reply) -> Self {
        Scripted(Arc::new(Mutex::new(State {
            script: script.into_iter().collect(),
            then,
            seen: Vec::new(),
            active: 0,
            max_active: 0,
        })))
    }

    fn accepting() -> Self {
        Self::new([], Reply::Accept)
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.lock().seen.clone()
    }

    fn max_active(&self) -> usize {
        self.0.lock().max_active
    }

    /// Records the request and answers per script: `Ok(rejected, message)`.
    async fn handle<T>(
        &self,
        req: &Request<T>,
        payload: Payload,
    ) -> Result<Option<(i64, String)>, Status> {
        let md = req.metadata();
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let reply = {
            let mut st = self.0.lock();
            st.seen.push(Seen {
                at: Instant::now(),
                payload,
                encoding: get("grpc-encoding"),
                authorization: get("authorization"),
                tenant: get("x-tenant"),
                api_key: get("x-api-key"),
                client_certs: req.peer_certs().map_or(0, |c| c.len()),
            });
            st.active += 1;
            st.max_active = st.max_active.max(st.active);
            let then = st.then.clone();
            st.script.pop_front().unwrap_or(then)
        };
        let result = match reply {
            Reply::Accept => Ok(None),
            Reply::Partial { rejected, message } => Ok(Some((rejected, message.to_owned()))),
            Reply::Fail(f) => Err(f()),
            Reply::Stall(d) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
        };
        self.0.lock().active -= 1;
        result
    }
}

#[tonic::async_trait]
impl LogsService for Scripted {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let p = Payload::Logs(req.get_ref().clone());
        let partial = self.handle(&req, p).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: partial.map(|(rejected_log_records, error_message)| {
                ExportLogsPartialSuccess {
                    rejected_log_records,
                    error_message,
                }
            }),
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Scripted {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let p = Payload::Traces(req.get_ref().clone());
        self.handle(&req, p).await?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Scripted {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let p = Payload::Metrics(req.get_ref().clone());
        self.handle(&req, p).await?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[derive(Clone, Default)]
struct ServerOpts {
    tls: Option<ServerTlsConfig>,
    /// What the server can decompress: `None` is both gzip and zstd (as
    /// the Collector); `Some(&[])` none at all.
    accepts: Option<&'static [CompressionEncoding]>,
    max_message_bytes: Option<usize>,
}

/// Serves until `stop` fires (then closes its connections with GOAWAY).
fn spawn_server(
    listener: TcpListener,
    script: Scripted,
    opts: ServerOpts,
    stop: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let mut logs = LogsServiceServer::new(script.clone());
    let mut traces = TraceServiceServer::new(script.clone());
    let mut metrics = MetricsServiceServer::new(script);
    for &encoding in opts
        .accepts
        .unwrap_or(&[CompressionEncoding::Gzip, CompressionEncoding::Zstd])
    {
        logs = logs.accept_compressed(encoding);
        traces = traces.accept_compressed(encoding);
        metrics = metrics.accept_compressed(encoding);
    }
    if let Some(max) = opts.max_message_bytes {
        logs = logs.max_decoding_message_size(max);
    }
    let mut builder = Server::builder();
    if let Some(tls) = opts.tls {
        builder = builder.tls_config(tls).unwrap();
    }
    let router = builder
        .add_service(logs)
        .add_service(traces)
        .add_service(metrics);
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop.wait())
            .await
            .unwrap();
    })
}

async fn start(script: Scripted, opts: ServerOpts) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    spawn_server(listener, script, opts, Shutdown::new());
    addr
}

// -------------------------------------------------------------- payloads --

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// `resources` × `per_resource` log records with `body` bytes each; record
/// `time_unix_nano` numbers the records 0.. so parts can be matched up.
fn logs(resources: usize, per_resource: usize, body: usize) -> Payload {
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: (0..resources)
            .map(|r| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("payments-{r}"))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "argus.file".into(),
                        ..Default::default()
                    }),
                    log_records: (0..per_resource)
                        .map(|i| LogRecord {
                            time_unix_nano: (r * per_resource + i) as u64,
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("x".repeat(body))),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    })
}

fn spans(n: usize) -> Payload {
    Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        name: format!("GET /pay/{i}"),
                        trace_id: vec![1; 16],
                        span_id: vec![i as u8 + 1; 8],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn gauge(points: usize) -> Payload {
    Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "node.cpu.utilization".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..points)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: i as u64,
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// Every log record with its resource and scope.
fn records(p: &Payload) -> Vec<(Option<Resource>, Option<InstrumentationScope>, LogRecord)> {
    let Payload::Logs(r) = p else {
        panic!("expected logs")
    };
    r.resource_logs
        .iter()
        .flat_map(|rl| {
            rl.scope_logs.iter().flat_map(move |sl| {
                sl.log_records
                    .iter()
                    .map(move |lr| (rl.resource.clone(), sl.scope.clone(), lr.clone()))
            })
        })
        .collect()
}

// --------------------------------------------------------------- helpers --

fn config(addr: SocketAddr) -> ExporterConfig {
    let mut c = ExporterConfig::new(format!("http://{addr}"));
    c.retry.initial_interval = Duration::from_secs(1);
    c.retry.max_interval = Duration::from_secs(8);
    c
}

fn build(cfg: &ExporterConfig) -> (Exporter, Registry) {
    let mut registry = Registry::with_prefix("argus_agent");
    let exporter = cfg.build(&mut registry).expect("valid config");
    (exporter, registry)
}

/// The value of one sample in the registry's text exposition, 0 if absent.
fn sample(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (n, l) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let mut got: Vec<(String, String)> = l
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        if got == want {
            return value.parse().unwrap();
        }
    }
    0.0
}

fn requests(registry: &Registry, outcome: &str) -> f64 {
    sample(
        registry,
        "argus_agent_export_requests_total",
        &[("signal", "logs"), ("outcome", outcome)],
    )
}

fn dropped(registry: &Registry, reason: &str) -> f64 {
    sample(
        registry,
        "argus_agent_records_dropped_total",
        &[("reason", reason)],
    )
}

// ----------------------------------------------------------------- tests --

#[tokio::test]
async fn delivers_all_three_signals_and_counts_items() {
    let server = Scripted::accepting();
    let addr = start(server.clone(), ServerOpts::default()).await;
    let (exporter, registry) = build(&config(addr));
    let shutdown = Shutdown::new();

    for (payload, signal, n) in [
        (logs(2, 5, 20), "logs", 10),
        (spans(7), "traces", 7),
        (gauge(4), "metrics", 4),
    ] {
        let d = exporter.export(payload.clone(), &shutdown).await.unwrap();
        assert_eq!((d.items, d.rejected, d.message), (n, 0, None));
        assert_eq!(server.seen().last().unwrap().payload, payload);
        assert_eq!(
            sample(
                &registry,
                "argus_agent_export_items_total",
                &[("signal", signal)]
            ),
            n as f64
        );
        assert_eq!(
            sample(
                &registry,
                "argus_agent_export_requests_total",
                &[("signal", signal), ("outcome", "success")]
            ),
            1.0
        );
        assert_eq!(
            sample(
                &registry,
                "argus_agent_export_duration_seconds_count",
                &[("signal", signal)]
            ),
            1.0
        );
    }
    assert_eq!(server.seen().len(), 3);
    assert_eq!(
        dropped(&registry, "permanent_error"),
        0.0,
        "series pre-created at 0"
    );
    assert!(
        sample(
            &registry,
            "argus_agent_export_sent_bytes_total",
            &[("signal", "logs")]
        ) >= logs(2, 5, 20).encoded_len() as f64
    );
    assert_eq!(
        sample(&registry, "argus_agent_export_in_flight_requests", &[]),
        0.0
    );
}

#[tokio::test(start_paused = true)]
async fn unavailable_is_retried_with_growing_backoff_until_accepted() {
    let server = Scripted::new(
        [
            fail(Code::Unavailable),
            fail(Code::Unavailable),
            fail(Code::Unavailable),
        ],
        Reply::Accept,
    );
    let addr = start(server.clone(), ServerOpts::default()).await;
    let (exporter, registry) = build(&config(addr));

    let d = exporter
        .export(logs(1, 3, 10), &Shutdown::new())
        .await
        .unwrap();
    assert_eq!(d.items, 3);

    let seen = server.seen();
    assert_eq!(seen.len(), 4, "three failures, then the accepted attempt");
    // Ceilings 1 s, 2 s, 4 s; each delay is jittered within [ceiling/2, ceiling].
    for (i, ceiling) in [1.0f64, 2.0, 4.0].into_iter().enumerate() {
        let gap = (seen[i + 1].at - seen[i].at).as_secs_f64();
        assert!(
            gap >= ceiling / 2.0 && gap <= ceiling + 0.05,
            "retry {i}: waited {gap:.3}s, ceiling {ceiling}s"
        );
    }
    assert_eq!(requests(&registry, "retryable_error"), 3.0);
    assert_eq!(requests(&registry, "success"), 1.0);
    assert_eq!(
        sample(
            &registry,
            "argus_agent_export_retries_total",
            &[("signal", "logs")]
        ),
        3.0
    );
}

#[tokio::test(start_paused = true)]
async fn resource_exhausted_with_retry_info_waits_at_least_the_hint() {
    let server = Scripted::new([throttle(Duration::from_secs(2))], Reply::Accept);
    let addr = start(server.clone(), ServerOpts::default()).await;
    let mut cfg = config(addr);
    cfg.retry.initial_interval = Duration::from_millis(100); // own backoff far below the hint
    let (exporter, registry) = build(&cfg);

    let d = exporter
        .export(logs(1, 2, 10), &Shutdown::new())
        .await
        .unwrap();
    assert_eq!(d.items, 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, before RetryInfo's 2 s"
    );
    assert!(gap < Duration::from_millis(2100), "{gap:?}");
    assert_eq!(requests(&registry, "throttled"), 1.0);
}

#[tokio::test(start_paused = true)]
async fn permanent_codes_are_not_retried_and_are_counted_as_dropped() {
    for (code, label) in [
        (
            Code::ResourceExhausted,
            "resource exhausted without RetryInfo",
        ),
        (Code::InvalidArgument, "invalid argument"),
        (Code::Unauthenticated, "unauthenticated"),
    ] {
        let server = Scripted::new([fail(code)], Reply::Accept);
        let addr = start(server.clone(), ServerOpts::default()).await;
        let (exporter, registry) = build(&config(addr));

        let err = exporter
            .export(logs(1, 4, 10), &Shutdown::new())
            .await
            .unwrap_err();
        match &err {
            ExportError::Rejected { code: c, items, .. } => {
                assert_eq!((*c, *items), (code, 4), "{label}")
            }
            other => panic!("{label}: expected Rejected, got {other:?}"),
        }
        assert!(
            !err.is_retryable(),
            "{label}: the caller must ack and move on"
        );
        assert_eq!(server.seen().len(), 1, "{label}: sent once, never retried");
        assert_eq!(dropped(&registry, "permanent_error"), 4.0, "{label}");
        assert_eq!(requests(&registry, "permanent_error"), 1.0, "{label}");
    }
}

#[tokio::test]
async fn partial_success_counts_rejected_items_and_is_not_retried() {
    let server = Scripted::new(
        [Reply::Partial {
            rejected: 2,
            message: "2 records too old",
        }],
        Reply::Accept,
    );
    let addr = start(server.clone(), ServerOpts::default()).await;
    let (exporter, registry) = build(&config(addr));

    let d = exporter
        .export(logs(1, 5, 10), &Shutdown::new())
        .await
        .unwrap();
    assert_eq!(d.items, 3);
    assert_eq!(d.rejected, 2);
    assert_eq!(d.message.as_deref(), Some("2 records too old"));
    assert_eq!(server.seen().len(), 1);
    assert_eq!(dropped(&registry, "rejected_by_endpoint"), 2.0);
    assert_eq!(requests(&registry, "partial_success"), 1.0);
    assert_eq!(
        sample(
            &registry,
            "argus_agent_export_items_total",
            &[("signal", "logs")]
        ),
        3.0
    );
}

#[tokio::test(start_paused = true)]
async fn endpoint_down_at_start_is_reached_once_it_comes_up() {
    // Reserve a port, then leave it closed: connections are refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let (exporter, registry) = build(&config(addr)); // lazy: no error while down
    let shutdown = Shutdown::new();
    let task = {
        let exporter = exporter.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { exporter.export(logs(1, 3, 10), &shutdown).await })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !task.is_finished(),
        "still retrying while the endpoint is down"
    );
    assert!(requests(&registry, "unreachable") >= 2.0);

    let server = Scripted::accepting();
    spawn_server(
        TcpListener::bind(addr).await.unwrap(),
        server.clone(),
        ServerOpts::default(),
        Shutdown::new(),
    );
    let d = task.await.unwrap().unwrap();
    assert_eq!(d.items, 3);
    assert_eq!(server.seen().len(), 1);
    assert_eq!(dropped(&registry, "permanent_error"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_endpoint_is_reconnected_to() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = Scripted::accepting();
    let stop = Shutdown::new();
    let serving = spawn_server(listener, first.clone(), ServerOpts::default(), stop.clone());
    let (exporter, _registry) = build(&config(addr));
    exporter.export(spans(1), &Shutdown::new()).await.unwrap();

    // The detector rolls: the old process goes away, a new one binds the port.
    stop.trigger();
    serving.await.unwrap();
    let second = Scripted::accepting();
    spawn_server(
        TcpListener::bind(addr).await.unwrap(),
        second.clone(),
        ServerOpts::default(),
        Shutdown::new(),
    );
    let d = exporter.export(spans(2), &Shutdown::new()).await.unwrap();
    assert_eq!(d.items, 2);
    assert_eq!(first.seen().len(), 1);
    assert_eq!(second.seen().len(), 1, "delivered over a new connection");
}

#[tokio::test]
async fn bearer_token_and_headers_arrive_and_a_rotated_token_is_used() {
    let server = Scripted::accepting();
    let addr = start(server.clone(), ServerOpts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-1\n").unwrap();
    // SAFETY: set before any thread reads the environment in this test binary's
    // exporter builds; the variable name is unique to this test.
    unsafe { std::env::set_var("ARGUS_EXPORTER_TEST_API_KEY", "key-42") };

    let mut cfg = config(addr);
    cfg.bearer_token_file = Some(token.clone());
    cfg.headers.insert(
        "X-Tenant".into(),
        HeaderValueSource::Literal("payments".into()),
    );
    cfg.headers.insert(
        "x-api-key".into(),
        HeaderValueSource::Env(FromEnv {
            env: "ARGUS_EXPORTER_TEST_API_KEY".into(),
        }),
    );
    let (exporter, _registry) = build(&cfg);
    assert!(!format!("{exporter:?} {cfg:?}").contains("tok-1"));

    exporter.export(spans(1), &Shutdown::new()).await.unwrap();
    std::fs::write(&token, "tok-2-rotated\n").unwrap();
    exporter.export(spans(1), &Shutdown::new()).await.unwrap();

    let seen = server.seen();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok-1"));
    assert_eq!(seen[0].tenant.as_deref(), Some("payments"));
    assert_eq!(seen[0].api_key.as_deref(), Some("key-42"));
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some("Bearer tok-2-rotated")
    );
}

#[tokio::test]
async fn the_configured_compression_is_used_on_the_wire() {
    let server = Scripted::accepting();
    let addr = start(server.clone(), ServerOpts::default()).await;
    for compression in [Compression::Zstd, Compression::Gzip, Compression::None] {
        let mut cfg = config(addr);
        cfg.compression = compression;
        let (exporter, _r) = build(&cfg);
        exporter
            .export(logs(1, 50, 100), &Shutdown::new())
            .await
            .unwrap();
    }
    let seen = server.seen();
    let encodings: Vec<_> = seen.iter().map(|s| s.encoding.as_deref()).collect();
    assert_eq!(encodings, [Some("zstd"), Some("gzip"), None]);
    assert!(seen.iter().all(|s| s.payload == logs(1, 50, 100)));
}

/// What the batcher writes to the disk queue (zstd records), as the drain
/// hands it over.
fn queued(p: &Payload) -> EncodedRequest {
    let record = RecordEncoder::new(RecordCompression::Zstd).encode(p);
    EncodedRequest::from_record(bytes::Bytes::from(record)).unwrap()
}

#[tokio::test]
async fn a_zstd_queue_record_goes_out_as_it_is_or_as_the_endpoint_takes_it() {
    // A zstd endpoint gets the record's own frame (no second compression:
    // the wire carries exactly the queued bytes).
    let server = Scripted::accepting();
    let addr = start(server.clone(), ServerOpts::default()).await;
    let (exporter, registry) = build(&config(addr));
    let p = logs(2, 40, 100);
    let d = exporter.export(queued(&p), &Shutdown::new()).await.unwrap();
    assert_eq!(d.items, 80);
    let seen = server.seen();
    assert_eq!(seen[0].encoding.as_deref(), Some("zstd"));
    assert_eq!(seen[0].payload, p);
    assert_eq!(requests(&registry, "success"), 1.0);

    // An endpoint with gzip only (older receivers): one refusal of zstd,
    // then the record is opened and sent gzip, now and from then on.
    let server = Scripted::accepting();
    let opts = ServerOpts {
        accepts: Some(&[CompressionEncoding::Gzip]),
        ..Default::default()
    };
    let addr = start(server.clone(), opts).await;
    let (exporter, registry) = build(&config(addr));
    for _ in 0..2 {
        let d = exporter.export(queued(&p), &Shutdown::new()).await.unwrap();
        assert_eq!(d.items, 80);
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.encoding.as_deref() == Some("gzip")));
    assert!(seen.iter().all(|s| s.payload == p));
    assert_eq!(requests(&registry, "permanent_error"), 1.0);
    assert_eq!(requests(&registry, "success"), 2.0);
    assert_eq!(dropped(&registry, "permanent_error"), 0.0);
}

#[tokio::test]
async fn an_endpoint_without_compression_gets_uncompressed_requests_instead_of_losing_data() {
    let server = Scripted::accepting();
    let opts = ServerOpts {
        accepts: Some(&[]),
        ..Default::default()
    };
    let addr = start(server.clone(), opts).await;
    let (exporter, registry) = build(&config(addr));

    for _ in 0..2 {
        let d = exporter
            .export(logs(1, 3, 10), &Shutdown::new())
            .await
            .unwrap();
        assert_eq!(d.items, 3);
    }
    let seen = server.seen();
    // The zstd and then the gzip request are refused before the handler,
    // so the server records only uncompressed ones; two refusals in the
    // metrics (stepping down zstd → gzip → none), then none.
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.encoding.is_none()));
    assert_eq!(requests(&registry, "permanent_error"), 2.0);
    assert_eq!(requests(&registry, "success"), 2.0);
    assert_eq!(dropped(&registry, "permanent_error"), 0.0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_retries_returns_promptly_and_keeps_the_record() {
    let server = Scripted::new([], fail(Code::Unavailable));
    let addr = start(server.clone(), ServerOpts::default()).await;
    let (exporter, registry) = build(&config(addr));
    let shutdown = Shutdown::new();

    let task = {
        let exporter = exporter.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { exporter.export(logs(1, 3, 10), &shutdown).await })
    };
    tokio::time::sleep(Duration::from_secs(20)).await;
    let attempts = server.seen().len();
    assert!(attempts >= 3, "{attempts} attempts in 20 s");

    let fired = Instant::now();
    shutdown.trigger();
    let err = task.await.unwrap().unwrap_err();
    assert!(
        fired.elapsed() < Duration::from_millis(10),
        "took {:?}",
        fired.elapsed()
    );
    assert!(err.is_shutdown() && err.is_retryable(), "{err:?}");
    assert_eq!(server.seen().len(), attempts, "no attempt after shutdown");
    for reason in [
        "permanent_error",
        "retries_exhausted",
        "rejected_by_endpoint",
    ] {
        assert_eq!(dropped(&registry, reason), 0.0, "{reason}");
    }

    // Once shut down, nothing more is sent.
    let err = exporter.export(logs(1, 1, 1), &shutdown).await.unwrap_err();
    assert!(err.is_shutdown());
    assert_eq!(server.seen().len(), attempts);
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_bounds_retries_when_configured() {
    let server = Scripted::new([], fail(Code::Unavailable));
    let addr = start(server.clone(), ServerOpts::default()).await;
    let mut cfg = config(addr);
    cfg.retry.max_elapsed = Some(Duration::from_secs(10));
    let (exporter, registry) = build(&cfg);

    let began = Instant::now();
    let err = exporter
        .export(logs(1, 3, 10), &Shutdown::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExportError::RetriesExhausted { items: 3, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(began.elapsed() <= Duration::from_secs(10));
    assert_eq!(dropped(&registry, "retries_exhausted"), 3.0);
}

#[tokio::test(start_paused = true)]
async fn a_request_without_answer_times_out_and_is_retried() {
    let server = Scripted::new([Reply::Stall(Duration::from_secs(60))], Reply::Accept);
    let addr = start(server.clone(), ServerOpts::default()).await;
    let mut cfg = config(addr);
    cfg.timeout = Duration::from_secs(2);
    let (exporter, registry) = build(&cfg);

    let began = Instant::now();
    let d = exporter
        .export(logs(1, 3, 10), &Shutdown::new())
        .await
        .unwrap();
    assert_eq!(d.items, 3);
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(requests(&registry, "timeout"), 1.0);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrency_bounds_requests_in_flight() {
    let server = Scripted::new([], Reply::Stall(Duration::from_millis(500)));
    let addr = start(server.clone(), ServerOpts::default()).await;
    let mut cfg = config(addr);
    cfg.concurrency = 2;
    let (exporter, _registry) = build(&cfg);

    let shutdown = Shutdown::new();
    let all = futures::future::join_all((0..6).map(|_| exporter.export(spans(1), &shutdown))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(server.seen().len(), 6);
    assert_eq!(server.max_active(), 2);
}

#[tokio::test]
async fn a_large_payload_is_split_into_requests_whose_union_is_the_input() {
    let server = Scripted::accepting();
    let addr = start(server.clone(), ServerOpts::default()).await;
    let mut cfg = config(addr);
    cfg.max_request_bytes = 64 * 1024;
    let (exporter, registry) = build(&cfg);

    let payload = logs(3, 400, 1000); // ~1.2 MB
    let d = exporter
        .export(payload.clone(), &Shutdown::new())
        .await
        .unwrap();
    assert_eq!(d.items, 1200);

    let seen = server.seen();
    assert!(seen.len() >= 19, "{} requests", seen.len());
    for s in &seen {
        assert!(
            s.payload.encoded_len() <= 64 * 1024,
            "{}",
            s.payload.encoded_len()
        );
    }
    // Parts travel concurrently, so compare as sets keyed by record number.
    let mut got: Vec<_> = seen.iter().flat_map(|s| records(&s.payload)).collect();
    got.sort_by_key(|(_, _, r)| r.time_unix_nano);
    assert_eq!(got, records(&payload));
    assert_eq!(
        sample(
            &registry,
            "argus_agent_export_items_total",
            &[("signal", "logs")]
        ),
        1200.0
    );
}

#[tokio::test]
async fn an_endpoint_with_a_lower_size_limit_gets_smaller_requests_not_lost_data() {
    let server = Scripted::accepting();
    let opts = ServerOpts {
        max_message_bytes: Some(40 * 1024),
        ..Default::default()
    };
    let addr = start(server.clone(), opts).await;
    let (exporter, registry) = build(&config(addr)); // max_request_bytes: 4 MiB

    let payload = logs(2, 100, 1000); // ~200 KB
    let d = exporter
        .export(payload.clone(), &Shutdown::new())
        .await
        .unwrap();
    assert_eq!((d.items, d.rejected), (200, 0));

    let seen = server.seen();
    let mut got: Vec<_> = seen.iter().flat_map(|s| records(&s.payload)).collect();
    got.sort_by_key(|(_, _, r)| r.time_unix_nano);
    assert_eq!(got, records(&payload));
    assert!(requests(&registry, "too_large") >= 1.0);
    assert_eq!(dropped(&registry, "too_large"), 0.0);
}

// ------------------------------------------------------------------- TLS --

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for `localhost` and a client certificate,
    /// all signed by it; plus an unrelated CA.
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let ca = |name: &str| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, name);
            CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
        };
        let ca1 = ca("argus test CA");
        let other = ca("some other CA");
        write("ca.pem", ca1.pem());
        write("other-ca.pem", other.pem());
        for (name, san) in [("server", "localhost"), ("client", "argus-agent")] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![san.to_owned()])
                .unwrap()
                .signed_by(&key, &ca1)
                .unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    fn server_tls(&self, require_client_cert: bool) -> ServerTlsConfig {
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(
            self.read("server.pem"),
            self.read("server.key"),
        ));
        if require_client_cert {
            tls.client_ca_root(tonic::transport::Certificate::from_pem(self.read("ca.pem")))
        } else {
            tls
        }
    }

    /// An https config for `addr` trusting `ca`, fast retries, bounded.
    fn client(&self, addr: SocketAddr, ca: &str) -> ExporterConfig {
        let mut c = ExporterConfig::new(format!("https://{addr}"));
        c.tls.ca_file = Some(self.path(ca));
        c.tls.server_name = Some("localhost".into());
        c.retry.initial_interval = Duration::from_millis(50);
        c.retry.max_interval = Duration::from_millis(200);
        c.retry.max_elapsed = Some(Duration::from_secs(1));
        c
    }
}

#[tokio::test]
async fn tls_with_a_private_ca_delivers() {
    let pki = Pki::new();
    let server = Scripted::accepting();
    let opts = ServerOpts {
        tls: Some(pki.server_tls(false)),
        ..Default::default()
    };
    let addr = start(server.clone(), opts).await;
    let (exporter, _r) = build(&pki.client(addr, "ca.pem"));
    let d = exporter
        .export(logs(1, 3, 10), &Shutdown::new())
        .await
        .unwrap();
    assert_eq!(d.items, 3);
    assert_eq!(server.seen()[0].encoding.as_deref(), Some("zstd"));
}

#[tokio::test]
async fn tls_with_the_wrong_ca_never_delivers_and_says_why() {
    let pki = Pki::new();
    let server = Scripted::accepting();
    let opts = ServerOpts {
        tls: Some(pki.server_tls(false)),
        ..Default::default()
    };
    let addr = start(server.clone(), opts).await;
    let (exporter, registry) = build(&pki.client(addr, "other-ca.pem"));
    let err = exporter
        .export(logs(1, 3, 10), &Shutdown::new())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ExportError::RetriesExhausted { .. }),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase().contains("certificate"),
        "the error should name the certificate problem: {text}"
    );
    assert!(server.seen().is_empty());
    assert!(requests(&registry, "unreachable") >= 1.0);
}

#[tokio::test]
async fn mtls_presents_the_client_certificate_and_is_required() {
    let pki = Pki::new();
    let server = Scripted::accepting();
    let opts = ServerOpts {
        tls: Some(pki.server_tls(true)),
        ..Default::default()
    };
    let addr = start(server.clone(), opts).await;

    let mut with_cert = pki.client(addr, "ca.pem");
    with_cert.tls.cert_file = Some(pki.path("client.pem"));
    with_cert.tls.key_file = Some(pki.path("client.key"));
    let (exporter, _r) = build(&with_cert);
    let d = exporter
        .export(logs(1, 3, 10), &Shutdown::new())
        .await
        .unwrap();
    assert_eq!(d.items, 3);
    assert_eq!(server.seen()[0].client_certs, 1);

    let (no_cert, _r) = build(&pki.client(addr, "ca.pem"));
    let err = no_cert
        .export(logs(1, 3, 10), &Shutdown::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::RetriesExhausted { .. }), "{err}");
    assert_eq!(
        server.seen().len(),
        1,
        "the server never saw the unauthenticated request"
    );
}
