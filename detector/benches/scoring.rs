//! Points per second per core through the service's scoring path: from a
//! closed `StepPoint` to its verdict (detector claimed or created, engine
//! update, recent points, incident bookkeeping), plus the per-step
//! housekeeping (evictions, incident resolution) and the outputs table —
//! everything `score_pass` does under its lock, on one thread.
//!
//! ```text
//! cargo bench -p argus-detector --bench scoring
//! ARGUS_BENCH_SERIES=20000 ARGUS_BENCH_STEPS=400 cargo bench -p argus-detector --bench scoring
//! ```
//!
//! The data: `SERIES` gauge series (one per service, so every anomaly is
//! its own incident), `STEPS` steps of noisy values, 1 % of the series
//! spiking during the last 20 steps (incidents open and grow). Ingest is
//! timed separately (metrics decode-free path: payload structs → series).

use std::hint::black_box;
use std::time::Instant;

use argus_common::otlp::Payload;
use argus_detector::engine::EngineConfig;
use argus_detector::incident::alert::AlertingConfig;
use argus_detector::incident::{Incidents, IncidentsConfig};
use argus_detector::ingest::{Ingest, IngestConfig};
use argus_detector::maintenance::Maintenance;
use argus_detector::outputs::Links;
use argus_detector::service::{Core, Scored};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

const T0: i64 = 1_700_000_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

fn noise(a: u64, b: u64) -> f64 {
    let mut x = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// One step of gauges for series `range`.
pub fn payload(range: std::ops::Range<usize>, step: i64, spike_from: i64) -> Payload {
    Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: range
            .map(|i| {
                let t = T0 + step * 10;
                let mut v = 100.0 + 10.0 * noise(t as u64, i as u64);
                if step >= spike_from && i % 100 == 0 {
                    v *= 20.0;
                }
                ResourceMetrics {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", &format!("service-{i:06}")),
                            kv("k8s.namespace.name", "prod"),
                            kv("k8s.pod.name", &format!("service-{i:06}-7d9f8-abcde")),
                            kv("k8s.node.name", "ip-10-0-3-17.eu-west-1.compute.internal"),
                        ],
                        ..Default::default()
                    }),
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric {
                            name: "queue.depth".into(),
                            data: Some(Data::Gauge(Gauge {
                                data_points: vec![NumberDataPoint {
                                    time_unix_nano: (t as u64) * 1_000_000_000 + 1,
                                    value: Some(number_data_point::Value::AsDouble(v)),
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect(),
    })
}

pub fn core(max_series: usize) -> Core {
    let mut ic = IngestConfig::default();
    ic.series.max_series = max_series;
    let ingest: Ingest<_> = Ingest::new(ic).unwrap();
    Core::new(
        ingest,
        EngineConfig::default(),
        Incidents::new(IncidentsConfig::default(), 0.6),
        Maintenance::default(),
        30,
        AlertingConfig::default(),
        Links::default(),
    )
}

fn main() {
    let series = env("ARGUS_BENCH_SERIES", 10_000);
    let steps = env("ARGUS_BENCH_STEPS", 300) as i64;
    let spike_from = steps - 20;
    let mut c = core(series.max(1000));
    let mut ingest_secs = 0.0;
    let mut score_secs = 0.0;
    let mut points = 0u64;
    let mut scored = Scored::default();
    for k in 0..steps {
        let p = payload(0..series, k, spike_from);
        let now = T0 + k * 10 + 5;
        let t = Instant::now();
        let st = c.ingest(&p, now);
        ingest_secs += t.elapsed().as_secs_f64();
        assert_eq!(st.rejected(), 0, "{:?}", st.message());
        drop(p);
        let t = Instant::now();
        let pts = c.ingest.flush(now);
        for p in &pts {
            c.score(p, &mut scored);
        }
        c.housekeeping(now);
        let out = c.outbox();
        let rows = c.output_rows(1000);
        score_secs += t.elapsed().as_secs_f64();
        points += pts.len() as u64;
        black_box((out, rows));
    }
    assert_eq!(scored.points, points);
    let open = c.incidents.open_count();
    println!(
        "scoring: {series} series × {steps} steps = {points} points, {open} incidents open at the end"
    );
    println!(
        "  ingest (payload structs → step accumulators): {:>10.0} points/s",
        (series as f64 * steps as f64) / ingest_secs
    );
    println!(
        "  scoring (flush → verdict → incidents → outputs): {:>10.0} points/s per core ({:.2} µs/point)",
        points as f64 / score_secs,
        score_secs * 1e6 / points as f64
    );
}
