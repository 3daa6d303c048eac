//! Exponentially weighted mean and variance: the fast adaptive baseline.
//!
//! The residual `x − mean` is scored against the EW standard deviation,
//! then both are updated. With the default weight (0.7) the mean is
//! essentially the last two or three values and the variance the typical
//! size of a step, so this model asks "is this a jump compared with the
//! immediate past?" — the rolling median and the seasonal baseline already
//! judge against hours and days. (Measured on NAB: the fast baseline adds
//! about six points over a 20-point span; a slow one duplicated the median.) Updates are *winsorised*: a residual beyond
//! `clip` σ moves the baseline as if it were exactly `clip` σ, so a single
//! spike neither drags the mean nor inflates the variance (which would
//! blind the model to the next spike), while a real level shift still
//! moves the mean by `alpha · clip · σ` per point and is absorbed within a
//! few dozen points. State: 32 bytes.

use serde::{Deserialize, Serialize};

use super::{Model, Observation, Surprise};

/// EWMA model settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EwmaConfig {
    /// Weight of the newest point in the mean (≈ 2 / (span + 1)).
    pub alpha: f64,
    /// Weight of the newest squared residual in the variance.
    pub alpha_var: f64,
    /// Residuals are clipped to this many σ before updating.
    pub clip: f64,
    /// Minimum points before scoring.
    pub min_points: u32,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            alpha: 0.7,
            alpha_var: 0.01,
            clip: 3.0,
            min_points: 24,
        }
    }
}

impl EwmaConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        for (name, a) in [("alpha", self.alpha), ("alpha_var", self.alpha_var)] {
            if !(a > 0.0 && a < 1.0) {
                p.push(format!("{path}.{name}: must be in (0, 1), got {a}"));
            }
        }
        if !(self.clip >= 1.0 && self.clip.is_finite()) {
            p.push(format!("{path}.clip: must be a finite number ≥ 1"));
        }
        p
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    mean: f64,
    var: f64,
    n: u32,
}

impl Ewma {
    fn sd(&self) -> f64 {
        self.var.sqrt()
    }
}

impl Model for Ewma {
    type Config = EwmaConfig;
    const NULL_TAIL: (f32, f32) = (1.127, 0.114);

    fn new(_cfg: &EwmaConfig) -> Self {
        Ewma::default()
    }

    fn observe(&mut self, cfg: &EwmaConfig, obs: &Observation<'_>) -> Surprise {
        let x = obs.value;
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.mean = x;
            return Surprise::NOT_READY;
        }
        // Until min_points the weights are 1/n: a plain running mean and
        // variance, so the start is not biased towards the first value.
        let warm = self.n <= cfg.min_points;
        let a = if warm { 1.0 / self.n as f64 } else { cfg.alpha };
        let av = if warm {
            1.0 / (self.n - 1) as f64
        } else {
            cfg.alpha_var
        };
        let sd = self.sd().max(obs.floor);
        let r = x - self.mean;
        let out = Surprise {
            z: r / sd,
            expected: self.mean,
            scale: sd,
            ready: !warm,
        };
        let bound = if warm { f64::INFINITY } else { cfg.clip * sd };
        let rc = r.clamp(-bound, bound);
        self.mean += a * rc;
        self.var = (1.0 - av) * self.var + av * rc * rc;
        if warm {
            Surprise {
                ready: false,
                ..out
            }
        } else {
            out
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::synth::{ONSET, check_table, max_z, run_model, scenario};

    fn run(values: &[f64]) -> Vec<Surprise> {
        run_model::<Ewma>(&EwmaConfig::default(), None, values)
    }

    #[test]
    fn scenarios() {
        // (scenario, onset must exceed this z; 0 = not this model's job).
        // The fast baseline's σ is the size of a step (≈ √2 σ of the noise),
        // so a 6σ level shift reads as a ~4σ jump.
        let table: &[(&str, f64)] = &[
            ("spike", 8.0),
            ("level_shift", 3.5),
            ("variance_change", 6.0),
            ("drift", 0.0),
            ("flatline", 0.0),
            ("noisy", 0.0),
        ];
        check_table(table, 11, (100, 5.5), 40, run);
    }

    #[test]
    fn a_spike_does_not_blind_the_model_to_the_next() {
        let mut v: Vec<f64> = scenario("noisy", 5).values;
        v.truncate(600);
        v[400] += 40.0;
        v[405] += 40.0;
        let s = run(&v);
        assert!(
            s[400].z > 8.0 && s[405].z > 8.0,
            "{} {}",
            s[400].z,
            s[405].z
        );
    }

    #[test]
    fn level_shift_is_absorbed() {
        let sc = scenario("level_shift", 2);
        let s = run(&sc.values);
        assert!(max_z(&s, ONSET + 150..sc.values.len()) < 5.0);
    }
}
