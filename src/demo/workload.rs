//! The demo's built-in workload: a small payments system as OTLP.
//!
//! ```text
//!  gateway  POST /v1/charges  (SERVER) ── publishes ──▶ charges topic (PRODUCER)
//!  payments process charge    (CONSUMER) ── calls ──▶ ledger POST /entries (CLIENT)
//!  ledger   POST /entries     (SERVER)
//! ```
//!
//! One trace per charge runs through all three services (parent/child span
//! ids, one trace id). The gateway answers `202 Accepted` once the charge is
//! published, so a slow `payments` does not slow the gateway: the incident
//! stays on one service, as it would in a queue-decoupled system.
//!
//! Per step (one second of data time) the workload emits, through the
//! agent like any instrumented application:
//! - spans for ~20 charges/s (a slow daily-ish wave plus noise);
//! - one INFO log per service per charge, inside its span (so it carries
//!   the trace and span ids). The payments log names the card number
//!   (`card 4111 1111 1111 1111`): the agent masks it before it leaves the
//!   node, and the template the detector learns shows the mask;
//! - cumulative counters `charges.processed` (per service) and a gauge
//!   `db.pool.in_use` (payments).
//!
//! [`Phase::Incident`] on `payments`: the fraud-check dependency degrades —
//! processing latency ×8, a quarter of charges fail (span status ERROR), and
//! each failure logs a line never seen before,
//! `fraud-check timeout after <N> ms (attempt <k>)`.
//!
//! Everything is drawn from a seeded RNG: two runs emit the same telemetry.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The services, in call order.
pub const SERVICES: [&str; 3] = ["gateway", "payments", "ledger"];
/// The service the incident hits.
pub const INCIDENT_SERVICE: &str = "payments";
const NAMESPACE: &str = "shop";
const NS: u64 = 1_000_000_000;

/// What the payments service is going through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Normal,
    Incident,
}

/// One step's telemetry, one request per signal.
#[derive(Default)]
pub struct Batch {
    pub traces: ExportTraceServiceRequest,
    pub logs: ExportLogsServiceRequest,
    pub metrics: ExportMetricsServiceRequest,
}

impl Batch {
    /// Appends `other` (a later step) to this batch.
    pub fn extend(&mut self, other: Batch) {
        self.traces
            .resource_spans
            .extend(other.traces.resource_spans);
        self.logs.resource_logs.extend(other.logs.resource_logs);
        self.metrics
            .resource_metrics
            .extend(other.metrics.resource_metrics);
    }
}

/// The payments system's state between steps.
pub struct Workload {
    rng: StdRng,
    /// Cumulative `charges.processed` per service, and when they started.
    processed: [u64; 3],
    start_ns: u64,
}

impl Workload {
    /// `start` (unix seconds) is when the counters started counting.
    pub fn new(seed: u64, start: i64) -> Self {
        Workload {
            rng: StdRng::seed_from_u64(seed),
            processed: [0; 3],
            start_ns: start as u64 * NS,
        }
    }

