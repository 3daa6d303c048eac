//! The pipeline's self-metrics: what came in, what went out, what was given
//! up on, and how full the stages between are.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `records_received_total` | `source`, `signal` | items (log records, spans, metric points) that entered the pipeline |
//! | `records_sent_total` | `signal` | items the endpoint accepted |
//! | `records_dropped_total` | `reason` | items given up on, whoever gave up (one family, shared with the exporter) |
//! | `memory_used_bytes`, `memory_limit_bytes` | | the process-wide budget between sources and queue |
//! | `pipeline_envelopes` | `source`, `signal` | envelopes waiting in each source's channel to its batcher |
//! | `pipeline_channel_capacity_envelopes` | `source`, `signal` | the bound of each such channel |
//! | `batch_flushes_total` | `signal`, `trigger` | batches appended to the queue, by what closed them |
//! | `otlp_refused_requests_total` | `reason` | OTLP requests answered with a retryable refusal by the agent's pipeline |
//! | `build_info` | `version` | constant 1 |
//!
//! `source` ∈ file, host, scrape, otlp; `signal` ∈ logs, traces, metrics;
//! `trigger` ∈ bytes, items, timeout, shutdown; drop `reason` ∈
//! rejected_by_endpoint, permanent_error, retries_exhausted, too_large (the
//! exporter's, plus the batcher's single items larger than a queue record),
//! undecodable (a queue record that no longer decodes), queue_error (host or
//! scrape data, which no source would resend, that the queue refused). Records removed by
//! the disk queue's `drop_oldest` are counted by the queue
//! (`queue_dropped_records_total`, in batches: the queue does not open them).

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::mpsc;

use super::{Envelope, MemoryLimiter, Signal};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceSignalLabels {
    source: &'static str,
    signal: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlushLabels {
    signal: &'static str,
    trigger: &'static str,
}

/// `records_dropped_total{reason}`: items the agent gave up on. Created
/// once per process and handed to every stage that can drop (the exporter,
/// the batcher, the drain), so the family is registered exactly once.
#[derive(Clone, Debug, Default)]
pub struct DroppedRecords {
    family: Family<ReasonLabels, Counter>,
}

impl DroppedRecords {
    /// Every `reason` value, pre-created at 0 so `rate()` and alerts see the
    /// series before the first loss.
    pub const REASONS: [&'static str; 6] = [
        "rejected_by_endpoint",
        "permanent_error",
        "retries_exhausted",
        "too_large",
        "undecodable",
        "queue_error",
    ];

    /// Creates and registers the family in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let d = DroppedRecords::default();
        registry.register(
            "records_dropped",
            "Items (log records, spans, metric data points) the agent gave up on, by reason",
            d.family.clone(),
        );
        for reason in Self::REASONS {
            let _ = d.family.get_or_create(&ReasonLabels { reason });
        }
        d
    }

    /// Counts `items` dropped for `reason` (one of [`Self::REASONS`]). The
    /// caller logs: it knows why.
    pub fn add(&self, reason: &'static str, items: u64) {
        debug_assert!(Self::REASONS.contains(&reason), "unknown reason {reason}");
        self.family
            .get_or_create(&ReasonLabels { reason })
            .inc_by(items);
    }

    /// The current count for `reason` (tests, and the shutdown summary).
    pub fn get(&self, reason: &'static str) -> u64 {
        self.family.get_or_create(&ReasonLabels { reason }).get()
    }
}

/// One input channel of a batcher, for the depth gauges. Weak: a scrape must
/// never keep a channel open that its sources closed.
struct Channel {
    source: &'static str,
    signal: &'static str,
    sender: mpsc::WeakSender<Envelope>,
    capacity: usize,
}

/// The pipeline's counters, shared by its stages.
#[derive(Clone, Debug)]
pub struct PipelineTelemetry {
    received: Family<SourceSignalLabels, Counter>,
    sent: Family<SignalLabels, Counter>,
    flushes: Family<FlushLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    pub dropped: DroppedRecords,
    gauges: Arc<Mutex<Vec<Channel>>>,
}

/// Known (source, signal) pairs, pre-created at 0.
const INPUTS: [(&str, Signal); 6] = [
    ("file", Signal::Logs),
    ("host", Signal::Metrics),
    ("scrape", Signal::Metrics),
    ("otlp", Signal::Logs),
    ("otlp", Signal::Traces),
    ("otlp", Signal::Metrics),
];

/// `otlp_refused_requests_total{reason}` values.
pub(crate) const REFUSALS: [&str; 4] = ["memory_limit", "pipeline_full", "not_durable", "stopping"];

