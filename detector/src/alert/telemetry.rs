//! The alert client's self-metrics and the log lines that go with them: each
//! notable occurrence is one method that logs and counts together.
//!
//! Registered under the caller's prefix (`argus_detector_`):
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `alerts_sent_total` | `outcome` | alerts in POSTs, by result (a batch of n counts n) |
//! | `alertmanager_requests_total` | `alertmanager`, `outcome` | POST attempts per replica |
//! | `alerts_dropped_total` | `reason` | alerts given up on for one replica |
//! | `alerts_active` | `state` | alerts the notifier keeps sending: `firing`, `resolved` |
//! | `alertmanager_pending_alerts` | `alertmanager` | alerts waiting for a replica |
//! | `notification_latency_seconds` | `alertmanager` | from queueing to the replica's acceptance |
//!
//! `alertmanager` is the replica's index in `urls` (never the URL: URLs can
//! carry tenant names and change with DNS). `outcome` ∈ `success`,
//! `retryable_error` (5xx, 408, 429), `unreachable` (connect or TLS
//! failure), `timeout`, `rejected` (other 4xx: retrying cannot help).
//! `reason` ∈ `queue_full`, `rejected`, `shutdown`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    alertmanager: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    alertmanager: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// How one POST attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    RetryableError,
    Unreachable,
    Timeout,
    Rejected,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 5] = [
        Outcome::Success,
        Outcome::RetryableError,
        Outcome::Unreachable,
        Outcome::Timeout,
        Outcome::Rejected,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::RetryableError => "retryable_error",
            Outcome::Unreachable => "unreachable",
            Outcome::Timeout => "timeout",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Why alerts were given up on for one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The replica's queue was full; the oldest waiting alert made room.
    QueueFull,
    /// The replica refused the batch with a non-retryable status.
    Rejected,
    /// Shutdown's grace period ended before the replica took them.
    Shutdown,
}

impl DropReason {
    fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::Shutdown => "shutdown",
        }
    }
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~82 s: a healthy loopback POST up to a long outage's backlog.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

#[derive(Clone, Debug)]
pub(crate) struct Telemetry {
    sent: Family<OutcomeLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    active: Family<StateLabels, Gauge>,
    pending: Family<ReplicaLabels, Gauge>,
    latency: Family<ReplicaLabels, Histogram, fn() -> Histogram>,
}

impl Telemetry {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let t = Telemetry {
            sent: Family::default(),
            requests: Family::default(),
            dropped: Family::default(),
            active: Family::default(),
            pending: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        registry.register(
            "alerts_sent",
            "Alerts carried by POSTs to Alertmanager, by outcome (a batch of n alerts counts n)",
            t.sent.clone(),
        );
        registry.register(
            "alertmanager_requests",
            "POST /api/v2/alerts attempts per Alertmanager replica (index in urls), by outcome",
            t.requests.clone(),
        );
        registry.register(
            "alerts_dropped",
            "Alerts given up on for one Alertmanager replica, by reason",
            t.dropped.clone(),
        );
        registry.register(
            "alerts_active",
            "Alerts the notifier keeps (re)sending, by state",
            t.active.clone(),
        );
        registry.register(
            "alertmanager_pending_alerts",
            "Alerts waiting to be sent to an Alertmanager replica",
            t.pending.clone(),
        );
        registry.register_with_unit(
            "notification_latency",
            "Time from queueing alerts for a replica to the replica accepting them",
            Unit::Seconds,
            t.latency.clone(),
        );
        for state in ["firing", "resolved"] {
            let _ = t.active.get_or_create(&StateLabels { state });
        }
        t
    }

    pub(crate) fn set_active(&self, firing: usize, resolved: usize) {
        self.active
            .get_or_create(&StateLabels { state: "firing" })
            .set(firing as i64);
        self.active
            .get_or_create(&StateLabels { state: "resolved" })
            .set(resolved as i64);
    }

