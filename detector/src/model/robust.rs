//! Robust rolling z-score: how far is the value from the median of the last
//! `window` values, in units of their MAD (median absolute deviation, scaled
//! by 1.4826 to estimate σ under normality)?
//!
//! When more than half the window sits on one value (a sparse or quantised
//! series: zero bytes written most of the time) the MAD is 0; the scale
//! then falls back to 1.2533 × the mean absolute deviation, as in Iglewicz
//! and Hoaglin's modified z-score, so the routine bursts set the scale.
//!
//! Median and MAD ignore up to half the window being outliers, so one spike
//! does not hide the next and a level shift is flagged until half the
//! window has moved to the new level (then it is the new normal).
//!
//! Cost: the median and MAD are recomputed every `refresh` points by
//! selection over a copy of the window (O(window)), so the amortised cost is
//! O(window / refresh) per point — a constant. Between refreshes the
//! centre/scale are slightly stale, which costs nothing for spikes (they do
//! not move a median) and delays level-shift adaptation by < `refresh`
//! points. State: the shared history plus 24 bytes.

use serde::{Deserialize, Serialize};

use super::{History, Model, Observation, Surprise};

/// Rolling median/MAD model settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RobustConfig {
    /// Values the median/MAD are taken over (≤ the history capacity, 256).
    pub window: usize,
    /// Recompute the median/MAD every this many points.
    pub refresh: usize,
    /// Minimum points before scoring.
    pub min_points: usize,
}

impl Default for RobustConfig {
    fn default() -> Self {
        RobustConfig {
            window: 64,
            refresh: 8,
            min_points: 24,
        }
    }
}

impl RobustConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(8..=History::CAPACITY).contains(&self.window) {
            p.push(format!(
                "{path}.window: must be between 8 and {} (got {})",
                History::CAPACITY,
                self.window
            ));
        }
        if self.refresh == 0 || self.refresh > self.window {
            p.push(format!("{path}.refresh: must be between 1 and window"));
        }
        if self.min_points < 4 || self.min_points > self.window {
            p.push(format!("{path}.min_points: must be between 4 and window"));
        }
        p
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Robust {
    median: f64,
    /// σ estimate: 1.4826 · MAD (or the mean-AD fallback).
    scale: f64,
    /// Points since the last recomputation.
    since: u32,
    ready: bool,
}

fn median_in_place(v: &mut [f32]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = *m as f64;
    if n % 2 == 1 {
        upper
    } else {
        // The lower middle is the largest element of the left part.
        let lower = v[..mid].iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        (lower + upper) / 2.0
    }
}

impl Robust {
    fn refit(&mut self, cfg: &RobustConfig, h: &History) {
        let n = h.len().min(cfg.window);
        let mut buf = [0f32; History::CAPACITY];
        let w = &mut buf[..n];
        for (i, slot) in w.iter_mut().enumerate() {
            *slot = h.back(i) as f32;
        }
        let med = median_in_place(w);
        for slot in w.iter_mut() {
            *slot = (*slot as f64 - med).abs() as f32;
        }
        let mean_ad = w.iter().map(|&d| d as f64).sum::<f64>() / n as f64;
        let mad = median_in_place(w);
        let sigma = if mad > 0.0 {
            1.4826 * mad
        } else {
            1.2533 * mean_ad
        };
        self.median = med;
        self.scale = sigma;
        self.since = 0;
        self.ready = true;
    }
}

impl Model for Robust {
    type Config = RobustConfig;
    const NULL_TAIL: (f32, f32) = (1.163, 0.127);

    fn new(_cfg: &RobustConfig) -> Self {
        Robust::default()
    }

    fn observe(&mut self, cfg: &RobustConfig, obs: &Observation<'_>) -> Surprise {
        let h = obs.history;
        if h.len() < cfg.min_points {
            return Surprise::NOT_READY;
        }
        if !self.ready || self.since as usize >= cfg.refresh {
            self.refit(cfg, h);
        }
        self.since += 1;
        let scale = self.scale.max(obs.floor);
        Surprise {
            z: (obs.value - self.median) / scale,
            expected: self.median,
            scale,
            ready: true,
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synth::{ONSET, max_z, run_model, scenario};

    #[test]
    fn median_of_even_and_odd_windows() {
        assert_eq!(median_in_place(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    /// (scenario, must the onset region stand out?, z that must be exceeded)
    fn run(values: &[f64]) -> Vec<Surprise> {
        run_model::<Robust>(&RobustConfig::default(), None, values)
    }

    #[test]
    fn scenarios() {
        let table: &[(&str, bool, f64)] = &[
            ("spike", true, 8.0),
            ("level_shift", true, 4.0),
            ("variance_change", true, 6.0),
            ("drift", false, 0.0),
            ("seasonal_break", false, 0.0),
            ("flatline", false, 0.0),
            ("noisy", false, 0.0),
        ];
        for &(name, flags, min_z) in table {
            let sc = scenario(name, 7);
            let s = run(&sc.values);
            // A 5-hour window cannot model a daily cycle: not its job.
            if name != "seasonal_break" {
                // A Gaussian's |z| rarely passes 5 in 2000 points.
                sc.assert_quiet(&s, 100, 5.5);
            }
            if flags {
                sc.assert_hot(&s, 40, min_z);
            }
        }
    }

    #[test]
    fn level_shift_becomes_the_new_normal() {
        let sc = scenario("level_shift", 3);
        let s = run(&sc.values);
        let late = max_z(&s, ONSET + 100..sc.values.len());
        assert!(late < 5.5, "still alarmed long after the shift: {late:.2}");
    }

    #[test]
    fn sparse_series_takes_its_scale_from_the_bursts() {
        // Zero most of the time, bursts of ~1000 one point in eight: a
        // burst is ~6 scale units out, not 10¹²; a burst 100× larger is
        // still far out.
        let mut v: Vec<f64> = (0..300)
            .map(|i| if i % 8 == 0 { 1000.0 } else { 0.0 })
            .collect();
        v.push(1000.0);
        v.push(100_000.0);
        let s = run(&v);
        assert!(s[300].z.abs() < 10.0, "routine burst z={}", s[300].z);
        assert!(s[301].z > 100.0, "huge burst z={}", s[301].z);
    }

    #[test]
    fn flat_series_does_not_divide_by_zero() {
        let mut v = vec![5.0; 200];
        v[150] = 6.0;
        let s = run(&v);
        assert!(s.iter().all(|s| s.z.is_finite()));
        assert!(s[150].z > 100.0);
        assert!(s[149].z == 0.0);
        // Direction is kept: a dip reads negative.
        let mut v = vec![5.0; 200];
        v[150] = 4.0;
        assert!(run(&v)[150].z < -100.0);
    }
}
