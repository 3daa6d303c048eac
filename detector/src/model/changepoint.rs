//! Changepoint detection: a two-sided CUSUM on standardised residuals
//! against a slow baseline.
//!
//! Spikes are other models' business; this one catches what they miss: a
//! shift too small to stand out on any single point (half a σ, say) that
//! persists. Each residual `u = (x − μ)/σ` is clipped to ±`clip` (one spike
//! must not fake a shift) and accumulated:
//! `S⁺ = max(0, S⁺ + u − k)`, `S⁻ = max(0, S⁻ − u − k)`. The surprise is
//! the larger sum itself, negative for `S⁻`: with no change its tail is roughly exponential
//! (`P(S > x) ≈ e^{−2kx}`), which is exactly the shape the engine's
//! calibration models, so it needs no scaling of its own. When a sum
//! reaches `h` the change is beyond doubt: the baseline jumps to the mean
//! of the points since that sum last stood at zero (CUSUM's own estimate of
//! when the change began) and both sums restart, so the new level is learnt
//! at once instead of being paged on for the next hundred points. `h` is
//! set well above any paging level so the evidence is reported before the
//! reset. State: 64 bytes.

use serde::{Deserialize, Serialize};

use super::{Model, Observation, Surprise};

/// CUSUM settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangepointConfig {
    /// Allowance per point, in σ (detects shifts of about 2k).
    pub k: f64,
    /// Reset threshold on the sums, in σ.
    pub h: f64,
    /// Weight of a new point in the slow baseline.
    pub alpha: f64,
    /// Residual clip, in σ.
    pub clip: f64,
    pub min_points: u32,
}

impl Default for ChangepointConfig {
    fn default() -> Self {
        ChangepointConfig {
            k: 0.75,
            h: 20.0,
            alpha: 0.005,
            clip: 4.0,
            min_points: 48,
        }
    }
}

impl ChangepointConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            p.push(format!(
                "{path}.alpha: must be in (0, 1), got {}",
                self.alpha
            ));
        }
        for (name, v) in [("k", self.k), ("h", self.h), ("clip", self.clip)] {
            if !(v > 0.0 && v.is_finite()) {
                p.push(format!("{path}.{name}: must be a positive number, got {v}"));
            }
        }
        p
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Changepoint {
    mean: f64,
    var: f64,
    up: f32,
    down: f32,
    /// Sum and count of the values since each sum last stood at zero.
    up_run: (f64, u32),
    down_run: (f64, u32),
    n: u32,
}

/// Adds `x` to a sum's run, or restarts the run when the sum fell to zero.
fn track(run: &mut (f64, u32), sum: f32, x: f64) {
    if sum > 0.0 {
        run.0 += x;
        run.1 += 1;
    } else {
        *run = (0.0, 0);
    }
}

impl Model for Changepoint {
    type Config = ChangepointConfig;
    const NULL_TAIL: (f32, f32) = (1.460, 0.195);

    fn new(_cfg: &ChangepointConfig) -> Self {
        Changepoint::default()
    }

    fn observe(&mut self, cfg: &ChangepointConfig, obs: &Observation<'_>) -> Surprise {
        let x = obs.value;
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.mean = x;
            return Surprise::NOT_READY;
        }
        let warm = self.n <= cfg.min_points;
        let sd = self.var.sqrt().max(obs.floor);
        let r = x - self.mean;
        let u = (r / sd).clamp(-cfg.clip, cfg.clip);
        let mut out = Surprise::NOT_READY;
        if warm {
            let a = 1.0 / self.n as f64;
            let av = 1.0 / (self.n - 1) as f64;
            self.mean += a * r;
            self.var = (1.0 - av) * self.var + av * r * r;
        } else {
            self.up = (self.up as f64 + u - cfg.k).max(0.0) as f32;
            self.down = (self.down as f64 - u - cfg.k).max(0.0) as f32;
            track(&mut self.up_run, self.up, x);
            track(&mut self.down_run, self.down, x);
            // Signed: the side with the stronger evidence.
            let s = if self.up >= self.down {
                self.up as f64
            } else {
                -(self.down as f64)
            };
            out = Surprise {
                z: s,
                expected: self.mean,
                scale: sd,
                ready: true,
            };
            let rc = u * sd;
            self.mean += cfg.alpha * rc;
            self.var = (1.0 - cfg.alpha) * self.var + cfg.alpha * rc * rc;
        }
        if self.up.max(self.down) as f64 >= cfg.h {
            // Changepoint: adopt the level since the change began, keep the scale.
            let run = if self.up >= self.down {
                self.up_run
            } else {
                self.down_run
            };
            if run.1 > 0 {
                self.mean = run.0 / run.1 as f64;
            }
            self.up = 0.0;
            self.down = 0.0;
            self.up_run = (0.0, 0);
            self.down_run = (0.0, 0);
        }
        out
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::synth::{ONSET, Rng, check_table, max_z, run_model, scenario};

    fn run(values: &[f64]) -> Vec<Surprise> {
        run_model::<Changepoint>(&ChangepointConfig::default(), None, values)
    }

    #[test]
    fn scenarios() {
        // (scenario, onset region must exceed z within 80 points; 0 = not this model's job)
        let table: &[(&str, f64)] = &[
            ("level_shift", 15.0),
            ("drift", 15.0),
            ("spike", 0.0),
            ("noisy", 0.0),
            ("flatline", 0.0),
        ];
        // Noise alone never gets near the reset threshold (quiet below 12).
        check_table(table, 31, (100, 12.0), 80, run);
    }

    #[test]
    fn small_shift_invisible_pointwise_is_caught() {
        // A 1.5σ shift (the default allowance k = 0.75 targets shifts of
        // about 2k): no single point stands out, the sum does.
        let mut rng = Rng::new(4);
        let v: Vec<f64> = (0..1500)
            .map(|i| 50.0 + rng.normal() + if i >= 1000 { 1.5 } else { 0.0 })
            .collect();
        let s = run(&v);
        let quiet = max_z(&s, 100..1000);
        let first = (1000..1500).find(|&i| s[i].z >= 15.0).expect("shift found");
        assert!(first < 1060, "took {} points", first - 1000);
        assert!(quiet < 10.0, "noise alone reached {quiet:.1}");
    }

    #[test]
    fn after_a_changepoint_the_new_level_is_normal() {
        let sc = scenario("level_shift", 8);
        let s = run(&sc.values);
        assert!(max_z(&s, ONSET + 60..sc.values.len()) < 12.0);
    }

    #[test]
    fn a_lone_spike_is_not_a_changepoint() {
        let mut rng = Rng::new(2);
        let mut v: Vec<f64> = (0..800).map(|_| 10.0 + rng.normal()).collect();
        v[600] = 60.0;
        let s = run(&v);
        assert!(max_z(&s, 590..620) < 6.0);
    }
}
