//! The assembled agent in-process (`argus_agent::agent::start`), against
//! OTLP endpoints run by the test: readiness over the agent's life, what the
//! drain does with each export outcome, and that a clean stop keeps what
//! was not delivered for the next start.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use argus_agent::agent::{self, RunningAgent};
use argus_agent::config::AgentConfig;
use argus_agent::queue::DiskQueueConfig;
use argus_common::otlp::{
    Accepted, ConsumeError, OtlpConsumer, OtlpReceiverConfig, Payload, RequestContext, Signal,
};
use argus_common::shutdown::Shutdown;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prometheus_client::registry::Registry;
use prost::Message;

fn logs(bodies: &[&str]) -> Payload {
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(b.to_string())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// An endpoint whose every answer comes from `answer` (after it counts the
/// log records it was offered).
struct Endpoint<F> {
    offered: Arc<AtomicU64>,
    answer: F,
}

impl<F, Fut> OtlpConsumer for Endpoint<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Accepted, ConsumeError>> + Send,
{
    async fn consume(&self, p: Payload, _: RequestContext) -> Result<Accepted, ConsumeError> {
        self.offered
            .fetch_add(p.item_count() as u64, Ordering::SeqCst);
        (self.answer)().await
    }
}

async fn endpoint<F, Fut>(answer: F) -> (SocketAddr, Arc<AtomicU64>, Shutdown)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Accepted, ConsumeError>> + Send,
{
    let offered = Arc::new(AtomicU64::new(0));
    let mut cfg = OtlpReceiverConfig::default();
    cfg.grpc.as_mut().unwrap().endpoint = "127.0.0.1:0".into();
    cfg.http = None;
    cfg.shutdown_grace = Duration::from_millis(200);
    let bound = cfg
        .build(
            Endpoint {
                offered: offered.clone(),
                answer,
            },
            &mut Registry::default(),
        )
        .unwrap()
        .bind()
        .await
        .unwrap();
    let addr = bound.grpc_addr().unwrap();
    let stop = Shutdown::new();
    tokio::spawn(bound.serve(stop.clone()));
    (addr, offered, stop)
}

fn config(dir: &Path, endpoint: SocketAddr) -> AgentConfig {
    let mut cfg = AgentConfig::default();
    let r = cfg.receiver.as_mut().unwrap();
    r.grpc.as_mut().unwrap().endpoint = "127.0.0.1:0".into();
    r.http.as_mut().unwrap().endpoint = "127.0.0.1:0".into();
    cfg.file = None;
    cfg.host = None;
    cfg.batch.timeout = Duration::from_millis(20);
    cfg.queue.dir = dir.join("queue");
    cfg.exporter.endpoint = format!("http://{endpoint}");
    cfg.exporter.timeout = Duration::from_secs(1);
    cfg.exporter.retry.initial_interval = Duration::from_millis(50);
    cfg.exporter.retry.max_interval = Duration::from_millis(200);
    cfg.ops.listen = "127.0.0.1:0".into();
    cfg.shutdown_grace = Duration::from_secs(10);
    cfg
}

/// POSTs a logs payload over OTLP/HTTP protobuf; the status.
async fn post(agent: &RunningAgent, p: &Payload) -> u16 {
    let Payload::Logs(r) = p else { unreachable!() };
    reqwest::Client::new()
        .post(format!("http://{}/v1/logs", agent.http_addr.unwrap()))
        .header("content-type", "application/x-protobuf")
        .body(r.encode_to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn queued(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix("argus_agent_queue_records "))
        .map(|v| v.trim().parse().unwrap())
        .expect("queue_records exposed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_started_not_ready_from_the_moment_shutdown_begins() {
    let (addr, offered, _stop) = endpoint(|| async { Ok(Accepted::all()) }).await;
    let dir = tempfile::tempdir().unwrap();
    let running = agent::start(&config(dir.path(), addr), Shutdown::new())
        .await
        .unwrap();
    let ops = running.ops_addr;
    assert_eq!(get(ops, "/readyz").await, (200, "ready\n".into()));
    assert_eq!(post(&running, &logs(&["a", "b"])).await, 200);
    eventually("delivery", || offered.load(Ordering::SeqCst) == 2).await;
    eventually("the sent counter", || {
        running.telemetry.sent_count(Signal::Logs) == 2
    })
    .await;
    let (_, metrics) = get(ops, "/metrics").await;
    for series in [
        "argus_agent_records_received_total{source=\"otlp\",signal=\"logs\"} 2",
        "argus_agent_records_sent_total{signal=\"logs\"} 2",
        "argus_agent_memory_limit_bytes 134217728",
        "argus_agent_build_info{version=",
        "argus_agent_export_requests_total{signal=\"logs\",outcome=\"success\"}",
        "argus_agent_otlp_receiver_requests_total",
        "argus_agent_queue_acked_records_total",
        "argus_agent_masked_values_total",
        "argus_agent_pipeline_envelopes{source=\"otlp\",signal=\"logs\"} 0",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from /metrics:\n{metrics}"
        );
    }
    assert_eq!(
        metrics
            .matches("# TYPE argus_agent_records_dropped_total counter")
            .count(),
        1,
        "one records_dropped family, shared by every stage"
    );

    let readiness = running.readiness.clone();
    running.stop();
    let stopped = tokio::spawn(running.wait());
    eventually("not ready", || !readiness.is_ready()).await;
    assert!(readiness.check().unwrap_err().contains("shutting down"));
    stopped.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_counted_as_dropped_and_leaves_the_queue() {
    let (addr, offered, _stop) =
        endpoint(|| async { Err(ConsumeError::Invalid("schema says no".into())) }).await;
    let dir = tempfile::tempdir().unwrap();
    let running = agent::start(&config(dir.path(), addr), Shutdown::new())
        .await
        .unwrap();
    assert_eq!(post(&running, &logs(&["a", "b", "c"])).await, 200);
    eventually("the refusal", || offered.load(Ordering::SeqCst) == 3).await;
    eventually("the drop count", || {
        running.telemetry.dropped.get("permanent_error") == 3
    })
    .await;
    let ops = running.ops_addr;
    for _ in 0..100 {
        if queued(&get(ops, "/metrics").await.1) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        queued(&get(ops, "/metrics").await.1),
        0.0,
        "the record was acked"
    );
    assert_eq!(offered.load(Ordering::SeqCst), 3, "never retried");
    assert_eq!(running.telemetry.sent_count(Signal::Logs), 0);
    running.stop();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_queue_record_is_dropped_and_the_rest_delivered() {
    let (addr, offered, _stop) = endpoint(|| async { Ok(Accepted::all()) }).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), addr);
    {
        // What an incompatible version might have left: an unknown signal
        // tag, then a good record.
        let q = DiskQueueConfig {
            dir: cfg.queue.dir.clone(),
            ..Default::default()
        };
        let (w, _r) = q.build(&mut Registry::default()).unwrap();
        w.append(&[9, 1, 2, 3]).await.unwrap();
        w.append(&logs(&["kept"]).encode()).await.unwrap();
    }
    let running = agent::start(&cfg, Shutdown::new()).await.unwrap();
    eventually("the good record", || offered.load(Ordering::SeqCst) == 1).await;
    eventually("the drop count", || {
        running.telemetry.dropped.get("undecodable") == 1
    })
    .await;
    running.stop();
    running.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_endpoint_never_answered_stays_queued_across_a_clean_stop() {
    // An endpoint that takes requests and never answers.
    let (addr, offered, stop) = endpoint(std::future::pending).await;
    let dir = tempfile::tempdir().unwrap();
    let running = agent::start(&config(dir.path(), addr), Shutdown::new())
        .await
        .unwrap();
    assert_eq!(
        post(&running, &logs(&["stays"])).await,
        200,
        "durable, so OK"
    );
    eventually("the hanging export", || offered.load(Ordering::SeqCst) >= 1).await;
    running.stop();
    tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("stops within the grace")
        .unwrap();
    stop.trigger();

    // Next start, a working endpoint: the record is delivered then.
    let (addr, offered, _stop) = endpoint(|| async { Ok(Accepted::all()) }).await;
    let running = agent::start(&config(dir.path(), addr), Shutdown::new())
        .await
        .unwrap();
    eventually("redelivery after restart", || {
        offered.load(Ordering::SeqCst) == 1
    })
    .await;
    running.stop();
    running.wait().await.unwrap();
}
