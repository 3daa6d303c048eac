//! The exporter's self-metrics and the log lines that go with them: each
//! notable occurrence is one method here that logs and counts together.
//!
//! Registered under the prefix the caller's registry carries
//! (`argus_agent_`):
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `export_requests_total` | `signal`, `outcome` | request attempts by result |
//! | `export_duration_seconds` | `signal` | time of each attempt |
//! | `export_retries_total` | `signal` | retries scheduled |
//! | `export_items_total` | `signal` | items the endpoint accepted |
//! | `export_sent_bytes_total` | `signal` | protobuf bytes (before compression) of accepted requests |
//! | `export_in_flight_requests` | | attempts on the wire now |
//! | `records_dropped_total` | `reason` | items given up on (the pipeline's family, see `crate::pipeline`) |
//!
//! `outcome` ∈ success, partial_success, retryable_error, throttled,
//! unreachable, timeout, permanent_error, too_large; `reason` ∈
//! rejected_by_endpoint, permanent_error, retries_exhausted, too_large.
//! The endpoint and credentials are never labels; logs name the endpoint's
//! scheme, host and port only.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::Signal;
use super::status::Outcome;
use crate::pipeline::DroppedRecords;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    signal: &'static str,
    outcome: &'static str,
}

/// Why items were given up on (`records_dropped_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The endpoint accepted the request but rejected these items
    /// (OTLP partial success).
    RejectedByEndpoint,
    /// The endpoint refused the request with a non-retryable status.
    PermanentError,
    /// `retry.max_elapsed` ran out.
    RetriesExhausted,
    /// A single item larger than the endpoint accepts.
    TooLarge,
    /// A request that had to be split does not decode.
    Undecodable,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::RejectedByEndpoint => "rejected_by_endpoint",
            DropReason::PermanentError => "permanent_error",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::TooLarge => "too_large",
            DropReason::Undecodable => "undecodable",
        }
    }
}

