//! The batcher against a real disk queue: when batches close, that acks
//! fire only once the batch is appended, that memory is released then, that
//! the transform runs before anything reaches the disk, that sources are
//! served in turn, and that oversized envelopes are split.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argus_agent::batch::{BatchConfig, Batcher, Inputs};
use argus_agent::exporter::{EncodedRequest, RecordCompression};
use argus_agent::pipeline::{
    Ack, DroppedRecords, Encoded, Envelope, MemoryLimiter, Parcel, Payload, PipelineTelemetry,
    Signal,
};
use argus_agent::queue::{DiskQueueConfig, QueueReader};
use argus_agent::transform::TransformConfig;
use argus_common::shutdown::Shutdown;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

/// A logs payload whose resource is named `origin`, with one record per body.
fn logs(origin: &str, bodies: &[String]) -> Payload {
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "origin".into(),
                    value: text(origin),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        body: text(b),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Origins and bodies of a queue record, in order.
fn contents(p: &Payload) -> Vec<(String, String)> {
    let Payload::Logs(r) = p else {
        panic!("logs expected")
    };
    let s = |v: &Option<AnyValue>| match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    };
    let mut out = Vec::new();
    for rl in &r.resource_logs {
        let origin = rl
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "origin"))
            .map(|a| s(&a.value))
            .unwrap_or_default();
        for sl in &rl.scope_logs {
            for lr in &sl.log_records {
                out.push((origin.clone(), s(&lr.body)));
            }
        }
    }
    out
}

struct Kit {
    _dir: tempfile::TempDir,
    file_tx: Option<mpsc::Sender<Envelope>>,
    otlp_tx: Option<mpsc::Sender<Envelope>>,
    reader: QueueReader,
    limiter: MemoryLimiter,
    telemetry: PipelineTelemetry,
    acked: Arc<AtomicUsize>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn kit(batch: BatchConfig, max_record_bytes: u64, channel: usize) -> Kit {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::default();
    let queue = DiskQueueConfig {
        dir: dir.path().join("queue"),
        max_record_bytes,
        ..Default::default()
    };
    let (writer, reader) = queue.build(&mut reg).unwrap();
    let limiter = MemoryLimiter::new(16 << 20);
    let dropped = DroppedRecords::register(&mut reg);
    let telemetry = PipelineTelemetry::register(&mut reg, &limiter, dropped);
    let transform = Arc::new(
        TransformConfig::default()
            .build("transform", &mut reg)
            .unwrap(),
    );
    let (file_tx, file_rx) = mpsc::channel(channel);
    let (otlp_tx, otlp_rx) = mpsc::channel(channel);
    let mut inputs = Inputs::new();
    inputs.add("file", file_rx);
    inputs.add("otlp", otlp_rx);
    let batcher = Batcher::new(
        Signal::Logs,
        batch,
        inputs,
        transform,
        writer,
        telemetry.clone(),
        max_record_bytes,
        RecordCompression::Zstd,
    );
    let task = tokio::spawn(batcher.run(Shutdown::new()));
    Kit {
        _dir: dir,
        file_tx: Some(file_tx),
        otlp_tx: Some(otlp_tx),
        reader,
        limiter,
        telemetry,
        acked: Arc::default(),
        task: Some(task),
    }
}

impl Kit {
    async fn envelope(&self, source: &'static str, payload: Payload) -> Envelope {
        let permit = self.limiter.acquire(payload.encoded_len()).await;
        let acked = self.acked.clone();
        Envelope {
            payload: payload.into(),
            source,
            acks: vec![Ack::new(move || {
                acked.fetch_add(1, Ordering::SeqCst);
            })],
            permit,
        }
    }

    async fn send(&self, source: &'static str, payload: Payload) {
        let env = self.envelope(source, payload).await;
        self.tx(source).send(env).await.unwrap();
    }

    async fn next_record(&mut self) -> Payload {
        let e = tokio::time::timeout(Duration::from_secs(30), self.reader.next())
            .await
            .expect("a record within 30 s")
            .expect("queue open");
        self.reader.ack(e.id);
        EncodedRequest::from_record(e.data)
            .unwrap()
            .decode()
            .unwrap()
    }

