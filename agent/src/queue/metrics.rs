//! The queue's self-metrics, and one function per notable occurrence that
//! logs it and counts it together.
//!
//! Counters live here; the gauges (`queue_bytes`, `queue_records`,
//! `queue_segments`, `queue_oldest_record_age_seconds`, and the configured
//! bound `queue_max_bytes` that alerts compare `queue_bytes` with) are computed from the
//! queue's state at scrape time by [`Gauges`], so they can never drift from
//! it and the age keeps growing while nothing happens.

use std::path::Path;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::WallClock;
use super::state::{Shared, State};

/// `reason` of a drop. Bounded: one value today.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub reason: &'static str,
}

/// `op` of a failed file operation: one of [`IO_OPS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabels {
    pub op: &'static str,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Metrics {
    appended_records: Counter,
    appended_bytes: Counter,
    acked_records: Counter,
    dropped_records: Family<ReasonLabels, Counter>,
    dropped_bytes: Family<ReasonLabels, Counter>,
    corrupt_records: Counter,
    truncated_bytes: Counter,
    io_errors: Family<OpLabels, Counter>,
}

pub(crate) const REASON_QUEUE_FULL: &str = "queue_full";

/// Every `op` label value of `queue_io_errors_total`.
const IO_OPS: [&str; 7] = [
    "write", "fsync", "truncate", "create", "read", "ack", "delete",
];

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register(
            "queue_appended_records",
            "Records (batches) appended to the disk queue",
            m.appended_records.clone(),
        );
        registry.register(
            "queue_appended_bytes",
            "Bytes of records appended to the disk queue (bodies, without framing)",
            m.appended_bytes.clone(),
        );
        registry.register(
            "queue_acked_records",
            "Records acknowledged by the exporter and released from the disk queue",
            m.acked_records.clone(),
        );
        registry.register(
            "queue_dropped_records",
            "Records removed from the disk queue undelivered, by reason",
            m.dropped_records.clone(),
        );
        registry.register(
            "queue_dropped_bytes",
            "Bytes of records removed from the disk queue undelivered, by reason",
            m.dropped_bytes.clone(),
        );
        registry.register(
            "queue_corrupt_records",
            "Records lost to on-disk damage (checksum mismatch), found on open or on read",
            m.corrupt_records.clone(),
        );
        registry.register(
            "queue_truncated_bytes",
            "Bytes of torn writes cut from the end of the write-head segment on open",
            m.truncated_bytes.clone(),
        );
        registry.register(
            "queue_io_errors",
            "Failed file operations of the disk queue, by operation",
            m.io_errors.clone(),
        );
        // Every label value is known in advance: expose them at 0 so that
        // `rate()` and alerts see the series before the first occurrence.
        let full = ReasonLabels {
            reason: REASON_QUEUE_FULL,
        };
        drop(m.dropped_records.get_or_create(&full));
        drop(m.dropped_bytes.get_or_create(&full));
        for op in IO_OPS {
            drop(m.io_errors.get_or_create(&OpLabels { op }));
        }
        m
    }

    pub fn appended(&self, body_bytes: usize) {
        self.appended_records.inc();
        self.appended_bytes.inc_by(body_bytes as u64);
    }

    pub fn acked(&self) {
        self.acked_records.inc();
    }

    /// `drop_oldest` deleted a segment holding `records` undelivered records.
    pub fn dropped_queue_full(&self, segment: u64, records: u64, bytes: u64) {
        tracing::warn!(
            segment,
            records,
            bytes,
            reason = REASON_QUEUE_FULL,
            "disk queue full: dropped the oldest segment's undelivered records (when_full: drop_oldest)"
        );
        let l = ReasonLabels {
            reason: REASON_QUEUE_FULL,
        };
        self.dropped_records.get_or_create(&l).inc_by(records);
        self.dropped_bytes.get_or_create(&l).inc_by(bytes);
    }

    /// Records of `segment` were found damaged and written off.
    pub fn corrupt(&self, segment: u64, records: u64, damaged_bytes: u64, when: &'static str) {
        if records == 0 {
            // Damage already written off (on open, or before a restart).
            return;
        }
        tracing::error!(
            segment,
            records,
            damaged_bytes,
            when,
            "disk queue: records lost to on-disk damage (checksum mismatch); they cannot be delivered"
        );
        self.corrupt_records.inc_by(records);
    }

    /// A torn write was cut off the end of the head segment on open.
    pub fn truncated(&self, segment: u64, bytes: u64) {
        tracing::warn!(
            segment,
            bytes,
            "disk queue: cut a torn write off the end of the write-head segment (an append interrupted by a crash; it was never acknowledged)"
        );
        self.truncated_bytes.inc_by(bytes);
    }

    /// A file operation failed.
    pub fn io_error(&self, op: &'static str, path: &Path, err: &std::io::Error) {
        tracing::error!(op, path = %path.display(), error = %err, "disk queue: file operation failed");
        self.io_errors.get_or_create(&OpLabels { op }).inc();
    }
}

/// Scrape-time gauges over the queue's state. Holds the state weakly: once
/// the queue is closed, its gauges disappear instead of freezing.
pub(crate) struct Gauges {
    state: Weak<Mutex<State>>,
    clock: WallClock,
    max_bytes: u64,
}

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("queue::Gauges")
    }
}

impl Gauges {
    pub fn new(shared: &Arc<Shared>, max_bytes: u64) -> Self {
        Gauges {
            state: Arc::downgrade(&shared.state),
            clock: shared.clock.clone(),
            max_bytes,
        }
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(state) = self.state.upgrade() else {
            return Ok(());
        };
        let stats = state.lock().stats();
        let now = (self.clock)();
        let age = stats
            .oldest_appended_unix_ms
            .map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
        let counts: [(&str, &str, ConstGauge<i64>); 4] = [
            (
                "queue_max_bytes",
                "The disk queue's bound (queue.max_bytes): queue_bytes / queue_max_bytes is how full it is",
                ConstGauge::new(self.max_bytes.min(i64::MAX as u64) as i64),
            ),
            (
                "queue_bytes",
                "Bytes of all segment files of the disk queue",
                ConstGauge::new(stats.bytes as i64),
            ),
            (
                "queue_records",
                "Records in the disk queue not yet acknowledged (unread or in flight)",
                ConstGauge::new(stats.records as i64),
            ),
            (
                "queue_segments",
                "Segment files of the disk queue",
                ConstGauge::new(stats.segments as i64),
            ),
        ];
        for (name, help, g) in counts {
            let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)?;
        }
        let g = ConstGauge::new(age);
        let m = encoder.encode_descriptor(
            "queue_oldest_record_age_seconds",
            "Age of the oldest record not yet acknowledged (0 when empty)",
            None,
            g.metric_type(),
        )?;
        g.encode(m)?;
        Ok(())
    }
}
