//! The service's own metrics (under `argus_detector_`), and one function per
//! notable occurrence that logs it and counts it together.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `scoring_points_total` | counter | step points scored (learnt or peeked) |
//! | `scoring_maintenance_points_total` | counter | of those, scored with `peek` under a maintenance window |
//! | `scoring_step_duration_seconds` | histogram | one scoring pass: flush, score every closed point, incidents, outputs |
//! | `scoring_lag_seconds` | gauge | wall clock minus the end of the newest scored step (event clock: how far the data is behind) |
//! | `series_learning` | gauge | series still in warm-up (the visible "learning" state) |
//! | `incidents_open` | gauge | |
//! | `incidents_total{event}` | counter | `opened`, `resolved`, `dismissed`, `escalated` |
//! | `alerts_refused_total` | counter | alerts the notifier refused (invalid labels); logged |
//! | `snapshot_age_seconds` | gauge | since the last successful snapshot (since start when none yet) |
//! | `snapshot_bytes` | gauge | size of the last snapshot |
//! | `snapshot_duration_seconds` | gauge | how long the last one took |
//! | `snapshot_writes_total{result}` | counter | `ok`, `error` |
//! | `snapshot_restored_series` | gauge | series read from the snapshot at start |
//! | `snapshot_claimed_series_total` | counter | restored series whose data came back (state reused) |
//! | `snapshot_restore_failures_total` | counter | unusable snapshot files skipped |
//! | `maintenance_windows_active` | gauge | |
//! | `feedback_total{target}` | counter | `incident`, `series` |
//! | `build_info{version}` | info | |

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::incident::Incident;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    target: &'static str,
}

/// Seconds since the last snapshot, computed at scrape time.
#[derive(Debug)]
struct SnapshotAge {
    /// Monotonic millis of the last success (or of the start).
    last: Arc<AtomicI64>,
    epoch: Instant,
}

