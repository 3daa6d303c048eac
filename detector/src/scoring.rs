//! The scoring loop's settings and the state it keeps per series.
//!
//! # The loop
//!
//! Every step the service calls [`Ingest::flush`](crate::ingest::Ingest::flush)
//! with the clock, and runs each closed [`StepPoint`](crate::ingest::StepPoint)
//! through its series' [`SeriesDetector`] (kept in the ingest registry's
//! per-series state, [`SeriesState`]), then hands the verdict to the
//! incident table. Points come sorted by step, then series, so every series
//! sees its points in time order.
//!
//! # Clocks
//!
//! - `wall` (default): the clock is the machine's. A step `[t, t+step)`
//!   closes at `t + step + grace` (ingest's rule), and the loop wakes right
//!   after each such moment, so a point is scored within about
//!   `step + grace` of its step's start.
//! - `event`: the clock follows the data — the **watermark** is the newest
//!   item timestamp received, minus `ingest.max_future` (so a batch may
//!   span `max_future + grace` without its oldest items counting as late),
//!   and never ahead of the wall clock. Replays, demos and tests can feed
//!   hours of real-timestamped history in seconds and get the same series,
//!   verdicts and incidents they would get live. Its limit: without data
//!   the clock stops, so a source that goes silent is not seen as a drop to
//!   zero until other data moves the clock. Use `wall` in production.
//!
//! # Late and out-of-order data (the ingest's rule, restated)
//!
//! An item belongs to the step of its own timestamp. Steps stay open until
//! the clock passes their end plus `ingest.grace` (default one step); in
//! that time items may arrive in any order. After it, the step's value is
//! scored and final: an item for it is **late**, dropped and counted
//! (`ingest_rejected_items_total{reason="late"}`), and reported to the
//! sender as OTLP partial success. Items more than `ingest.max_future`
//! ahead of the clock are dropped as `future` (a skewed node clock),
//! never clamped.
//!
//! # Memory per series
//!
//! `SeriesState` is the detector ([`SeriesDetector::state_bytes`], ≈ 3.3
//! KiB with the engine defaults, boxed so the registry slot stays small),
//! plus `recent_points` × 40 bytes of [`RecentPoint`]s (1.2 KiB at the
//! default 30) for `/api/v1/series`, plus ~40 bytes of bookkeeping; the
//! registry's key adds ~350 bytes. The `memory` bench measures the whole
//! process at 100 000 series past warm-up: 5.3 KB per series by this
//! estimate, 6.0 KB of RSS (allocator overhead included), 4.1 KB per
//! series in a snapshot (`cargo bench -p argus-detector --bench memory`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{SeriesDetector, Verdict};
use crate::incident::IncidentSeq;

/// How the scoring clock advances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// The machine's clock.
    #[default]
    Wall,
    /// The newest data timestamp (a watermark): replays and tests.
    Event,
}

/// `scoring:` — the step, the clock, what is kept per series, snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringConfig {
    /// One value per series per step, for ingest and scoring alike (whole
    /// seconds).
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    pub clock: ClockMode,
    /// Scored points kept per series for `/api/v1/series` (at least 1: the
    /// last one feeds the per-series outputs). 40 bytes each.
    pub recent_points: usize,
    pub snapshot: SnapshotConfig,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            step: Duration::from_secs(10),
            clock: ClockMode::Wall,
            recent_points: 30,
            snapshot: SnapshotConfig::default(),
        }
    }
}

/// Model state on disk (see [`crate::snapshot`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Directory of `detector.snapshot`. Unset: nothing is persisted and a
    /// restart re-learns every baseline (a warning says so at start).
    pub dir: Option<PathBuf>,
    /// Written this often, and once more at shutdown.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            dir: None,
            interval: Duration::from_secs(300),
        }
    }
}

/// Most `recent_points` accepted (a day of 10 s steps would be 8 640).
pub const MAX_RECENT_POINTS: usize = 1440;

impl ScoringConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.step.as_secs() == 0 || self.step.subsec_nanos() != 0 || self.step.as_secs() > 3600 {
            p.push(format!(
                "{path}.step: must be a whole number of seconds between 1s and 1h, got {:?}",
                self.step
            ));
        }
        if self.recent_points == 0 || self.recent_points > MAX_RECENT_POINTS {
            p.push(format!(
                "{path}.recent_points: must be between 1 and {MAX_RECENT_POINTS}, got {}",
                self.recent_points
            ));
        }
        if let Some(d) = &self.snapshot.dir
            && d.as_os_str().is_empty()
        {
            p.push(format!(
                "{path}.snapshot.dir: empty path (leave it unset to disable snapshots)"
            ));
        }
        if self.snapshot.interval < Duration::from_secs(1) {
            p.push(format!(
                "{path}.snapshot.interval: must be at least 1s, got {:?}",
                self.snapshot.interval
            ));
        }
        p
    }
}

