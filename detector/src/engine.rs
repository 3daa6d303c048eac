//! PLACEHOLDER API — the real ensemble replaces this body; the signatures stay.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub warmup: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { warmup: 64 }
    }
}

/// What the engine says about one point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Calibrated anomaly score in [0, 1].
    pub score: f64,
    /// The decision with hysteresis.
    pub anomalous: bool,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// Still warming up: score is 0 and no decision is made.
    pub learning: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SeriesDetector {
    n: u64,
    mean: f64,
    var: f64,
}

impl SeriesDetector {
    pub fn new(_cfg: &EngineConfig) -> Self {
        Self::default()
    }

    /// Scores `value` observed at `ts` (unix seconds). Causal.
    pub fn update(&mut self, cfg: &EngineConfig, _ts: i64, value: f64) -> Verdict {
        self.n += 1;
        let sd = self.var.sqrt().max(1e-9);
        let z = ((value - self.mean) / sd).abs();
        let learning = self.n <= cfg.warmup as u64;
        let score = if learning {
            0.0
        } else {
            1.0 - (-z / 4.0).exp()
        };
        let v = Verdict {
            score,
            anomalous: score > 0.7,
            expected: self.mean,
            lower: self.mean - 3.0 * sd,
            upper: self.mean + 3.0 * sd,
            learning,
        };
        let d = value - self.mean;
        self.mean += 0.05 * d;
        self.var = 0.95 * (self.var + 0.05 * d * d);
        v
    }
}

/// Scores a whole series in order with a fresh detector.
pub fn score_series(cfg: &EngineConfig, ts: &[i64], values: &[f64]) -> Vec<Verdict> {
    let mut d = SeriesDetector::new(cfg);
    ts.iter()
        .zip(values)
        .map(|(&t, &v)| d.update(cfg, t, v))
        .collect()
}
