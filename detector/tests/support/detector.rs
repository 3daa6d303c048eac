//! Detector service test kit: realistic OTLP traffic with real timestamps,
//! an OTLP/gRPC client, the HTTP API, and the real `argus-detector` binary
//! as a child process.
//!
//! Include with `#[path = "support/detector.rs"] mod kit;`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use serde_json::Value as Json;

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn resource(service: &str, namespace: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", service),
            kv("k8s.namespace.name", namespace),
            kv("k8s.pod.name", &format!("{service}-7d9f8-abcde")),
            kv("k8s.node.name", "node-a"),
        ],
        ..Default::default()
    }
}

/// Deterministic noise in [0, 1).
pub fn noise(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A trace id that encodes (step, index, tag): tests can recognise the
/// slow spans' ids in alerts.
pub fn trace_id(step: i64, i: usize, tag: u8) -> [u8; 16] {
    let mut t = [0u8; 16];
    t[0] = tag;
    t[1..9].copy_from_slice(&(step as u64).to_be_bytes());
    t[9..13].copy_from_slice(&(i as u32).to_be_bytes());
    t[15] = 1;
    t
}

/// Trace ids of the `k` slowest of the `n` spans [`spans`] makes at `t`.
pub fn slowest(t: i64, n: usize, k: usize, tag: u8) -> Vec<[u8; 16]> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| noise(t as u64, b as u64).total_cmp(&noise(t as u64, a as u64)));
    idx.into_iter()
        .take(k)
        .map(|i| trace_id(t, i, tag))
        .collect()
}

/// `n` SERVER spans of `service`/`op` ending within the second starting at
/// `t`, latencies `base_ms` × (1 ± 10 %); trace ids tagged `tag`.
pub fn spans(
    service: &str,
    namespace: &str,
    op: &str,
    t: i64,
    n: usize,
    base_ms: f64,
    tag: u8,
) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| {
            let end = t as u64 * 1_000_000_000 + (i as u64 * 1_000_000_000 / n as u64);
            let ms = base_ms * (0.9 + 0.2 * noise(t as u64, i as u64));
            let dur = (ms * 1e6) as u64;
            Span {
                trace_id: trace_id(t, i, tag).to_vec(),
                span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                parent_span_id: vec![9; 8],
                name: op.into(),
                kind: 2,
                start_time_unix_nano: end - dur,
                end_time_unix_nano: end,
                status: Some(Status {
                    code: status::StatusCode::Ok as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service, namespace)),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One gauge point per service: `name` = `value(service index)` at `t`.
pub fn gauges(
    services: &[String],
    name: &str,
    t: i64,
    value: impl Fn(usize) -> f64,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: services
            .iter()
            .enumerate()
            .map(|(i, s)| ResourceMetrics {
                resource: Some(resource(s, "prod")),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: name.into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: t as u64 * 1_000_000_000 + 500_000_000,
                                value: Some(number_data_point::Value::AsDouble(value(i))),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Error log records carrying the given trace ids.
pub fn error_logs(
    service: &str,
    namespace: &str,
    t: i64,
    body: &str,
    traces: &[[u8; 16]],
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(service, namespace)),
            scope_logs: vec![ScopeLogs {
                log_records: traces
                    .iter()
                    .enumerate()
                    .map(|(i, tr)| LogRecord {
                        time_unix_nano: t as u64 * 1_000_000_000 + i as u64 * 1000,
                        severity_number: 17,
                        severity_text: "ERROR".into(),
                        body: Some(AnyValue {
                            value: Some(Value::StringValue(body.into())),
                        }),
                        trace_id: tr.to_vec(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// OTLP/gRPC clients to one endpoint, with an optional bearer token.
pub struct Otlp {
    pub endpoint: String,
    token: Option<String>,
}

impl Otlp {
    pub fn new(endpoint: String, token: Option<&str>) -> Self {
        Otlp {
            endpoint,
            token: token.map(Into::into),
        }
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    pub async fn traces(&self, msg: ExportTraceServiceRequest) -> Result<(), tonic::Status> {
        let mut c = TraceServiceClient::connect(self.endpoint.clone())
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let resp = c.export(self.req(msg)).await?.into_inner();
        if let Some(p) = resp.partial_success
            && p.rejected_spans > 0
        {
            panic!("spans rejected: {p:?}");
        }
        Ok(())
    }

    pub async fn metrics(&self, msg: ExportMetricsServiceRequest) -> Result<(), tonic::Status> {
        let mut c = MetricsServiceClient::connect(self.endpoint.clone())
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let resp = c.export(self.req(msg)).await?.into_inner();
        if let Some(p) = resp.partial_success
            && p.rejected_data_points > 0
        {
            panic!("points rejected: {p:?}");
        }
        Ok(())
    }

    pub async fn logs(&self, msg: ExportLogsServiceRequest) -> Result<(), tonic::Status> {
        let mut c = LogsServiceClient::connect(self.endpoint.clone())
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        c.export(self.req(msg)).await?;
        Ok(())
    }
}

pub async fn get_json(url: &str) -> Json {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Polls `f` every 100 ms until it returns Some, failing after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!("timed out after {secs} s waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A sample of the Prometheus text at `url` (`name{a="b",…}` exactly as
/// given, labels in exposition order), None when absent.
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// The real `argus-detector` binary, running.
pub struct Process {
    child: Option<Child>,
    pub config: PathBuf,
    pub log: PathBuf,
    pub ops: String,
    pub grpc: String,
    pub http: String,
}

impl Process {
    /// Starts the binary with `config` (written to `dir/detector.yaml`) and
    /// waits for `/readyz`.
    pub async fn start(
        dir: &Path,
        config: &str,
        ops_port: u16,
        grpc_port: u16,
        http_port: u16,
    ) -> Process {
        let path = dir.join("detector.yaml");
        std::fs::write(&path, config).unwrap();
        let mut p = Process {
            child: None,
            config: path,
            log: dir.join("detector.log"),
            ops: format!("http://127.0.0.1:{ops_port}"),
            grpc: format!("http://127.0.0.1:{grpc_port}"),
            http: format!("http://127.0.0.1:{http_port}"),
        };
        p.spawn().await;
        p
    }

    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_argus-detector"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,argus_detector=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("{}/readyz", self.ops);
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("argus-detector exited with {st}:\n{}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "not ready in 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit (graceful shutdown).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe {
            libc_kill(c.id() as i32, 15);
        }
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = c.kill();
                panic!("no exit 60 s after SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