impl PipelineTelemetry {
    /// Registers everything but `records_dropped_total`, which `dropped`
    /// already is.
    pub fn register(
        registry: &mut Registry,
        limiter: &MemoryLimiter,
        dropped: DroppedRecords,
    ) -> Self {
        let t = PipelineTelemetry {
            received: Family::default(),
            sent: Family::default(),
            flushes: Family::default(),
            refused: Family::default(),
            dropped,
            gauges: Arc::default(),
        };
        registry.register(
            "records_received",
            "Items (log records, spans, metric data points) that entered the pipeline, by source and signal",
            t.received.clone(),
        );
        registry.register(
            "records_sent",
            "Items the OTLP endpoint accepted, by signal",
            t.sent.clone(),
        );
        registry.register(
            "batch_flushes",
            "Batches appended to the disk queue, by signal and what closed them",
            t.flushes.clone(),
        );
        registry.register(
            "otlp_refused_requests",
            "OTLP requests the pipeline refused with a retryable status (the client retries), by reason",
            t.refused.clone(),
        );
        registry.register(
            "build",
            "Agent build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        for (source, signal) in INPUTS {
            let _ = t.received.get_or_create(&SourceSignalLabels {
                source,
                signal: signal.as_str(),
            });
        }
        for s in Signal::ALL {
            let _ = t.sent.get_or_create(&SignalLabels { signal: s.as_str() });
        }
        for reason in REFUSALS {
            let _ = t.refused.get_or_create(&ReasonLabels { reason });
        }
        registry.register_collector(Box::new(Gauges {
            limiter: limiter.clone(),
            channels: t.gauges.clone(),
        }));
        t
    }

    /// A channel from `source` to the `signal` batcher, for the depth gauges.
    pub(crate) fn watch_channel(
        &self,
        source: &'static str,
        signal: Signal,
        sender: &mpsc::Sender<Envelope>,
    ) {
        self.gauges.lock().push(Channel {
            source,
            signal: signal.as_str(),
            sender: sender.downgrade(),
            capacity: sender.max_capacity(),
        });
    }

    pub(crate) fn received(&self, source: &'static str, signal: Signal, items: usize) {
        self.received
            .get_or_create(&SourceSignalLabels {
                source,
                signal: signal.as_str(),
            })
            .inc_by(items as u64);
    }

    pub(crate) fn sent(&self, signal: Signal, items: u64) {
        self.sent
            .get_or_create(&SignalLabels {
                signal: signal.as_str(),
            })
            .inc_by(items);
    }

    pub(crate) fn flushed(&self, signal: Signal, trigger: &'static str) {
        self.flushes
            .get_or_create(&FlushLabels {
                signal: signal.as_str(),
                trigger,
            })
            .inc();
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Items received so far from `source` for `signal` (tests).
    pub fn received_count(&self, source: &'static str, signal: Signal) -> u64 {
        self.received
            .get_or_create(&SourceSignalLabels {
                source,
                signal: signal.as_str(),
            })
            .get()
    }

    /// Items sent so far for `signal` (tests).
    pub fn sent_count(&self, signal: Signal) -> u64 {
        self.sent
            .get_or_create(&SignalLabels {
                signal: signal.as_str(),
            })
            .get()
    }
}

/// Memory and channel gauges, read at scrape time so they never drift.
#[derive(Debug)]
struct Gauges {
    limiter: MemoryLimiter,
    channels: Arc<Mutex<Vec<Channel>>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.source, self.signal)
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let used = ConstGauge::new(self.limiter.used_bytes() as i64);
        used.encode(encoder.encode_descriptor(
            "memory_used",
            "Bytes of payload reserved between the sources and the disk queue",
            Some(&Unit::Bytes),
            used.metric_type(),
        )?)?;
        let limit = ConstGauge::new(self.limiter.limit_bytes() as i64);
        limit.encode(encoder.encode_descriptor(
            "memory_limit",
            "The memory budget (memory.limit): sources wait or refuse beyond it",
            Some(&Unit::Bytes),
            limit.metric_type(),
        )?)?;

        let channels = self.channels.lock();
        let mut depth = encoder.encode_descriptor(
            "pipeline_envelopes",
            "Envelopes waiting in a source's channel to its signal's batcher",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for c in channels.iter() {
            let waiting = c
                .sender
                .upgrade()
                .map_or(0, |s| s.max_capacity() - s.capacity());
            let labels = SourceSignalLabels {
                source: c.source,
                signal: c.signal,
            };
            ConstGauge::new(waiting as i64).encode(depth.encode_family(&labels)?)?;
        }
        let mut cap = encoder.encode_descriptor(
            "pipeline_channel_capacity_envelopes",
            "Bound of a source's channel to its signal's batcher",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for c in channels.iter() {
            let labels = SourceSignalLabels {
                source: c.source,
                signal: c.signal,
            };
            ConstGauge::new(c.capacity as i64).encode(cap.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
