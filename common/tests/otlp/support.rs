//! A receiver on ephemeral ports with a scriptable, recording consumer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argus_common::otlp::{
    Accepted, ConsumeError, OtlpConsumer, OtlpReceiverConfig, Payload, ReceiverError,
    RequestContext,
};
use argus_common::shutdown::Shutdown;
use bytes::{Buf, BufMut};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Records every call; answers from `script` (then `Ok(all)`); optionally
/// blocks each call until a permit is added to `gate`.
#[derive(Default)]
pub struct Recorder {
    pub received: Mutex<Vec<(Payload, RequestContext)>>,
    pub script: Mutex<VecDeque<Result<Accepted, ConsumeError>>>,
    pub gate: Option<Semaphore>,
    pub arrived: Notify,
}

impl Recorder {
    pub fn gated() -> Self {
        Self {
            gate: Some(Semaphore::new(0)),
            ..Default::default()
        }
    }

    pub fn answer(&self, r: Result<Accepted, ConsumeError>) {
        self.script.lock().unwrap().push_back(r);
    }

    pub fn payloads(&self) -> Vec<Payload> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub fn last(&self) -> (Payload, RequestContext) {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("consumer saw a request")
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl OtlpConsumer for Recorder {
    async fn consume(
        &self,
        payload: Payload,
        ctx: RequestContext,
    ) -> Result<Accepted, ConsumeError> {
        self.received.lock().unwrap().push((payload, ctx));
        self.arrived.notify_waiters();
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        let next = self.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| Ok(Accepted::all()))
    }
}

/// Both servers on 127.0.0.1, ephemeral ports.
pub fn local_config() -> OtlpReceiverConfig {
    let mut cfg = OtlpReceiverConfig::default();
    cfg.grpc.as_mut().unwrap().endpoint = "127.0.0.1:0".into();
    cfg.http.as_mut().unwrap().endpoint = "127.0.0.1:0".into();
    cfg.shutdown_grace = Duration::from_secs(5);
    cfg
}

pub struct Server {
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub consumer: Arc<Recorder>,
    pub registry: Registry,
    pub shutdown: Shutdown,
    pub task: JoinHandle<Result<(), ReceiverError>>,
}

impl Server {
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.expect("grpc enabled"))
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http.expect("http enabled"))
    }

    /// The registry in OpenMetrics text.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).unwrap();
        out
    }

    /// The value of one sample line (`name{labels}`), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.split(' ').next().unwrap().parse().unwrap())
            .unwrap_or(0.0)
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("receiver stops within its grace period")
            .unwrap()
            .unwrap();
    }
}

pub async fn start(cfg: OtlpReceiverConfig) -> Server {
    start_with(cfg, Recorder::default()).await
}

pub async fn start_with(cfg: OtlpReceiverConfig, consumer: Recorder) -> Server {
    let consumer = Arc::new(consumer);
    let mut registry = Registry::with_prefix("argus_agent");
    let receiver = cfg
        .build(consumer.clone(), &mut registry)
        .expect("valid config");
    let bound = receiver.bind().await.expect("bind");
    let shutdown = Shutdown::new();
    let (grpc, http) = (bound.grpc_addr(), bound.http_addr());
    let task = tokio::spawn(bound.serve(shutdown.clone()));
    Server {
        grpc,
        http,
        consumer,
        registry,
        shutdown,
        task,
    }
}

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![attr("service.name", "checkout")],
        ..Default::default()
    })
}

pub const TRACE_ID: [u8; 16] = [
    0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c,
];
pub const SPAN_ID: [u8; 8] = [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74];

pub fn logs(n: usize) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!(
                                "payment {i} declined"
                            ))),
                        }),
                        trace_id: TRACE_ID.to_vec(),
                        span_id: SPAN_ID.to_vec(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn traces(n: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: TRACE_ID.to_vec(),
                        span_id: [i as u8; 8].to_vec(),
                        name: format!("POST /pay/{i}"),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_250_000_000,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn metrics(n: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..n)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000,
                                value: Some(number_data_point::Value::AsInt(i as i64)),
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
    }
}

/// Sends pre-encoded bytes as the request message: how a test gets
/// malformed protobuf past a typed client.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;
pub struct RawEncoder;
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// Peak resident memory of this process (Linux), in bytes.
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap())
        .unwrap();
    kb * 1024
}
