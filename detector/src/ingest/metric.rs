//! OTLP metrics → series.
//!
//! | OTLP | series | value per step |
//! |---|---|---|
//! | Gauge | `<name>` | mean of the step's points |
//! | Sum, cumulative, monotonic | `<name>.rate` | per-second increase, reset-aware (see `stream`) |
//! | Sum, cumulative, non-monotonic | `<name>` | mean (it is a gauge: queue length, pool size) |
//! | Sum, delta (either) | `<name>.rate` | Σ values / step seconds (a non-monotonic delta is a net change per second) |
//! | Histogram / ExponentialHistogram, cumulative | `<name>.rate`, `.mean`, `.p…` | from the bucket increases of each stream |
//! | Histogram / ExponentialHistogram, delta | same | from the step's buckets directly |
//! | Summary | `<name>.rate`, `.mean`, `.p<q>` per reported quantile | count/s and Δsum/Δcount as a cumulative stream; quantiles: mean of the step's values |
//!
//! A point flagged "no recorded value" (a staleness marker) is taken and
//! makes nothing. A point without a timestamp is stamped with the ingest
//! clock. Non-finite values, unspecified temporality and inconsistent
//! buckets are rejected as `invalid`, as is a metric whose shape clashes
//! with an existing one under the same series names (a counter `x` and a
//! gauge `x.rate`). Exemplars on any point keep their trace ids: the five
//! with the largest values per series and step.

use argus_common::otlp::{Signal, metric_point_count};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint, exemplar, metric::Data, number_data_point,
};

use super::config::quantile_suffix;
use super::group::{Kind, TopK};
use super::histogram::{ExpBuckets, add_explicit, check_explicit};
use super::resource::{AttrLabels, ResourceLabels, scope_hash, stream_hash};
use super::step::{NANOS, nanos};
use super::stream::{CumBuckets, CumPoint};
use super::{Ingest, IngestStats, Reason, trace_id};
use crate::registry::KeyRef;

/// Exemplars kept per metric series and step.
pub const METRIC_EXEMPLARS: usize = 5;
/// Distinct quantiles of one summary that become series.
pub const MAX_SUMMARY_QUANTILES: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Temporality {
    Delta,
    Cumulative,
}

fn temporality(t: i32) -> Option<Temporality> {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => Some(Temporality::Delta),
        Ok(AggregationTemporality::Cumulative) => Some(Temporality::Cumulative),
        _ => None,
    }
}

/// How a number point is aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Gauge,
    CumulativeCounter,
    DeltaCounter,
}

fn offer_exemplars(ex: &mut TopK, exemplars: &[Exemplar]) {
    for e in exemplars {
        let v = match e.value {
            Some(exemplar::Value::AsDouble(d)) => d,
            Some(exemplar::Value::AsInt(i)) => i as f64,
            None => 0.0,
        };
        if let Some(t) = trace_id(&e.trace_id) {
            ex.offer(METRIC_EXEMPLARS, v, t);
        }
    }
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

/// The outputs of a metric group, in order.
fn names(kind: Kind, base: &str, quantiles: &[f64]) -> Vec<String> {
    match kind {
        Kind::Gauge => vec![base.to_string()],
        Kind::Counter => vec![format!("{base}.rate")],
        Kind::Histogram => {
            let mut v = vec![format!("{base}.rate"), format!("{base}.mean")];
            v.extend(
                quantiles
                    .iter()
                    .map(|q| format!("{base}.{}", quantile_suffix(*q))),
            );
            v
        }
        Kind::Summary => vec![format!("{base}.rate"), format!("{base}.mean")],
        _ => unreachable!("not a metric kind"),
    }
}

/// A metric's name and the primary series name of its group.
struct MetricName<'a> {
    base: &'a str,
    primary: String,
}

impl<S: Default> Ingest<S> {
    pub(super) fn ingest_metrics(
        &mut self,
        req: &ExportMetricsServiceRequest,
        st: &mut IngestStats,
    ) {
        for rm in &req.resource_metrics {
            let res = ResourceLabels::of(rm.resource.as_ref());
            for sm in &rm.scope_metrics {
                let (sn, sv) = sm
                    .scope
                    .as_ref()
                    .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
                let base = scope_hash(res.hash, sn, sv);
                for m in &sm.metrics {
                    self.metric(m, &res, base, st);
                }
            }
        }
    }