    pub(crate) fn replica(&self, index: usize, endpoint: String) -> ReplicaTelemetry {
        let label = ReplicaLabels {
            alertmanager: index.to_string(),
        };
        let pending = self.pending.get_or_create(&label).clone();
        // Every series at zero from the start: `rate()` and the
        // `ArgusAlertDeliveryFailing` rule see 0, not nothing.
        for outcome in Outcome::ALL {
            let _ = self.requests.get_or_create(&RequestLabels {
                alertmanager: label.alertmanager.clone(),
                outcome: outcome.as_str(),
            });
            let _ = self.sent.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            });
        }
        for reason in [
            DropReason::QueueFull,
            DropReason::Rejected,
            DropReason::Shutdown,
        ] {
            let _ = self.dropped.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        ReplicaTelemetry {
            parent: self.clone(),
            index: label.alertmanager.clone(),
            endpoint,
            pending,
            latency: self.latency.get_or_create(&label).clone(),
            failing_since: AtomicU64::new(0),
        }
    }
}

/// One replica's view of the metrics; logs name the replica by index and
/// `scheme://host:port` (never credentials or paths).
#[derive(Debug)]
pub(crate) struct ReplicaTelemetry {
    parent: Telemetry,
    index: String,
    endpoint: String,
    pending: Gauge,
    latency: Histogram,
    /// Consecutive failed attempts (0 while healthy), so an outage is logged
    /// when it starts and when it ends, not once per retry.
    failing_since: AtomicU64,
}

impl ReplicaTelemetry {
    pub(crate) fn set_pending(&self, n: usize) {
        self.pending.set(n as i64);
    }

    fn request(&self, outcome: Outcome, alerts: usize) {
        self.parent
            .requests
            .get_or_create(&RequestLabels {
                alertmanager: self.index.clone(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.parent
            .sent
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc_by(alerts as u64);
    }

    pub(crate) fn delivered(&self, alerts: usize, latency: Duration) {
        use std::sync::atomic::Ordering;
        self.request(Outcome::Success, alerts);
        self.latency.observe(latency.as_secs_f64());
        let failures = self.failing_since.swap(0, Ordering::Relaxed);
        if failures > 0 {
            tracing::info!(alertmanager = %self.index, endpoint = %self.endpoint, failed_attempts = failures, "Alertmanager reachable again; alerts delivered");
        }
    }

    pub(crate) fn failed(&self, outcome: Outcome, alerts: usize, error: &str, retry_in: Duration) {
        use std::sync::atomic::Ordering;
        self.request(outcome, alerts);
        let failures = self.failing_since.fetch_add(1, Ordering::Relaxed) + 1;
        if failures == 1 {
            tracing::warn!(alertmanager = %self.index, endpoint = %self.endpoint, outcome = outcome.as_str(), %error, ?retry_in, "sending alerts to Alertmanager failed; retrying with backoff (other replicas are not affected)");
        } else {
            tracing::debug!(alertmanager = %self.index, endpoint = %self.endpoint, outcome = outcome.as_str(), %error, attempt = failures, ?retry_in, "Alertmanager still failing");
        }
    }

    pub(crate) fn rejected(&self, alerts: usize, error: &str) {
        self.request(Outcome::Rejected, alerts);
        tracing::error!(alertmanager = %self.index, endpoint = %self.endpoint, alerts, %error, "Alertmanager rejected a batch of alerts; not retrying (the alerts are re-sent at their next resend)");
        self.dropped(DropReason::Rejected, alerts);
    }

    pub(crate) fn queue_full(&self, dropped: usize) {
        tracing::warn!(alertmanager = %self.index, endpoint = %self.endpoint, dropped, "Alertmanager queue full; dropped the oldest waiting alerts (they come back at their next resend)");
        self.dropped(DropReason::QueueFull, dropped);
    }

    pub(crate) fn shutdown_unsent(&self, alerts: usize) {
        tracing::warn!(alertmanager = %self.index, endpoint = %self.endpoint, alerts, "shutdown grace period ended before this Alertmanager took the final state of these alerts");
        self.dropped(DropReason::Shutdown, alerts);
    }

    fn dropped(&self, reason: DropReason, alerts: usize) {
        self.parent
            .dropped
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc_by(alerts as u64);
    }
}
