//! The ingest's self-metrics, and one function per notable occurrence that
//! logs it and counts it together.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ingest_items_total` | counter | `signal`: every span, log record and metric data point received |
//! | `ingest_rejected_items_total` | counter | `reason`: see [`Reason`] |
//! | `late_points_total` | counter | — items for a step already closed (also in `rejected{reason="late"}`) |
//! | `templates_active` | gauge | — log templates held by the miner |
//! | `templates_evicted_total` | counter | — templates dropped by the LRU bound |
//! | `series_active`, `series_dropped_total{reason}` | | registered by the [registry](crate::registry) |
//!
//! Rejections can come by the thousand (a node whose clock runs ahead, a
//! backlog replayed after an outage), so their log lines are throttled:
//! at most one per reason per minute of ingest clock, saying how many were
//! suppressed since the last one. The counters are always exact.

use argus_common::otlp::Signal;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why an item was not turned into series. The label values of
/// `ingest_rejected_items_total`.
///
/// Every reason is **permanent**: sending the same item again cannot
/// succeed (a late item only gets later; limits and malformed data do not
/// change with a retry). The OTLP receiver reports them as partial success
/// (`rejected_*` + [`IngestStats::message`](super::IngestStats::message)),
/// never as a retryable status, so no exporter retries into a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Its step was already closed.
    Late,
    /// Timestamped further ahead of the ingest clock than `max_future`.
    Future,
    /// Its series would exceed `max_series`.
    SeriesLimit,
    /// Its series would exceed `max_per_name` for its name and service, or
    /// its series already merges `max_streams` distinct producer streams.
    CardinalityLimit,
    /// Too many labels or a label too long.
    LabelLimit,
    /// Malformed: no timestamp where one is required, end before start,
    /// non-finite value, unspecified temporality, inconsistent buckets, or a
    /// metric whose type changed under the same name.
    Invalid,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::Late,
        Reason::Future,
        Reason::SeriesLimit,
        Reason::CardinalityLimit,
        Reason::LabelLimit,
        Reason::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Late => "late",
            Reason::Future => "future",
            Reason::SeriesLimit => "series_limit",
            Reason::CardinalityLimit => "cardinality_limit",
            Reason::LabelLimit => "label_limit",
            Reason::Invalid => "invalid",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Reason::Late => {
                "items dropped: their step was already closed (older than step + grace behind the ingest clock)"
            }
            Reason::Future => {
                "items dropped: timestamped further ahead than max_future (is the sender's clock skewed?)"
            }
            Reason::SeriesLimit => "items dropped: the series registry is full (max_series)",
            Reason::CardinalityLimit => {
                "items dropped: too many series for one name and service (max_per_name) or too many producer streams in one series"
            }
            Reason::LabelLimit => "items dropped: too many labels or a label too long",
            Reason::Invalid => "items dropped: malformed",
        }
    }
}

impl From<crate::registry::Rejected> for Reason {
    fn from(r: crate::registry::Rejected) -> Self {
        match r {
            crate::registry::Rejected::SeriesLimit => Reason::SeriesLimit,
            crate::registry::Rejected::CardinalityLimit => Reason::CardinalityLimit,
            crate::registry::Rejected::LabelLimit => Reason::LabelLimit,
        }
    }
}

/// Rate limit for a log line: admits one per `interval` seconds of the
/// caller's clock and counts what it held back.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Throttle {
    last: Option<i64>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(suppressed since the last admitted one)` when a line may be
    /// logged now.
    pub fn admit(&mut self, now: i64, interval: i64) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_sub(t) < interval && now >= t => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    items: Family<SignalLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    late: Counter,
    templates_active: Gauge,
    templates_evicted: Counter,
    throttle: [Throttle; Reason::ALL.len()],
    evict_throttle: Throttle,
}

impl Telemetry {
    pub fn register(registry: &mut Registry) -> Self {
        let t = Telemetry::default();
        registry.register(
            "ingest_items",
            "Spans, log records and metric data points received by the ingest, by signal",
            t.items.clone(),
        );
        registry.register(
            "ingest_rejected_items",
            "Items the ingest could not turn into series, by reason",
            t.rejected.clone(),
        );
        registry.register(
            "late_points",
            "Items whose step was already closed when they arrived (dropped)",
            t.late.clone(),
        );
        registry.register(
            "templates_active",
            "Log templates held by the template miner",
            t.templates_active.clone(),
        );
        registry.register(
            "templates_evicted",
            "Log templates dropped by the miner's bound (least recently seen first)",
            t.templates_evicted.clone(),
        );
        for signal in Signal::ALL {
            drop(t.items.get_or_create(&SignalLabels {
                signal: signal.as_str(),
            }));
        }
        for r in Reason::ALL {
            drop(
                t.rejected
                    .get_or_create(&ReasonLabels { reason: r.as_str() }),
            );
        }
        t
    }

    pub fn received(&self, signal: Signal, n: u64) {
        self.items
            .get_or_create(&SignalLabels {
                signal: signal.as_str(),
            })
            .inc_by(n);
    }

    /// `n` items of one payload were rejected for `reason`.
    pub fn rejected(&mut self, signal: Signal, reason: Reason, n: u64, now: i64) {
        if n == 0 {
            return;
        }
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(n);
        if reason == Reason::Late {
            self.late.inc_by(n);
        }
        if let Some(suppressed) = self.throttle[reason as usize].admit(now, 60) {
            tracing::warn!(
                signal = signal.as_str(),
                reason = reason.as_str(),
                items = n,
                suppressed_since_last_log = suppressed,
                "{}",
                reason.explain()
            );
        }
    }

    pub fn templates(&self, active: usize) {
        self.templates_active.set(active as i64);
    }

    /// The miner's bound pushed out `n` least recently seen templates.
    pub fn templates_evicted(&mut self, n: u64, active: usize, now: i64) {
        if n == 0 {
            return;
        }
        self.templates_evicted.inc_by(n);
        if let Some(suppressed) = self.evict_throttle.admit(now, 60) {
            tracing::info!(
                evicted = n,
                active,
                evictions_since_last_log = suppressed,
                "log templates evicted (max_templates reached; least recently seen first)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_admits_one_per_interval_and_counts_the_rest() {
        let mut t = Throttle::default();
        assert_eq!(t.admit(100, 60), Some(0));
        assert_eq!(t.admit(110, 60), None);
        assert_eq!(t.admit(159, 60), None);
        assert_eq!(t.admit(160, 60), Some(2));
        // A clock that jumped back does not silence the log for good.
        assert_eq!(t.admit(10, 60), Some(0));
    }
}
