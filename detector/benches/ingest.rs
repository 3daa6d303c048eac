//! Ingest throughput and registry memory.
//!
//! ```text
//! cargo bench -p argus-detector --bench ingest                 # everything
//! cargo bench -p argus-detector --bench ingest -- spans        # decode vs decode + RED
//! cargo bench -p argus-detector --bench ingest -- drain        # Drain lines/s
//! cargo bench -p argus-detector --bench ingest -- registry     # bytes per series (printed)
//! ```
//!
//! `spans/decode` decodes the same protobuf payload the `spans/decode+red`
//! case decodes and aggregates, so the ratio of the two is the cost of
//! RED aggregation over the raw decode rate. Throughput is reported in
//! elements (spans, log lines) per second.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};

use argus_common::otlp::{Payload, Signal};
use argus_detector::ingest::{Ingest, IngestConfig};
use argus_detector::registry::{KeyRef, Limits, Registry};
use argus_detector::template::{TemplateConfig, TemplateMiner};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

/// Heap bytes currently allocated, for the memory measurement.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const T0: i64 = 1_700_000_000;

/// xorshift: deterministic payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource(svc: usize) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", &format!("service-{svc}")),
            kv("k8s.namespace.name", "prod"),
            kv("k8s.pod.name", &format!("service-{svc}-7f9c6d8b5-x2k4p")),
            kv("k8s.node.name", "ip-10-0-3-17.eu-west-1.compute.internal"),
            kv("service.version", "1.42.0"),
            kv("telemetry.sdk.language", "java"),
        ],
        ..Default::default()
    }
}