    /// The telemetry of the second starting at `t` (unix seconds).
    pub fn step(&mut self, t: i64, phase: Phase) -> Batch {
        // ~20 charges/s with a slow wave (period 10 min) and Poisson-ish noise.
        let wave = 1.0 + 0.15 * ((t as f64) * std::f64::consts::TAU / 600.0).sin();
        let n = (20.0 * wave + self.rng.random_range(-3.0..3.0))
            .round()
            .max(1.0) as usize;
        let mut spans: [Vec<Span>; 3] = Default::default();
        let mut logs: [Vec<LogRecord>; 3] = Default::default();
        for i in 0..n {
            let begin = t as u64 * NS + (i as u64 * NS) / n as u64;
            let trace: [u8; 16] = self.rng.random();
            let ids: [[u8; 8]; 5] = self.rng.random();

            // gateway: validate, publish, answer 202.
            let gw_ms = self.jitter(6.0, 0.15);
            let gw_end = begin + ms(gw_ms);
            let publish_at = begin + ms(gw_ms * 0.6);
            spans[0].push(span(
                trace,
                ids[0],
                None,
                "POST /v1/charges",
                2,
                begin,
                gw_end,
                None,
            ));
            spans[0].push(span(
                trace,
                ids[1],
                Some(ids[0]),
                "charges publish",
                4,
                publish_at,
                publish_at + ms(0.8),
                None,
            ));
            logs[0].push(log(
                gw_end,
                9,
                "INFO",
                format!(
                    "charge {} accepted amount={}.{:02} EUR",
                    hex(&trace[..6]),
                    self.rng.random_range(5..400),
                    self.rng.random_range(0..100)
                ),
                trace,
                ids[0],
            ));

            // payments: consume after a queue wait, fraud check, ledger call.
            let start = publish_at + ms(self.jitter(3.0, 0.3));
            let (fraud_ms, fails) = match phase {
                Phase::Normal => (self.jitter(18.0, 0.12), self.rng.random_bool(0.005)),
                Phase::Incident => (self.jitter(150.0, 0.2), self.rng.random_bool(0.25)),
            };
            let ledger_start = start + ms(fraud_ms);
            let ledger_ms = self.jitter(9.0, 0.12);
            let pay_end = ledger_start + ms(ledger_ms + 1.5);
            let err = fails.then(|| "fraud-check failed".to_owned());
            spans[1].push(span(
                trace,
                ids[2],
                Some(ids[1]),
                "process charge",
                5,
                start,
                pay_end,
                err.clone(),
            ));
            spans[1].push(span(
                trace,
                ids[3],
                Some(ids[2]),
                "POST /entries",
                3,
                ledger_start,
                ledger_start + ms(ledger_ms),
                None,
            ));
            let card = CARDS[i % CARDS.len()];
            logs[1].push(log(
                ledger_start,
                9,
                "INFO",
                format!("authorizing card {card} for charge {}", hex(&trace[..6])),
                trace,
                ids[2],
            ));
            if fails {
                let msg = match phase {
                    Phase::Incident => format!(
                        "fraud-check timeout after {} ms (attempt {})",
                        fraud_ms.round() as u64,
                        self.rng.random_range(1..4)
                    ),
                    Phase::Normal => "charge declined by issuer".to_owned(),
                };
                logs[1].push(log(pay_end, 17, "ERROR", msg, trace, ids[2]));
            }

            // ledger: write the entry.
            spans[2].push(span(
                trace,
                ids[4],
                Some(ids[3]),
                "POST /entries",
                2,
                ledger_start + ms(0.3),
                ledger_start + ms(ledger_ms - 0.3),
                None,
            ));
            logs[2].push(log(
                ledger_start + ms(ledger_ms - 0.3),
                9,
                "INFO",
                format!("entry written for charge {}", hex(&trace[..6])),
                trace,
                ids[4],
            ));
        }
        for p in &mut self.processed {
            *p += n as u64;
        }
        let metric_ts = t as u64 * NS + NS / 2;
        let in_use = match phase {
            Phase::Normal => self.jitter(4.0, 0.25),
            Phase::Incident => self.jitter(30.0, 0.1),
        };
        Batch {
            traces: ExportTraceServiceRequest {
                resource_spans: SERVICES
                    .iter()
                    .zip(spans)
                    .map(|(s, spans)| ResourceSpans {
                        resource: Some(resource(s)),
                        scope_spans: vec![ScopeSpans {
                            spans,
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            },
            logs: ExportLogsServiceRequest {
                resource_logs: SERVICES
                    .iter()
                    .zip(logs)
                    .map(|(s, log_records)| ResourceLogs {
                        resource: Some(resource(s)),
                        scope_logs: vec![ScopeLogs {
                            log_records,
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            },
            metrics: ExportMetricsServiceRequest {
                resource_metrics: SERVICES
                    .iter()
                    .enumerate()
                    .map(|(k, s)| {
                        let mut metrics = vec![Metric {
                            name: "charges.processed".into(),
                            unit: "{charge}".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    start_time_unix_nano: self.start_ns,
                                    time_unix_nano: metric_ts,
                                    value: Some(number_data_point::Value::AsInt(
                                        self.processed[k] as i64,
                                    )),
                                    ..Default::default()
                                }],
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        }];
                        if *s == INCIDENT_SERVICE {
                            metrics.push(Metric {
                                name: "db.pool.in_use".into(),
                                unit: "{connection}".into(),
                                data: Some(metric::Data::Gauge(Gauge {
                                    data_points: vec![NumberDataPoint {
                                        time_unix_nano: metric_ts,
                                        value: Some(number_data_point::Value::AsDouble(in_use)),
                                        ..Default::default()
                                    }],
                                })),
                                ..Default::default()
                            });
                        }
                        ResourceMetrics {
                            resource: Some(resource(s)),
                            scope_metrics: vec![ScopeMetrics {
                                metrics,
                                ..Default::default()
                            }],
                            ..Default::default()
                        }
                    })
                    .collect(),
            },
        }
    }

    /// `base` × (1 ± `spread`), skewed slightly right like real latencies.
    fn jitter(&mut self, base: f64, spread: f64) -> f64 {
        let u: f64 = self.rng.random();
        let v: f64 = self.rng.random();
        base * (1.0 + spread * (u + v - 1.0) + spread * 0.5 * u * u * u)
    }
}

/// Luhn-valid test cards, written the ways people write them.
const CARDS: [&str; 3] = [
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "4012888888881881",
];

fn ms(v: f64) -> u64 {
    (v * 1e6).max(0.0) as u64
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", service),
            kv("service.version", "1.4.2"),
            kv("k8s.namespace.name", NAMESPACE),
            kv("k8s.pod.name", &format!("{service}-6f7c9d-x2k4p")),
            kv("deployment.environment", "demo"),
        ],
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    name: &str,
    kind: i32,
    start: u64,
    end: u64,
    error: Option<String>,
) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start + 1),
        status: Some(match error {
            Some(message) => Status {
                code: status::StatusCode::Error as i32,
                message,
            },
            None => Status {
                code: status::StatusCode::Ok as i32,
                message: String::new(),
            },
        }),
        ..Default::default()
    }
}

fn log(
    ts: u64,
    severity: i32,
    text: &str,
    body: String,
    trace: [u8; 16],
    span: [u8; 8],
) -> LogRecord {
    LogRecord {
        time_unix_nano: ts,
        observed_time_unix_nano: ts,
        severity_number: severity,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        trace_id: trace.to_vec(),
        span_id: span.to_vec(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency_ms(b: &Batch, service: &str) -> f64 {
        let rs = b
            .traces
            .resource_spans
            .iter()
            .find(|r| {
                r.resource.as_ref().unwrap().attributes[0].value
                    == Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    })
            })
            .unwrap();
        let spans: Vec<&Span> = rs.scope_spans[0]
            .spans
            .iter()
            .filter(|s| s.kind == 2 || s.kind == 5)
            .collect();
        spans
            .iter()
            .map(|s| (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6)
            .sum::<f64>()
            / spans.len() as f64
    }

    #[test]
    fn the_incident_hits_payments_only_and_is_reproducible() {
        let mut w = Workload::new(7, 1_000);
        let normal = w.step(1_000, Phase::Normal);
        let bad = w.step(1_001, Phase::Incident);
        assert!(latency_ms(&bad, "payments") > 5.0 * latency_ms(&normal, "payments"));
        let gw = latency_ms(&bad, "gateway") / latency_ms(&normal, "gateway");
        assert!((0.7..1.4).contains(&gw), "gateway unaffected: {gw}");
        let errors = |b: &Batch| {
            b.logs.resource_logs[1].scope_logs[0]
                .log_records
                .iter()
                .filter(|l| l.severity_number == 17)
                .count()
        };
        assert!(errors(&bad) >= 1 && errors(&normal) <= 1);

        let mut again = Workload::new(7, 1_000);
        assert_eq!(again.step(1_000, Phase::Normal).traces, normal.traces);
    }

    #[test]
    fn every_log_carries_its_span_context_and_one_trace_spans_all_services() {
        let mut w = Workload::new(1, 0);
        let b = w.step(10, Phase::Normal);
        for rl in &b.logs.resource_logs {
            for l in &rl.scope_logs[0].log_records {
                assert_eq!(l.trace_id.len(), 16);
                assert_eq!(l.span_id.len(), 8);
                let t = l.time_unix_nano / NS;
                assert!((10..=11).contains(&t), "logs belong to the step: {t}");
            }
        }
        let first = &b.traces.resource_spans[0].scope_spans[0].spans[0].trace_id;
        for rs in &b.traces.resource_spans {
            assert!(rs.scope_spans[0].spans.iter().any(|s| &s.trace_id == first));
        }
    }
}
