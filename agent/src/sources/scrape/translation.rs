//! Parsed expositions to OTLP metrics, following the OpenTelemetry
//! Collector's `prometheus` receiver so data looks the same whichever of
//! the two scraped it.
//!
//! | Prometheus            | OTLP                                                  |
//! |-----------------------|-------------------------------------------------------|
//! | counter               | Sum, monotonic, cumulative; name kept *as exposed* (`http_requests_total` stays; OpenMetrics `foo` family with `foo_total` samples is `foo_total`), as the Collector does without its name-normalisation feature gate, so a round trip to Prometheus gives the same names |
//! | gauge, unknown/untyped| Gauge                                                 |
//! | histogram             | Histogram, cumulative: `le` buckets become explicit bounds with per-bucket (non-cumulative) counts, `_sum`, `_count` |
//! | summary               | Summary: `quantile` samples, `_sum`, `_count`         |
//! | info, stateset        | Gauge (value 1 / 0 per state)                         |
//! | gaugehistogram        | not translated (no OTLP equivalent); counted as dropped |
//!
//! Target labels `job` and `instance` become resource attributes
//! `service.name` and `service.instance.id` (plus `server.address`,
//! `server.port`, `url.scheme`); other target labels are added to every
//! point. A scraped label that clashes with a target label is renamed
//! `exported_<name>`, as Prometheus does with `honor_labels: false`.
//!
//! # Start times
//!
//! Text formats carry no start time for cumulative series (except
//! OpenMetrics `_created`). Like the Collector, a [`StartTimes`] cache per
//! target remembers when each series was first seen and its last value; a
//! value that went down is a reset and restarts the series at the scrape's
//! time. Series not seen in a scrape are forgotten, so the cache is bounded
//! by the target's live series.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar as OtlpExemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum, Summary, SummaryDataPoint, exemplar, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};

use super::exposition::{Exposition, Family, Labels, MetricType, Sample};

pub(crate) fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// First-seen times and last values of one target's cumulative series.
#[derive(Debug, Default)]
pub struct StartTimes {
    series: HashMap<u64, (u64, f64, u64)>,
    generation: u64,
}

impl StartTimes {
    /// Start time of a cumulative series with this value at `now`.
    fn start(&mut self, name: &str, labels: &[(String, String)], value: f64, now: u64) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        labels.hash(&mut h);
        let key = h.finish();
        let generation = self.generation;
        let entry = self.series.entry(key).or_insert((now, value, generation));
        if value < entry.1 {
            entry.0 = now; // reset
        }
        entry.1 = value;
        entry.2 = generation;
        entry.0
    }

    /// Forget series not seen since the previous call.
    fn sweep(&mut self) {
        let generation = self.generation;
        self.series.retain(|_, e| e.2 == generation);
        self.generation += 1;
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// What a translation produced, for the caller's counters.
#[derive(Debug, Default)]
pub struct Translated {
    pub metrics: Vec<Metric>,
    /// Samples that could not be placed (gauge histograms, stray suffixes,
    /// histograms without buckets).
    pub dropped_samples: usize,
}

/// Translates an exposition; `target_labels` go on every point;
/// `now_unix_nano` stamps samples without their own timestamp.
pub fn translate(
    exp: &Exposition,
    target_labels: &[(String, String)],
    now_unix_nano: u64,
    starts: &mut StartTimes,
) -> Translated {
    let mut out = Translated::default();
    for fam in &exp.families {
        match fam.kind {
            MetricType::Counter => counter(fam, target_labels, now_unix_nano, starts, &mut out),
            MetricType::Gauge | MetricType::Unknown | MetricType::Info | MetricType::StateSet => {
                gauge(fam, target_labels, now_unix_nano, &mut out)
            }
            MetricType::Histogram => histogram(fam, target_labels, now_unix_nano, starts, &mut out),
            MetricType::Summary => summary(fam, target_labels, now_unix_nano, starts, &mut out),
            MetricType::GaugeHistogram => out.dropped_samples += fam.samples.len(),
        }
    }
    starts.sweep();
    out
}

fn time(sample: &Sample, now: u64) -> u64 {
    match sample.timestamp_ms {
        Some(ms) if ms > 0 => (ms as u64).saturating_mul(1_000_000),
        _ => now,
    }
}

/// Point attributes: the sample's labels, then target labels (a clashing
/// scraped label becomes `exported_<name>`).
fn attributes(labels: &Labels, target: &[(String, String)]) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(labels.len() + target.len());
    for (k, v) in labels {
        if target.iter().any(|(t, _)| t == k) {
            out.push(kv(&format!("exported_{k}"), v));
        } else {
            out.push(kv(k, v));
        }
    }
    for (k, v) in target {
        out.push(kv(k, v));
    }
    out
}