    fn metric(&mut self, m: &Metric, res: &ResourceLabels<'_>, base: u64, st: &mut IngestStats) {
        let Some(data) = &m.data else {
            return;
        };
        if !self.cfg.metrics.enabled {
            (0..metric_point_count(m)).for_each(|_| st.ignore());
            return;
        }
        let reject_all = |st: &mut IngestStats| {
            (0..metric_point_count(m)).for_each(|_| st.reject(Reason::Invalid));
        };
        let name = |kind| MetricName {
            base: &m.name,
            primary: if kind == Kind::Gauge {
                m.name.clone()
            } else {
                format!("{}.rate", m.name)
            },
        };
        match data {
            Data::Gauge(g) => {
                let n = name(Kind::Gauge);
                for p in &g.data_points {
                    self.number(&n, Shape::Gauge, p, res, base, st);
                }
            }
            Data::Sum(s) => {
                let shape = match (temporality(s.aggregation_temporality), s.is_monotonic) {
                    (Some(Temporality::Cumulative), true) => Shape::CumulativeCounter,
                    (Some(Temporality::Cumulative), false) => Shape::Gauge,
                    (Some(Temporality::Delta), _) => Shape::DeltaCounter,
                    (None, _) => return reject_all(st),
                };
                let n = name(if shape == Shape::Gauge {
                    Kind::Gauge
                } else {
                    Kind::Counter
                });
                for p in &s.data_points {
                    self.number(&n, shape, p, res, base, st);
                }
            }
            Data::Histogram(h) => {
                let Some(t) = temporality(h.aggregation_temporality) else {
                    return reject_all(st);
                };
                let n = name(Kind::Histogram);
                for p in &h.data_points {
                    self.histogram(&n, t, p, res, base, st);
                }
            }
            Data::ExponentialHistogram(h) => {
                let Some(t) = temporality(h.aggregation_temporality) else {
                    return reject_all(st);
                };
                let n = name(Kind::Histogram);
                for p in &h.data_points {
                    self.exp_histogram(&n, t, p, res, base, st);
                }
            }
            Data::Summary(s) => {
                let n = name(Kind::Summary);
                for p in &s.data_points {
                    self.summary(&n, p, res, base, st);
                }
            }
        }
    }

    /// The step and group of a point, or `None` after counting why not.
    #[allow(clippy::too_many_arguments)]
    fn point_group(
        &mut self,
        name: &MetricName<'_>,
        kind: Kind,
        time: u64,
        flags: u32,
        attrs: &[KeyValue],
        res: &ResourceLabels<'_>,
        st: &mut IngestStats,
    ) -> Option<(i64, i64, u32)> {
        if flags & 1 != 0 {
            st.ignore();
            return None;
        }
        let now = self.clock.now();
        let ts = if time == 0 {
            now.saturating_mul(NANOS)
        } else {
            nanos(time)
        };
        let k = match self.clock.classify(ts) {
            Ok(k) => k,
            Err(t) => {
                st.timing(t);
                return None;
            }
        };
        let mut arena = AttrLabels::new();
        let mut labels = Vec::with_capacity(4 + attrs.len());
        res.push_all(&mut labels);
        arena.push(attrs, &mut labels);
        let key = KeyRef::new(Signal::Metrics, &name.primary, &mut labels);
        let wm = self.clock.watermark();
        let quantiles = &self.cfg.quantiles;
        match self
            .groups
            .resolve(&mut self.registry, &key, kind, now, wm, || {
                names(kind, name.base, quantiles)
            }) {
            Ok(g) => Some((k, ts, g)),
            Err(r) => {
                st.reject(r);
                None
            }
        }
    }

    /// Buffers a cumulative point in its stream; `false` after counting
    /// the rejection.
    fn push_cumulative(
        &mut self,
        g: u32,
        k: i64,
        stream: u64,
        p: CumPoint,
        st: &mut IngestStats,
    ) -> bool {
        let now = self.clock.now();
        let max = self.cfg.metrics.max_streams;
        let Some(s) = self.groups.get_mut(g).stream(stream, max) else {
            st.reject(Reason::CardinalityLimit);
            return false;
        };
        if !s.push(k, p, now) {
            st.reject(Reason::Invalid);
            return false;
        }
        true
    }