/// `n` spans from 20 services × 10 operations, SERVER kind, 2 % errors,
/// log-uniform latencies 1 ms – 2 s, the attributes real SDKs send.
fn span_payload(n: usize, rng: &mut Rng) -> ExportTraceServiceRequest {
    let per = n / 20;
    ExportTraceServiceRequest {
        resource_spans: (0..20)
            .map(|svc| ResourceSpans {
                resource: Some(resource(svc)),
                scope_spans: vec![ScopeSpans {
                    spans: (0..per)
                        .map(|i| {
                            let end = (T0 as u64 + 5) * 1_000_000_000 + rng.next() % 4_000_000_000;
                            let dur = (0.001f64.ln() + rng.unit() * (2000f64).ln()).exp();
                            let mut trace = [0u8; 16];
                            trace[..8].copy_from_slice(&rng.next().to_le_bytes());
                            trace[8..].copy_from_slice(&rng.next().to_le_bytes());
                            Span {
                                trace_id: trace.to_vec(),
                                span_id: rng.next().to_le_bytes().to_vec(),
                                parent_span_id: rng.next().to_le_bytes().to_vec(),
                                name: format!("GET /api/v1/resource{}", i % 10),
                                kind: 2,
                                start_time_unix_nano: end - (dur * 1e9) as u64,
                                end_time_unix_nano: end,
                                attributes: vec![
                                    kv("http.request.method", "GET"),
                                    kv("url.path", "/api/v1/resource"),
                                    kv("http.route", "/api/v1/resource/{id}"),
                                    kv("server.address", "checkout.prod.svc"),
                                ],
                                status: Some(Status {
                                    code: if rng.next().is_multiple_of(50) { 2 } else { 0 },
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Realistic log lines: HDFS- and Apache-like system lines and application
/// lines with ids, durations, IPs and key=value pairs.
fn log_lines(n: usize, rng: &mut Rng) -> Vec<String> {
    (0..n)
        .map(|i| {
            let a = rng.next();
            match i % 10 {
                0 => format!("Receiving block blk_{} src: /10.250.{}.{}:{} dest: /10.250.{}.{}:50010", a as i64, a % 255, (a >> 8) % 255, 40000 + a % 20000, (a >> 16) % 255, (a >> 24) % 255),
                1 => format!("PacketResponder {} for block blk_{} terminating", a % 3, a as i64),
                2 => format!("Received block blk_{} of size {} from /10.251.{}.{}", a as i64, a % 67108864, a % 255, (a >> 8) % 255),
                3 => format!("request completed method=GET path=/api/v1/orders/{} status={} duration={}ms trace_id={:032x}", a % 100000, [200, 200, 200, 404, 500][(a % 5) as usize], a % 900, a as u128 * 7919),
                4 => format!("user {} logged in from {}.{}.{}.{}", a % 5000, a % 255, (a >> 8) % 255, (a >> 16) % 255, (a >> 24) % 255),
                5 => format!("payment {} declined: insufficient funds (attempt {} of 3)", uuid_like(a), a % 3 + 1),
                6 => format!("jk2_init() Found child {} in scoreboard slot {}", a % 10000, a % 12),
                7 => format!("GC pause (G1 Evacuation Pause) {}.{}ms, heap {}M->{}M", a % 200, a % 1000, 1000 + a % 2000, 500 + a % 1000),
                8 => format!("connection to db-{}.prod.svc:5432 reset by peer after {}s, retrying in {}ms", a % 4, a % 60, 100 * (a % 10)),
                _ => format!("cache refresh for tenant {} took {:.3}s ({} entries)", a % 300, (a % 5000) as f64 / 1000.0, a % 100000),
            }
        })
        .collect()
}

/// Lines from 400 synthetic message shapes: a component, an action, an
/// object, a variable id and duration, and a shape-specific tail.
fn many_template_lines(n: usize, rng: &mut Rng) -> Vec<String> {
    const COMPONENTS: [&str; 20] = [
        "scheduler",
        "ledger",
        "gateway",
        "auth",
        "billing",
        "inventory",
        "search",
        "mailer",
        "exporter",
        "cache",
        "router",
        "fraud",
        "settlement",
        "payout",
        "kyc",
        "ratelimiter",
        "webhook",
        "reporting",
        "session",
        "catalog",
    ];
    const ACTIONS: [&str; 20] = [
        "started",
        "finished",
        "rejected",
        "retried",
        "queued",
        "dropped",
        "expired",
        "renewed",
        "validated",
        "persisted",
        "loaded",
        "evicted",
        "forwarded",
        "throttled",
        "paused",
        "resumed",
        "scheduled",
        "cancelled",
        "merged",
        "split",
    ];
    const TAILS: [&str; 7] = [
        "without errors",
        "because the upstream was unavailable",
        "after the lock was released",
        "on the primary replica",
        "with a stale snapshot",
        "before the deadline",
        "as requested by the operator",
    ];
    (0..n)
        .map(|_| {
            let a = rng.next();
            let shape = (a % 400) as usize;
            let (c, act) = (COMPONENTS[shape % 20], ACTIONS[shape / 20]);
            let tail = TAILS[shape % 7];
            format!(
                "{c}: job {} {act} in {}ms {tail}",
                a >> 40,
                (a >> 20) % 5000
            )
        })
        .collect()
}

fn uuid_like(a: u64) -> String {
    let x = a as u128 * 0x9e37_79b9_7f4a_7c15;
    let h = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn log_payload(lines: &[String], rng: &mut Rng) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: (0..10)
            .map(|svc| ResourceLogs {
                resource: Some(resource(svc)),
                scope_logs: vec![ScopeLogs {
                    log_records: lines
                        .iter()
                        .skip(svc)
                        .step_by(10)
                        .map(|l| LogRecord {
                            time_unix_nano: (T0 as u64 + 5) * 1_000_000_000
                                + rng.next() % 4_000_000_000,
                            severity_number: if rng.next().is_multiple_of(20) { 17 } else { 9 },
                            body: Some(AnyValue {
                                value: Some(Value::StringValue(l.clone())),
                            }),
                            trace_id: rng.next().to_le_bytes().repeat(2),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn spans(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let n = 2000;
    let bytes = span_payload(n, &mut rng).encode_to_vec();
    let mut g = c.benchmark_group("spans");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("decode", |b| {
        b.iter(|| black_box(ExportTraceServiceRequest::decode(black_box(&bytes[..])).unwrap()))
    });
    let mut ing: Ingest = Ingest::new(IngestConfig::default()).unwrap();
    g.bench_function("decode+red", |b| {
        b.iter(|| {
            let req = ExportTraceServiceRequest::decode(black_box(&bytes[..])).unwrap();
            let st = ing.ingest(&Payload::Traces(req), T0 + 6);
            assert_eq!(st.accepted, n as u64);
        })
    });
    g.finish();
}

fn logs(c: &mut Criterion) {
    let mut rng = Rng(42);
    let lines = log_lines(20_000, &mut rng);
    let mut g = c.benchmark_group("drain");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("lines", |b| {
        let mut m = TemplateMiner::new(TemplateConfig::default());
        b.iter(|| {
            for (i, l) in lines.iter().enumerate() {
                black_box(m.observe("svc", l, T0 + i as i64, None));
            }
        })
    });
    // Hundreds of distinct templates, as a fleet of services produces.
    let many = many_template_lines(20_000, &mut rng);
    g.throughput(Throughput::Elements(many.len() as u64));
    g.bench_function("lines_many_templates", |b| {
        let mut m = TemplateMiner::new(TemplateConfig::default());
        b.iter(|| {
            for (i, l) in many.iter().enumerate() {
                black_box(m.observe("svc", l, T0 + i as i64, None));
            }
        })
    });
    let mut m = TemplateMiner::new(TemplateConfig::default());
    for (i, l) in many.iter().enumerate() {
        m.observe("svc", l, T0 + i as i64, None);
    }
    println!(
        "drain: {} lines of 400 synthetic shapes -> {} templates, {} tree nodes",
        many.len(),
        m.len(),
        m.nodes()
    );

    let payload_lines = &lines[..2000];
    let bytes = log_payload(payload_lines, &mut rng).encode_to_vec();
    g.throughput(Throughput::Elements(payload_lines.len() as u64));
    let mut ing: Ingest = Ingest::new(IngestConfig::default()).unwrap();
    g.bench_function("decode+logs", |b| {
        b.iter(|| {
            let req = ExportLogsServiceRequest::decode(black_box(&bytes[..])).unwrap();
            let st = ing.ingest(&Payload::Logs(req), T0 + 6);
            assert_eq!(st.accepted, payload_lines.len() as u64);
        })
    });
    g.finish();
    let m = {
        let mut m = TemplateMiner::new(TemplateConfig::default());
        for (i, l) in lines.iter().enumerate() {
            m.observe("svc", l, T0 + i as i64, None);
        }
        m
    };
    println!(
        "drain: {} lines of 10 shapes -> {} templates, {} tree nodes",
        lines.len(),
        m.len(),
        m.nodes()
    );
}

/// Memory per registered series (key + index, no state), measured with the
/// counting allocator, and the cost of a lookup.
fn registry(c: &mut Criterion) {
    let n = 100_000usize;
    let labels: Vec<[String; 5]> = (0..n)
        .map(|i| {
            [
                format!("service-{}", i % 50),
                "prod".to_string(),
                format!("service-{}-7f9c6d8b5-{:05}", i % 50, i % 977),
                format!("ip-10-0-{}-{}.eu-west-1.compute.internal", i % 16, i % 200),
                format!("/api/v1/resource/{}", i / 50),
            ]
        })
        .collect();
    fn key(l: &[String; 5]) -> Vec<(&str, &str)> {
        vec![
            ("namespace", l[1].as_str()),
            ("node", l[3].as_str()),
            ("pod", l[2].as_str()),
            ("route", l[4].as_str()),
            ("service", l[0].as_str()),
        ]
    }
    let before = LIVE.load(Ordering::Relaxed);
    let mut r: Registry<()> = Registry::new(Limits {
        max_series: n,
        max_per_name: n,
        ..Limits::default()
    });
    for l in &labels {
        let kv = key(l);
        r.get_or_insert(
            &KeyRef::sorted(Signal::Metrics, "http.server.request.duration.p99", &kv),
            T0,
        )
        .unwrap();
    }
    let used = LIVE.load(Ordering::Relaxed) - before;
    let value_bytes: usize = labels
        .iter()
        .map(|l| l.iter().map(|s| s.len()).sum::<usize>())
        .sum();
    println!(
        "registry: {n} series with 5 labels ({} bytes of label values each on average): {} bytes/series measured, {} bytes/series estimated by key_bytes()",
        value_bytes / n,
        used as usize / n,
        r.key_bytes() / n
    );
    let mut g = c.benchmark_group("registry");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("find_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % n;
            let kv = key(&labels[i]);
            black_box(r.find(&KeyRef::sorted(
                Signal::Metrics,
                "http.server.request.duration.p99",
                &kv,
            )))
        })
    });
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("evict_idle_scan", |b| {
        b.iter(|| assert!(r.evict_idle(T0, i64::MAX).is_empty()))
    });
    g.finish();
}

criterion_group!(benches, spans, logs, registry);
criterion_main!(benches);
