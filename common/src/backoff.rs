//! Exponential backoff with full jitter (AWS architecture blog's "full jitter":
//! the delay is uniform in `[0, min(max, initial · multiplierⁿ)]`), so a fleet
//! of agents retrying against one recovering detector does not stampede it.
//!
//! A server's own hint (gRPC `RetryInfo`, HTTP `Retry-After`) takes precedence
//! over the computed delay: [`Backoff::next_with_hint`].

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Retry timing, as in the OpenTelemetry Collector's `retry_on_failure`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// First retry's upper bound.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Upper bound of any single delay.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

impl BackoffConfig {
    /// Names every problem in the config, for the caller's error report.
    pub fn problems(&self, field: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.initial_interval.is_zero() {
            out.push(format!("{field}.initial_interval: must be greater than 0"));
        }
        if self.max_interval < self.initial_interval {
            out.push(format!(
                "{field}.max_interval: must be at least initial_interval ({:?})",
                self.initial_interval
            ));
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            out.push(format!("{field}.multiplier: must be a finite number ≥ 1"));
        }
        out
    }

    pub fn build(&self) -> Backoff {
        Backoff {
            cfg: self.clone(),
            attempt: 0,
        }
    }
}

/// One retry sequence. Call [`Backoff::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// The un-jittered ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        let exp = self.cfg.multiplier.powi(self.attempt.min(64) as i32);
        let secs = self.cfg.initial_interval.as_secs_f64() * exp;
        Duration::from_secs_f64(secs.min(self.cfg.max_interval.as_secs_f64()))
    }

    /// Next delay: uniform in `[ceiling/2, ceiling]` (half jitter keeps a
    /// floor, so a retry never fires instantly after an outage began).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let lo = ceiling.as_secs_f64() / 2.0;
        let hi = ceiling.as_secs_f64();
        if hi <= lo {
            return ceiling;
        }
        Duration::from_secs_f64(rand::rng().random_range(lo..=hi))
    }

    /// Like [`next_delay`](Self::next_delay), but a server's hint wins when
    /// longer (we never retry earlier than the server asked), capped at
    /// `max_interval` so a hostile hint cannot park us forever.
    pub fn next_with_hint(&mut self, hint: Option<Duration>) -> Duration {
        let own = self.next_delay();
        match hint {
            Some(h) => h.min(self.cfg.max_interval).max(own),
            None => own,
        }
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_stay_in_the_jitter_band() {
        let mut b = BackoffConfig {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(2),
            multiplier: 2.0,
        }
        .build();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            let c = b.ceiling();
            let d = b.next_delay();
            assert!(d <= c && d >= c / 2, "{d:?} outside [{:?}, {c:?}]", c / 2);
            ceilings.push(c);
        }
        assert_eq!(ceilings[0], Duration::from_millis(100));
        assert_eq!(ceilings[1], Duration::from_millis(200));
        assert_eq!(*ceilings.last().unwrap(), Duration::from_secs(2));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn server_hint_wins_but_is_capped() {
        let mut b = BackoffConfig::default().build();
        assert_eq!(
            b.next_with_hint(Some(Duration::from_secs(10))),
            Duration::from_secs(10)
        );
        assert_eq!(
            b.next_with_hint(Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn bad_config_names_every_field() {
        let cfg = BackoffConfig {
            initial_interval: Duration::ZERO,
            max_interval: Duration::ZERO,
            multiplier: 0.5,
        };
        let p = cfg.problems("exporter.retry");
        assert!(
            p.iter()
                .any(|m| m.starts_with("exporter.retry.initial_interval"))
        );
        assert!(p.iter().any(|m| m.starts_with("exporter.retry.multiplier")));
    }
}
