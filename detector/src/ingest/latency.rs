//! `span_latency_seconds`: a per-service latency histogram with
//! OpenMetrics exemplars, so Grafana can draw latency and jump from a spike
//! to one of the traces behind it.
//!
//! The RED series (`span.latency.p99`, …) are what the engine scores; they
//! reach `/metrics` only through the capped per-series outputs and carry no
//! exemplars. This histogram is the Prometheus-native view of the same
//! spans: every span that counts for RED (same kinds, same root-span rule)
//! is observed, once, under `service` and `namespace`, and the bucket it
//! falls in keeps its trace id as the exemplar (the most recent one per
//! bucket, as OpenMetrics clients do).
//!
//! **Bounds.** Labels are the service and namespace only (never the
//! operation, never a trace id as a label). At most
//! `spans.latency_histogram_services` label sets are created; spans of any
//! further service are observed under one more, `service="_other"`
//! (empty namespace), so totals stay right and the scrape stays bounded:
//! each label set is 17 samples. `0` turns the histogram off.
//!
//! **Cost.** The label set is resolved once per `ResourceSpans` block (one
//! service), not per span; a span costs one bucket search, two atomic adds
//! and, for the exemplar, a 32-character hex string.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::TraceId;

/// Bucket upper bounds, seconds: 1 ms to 30 s, roughly ×2.5 apart.
pub const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The `service` value of spans beyond the cap.
pub const OTHER_SERVICE: &str = "_other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
    pub namespace: String,
}

/// The exemplar's label set: `{trace_id="<32 hex>"}`, the name Grafana's
/// exemplar data links and Tempo/Jaeger expect.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    pub trace_id: String,
}

pub type Histogram = HistogramWithExemplars<TraceLabel>;
type HistogramFamily = Family<ServiceLabels, Histogram, fn() -> Histogram>;

fn new_histogram() -> Histogram {
    HistogramWithExemplars::new(BUCKETS.iter().copied())
}

/// The histogram family and its cap; inert until [`SpanLatency::register`].
#[derive(Clone, Debug, Default)]
pub(crate) struct SpanLatency {
    family: Option<HistogramFamily>,
    cap: usize,
    /// Label sets created for named services (`_other` not counted).
    services: usize,
}

impl SpanLatency {
    /// Registers `span_latency_seconds` in `registry` (already prefixed),
    /// unless `cap` is 0.
    pub fn register(registry: &mut Registry, cap: usize) -> Self {
        if cap == 0 {
            return Self::default();
        }
        let family: HistogramFamily = Family::new_with_constructor(new_histogram);
        registry.register_with_unit(
            "span_latency",
            "Duration of the spans counted for RED (server, consumer and root spans), per service; exemplars carry trace ids",
            Unit::Seconds,
            family.clone(),
        );
        SpanLatency {
            family: Some(family),
            cap,
            services: 0,
        }
    }

    /// The histogram of one service, or `None` when not registered.
    pub fn for_service(&mut self, service: &str, namespace: &str) -> Option<Histogram> {
        let family = self.family.as_ref()?;
        let labels = ServiceLabels {
            service: service.to_string(),
            namespace: namespace.to_string(),
        };
        if let Some(h) = family.get(&labels) {
            return Some(h.clone());
        }
        if self.services >= self.cap || service == OTHER_SERVICE {
            let other = ServiceLabels {
                service: OTHER_SERVICE.to_string(),
                namespace: String::new(),
            };
            return Some(family.get_or_create_owned(&other));
        }
        self.services += 1;
        Some(family.get_or_create_owned(&labels))
    }
}

/// Observes one span's duration with its trace id as the exemplar.
pub(crate) fn observe(h: &Histogram, seconds: f64, trace: Option<TraceId>) {
    let exemplar = trace.map(|t| TraceLabel {
        trace_id: hex::encode(t),
    });
    h.observe(seconds, exemplar, None);
}