fn metric(fam: &Family, name: &str, data: Data) -> Metric {
    Metric {
        name: name.to_string(),
        description: fam.help.clone().unwrap_or_default(),
        unit: fam.unit.clone().unwrap_or_default(),
        data: Some(data),
        ..Default::default()
    }
}

fn exemplars(s: &Sample) -> Vec<OtlpExemplar> {
    let Some(e) = &s.exemplar else {
        return Vec::new();
    };
    let mut trace_id = Vec::new();
    let mut span_id = Vec::new();
    let mut filtered = Vec::new();
    for (k, v) in &e.labels {
        match (k.as_str(), hex::decode(v)) {
            ("trace_id", Ok(b)) if b.len() == 16 => trace_id = b,
            ("span_id", Ok(b)) if b.len() == 8 => span_id = b,
            _ => filtered.push(kv(k, v)),
        }
    }
    vec![OtlpExemplar {
        filtered_attributes: filtered,
        time_unix_nano: e
            .timestamp_ms
            .map_or(0, |ms| (ms.max(0) as u64).saturating_mul(1_000_000)),
        span_id,
        trace_id,
        value: Some(exemplar::Value::AsDouble(e.value)),
    }]
}

fn counter(
    fam: &Family,
    target: &[(String, String)],
    now: u64,
    starts: &mut StartTimes,
    out: &mut Translated,
) {
    // `_created` samples give exact start times (OpenMetrics).
    let created: Vec<(&Labels, f64)> = fam
        .samples
        .iter()
        .filter(|s| s.name.ends_with("_created"))
        .map(|s| (&s.labels, s.value))
        .collect();
    let mut by_name: Vec<(&str, Vec<NumberDataPoint>)> = Vec::new();
    for s in fam
        .samples
        .iter()
        .filter(|s| !s.name.ends_with("_created") || s.name == fam.name)
    {
        let t = time(s, now);
        let start = match created.iter().find(|(l, _)| **l == s.labels) {
            Some((_, secs)) if *secs > 0.0 => (*secs * 1e9) as u64,
            _ => starts.start(&s.name, &s.labels, s.value, t),
        };
        let p = NumberDataPoint {
            attributes: attributes(&s.labels, target),
            start_time_unix_nano: start,
            time_unix_nano: t,
            exemplars: exemplars(s),
            value: Some(number_data_point::Value::AsDouble(s.value)),
            ..Default::default()
        };
        match by_name.iter_mut().find(|(n, _)| *n == s.name) {
            Some((_, v)) => v.push(p),
            None => by_name.push((&s.name, vec![p])),
        }
    }
    for (name, points) in by_name {
        out.metrics.push(metric(
            fam,
            name,
            Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
        ));
    }
}

fn gauge(fam: &Family, target: &[(String, String)], now: u64, out: &mut Translated) {
    let mut by_name: Vec<(&str, Vec<NumberDataPoint>)> = Vec::new();
    for s in &fam.samples {
        let p = NumberDataPoint {
            attributes: attributes(&s.labels, target),
            time_unix_nano: time(s, now),
            exemplars: exemplars(s),
            value: Some(number_data_point::Value::AsDouble(s.value)),
            ..Default::default()
        };
        match by_name.iter_mut().find(|(n, _)| *n == s.name) {
            Some((_, v)) => v.push(p),
            None => by_name.push((&s.name, vec![p])),
        }
    }
    for (name, points) in by_name {
        out.metrics.push(metric(
            fam,
            name,
            Data::Gauge(Gauge {
                data_points: points,
            }),
        ));
    }
}

/// Samples of one family grouped by their labels minus `skip` (`le` or
/// `quantile`), in first-seen order.
fn groups<'a>(fam: &'a Family, skip: &str) -> Vec<(Labels, Vec<&'a Sample>)> {
    let mut out: Vec<(Labels, Vec<&Sample>)> = Vec::new();
    for s in &fam.samples {
        let key: Labels = s
            .labels
            .iter()
            .filter(|(k, _)| k != skip)
            .cloned()
            .collect();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(s),
            None => out.push((key, vec![s])),
        }
    }
    out
}

