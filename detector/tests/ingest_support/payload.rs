//! OTLP payload builders and step-point lookups shared by the ingest tests.
#![allow(dead_code)]

use argus_common::otlp::Payload;
use argus_detector::ingest::{Ingest, StepPoint};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};

/// A step boundary far from zero (unix seconds).
pub const T0: i64 = 1_700_000_000;
pub const NS: f64 = 1e9;

pub fn ns(t: f64) -> u64 {
    (t * NS).round() as u64
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

pub fn kv_int(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

pub fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", service),
            kv("k8s.namespace.name", "prod"),
            kv("k8s.pod.name", &format!("{service}-0")),
            kv("k8s.node.name", "node-a"),
        ],
        ..Default::default()
    }
}

pub fn trace(b: u8) -> Vec<u8> {
    vec![b; 16]
}

// ---- metrics ----

pub fn metrics(res: Resource, metrics: Vec<Metric>) -> Payload {
    Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(res),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

pub fn num(t: f64, start: f64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: ns(start),
        time_unix_nano: ns(t),
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

pub fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

pub fn sum(
    name: &str,
    t: AggregationTemporality,
    monotonic: bool,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: t as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

pub fn hist_point(
    t: f64,
    start: f64,
    bounds: &[f64],
    counts: &[u64],
    sum: f64,
) -> HistogramDataPoint {
    HistogramDataPoint {
        start_time_unix_nano: ns(start),
        time_unix_nano: ns(t),
        count: counts.iter().sum(),
        sum: Some(sum),
        bucket_counts: counts.to_vec(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    }
}

pub fn exemplar(v: f64, tr: u8) -> Exemplar {
    Exemplar {
        trace_id: trace(tr),
        span_id: vec![1; 8],
        value: Some(exemplar::Value::AsDouble(v)),
        ..Default::default()
    }
}

pub fn histogram(name: &str, t: AggregationTemporality, points: Vec<HistogramDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: t as i32,
        })),
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
pub fn exp_point(
    t: f64,
    start: f64,
    scale: i32,
    offset: i32,
    counts: &[u64],
    zero: u64,
    sum: f64,
) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        start_time_unix_nano: ns(start),
        time_unix_nano: ns(t),
        count: counts.iter().sum::<u64>() + zero,
        sum: Some(sum),
        scale,
        zero_count: zero,
        positive: Some(Buckets {
            offset,
            bucket_counts: counts.to_vec(),
        }),
        ..Default::default()
    }
}

pub fn exp_histogram(
    name: &str,
    t: AggregationTemporality,
    points: Vec<ExponentialHistogramDataPoint>,
) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points,
            aggregation_temporality: t as i32,
        })),
        ..Default::default()
    }
}

pub fn summary(name: &str, points: Vec<SummaryDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Summary(Summary {
            data_points: points,
        })),
        ..Default::default()
    }
}

pub fn summary_point(
    t: f64,
    start: f64,
    count: u64,
    sum: f64,
    qs: &[(f64, f64)],
) -> SummaryDataPoint {
    SummaryDataPoint {
        start_time_unix_nano: ns(start),
        time_unix_nano: ns(t),
        count,
        sum,
        quantile_values: qs
            .iter()
            .map(|&(quantile, value)| ValueAtQuantile { quantile, value })
            .collect(),
        ..Default::default()
    }
}

// ---- traces ----

pub fn spans(res: Resource, spans: Vec<Span>) -> Payload {
    Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(res),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// A SERVER span (with a parent) ending at `end`, lasting `dur` seconds.
pub fn span(name: &str, end: f64, dur: f64, error: bool, tr: u8) -> Span {
    Span {
        trace_id: trace(tr),
        span_id: vec![2; 8],
        parent_span_id: vec![3; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: ns(end - dur),
        end_time_unix_nano: ns(end),
        status: Some(Status {
            code: if error {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Ok as i32
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

// ---- logs ----

pub fn logs(res: Resource, records: Vec<LogRecord>) -> Payload {
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(res),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// `severity`: OTLP severity number (9 info, 13 warn, 17 error).
pub fn record(t: f64, severity: i32, body: &str, tr: Option<u8>) -> LogRecord {
    LogRecord {
        time_unix_nano: ns(t),
        severity_number: severity,
        body: Some(AnyValue {
            value: Some(Value::StringValue(body.into())),
        }),
        trace_id: tr.map(trace).unwrap_or_default(),
        ..Default::default()
    }
}

// ---- lookups ----

/// `(step ts, value)` of the points whose series has `name` and every
/// `labels` pair.
pub fn values<S: Default>(
    ing: &Ingest<S>,
    pts: &[StepPoint],
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<(i64, f64)> {
    select(ing, pts, name, labels)
        .map(|p| (p.ts, p.value))
        .collect()
}

pub fn select<'a, S: Default>(
    ing: &'a Ingest<S>,
    pts: &'a [StepPoint],
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a StepPoint> + 'a {
    pts.iter().filter(move |p| {
        let k = ing.key(p.series).expect("points name live series");
        k.name() == name && labels.iter().all(|(l, v)| k.label(l) == Some(*v))
    })
}

/// The single value of `name` at step `ts`.
pub fn value_at<S: Default>(
    ing: &Ingest<S>,
    pts: &[StepPoint],
    name: &str,
    ts: i64,
) -> Option<f64> {
    let v: Vec<f64> = values(ing, pts, name, &[])
        .into_iter()
        .filter(|(t, _)| *t == ts)
        .map(|(_, v)| v)
        .collect();
    assert!(v.len() <= 1, "{name} at {ts}: {v:?}");
    v.first().copied()
}

pub fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}