    fn number(
        &mut self,
        name: &MetricName<'_>,
        shape: Shape,
        p: &NumberDataPoint,
        res: &ResourceLabels<'_>,
        base: u64,
        st: &mut IngestStats,
    ) {
        let kind = if shape == Shape::Gauge {
            Kind::Gauge
        } else {
            Kind::Counter
        };
        let v = match p.value {
            Some(number_data_point::Value::AsDouble(d)) => d,
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            None if p.flags & 1 != 0 => 0.0,
            None => return st.reject(Reason::Invalid),
        };
        if !v.is_finite() {
            return st.reject(Reason::Invalid);
        }
        let Some((k, ts, g)) = self.point_group(
            name,
            kind,
            p.time_unix_nano,
            p.flags,
            &p.attributes,
            res,
            st,
        ) else {
            return;
        };
        match shape {
            Shape::Gauge => {
                let a = self.groups.get_mut(g).acc(k).gauge();
                a.sum += v;
                a.n += 1;
                offer_exemplars(&mut a.ex, &p.exemplars);
            }
            Shape::DeltaCounter => {
                let a = self.groups.get_mut(g).acc(k).dist();
                a.delta += v;
                a.rated = true;
                offer_exemplars(&mut a.ex, &p.exemplars);
            }
            Shape::CumulativeCounter => {
                let point = CumPoint {
                    t: ts,
                    start: nanos(p.start_time_unix_nano),
                    count: v,
                    sum: None,
                    buckets: CumBuckets::None,
                    min: None,
                    max: None,
                };
                if !self.push_cumulative(g, k, stream_hash(base, &p.attributes), point, st) {
                    return;
                }
                offer_exemplars(&mut self.groups.get_mut(g).acc(k).dist().ex, &p.exemplars);
            }
        }
        st.accept();
    }

    fn histogram(
        &mut self,
        name: &MetricName<'_>,
        t: Temporality,
        p: &HistogramDataPoint,
        res: &ResourceLabels<'_>,
        base: u64,
        st: &mut IngestStats,
    ) {
        if p.flags & 1 == 0 && check_explicit(&p.explicit_bounds, p.bucket_counts.len()).is_err() {
            return st.reject(Reason::Invalid);
        }
        let Some((k, ts, g)) = self.point_group(
            name,
            Kind::Histogram,
            p.time_unix_nano,
            p.flags,
            &p.attributes,
            res,
            st,
        ) else {
            return;
        };
        let (sum, min, max) = (finite(p.sum), finite(p.min), finite(p.max));
        match t {
            Temporality::Delta => {
                let a = self.groups.get_mut(g).acc(k).dist();
                a.delta += p.count as f64;
                a.rated = true;
                if let Some(s) = sum {
                    a.sum += s;
                    a.sum_count += p.count as f64;
                }
                add_explicit(
                    &p.explicit_bounds,
                    &p.bucket_counts,
                    min,
                    max,
                    &mut a.buckets,
                );
                offer_exemplars(&mut a.ex, &p.exemplars);
            }
            Temporality::Cumulative => {
                let point = CumPoint {
                    t: ts,
                    start: nanos(p.start_time_unix_nano),
                    count: p.count as f64,
                    sum,
                    buckets: if p.bucket_counts.is_empty() {
                        CumBuckets::None
                    } else {
                        CumBuckets::Explicit {
                            bounds: p.explicit_bounds.clone().into(),
                            counts: p.bucket_counts.clone().into(),
                        }
                    },
                    min,
                    max,
                };
                if !self.push_cumulative(g, k, stream_hash(base, &p.attributes), point, st) {
                    return;
                }
                offer_exemplars(&mut self.groups.get_mut(g).acc(k).dist().ex, &p.exemplars);
            }
        }
        st.accept();
    }