impl Collector for SnapshotAge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.epoch.elapsed().as_millis() as i64;
        let age = (now - self.last.load(Ordering::Relaxed)).max(0) as f64 / 1000.0;
        let m = encoder.encode_descriptor(
            "snapshot_age",
            "Seconds since the last successful snapshot (since start when there was none yet)",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(age).encode(m)
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Telemetry {
    pub points: Counter,
    pub maintenance_points: Counter,
    pub step_duration: Histogram,
    pub lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub learning: Gauge,
    pub incidents_open: Gauge,
    incidents: Family<EventLabel, Counter>,
    alerts_refused: Counter,
    snapshot_last: Arc<AtomicI64>,
    epoch: Instant,
    pub snapshot_bytes: Gauge,
    pub snapshot_duration: Gauge<f64, std::sync::atomic::AtomicU64>,
    snapshot_writes: Family<ResultLabel, Counter>,
    pub restored_series: Gauge,
    pub claimed_series: Counter,
    restore_failures: Counter,
    pub maintenance_active: Gauge,
    feedback: Family<TargetLabel, Counter>,
}

impl Telemetry {
    pub fn register(r: &mut Registry) -> Self {
        let epoch = Instant::now();
        let t = Telemetry {
            points: Counter::default(),
            maintenance_points: Counter::default(),
            step_duration: Histogram::new([
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            lag: Gauge::default(),
            learning: Gauge::default(),
            incidents_open: Gauge::default(),
            incidents: Family::default(),
            alerts_refused: Counter::default(),
            snapshot_last: Arc::new(AtomicI64::new(0)),
            epoch,
            snapshot_bytes: Gauge::default(),
            snapshot_duration: Gauge::default(),
            snapshot_writes: Family::default(),
            restored_series: Gauge::default(),
            claimed_series: Counter::default(),
            restore_failures: Counter::default(),
            maintenance_active: Gauge::default(),
            feedback: Family::default(),
        };
        r.register(
            "scoring_points",
            "Step points scored (learnt, or peeked under maintenance)",
            t.points.clone(),
        );
        r.register(
            "scoring_maintenance_points",
            "Step points scored without learning because a maintenance window covered them",
            t.maintenance_points.clone(),
        );
        r.register_with_unit(
            "scoring_step_duration",
            "One scoring pass: flush, score every closed point, incidents, outputs",
            Unit::Seconds,
            t.step_duration.clone(),
        );
        r.register_with_unit(
            "scoring_lag",
            "Wall clock minus the end of the newest scored step",
            Unit::Seconds,
            t.lag.clone(),
        );
        r.register(
            "series_learning",
            "Series still in warm-up (scores are 0 until it ends)",
            t.learning.clone(),
        );
        r.register("incidents_open", "Open incidents", t.incidents_open.clone());
        r.register(
            "incidents",
            "Incident events: opened, resolved, dismissed (feedback), escalated",
            t.incidents.clone(),
        );
        for event in ["opened", "resolved", "dismissed", "escalated"] {
            let _ = t.incidents.get_or_create(&EventLabel { event });
        }
        r.register(
            "alerts_refused",
            "Alerts the notifier refused as invalid (see the log)",
            t.alerts_refused.clone(),
        );
        r.register_collector(Box::new(SnapshotAge {
            last: t.snapshot_last.clone(),
            epoch,
        }));
        r.register_with_unit(
            "snapshot",
            "Size of the last snapshot",
            Unit::Bytes,
            t.snapshot_bytes.clone(),
        );
        r.register_with_unit(
            "snapshot_duration",
            "How long the last snapshot took",
            Unit::Seconds,
            t.snapshot_duration.clone(),
        );
        r.register(
            "snapshot_writes",
            "Snapshot writes by result",
            t.snapshot_writes.clone(),
        );
        for result in ["ok", "error"] {
            let _ = t.snapshot_writes.get_or_create(&ResultLabel { result });
        }
        r.register(
            "snapshot_restored_series",
            "Series read from the snapshot at start",
            t.restored_series.clone(),
        );
        r.register(
            "snapshot_claimed_series",
            "Restored series whose data came back, continuing with their learnt state",
            t.claimed_series.clone(),
        );
        r.register(
            "snapshot_restore_failures",
            "Unusable snapshot files skipped at start (the detector started fresh)",
            t.restore_failures.clone(),
        );
        r.register(
            "maintenance_windows_active",
            "Maintenance windows in force",
            t.maintenance_active.clone(),
        );
        r.register(
            "feedback",
            "\"Not an anomaly\" feedback by target (incident, series)",
            t.feedback.clone(),
        );
        r.register(
            "build",
            "Build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        t
    }

    pub fn incident_opened(&self, inc: &Incident) {
        self.incidents
            .get_or_create(&EventLabel { event: "opened" })
            .inc();
        let top = inc.top_members();
        tracing::warn!(
            incident = %inc.id,
            entity = %inc.entity.key(),
            severity = %inc.severity,
            series = top.first().map(|m| m.series.as_str()).unwrap_or(""),
            score = inc.max_score(),
            "incident opened"
        );
    }

    pub fn incident_resolved(&self, inc: &Incident) {
        let event = if inc.dismissed {
            "dismissed"
        } else {
            "resolved"
        };
        self.incidents.get_or_create(&EventLabel { event }).inc();
        tracing::info!(
            incident = %inc.id,
            entity = %inc.entity.key(),
            dismissed = inc.dismissed,
            members = inc.members.len(),
            duration_seconds = inc.resolved_at.unwrap_or(inc.started_at) - inc.started_at,
            "incident resolved"
        );
    }

    pub fn incident_escalated(&self, id: &str, severity: &str, rule: &str) {
        self.incidents
            .get_or_create(&EventLabel { event: "escalated" })
            .inc();
        tracing::warn!(incident = %id, severity, rule, "incident escalated: remediation did not resolve it");
    }

    pub fn alert_refused(&self, id: &str, error: &dyn std::error::Error) {
        self.alerts_refused.inc();
        tracing::error!(incident = %id, %error, "alert refused by the notifier (not sent)");
    }

    pub fn snapshot_written(&self, bytes: u64, series: usize, took: Duration) {
        self.snapshot_writes
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        self.snapshot_bytes.set(bytes as i64);
        self.snapshot_duration.set(took.as_secs_f64());
        self.snapshot_last
            .store(self.epoch.elapsed().as_millis() as i64, Ordering::Relaxed);
        tracing::debug!(bytes, series, took = ?took, "snapshot written");
    }

    pub fn snapshot_failed(&self, error: &dyn std::error::Error) {
        self.snapshot_writes
            .get_or_create(&ResultLabel { result: "error" })
            .inc();
        tracing::error!(%error, "snapshot failed; the previous one stays in place, retrying at the next interval");
    }

    pub fn snapshot_restored(&self, series: usize, incidents: usize, bytes: u64, age_seconds: i64) {
        self.restored_series.set(series as i64);
        tracing::info!(
            series,
            open_incidents = incidents,
            bytes,
            age_seconds,
            "snapshot restored"
        );
    }

    pub fn snapshot_unusable(&self, error: &dyn std::error::Error) {
        self.restore_failures.inc();
        tracing::error!(%error, "snapshot skipped: starting with fresh models");
    }

    pub fn feedback_given(&self, target: &'static str, what: &str, series: usize) {
        self.feedback.get_or_create(&TargetLabel { target }).inc();
        tracing::info!(target, what, series, "\"not an anomaly\" feedback applied");
    }
}