fn histogram() -> Histogram {
    // 5 ms … ~41 s: loopback through a slow cross-region endpoint.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

#[derive(Debug)]
pub(crate) struct Telemetry {
    /// `scheme://host:port`, for logs.
    endpoint: String,
    requests: Family<RequestLabels, Counter>,
    duration: Family<SignalLabels, Histogram, fn() -> Histogram>,
    retries: Family<SignalLabels, Counter>,
    items: Family<SignalLabels, Counter>,
    bytes: Family<SignalLabels, Counter>,
    in_flight: Gauge,
    /// Shared with the rest of the pipeline: one `records_dropped_total`.
    dropped: DroppedRecords,
}

impl Telemetry {
    /// Registers the exporter's own metrics; `dropped` is the process' one
    /// `records_dropped_total` family, registered by its creator.
    pub(crate) fn register(
        registry: &mut Registry,
        endpoint: String,
        dropped: DroppedRecords,
    ) -> Self {
        let t = Telemetry {
            endpoint,
            requests: Family::default(),
            duration: Family::new_with_constructor(histogram as fn() -> Histogram),
            retries: Family::default(),
            items: Family::default(),
            bytes: Family::default(),
            in_flight: Gauge::default(),
            dropped,
        };
        // prometheus-client appends `_total` to counters and the unit suffix.
        registry.register(
            "export_requests",
            "OTLP export request attempts, by signal and outcome",
            t.requests.clone(),
        );
        registry.register_with_unit(
            "export_duration",
            "Duration of one OTLP export request attempt",
            Unit::Seconds,
            t.duration.clone(),
        );
        registry.register(
            "export_retries",
            "OTLP export retries scheduled after a retryable failure",
            t.retries.clone(),
        );
        registry.register(
            "export_items",
            "Log records, spans and metric data points accepted by the endpoint",
            t.items.clone(),
        );
        registry.register_with_unit(
            "export_sent",
            "Uncompressed protobuf bytes of requests the endpoint accepted",
            Unit::Bytes,
            t.bytes.clone(),
        );
        registry.register(
            "export_in_flight_requests",
            "OTLP export requests on the wire now",
            t.in_flight.clone(),
        );
        // Pre-create the series users alert on, so `rate()` sees a zero
        // before the first loss instead of no series at all.
        for s in Signal::ALL {
            let _ = t.items.get_or_create(&SignalLabels { signal: s.as_str() });
            let _ = t
                .retries
                .get_or_create(&SignalLabels { signal: s.as_str() });
        }
        t
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// An attempt goes on the wire; the guard takes it off.
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    fn attempt(&self, signal: Signal, outcome: Outcome, elapsed: Duration) {
        let signal = signal.as_str();
        self.requests
            .get_or_create(&RequestLabels {
                signal,
                outcome: outcome.as_str(),
            })
            .inc();
        self.duration
            .get_or_create(&SignalLabels { signal })
            .observe(elapsed.as_secs_f64());
    }

    /// The endpoint took the request (`rejected` of its `items` excepted).
    pub(crate) fn accepted(
        &self,
        signal: Signal,
        elapsed: Duration,
        items: u64,
        bytes: usize,
        rejected: u64,
        message: Option<&str>,
    ) {
        let outcome = if rejected > 0 {
            Outcome::PartialSuccess
        } else {
            Outcome::Success
        };
        self.attempt(signal, outcome, elapsed);
        let labels = SignalLabels {
            signal: signal.as_str(),
        };
        self.items.get_or_create(&labels).inc_by(items - rejected);
        self.bytes.get_or_create(&labels).inc_by(bytes as u64);
        if rejected > 0 {
            self.dropped(
                signal,
                DropReason::RejectedByEndpoint,
                rejected,
                message.unwrap_or("(no message)"),
            );
        } else if let Some(m) = message {
            // A partial_success with nothing rejected carries a warning.
            tracing::warn!(endpoint = %self.endpoint, signal = signal.as_str(), message = m, "OTLP endpoint accepted the export with a warning");
        }
    }

    /// An attempt failed (retried or not, decided by the caller).
    pub(crate) fn failed(&self, signal: Signal, outcome: Outcome, elapsed: Duration) {
        self.attempt(signal, outcome, elapsed);
    }

    pub(crate) fn retrying(
        &self,
        signal: Signal,
        items: u64,
        attempt: u32,
        delay: Duration,
        error: &str,
    ) {
        self.retries
            .get_or_create(&SignalLabels {
                signal: signal.as_str(),
            })
            .inc();
        tracing::warn!(
            endpoint = %self.endpoint,
            signal = signal.as_str(),
            items,
            attempt,
            retry_in = ?delay,
            error,
            "OTLP export failed; will retry"
        );
    }

    pub(crate) fn dropped(&self, signal: Signal, reason: DropReason, items: u64, detail: &str) {
        self.dropped.add(reason.as_str(), items);
        tracing::error!(
            endpoint = %self.endpoint,
            signal = signal.as_str(),
            items,
            reason = reason.as_str(),
            detail,
            "OTLP export dropped data"
        );
    }

    pub(crate) fn compression_refused(
        &self,
        refused: super::Compression,
        next: super::Compression,
        detail: &str,
    ) {
        tracing::warn!(
            endpoint = %self.endpoint,
            refused = refused.as_str(),
            now = next.as_str(),
            detail,
            "OTLP endpoint cannot decompress what the exporter sends; stepping down for good (set exporter.compression to silence this)"
        );
    }

    pub(crate) fn resplitting(&self, signal: Signal, bytes: usize, parts: usize, detail: &str) {
        tracing::warn!(
            endpoint = %self.endpoint,
            signal = signal.as_str(),
            bytes,
            parts,
            detail,
            "OTLP endpoint refused the request as too large; resending it in smaller parts (lower max_request_bytes to avoid this)"
        );
    }

    pub(crate) fn oversized_item(&self, signal: Signal, bytes: usize, max: usize) {
        tracing::warn!(
            endpoint = %self.endpoint,
            signal = signal.as_str(),
            bytes,
            max_request_bytes = max,
            "a single item is larger than max_request_bytes; sending it alone"
        );
    }
}

/// Decrements the in-flight gauge on drop (also when the attempt is
/// cancelled).
pub(crate) struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