fn histogram(
    fam: &Family,
    target: &[(String, String)],
    now: u64,
    starts: &mut StartTimes,
    out: &mut Translated,
) {
    let bucket_name = format!("{}_bucket", fam.name);
    let sum_name = format!("{}_sum", fam.name);
    let count_name = format!("{}_count", fam.name);
    let created_name = format!("{}_created", fam.name);
    let mut points = Vec::new();
    for (labels, samples) in groups(fam, "le") {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let (mut sum, mut count, mut created, mut t) = (None, None, None, now);
        let mut exemplar_list = Vec::new();
        for s in &samples {
            if s.name == bucket_name {
                match s.label("le").and_then(super::exposition::parse_value) {
                    Some(le) if !le.is_nan() => buckets.push((le, s.value)),
                    _ => out.dropped_samples += 1,
                }
                exemplar_list.extend(exemplars(s));
            } else if s.name == sum_name {
                sum = Some(s.value);
            } else if s.name == count_name {
                count = Some(s.value);
            } else if s.name == created_name {
                created = Some(s.value);
            } else {
                out.dropped_samples += 1;
                continue;
            }
            t = time(s, now);
        }
        if buckets.is_empty() && count.is_none() {
            out.dropped_samples += samples.len();
            continue;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let inf_count = buckets
            .iter()
            .find(|(le, _)| *le == f64::INFINITY)
            .map(|b| b.1);
        let total = count.or(inf_count).unwrap_or(0.0);
        let finite: Vec<(f64, f64)> = buckets
            .into_iter()
            .filter(|(le, _)| le.is_finite())
            .collect();
        let mut bucket_counts = Vec::with_capacity(finite.len() + 1);
        let mut prev = 0.0;
        for (_, cum) in &finite {
            bucket_counts.push(to_count(cum - prev));
            prev = prev.max(*cum);
        }
        bucket_counts.push(to_count(total - prev));
        let start = match created {
            Some(secs) if secs > 0.0 => (secs * 1e9) as u64,
            _ => starts.start(&fam.name, &labels, total, t),
        };
        points.push(HistogramDataPoint {
            attributes: attributes(&labels, target),
            start_time_unix_nano: start,
            time_unix_nano: t,
            count: to_count(total),
            sum: sum.filter(|s| s.is_finite()),
            bucket_counts,
            explicit_bounds: finite.iter().map(|(le, _)| *le).collect(),
            exemplars: exemplar_list,
            ..Default::default()
        });
    }
    if !points.is_empty() {
        out.metrics.push(metric(
            fam,
            &fam.name,
            Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        ));
    }
}

/// A count from a float sample: negatives (a non-monotonic bucket list
/// from a buggy exporter) and NaN become 0.
fn to_count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

fn summary(
    fam: &Family,
    target: &[(String, String)],
    now: u64,
    starts: &mut StartTimes,
    out: &mut Translated,
) {
    let sum_name = format!("{}_sum", fam.name);
    let count_name = format!("{}_count", fam.name);
    let created_name = format!("{}_created", fam.name);
    let mut points = Vec::new();
    for (labels, samples) in groups(fam, "quantile") {
        let mut quantiles = Vec::new();
        let (mut sum, mut count, mut created, mut t) = (0.0, 0.0, None, now);
        for s in &samples {
            if s.name == fam.name {
                match s.label("quantile").and_then(super::exposition::parse_value) {
                    Some(q) if (0.0..=1.0).contains(&q) => quantiles.push(ValueAtQuantile {
                        quantile: q,
                        value: s.value,
                    }),
                    _ => {
                        out.dropped_samples += 1;
                        continue;
                    }
                }
            } else if s.name == sum_name {
                sum = s.value;
            } else if s.name == count_name {
                count = s.value;
            } else if s.name == created_name {
                created = Some(s.value);
            } else {
                out.dropped_samples += 1;
                continue;
            }
            t = time(s, now);
        }
        let start = match created {
            Some(secs) if secs > 0.0 => (secs * 1e9) as u64,
            _ => starts.start(&fam.name, &labels, count, t),
        };
        points.push(SummaryDataPoint {
            attributes: attributes(&labels, target),
            start_time_unix_nano: start,
            time_unix_nano: t,
            count: to_count(count),
            sum,
            quantile_values: quantiles,
            ..Default::default()
        });
    }
    if !points.is_empty() {
        out.metrics.push(metric(
            fam,
            &fam.name,
            Data::Summary(Summary {
                data_points: points,
            }),
        ));
    }
}
