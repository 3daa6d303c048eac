//! Volatility change: is the series moving more (or less) than it usually
//! does?
//!
//! Level models judge each value; this one judges the *size of the steps*:
//! the exponentially weighted mean of `|xₜ − xₜ₋₁|` over a short horizon
//! against the same over a long one. A disk that writes in rare bursts and
//! suddenly bursts every few minutes, a latency that starts to jitter, a
//! sensor that goes quiet: each point may be unremarkable, the rate of
//! change is not. The surprise is `ln(short / long)` scaled by `gain`
//! (signed: up = more volatile). Using first differences makes it blind to
//! level shifts by construction, which the other models cover. State: 16
//! bytes.

use serde::{Deserialize, Serialize};

use super::{Model, Observation, Surprise};

/// Volatility model settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolatilityConfig {
    /// Weight of a new step in the short-horizon mean.
    pub alpha_short: f64,
    /// Weight of a new step in the long-horizon mean.
    pub alpha_long: f64,
    /// Multiplier turning the log ratio into σ-like units.
    pub gain: f64,
    pub min_points: u32,
}

impl Default for VolatilityConfig {
    fn default() -> Self {
        VolatilityConfig {
            alpha_short: 0.1,
            alpha_long: 0.005,
            gain: 2.0,
            min_points: 48,
        }
    }
}

impl VolatilityConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        for (name, a) in [
            ("alpha_short", self.alpha_short),
            ("alpha_long", self.alpha_long),
        ] {
            if !(a > 0.0 && a < 1.0) {
                p.push(format!("{path}.{name}: must be in (0, 1), got {a}"));
            }
        }
        if self.alpha_long >= self.alpha_short {
            p.push(format!(
                "{path}.alpha_long: must be smaller than alpha_short"
            ));
        }
        if !(self.gain > 0.0 && self.gain.is_finite()) {
            p.push(format!("{path}.gain: must be a positive number"));
        }
        p
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Volatility {
    short: f32,
    long: f32,
    n: u32,
}

impl Model for Volatility {
    type Config = VolatilityConfig;
    const NULL_TAIL: (f32, f32) = (0.455, 0.059);

    fn new(_cfg: &VolatilityConfig) -> Self {
        Volatility::default()
    }

    fn observe(&mut self, cfg: &VolatilityConfig, obs: &Observation<'_>) -> Surprise {
        if obs.history.is_empty() {
            return Surprise::NOT_READY;
        }
        let step = (obs.value - obs.history.back(0)).abs();
        self.n = self.n.saturating_add(1);
        let warm = self.n <= cfg.min_points;
        let a_long = if warm {
            1.0 / self.n as f64
        } else {
            cfg.alpha_long
        };
        let a_short = cfg.alpha_short.max(1.0 / self.n as f64);
        self.short += (a_short * (step - self.short as f64)) as f32;
        // The long mean learns after scoring, so a burst is judged against
        // the calm before it.
        let eps = obs.floor.max(1e-12);
        let ratio = (self.short as f64 + eps) / (self.long as f64 + eps);
        self.long += (a_long * (step - self.long as f64)) as f32;
        Surprise {
            z: cfg.gain * ratio.ln(),
            expected: obs.history.back(0),
            scale: self.long as f64,
            ready: !warm,
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synth::{check_table, run_model};

    fn run(values: &[f64]) -> Vec<Surprise> {
        run_model::<Volatility>(&VolatilityConfig::default(), None, values)
    }

    #[test]
    fn scenarios() {
        // (scenario, onset must exceed z; 0 = not this model's job). On
        // Gaussian noise this statistic's 98th percentile is z ≈ 0.58 (see
        // NULL_TAIL), so 1.5 is a ~10⁻⁷ event once calibrated.
        let table: &[(&str, f64)] = &[
            ("variance_change", 1.5),
            ("noisy", 0.0),
            ("level_shift", 0.0),
        ];
        check_table(table, 51, (200, 1.5), 30, run);
    }

    #[test]
    fn bursts_becoming_frequent_stand_out_and_going_quiet_reads_negative() {
        // A burst every 100 points, then every 5: each burst alike.
        let v: Vec<f64> = (0..3000)
            .map(|i| {
                let every = if (2000..2200).contains(&i) { 5 } else { 100 };
                if i % every == 0 { 50.0 } else { 0.0 }
            })
            .collect();
        let s = run(&v);
        // Each burst alone moves the short mean; what stands out is that
        // it stays up while bursts are dense.
        let mean = |r: std::ops::Range<usize>| {
            let n = r.len() as f64;
            s[r].iter().map(|s| s.z).sum::<f64>() / n
        };
        let calm = mean(500..2000);
        let dense = mean(2050..2200);
        assert!(dense > calm + 1.5, "dense {dense:.2} vs calm {calm:.2}");
        // A jittery series that goes flat: negative surprise.
        let mut rng = crate::model::synth::Rng::new(1);
        let v: Vec<f64> = (0..2000)
            .map(|i| if i < 1500 { rng.normal() } else { 0.0 })
            .collect();
        let s = run(&v);
        assert!(s[1560].z < -2.0, "{}", s[1560].z);
    }
}