    fn exp_histogram(
        &mut self,
        name: &MetricName<'_>,
        t: Temporality,
        p: &ExponentialHistogramDataPoint,
        res: &ResourceLabels<'_>,
        base: u64,
        st: &mut IngestStats,
    ) {
        let (pos_offset, pos) = p
            .positive
            .as_ref()
            .map_or((0, Vec::new()), |b| (b.offset, b.bucket_counts.clone()));
        let (neg_offset, neg) = p
            .negative
            .as_ref()
            .map_or((0, Vec::new()), |b| (b.offset, b.bucket_counts.clone()));
        let e = ExpBuckets {
            scale: p.scale,
            zero_count: p.zero_count,
            zero_threshold: p.zero_threshold,
            pos_offset,
            pos,
            neg_offset,
            neg,
        };
        if p.flags & 1 == 0 && (e.check().is_err() || !p.zero_threshold.is_finite()) {
            return st.reject(Reason::Invalid);
        }
        let Some((k, ts, g)) = self.point_group(
            name,
            Kind::Histogram,
            p.time_unix_nano,
            p.flags,
            &p.attributes,
            res,
            st,
        ) else {
            return;
        };
        let (sum, min, max) = (finite(p.sum), finite(p.min), finite(p.max));
        match t {
            Temporality::Delta => {
                let a = self.groups.get_mut(g).acc(k).dist();
                a.delta += p.count as f64;
                a.rated = true;
                if let Some(s) = sum {
                    a.sum += s;
                    a.sum_count += p.count as f64;
                }
                e.add_to(min, max, &mut a.buckets);
                offer_exemplars(&mut a.ex, &p.exemplars);
            }
            Temporality::Cumulative => {
                let point = CumPoint {
                    t: ts,
                    start: nanos(p.start_time_unix_nano),
                    count: p.count as f64,
                    sum,
                    buckets: CumBuckets::Exp(Box::new(e)),
                    min,
                    max,
                };
                if !self.push_cumulative(g, k, stream_hash(base, &p.attributes), point, st) {
                    return;
                }
                offer_exemplars(&mut self.groups.get_mut(g).acc(k).dist().ex, &p.exemplars);
            }
        }
        st.accept();
    }

    fn summary(
        &mut self,
        name: &MetricName<'_>,
        p: &SummaryDataPoint,
        res: &ResourceLabels<'_>,
        base: u64,
        st: &mut IngestStats,
    ) {
        let Some((k, ts, g)) = self.point_group(
            name,
            Kind::Summary,
            p.time_unix_nano,
            p.flags,
            &p.attributes,
            res,
            st,
        ) else {
            return;
        };
        let point = CumPoint {
            t: ts,
            start: nanos(p.start_time_unix_nano),
            count: p.count as f64,
            sum: p.sum.is_finite().then_some(p.sum),
            buckets: CumBuckets::None,
            min: None,
            max: None,
        };
        if !self.push_cumulative(g, k, stream_hash(base, &p.attributes), point, st) {
            return;
        }
        for qv in &p.quantile_values {
            if !(0.0..=1.0).contains(&qv.quantile) || !qv.value.is_finite() {
                continue;
            }
            let Some(i) = self.summary_quantile(g, name.base, qv.quantile) else {
                continue;
            };
            let a = self.groups.get_mut(g).acc(k).dist();
            if a.quantiles.len() <= i {
                a.quantiles.resize(i + 1, (0.0, 0));
            }
            a.quantiles[i].0 += qv.value;
            a.quantiles[i].1 += 1;
        }
        st.accept();
    }

    /// Index of quantile `q` in summary group `g`, adding its output series
    /// on first sight (up to [`MAX_SUMMARY_QUANTILES`]).
    fn summary_quantile(&mut self, g: u32, base: &str, q: f64) -> Option<usize> {
        if let Some(i) = self.groups.get(g).quantiles.iter().position(|x| *x == q) {
            return Some(i);
        }
        if self.groups.get(g).quantiles.len() >= MAX_SUMMARY_QUANTILES {
            return None;
        }
        let primary = self.groups.get(g).primary()?;
        let labels: Vec<(String, String)> = self
            .registry
            .key(primary)?
            .labels()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (&**k, &**v)).collect();
        let name = format!("{base}.{}", quantile_suffix(q));
        let key = KeyRef::sorted(Signal::Metrics, &name, &refs);
        let now = self.clock.now();
        // A refused output keeps its place (as `None`) so indices stay aligned.
        self.groups.add_output(&mut self.registry, g, &key, now);
        let group = self.groups.get_mut(g);
        group.quantiles.push(q);
        Some(group.quantiles.len() - 1)
    }
}
