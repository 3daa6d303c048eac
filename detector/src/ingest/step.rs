//! Step windows, the ingest clock, and the late/future rule.
//!
//! Steps are `[k·step, (k+1)·step)` in unix seconds; an item belongs to the
//! step of its **own** timestamp (span end, log record time, data point
//! time), never to the time it arrived.
//!
//! The ingest clock is the largest `now` ever passed to `ingest` or
//! `flush` (a wall clock stepping back does not re-open anything). From it
//! follows the **watermark** `W = ⌊(clock − grace) / step⌋`:
//!
//! - step `k < W` is **closed**: its end plus `grace` has passed. Closed
//!   steps are emitted by the next `flush` and never re-opened; an item for
//!   one is **late**: dropped and counted (`late`). The rule depends only on
//!   the clock, not on when `flush` happens to run, so replaying the same
//!   items with the same clock gives the same answer.
//! - step `k ≥ W` is **open**: items may arrive in any order within and
//!   across open steps (the property tests check that any permutation
//!   gives the same values).
//! - an item more than `max_future` (default one step) ahead of the clock
//!   is **future**: dropped and counted, not clamped. Clamping would file a
//!   skewed node's data under the wrong step — spikes in one step, holes in
//!   another, and broken counter rates — while a counted rejection (and a
//!   log line naming the reason) points at the clock problem. Within the
//!   tolerance the item is kept in its own (future, still open) step.

/// Nanoseconds per second.
pub const NANOS: i64 = 1_000_000_000;

#[derive(Clone, Copy, Debug)]
pub(crate) struct StepClock {
    step: i64,
    grace: i64,
    max_future: i64,
    clock: Option<i64>,
}

/// Why an item's timestamp is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timing {
    Late,
    Future,
}

impl StepClock {
    /// All in whole seconds; `step ≥ 1`.
    pub fn new(step: i64, grace: i64, max_future: i64) -> Self {
        assert!(step >= 1, "validated by IngestConfig");
        StepClock {
            step,
            grace,
            max_future,
            clock: None,
        }
    }

    pub fn step(&self) -> i64 {
        self.step
    }

    /// Moves the clock forward (never back).
    pub fn advance(&mut self, now: i64) {
        self.clock = Some(self.clock.map_or(now, |c| c.max(now)));
    }

    pub fn now(&self) -> i64 {
        self.clock.unwrap_or(0)
    }

    /// First open step.
    pub fn watermark(&self) -> i64 {
        match self.clock {
            Some(c) => (c - self.grace).div_euclid(self.step),
            None => i64::MIN,
        }
    }

    /// Step index of a timestamp in unix nanoseconds.
    pub fn step_of(&self, ts_nanos: i64) -> i64 {
        ts_nanos.div_euclid(self.step * NANOS)
    }

    /// The open step of an item stamped `ts_nanos`, or why it has none.
    pub fn classify(&self, ts_nanos: i64) -> Result<i64, Timing> {
        let now = self.now();
        if ts_nanos > (now + self.max_future).saturating_mul(NANOS) {
            return Err(Timing::Future);
        }
        let k = self.step_of(ts_nanos);
        if k < self.watermark() {
            return Err(Timing::Late);
        }
        Ok(k)
    }
}

/// An OTLP `fixed64` nanosecond timestamp as `i64` (saturating: the year
/// 2262 is far enough).
pub(crate) fn nanos(ts: u64) -> i64 {
    i64::try_from(ts).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_close_at_end_plus_grace_and_future_is_bounded() {
        let mut c = StepClock::new(10, 10, 10);
        c.advance(1_000);
        // Clock 1000, grace 10: steps ending at or before 990 are closed.
        assert_eq!(c.watermark(), 99);
        let at = |s: f64| (s * NANOS as f64) as i64;
        assert_eq!(c.classify(at(985.0)), Err(Timing::Late));
        assert_eq!(c.classify(at(989.999)), Err(Timing::Late));
        assert_eq!(c.classify(at(990.0)), Ok(99));
        assert_eq!(c.classify(at(1_000.0)), Ok(100));
        assert_eq!(c.classify(at(1_010.0)), Ok(101));
        assert_eq!(c.classify(at(1_010.5)), Err(Timing::Future));
        // 1009 closes nothing new; 1010 closes step 99.
        c.advance(1_009);
        assert_eq!(c.watermark(), 99);
        c.advance(1_010);
        assert_eq!(c.watermark(), 100);
        // The clock never moves back.
        c.advance(500);
        assert_eq!(c.watermark(), 100);
    }

    #[test]
    fn negative_and_saturating_times() {
        let c = StepClock::new(10, 0, 10);
        assert_eq!(c.step_of(-1), -1);
        assert_eq!(nanos(u64::MAX), i64::MAX);
    }
}