/// Bits of [`RecentPoint::flags`].
pub mod flags {
    pub const ANOMALOUS: u8 = 1;
    pub const ONSET: u8 = 2;
    pub const LEARNING: u8 = 4;
    /// Scored with `peek` under a maintenance window: shown, not learnt.
    pub const MAINTENANCE: u8 = 8;
    pub const FAMILIAR: u8 = 16;
}

/// One scored point as the API shows it (40 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecentPoint {
    /// Step start, unix seconds.
    pub ts: i64,
    pub value: f64,
    pub score: f32,
    pub expected: f32,
    pub lower: f32,
    pub upper: f32,
    pub flags: u8,
}

impl RecentPoint {
    pub fn new(ts: i64, value: f64, v: &Verdict, maintenance: bool) -> Self {
        let mut f = 0;
        if v.anomalous && !maintenance {
            f |= flags::ANOMALOUS;
        }
        if v.onset && !maintenance {
            f |= flags::ONSET;
        }
        if v.learning {
            f |= flags::LEARNING;
        }
        if maintenance {
            f |= flags::MAINTENANCE;
        }
        if v.familiar {
            f |= flags::FAMILIAR;
        }
        RecentPoint {
            ts,
            value,
            score: v.score as f32,
            expected: v.expected as f32,
            lower: v.lower as f32,
            upper: v.upper as f32,
            flags: f,
        }
    }

    pub fn anomalous(&self) -> bool {
        self.flags & flags::ANOMALOUS != 0
    }

    pub fn learning(&self) -> bool {
        self.flags & flags::LEARNING != 0
    }

    pub fn maintenance(&self) -> bool {
        self.flags & flags::MAINTENANCE != 0
    }
}

/// What the service keeps per series, inside the ingest registry.
#[derive(Debug, Default)]
pub struct SeriesState {
    /// `None` until the series' first point: that is when a snapshot's
    /// state for the same key is claimed, or a fresh detector made.
    pub detector: Option<Box<SeriesDetector>>,
    /// Newest last, at most `recent_points`.
    pub recent: VecDeque<RecentPoint>,
    /// The open incident this series is an active member of.
    pub incident: Option<IncidentSeq>,
    /// Stable hash of the series key (the `series_id` of the outputs and
    /// the API), set with the detector.
    pub key_hash: u64,
}

impl SeriesState {
    pub fn push_recent(&mut self, p: RecentPoint, cap: usize) {
        while self.recent.len() >= cap.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(p);
    }

    pub fn last(&self) -> Option<&RecentPoint> {
        self.recent.back()
    }

    /// Heap and inline bytes, for the memory estimate.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.detector.as_ref().map_or(0, |d| d.state_bytes())
            + self.recent.capacity() * std::mem::size_of::<RecentPoint>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_points_are_bounded_and_40_bytes() {
        assert_eq!(std::mem::size_of::<RecentPoint>(), 40);
        let mut s = SeriesState::default();
        let v = Verdict::default();
        for t in 0..10 {
            s.push_recent(RecentPoint::new(t, t as f64, &v, false), 3);
        }
        assert_eq!(s.recent.len(), 3);
        assert_eq!(s.last().unwrap().ts, 9);
        assert_eq!(s.recent.front().unwrap().ts, 7);
    }

    #[test]
    fn maintenance_points_are_never_anomalous() {
        let v = Verdict {
            anomalous: true,
            onset: true,
            score: 0.9,
            ..Default::default()
        };
        let p = RecentPoint::new(0, 1.0, &v, true);
        assert!(!p.anomalous() && p.maintenance());
        assert!(RecentPoint::new(0, 1.0, &v, false).anomalous());
    }

    #[test]
    fn problems_name_fields() {
        let c = ScoringConfig {
            step: Duration::from_millis(500),
            recent_points: 0,
            snapshot: SnapshotConfig {
                dir: Some(PathBuf::new()),
                interval: Duration::ZERO,
            },
            ..Default::default()
        };
        let p = c.problems("scoring");
        let fields: Vec<&str> = p.iter().map(|m| m.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "scoring.step",
                "scoring.recent_points",
                "scoring.snapshot.dir",
                "scoring.snapshot.interval"
            ]
        );
    }
}
