//! Small builders for the OTLP metrics every collector emits, so each
//! collector states *what* it reports (name, unit, type, attributes) and not
//! how protobuf structs nest.
//!
//! Types follow the OpenTelemetry semantic conventions for system metrics:
//! kernel counters are `Sum { monotonic, cumulative }` starting at boot time,
//! "UpDownCounter" instruments (memory usage, filesystem usage, process
//! counts) are `Sum { non-monotonic, cumulative }` as the Collector's
//! `hostmetrics` receiver emits them, and instantaneous ratios are `Gauge`s.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric::Data, number_data_point,
};

/// Times stamped on every point of one scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Boot time: the start of every kernel counter.
    pub start_unix_nano: u64,
    pub now_unix_nano: u64,
}

/// A point's value: integers stay integers (bytes, packets), seconds and
/// ratios are doubles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Double(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        // Kernel counters are u64; i64 overflows only after 9.2 EB.
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Double(v)
    }
}

pub fn str_attr(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub fn int_attr(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The kind of instrument a metric reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Sum, monotonic, cumulative since boot.
    Counter,
    /// Sum, non-monotonic, cumulative (semconv "UpDownCounter").
    UpDownCounter,
    Gauge,
}

/// Points of one metric, added one by one.
pub struct MetricBuilder {
    metric: Metric,
    kind: Kind,
    stamp: Stamp,
    points: Vec<NumberDataPoint>,
}

impl MetricBuilder {
    pub fn new(kind: Kind, name: &str, description: &str, unit: &str, stamp: Stamp) -> Self {
        MetricBuilder {
            metric: Metric {
                name: name.to_string(),
                description: description.to_string(),
                unit: unit.to_string(),
                ..Default::default()
            },
            kind,
            stamp,
            points: Vec::new(),
        }
    }

    pub fn point(&mut self, attributes: Vec<KeyValue>, value: impl Into<Value>) -> &mut Self {
        let value = match value.into() {
            Value::Int(i) => number_data_point::Value::AsInt(i),
            Value::Double(d) => number_data_point::Value::AsDouble(d),
        };
        let start = match self.kind {
            Kind::Gauge => 0,
            Kind::Counter | Kind::UpDownCounter => self.stamp.start_unix_nano,
        };
        self.points.push(NumberDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: self.stamp.now_unix_nano,
            value: Some(value),
            ..Default::default()
        });
        self
    }

    /// The finished metric, or nothing when no point was added (an empty
    /// metric is noise on the wire and a validation error in some backends).
    pub fn finish(self, out: &mut Vec<Metric>) {
        if self.points.is_empty() {
            return;
        }
        let mut metric = self.metric;
        let cumulative = AggregationTemporality::Cumulative as i32;
        metric.data = Some(match self.kind {
            Kind::Gauge => Data::Gauge(Gauge {
                data_points: self.points,
            }),
            Kind::Counter => Data::Sum(Sum {
                data_points: self.points,
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
            Kind::UpDownCounter => Data::Sum(Sum {
                data_points: self.points,
                aggregation_temporality: cumulative,
                is_monotonic: false,
            }),
        });
        out.push(metric);
    }
}