    fn tx(&self, source: &str) -> &mpsc::Sender<Envelope> {
        let tx = if source == "file" {
            &self.file_tx
        } else {
            &self.otlp_tx
        };
        tx.as_ref().expect("sources still open")
    }

    /// Closes both sources' channels (what shutdown does).
    fn close_sources(&mut self) {
        self.file_tx = None;
        self.otlp_tx = None;
    }

    /// Waits for the batcher to stop.
    async fn join(&mut self) {
        self.task.take().unwrap().await.unwrap();
    }

    /// Waits (a little) for the batcher to call the acks after its append
    /// returned: the reader may see the record first.
    async fn wait_acked(&self, n: usize) {
        for _ in 0..1000 {
            if self.acked() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(self.acked(), n);
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_waits_for_its_timeout_and_acks_fire_only_once_it_is_appended() {
    let mut k = kit(
        BatchConfig {
            max_bytes: 1 << 20,
            max_items: 1000,
            timeout: Duration::from_secs(1),
        },
        4 << 20,
        8,
    );
    k.send("file", logs("a", &bodies("x", 2))).await;
    k.send("otlp", logs("b", &bodies("y", 3))).await;
    settle().await;
    tokio::time::advance(Duration::from_millis(900)).await;
    settle().await;
    assert_eq!(
        k.reader.stats().records,
        0,
        "nothing appended before the timeout"
    );
    assert_eq!(k.acked(), 0, "no ack before the batch is durable");
    assert!(k.limiter.used_bytes() > 0, "the batch holds its memory");

    let record = k.next_record().await;
    assert_eq!(record.item_count(), 5, "both envelopes in one record");
    k.wait_acked(2).await;
    assert_eq!(k.limiter.used_bytes(), 0, "memory released with the append");
    assert_eq!(k.telemetry.received_count("file", Signal::Logs), 2);
    assert_eq!(k.telemetry.received_count("otlp", Signal::Logs), 3);
}

#[tokio::test(start_paused = true)]
async fn batches_close_at_max_items_and_max_bytes_without_waiting() {
    let mut k = kit(
        BatchConfig {
            max_bytes: 2000,
            max_items: 10,
            timeout: Duration::from_secs(3600),
        },
        4 << 20,
        8,
    );
    for i in 0..5 {
        k.send("file", logs("a", &bodies(&format!("i{i}"), 2)))
            .await;
    }
    let r = k.next_record().await;
    assert_eq!(r.item_count(), 10, "closed at max_items");
    k.wait_acked(5).await;

    // ~350 bytes per envelope once enriched: the envelope that would take
    // the batch past 2000 bytes closes it before joining it.
    let big = || vec!["z".repeat(290)];
    for _ in 0..7 {
        k.send("file", logs("a", &big())).await;
    }
    let r = k.next_record().await;
    let per_envelope = r.encoded_len() / r.item_count();
    assert!(r.encoded_len() <= 2000, "{}", r.encoded_len());
    assert!(
        r.encoded_len() + per_envelope > 2000,
        "closed with room for another ({} bytes, {per_envelope} each)",
        r.encoded_len()
    );
    let first = r.item_count();
    assert!(first < 7);
    // Sources closing flushes what is left.
    k.close_sources();
    let mut rest = 0;
    while first + rest < 7 {
        rest += k.next_record().await.item_count();
    }
    assert_eq!(first + rest, 7);
    k.join().await;
    assert_eq!(k.acked(), 5 + 7);
}

#[tokio::test(start_paused = true)]
async fn card_numbers_are_masked_before_the_disk_and_resources_enriched() {
    let mut k = kit(BatchConfig::default(), 4 << 20, 8);
    k.send(
        "file",
        logs(
            "a",
            &["paid with 4111 1111 1111 1111 and 5500-0000-0000-0004".to_string()],
        ),
    )
    .await;
    let r = k.next_record().await;
    let body = &contents(&r)[0].1;
    assert_eq!(
        body,
        "paid with 4111 11** **** 1111 and 5500-00**-****-0004"
    );
    let Payload::Logs(req) = &r else { panic!() };
    let attrs = &req.resource_logs[0].resource.as_ref().unwrap().attributes;
    assert!(
        attrs.iter().any(|a| a.key == "host.name"),
        "enriched: {attrs:?}"
    );
}

/// The file source hands over parcels it transformed and encoded itself;
/// they join a record with the batcher's own, in order, untouched.
#[tokio::test(start_paused = true)]
async fn encoded_parcels_join_the_record_as_they_are() {
    let mut k = kit(BatchConfig::default(), 4 << 20, 8);
    let transform = TransformConfig::default()
        .build("transform", &mut Registry::default())
        .unwrap();
    let prepared = Encoded::prepare(
        logs("a", &["card 4111 1111 1111 1111".to_string()]),
        &transform,
    );
    let mut env = k.envelope("file", logs("unused", &[])).await;
    env.payload = Parcel::Encoded(prepared);
    k.tx("file").send(env).await.unwrap();
    settle().await;
    k.send("otlp", logs("b", &["second".to_string()])).await;
    k.close_sources();
    let r = k.next_record().await;
    assert_eq!(
        contents(&r),
        [
            ("a".to_string(), "card 4111 11** **** 1111".to_string()),
            ("b".to_string(), "second".to_string())
        ]
    );
    k.join().await;
    assert_eq!(k.acked(), 2);
    assert_eq!(k.telemetry.received_count("file", Signal::Logs), 1);
}

#[tokio::test(start_paused = true)]
async fn a_source_with_a_backlog_does_not_push_another_to_the_back() {
    let mut k = kit(
        BatchConfig {
            max_bytes: 1 << 20,
            max_items: 1000,
            timeout: Duration::from_secs(1),
        },
        4 << 20,
        8,
    );
    // Both channels are filled before the batcher runs again.
    for i in 0..8 {
        let e = k.envelope("file", logs("file", &[format!("f{i}")])).await;
        k.tx("file").try_send(e).unwrap();
    }
    let e = k.envelope("otlp", logs("otlp", &["o0".into()])).await;
    k.tx("otlp").try_send(e).unwrap();
    let r = k.next_record().await;
    let order: Vec<String> = contents(&r).into_iter().map(|(_, b)| b).collect();
    let pos = order.iter().position(|b| b == "o0").unwrap();
    assert!(
        pos <= 1,
        "the OTLP envelope waited behind the backlog: {order:?}"
    );
    assert_eq!(order.len(), 9);
}

#[tokio::test(start_paused = true)]
async fn an_envelope_larger_than_a_record_is_split_and_acked_once_whole() {
    // Records hold at most 4 KiB: 20 records of ~500 bytes need 3+ records.
    let mut k = kit(
        BatchConfig {
            max_bytes: 4000,
            max_items: 1000,
            timeout: Duration::from_secs(1),
        },
        4096,
        8,
    );
    let big: Vec<String> = (0..20)
        .map(|i| format!("{i:03}{}", "b".repeat(500)))
        .collect();
    k.send("otlp", logs("o", &big)).await;
    let mut got = Vec::new();
    let mut records = 0;
    while got.len() < 20 {
        let r = k.next_record().await;
        assert!(r.encode().len() <= 4096);
        if got.len() + r.item_count() < 20 {
            assert_eq!(k.acked(), 0, "acked before every part was durable");
        }
        got.extend(contents(&r).into_iter().map(|(_, b)| b[..3].to_string()));
        records += 1;
    }
    assert!(records >= 3, "{records}");
    let want: Vec<String> = (0..20).map(|i| format!("{i:03}")).collect();
    assert_eq!(got, want, "in order, nothing lost");
    k.wait_acked(1).await;

    // One item that cannot fit any record: dropped, counted, acked (never
    // retried forever).
    k.send("otlp", logs("o", &["c".repeat(5000)])).await;
    k.close_sources();
    k.join().await;
    assert_eq!(k.telemetry.dropped.get("too_large"), 1);
    assert_eq!(k.acked(), 2);
}
