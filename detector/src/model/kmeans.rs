//! k-means over the recent trajectory's shape (Netdata's ML detector, made
//! continuous): each point becomes a feature vector of its last [`DIM`]
//! first differences, normalised by the series' typical step and
//! winsorised at ±[`STEP_CLIP`] steps (a lone outlier is the other models'
//! business; left raw it would dominate every vector it sits in for the
//! next 8 points, paging on shape when the news is magnitude). The
//! model keeps `k` centroids learnt with linfa from the shared history
//! (≤ 256 values ⇒ ~248 vectors) and retrains every `retrain_every` points,
//! warm-started from the previous centroids. Per point it only measures
//! the distance to the nearest centroid: a trajectory unlike any seen
//! recently (a sudden ramp, a spike, a broken oscillation) is far from all.
//!
//! The distance is reported in σ-like units by anchoring the training set's
//! 99th-percentile distance at `z = 2.33` (the normal 99th percentile), so
//! the engine's calibration treats it like the other models.
//!
//! Cost: the fit (k-means on ~248×6 points, ≤ `max_iterations` rounds)
//! runs once per `retrain_every` points; per point it is ~60 flops. State:
//! ≈ 120 bytes plus the shared [`History`].

use linfa::DatasetBase;
use linfa::traits::Fit;
use linfa_clustering::{KMeans, KMeansInit};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{History, Model, Observation, Surprise};

/// Lagged smoothed differences per feature vector.
pub const DIM: usize = 6;
/// Points averaged into one difference. Netdata smooths over 3; that is a
/// low-pass filter that erases the high-frequency shape changes this model
/// is for, so we don't (winsorising already tames single outliers).
const SMOOTH: usize = 1;
/// Values a feature vector spans: DIM smoothed diffs of SMOOTH diffs each.
const SPAN: usize = DIM + SMOOTH;
const MAX_K: usize = 4;
/// Differences are clipped to this many typical steps.
const STEP_CLIP: f64 = 5.0;
/// The normal distribution's 99th percentile.
const Z_P99: f64 = 2.326_347_874;

/// k-means model settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KMeansConfig {
    /// Number of clusters (1–4).
    pub k: usize,
    /// Retrain after this many new points.
    pub retrain_every: u32,
    /// History values needed before the first training.
    pub min_train: usize,
    /// Lloyd iterations per training.
    pub max_iterations: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig {
            k: 2,
            retrain_every: 512,
            min_train: 128,
            max_iterations: 20,
        }
    }
}

impl KMeansConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(1..=MAX_K).contains(&self.k) {
            p.push(format!("{path}.k: must be between 1 and {MAX_K}"));
        }
        if self.retrain_every == 0 {
            p.push(format!("{path}.retrain_every: must be at least 1"));
        }
        if !(SPAN + 16..=History::CAPACITY).contains(&self.min_train) {
            p.push(format!(
                "{path}.min_train: must be between {} and {}",
                SPAN + 16,
                History::CAPACITY
            ));
        }
        if self.max_iterations == 0 {
            p.push(format!("{path}.max_iterations: must be at least 1"));
        }
        p
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KMeansModel {
    centroids: [[f32; DIM]; MAX_K],
    k: u8,
    /// Typical |first difference| of the training data: features' unit.
    step: f32,
    /// 99th-percentile distance of the training vectors to their centroid.
    d99: f32,
    since_train: u32,
}

/// Feature vector ending at the value `newest(0)`; `newest(i)` is i steps back.
fn features(newest: impl Fn(usize) -> f64, step: f64) -> [f64; DIM] {
    let mut f = [0.0; DIM];
    for (lag, slot) in f.iter_mut().enumerate() {
        let mut s = 0.0;
        for j in 0..SMOOTH {
            let i = lag + j;
            s += ((newest(i) - newest(i + 1)) / step).clamp(-STEP_CLIP, STEP_CLIP);
        }
        *slot = s / SMOOTH as f64;
    }
    f
}

impl KMeansModel {
    fn nearest(&self, f: &[f64; DIM]) -> f64 {
        let mut best = f64::INFINITY;
        for c in &self.centroids[..self.k as usize] {
            let d: f64 = c
                .iter()
                .zip(f)
                .map(|(&c, &x)| (c as f64 - x) * (c as f64 - x))
                .sum();
            best = best.min(d);
        }
        best.sqrt()
    }

    fn train(&mut self, cfg: &KMeansConfig, h: &History) {
        let n = h.len();
        let diffs: f64 = (0..n - 1).map(|i| (h.back(i) - h.back(i + 1)).abs()).sum();
        let mean_step = diffs / (n - 1) as f64;
        let level = (0..n).map(|i| h.back(i).abs()).sum::<f64>() / n as f64;
        let step = mean_step.max(1e-6 * level.max(1e-9));
        let rows = n - SPAN;
        let mut data = Vec::with_capacity(rows * DIM);
        for r in 0..rows {
            data.extend(features(|i| h.back(r + i), step));
        }
        let Ok(obs) = Array2::from_shape_vec((rows, DIM), data) else {
            return;
        };
        let k = cfg.k.min(rows);
        let params = KMeans::params(k)
            .max_n_iterations(cfg.max_iterations)
            .tolerance(1e-4)
            .n_runs(1);
        let params = if self.k as usize == k && self.d99 > 0.0 {
            let prev = Array2::from_shape_fn((k, DIM), |(i, j)| self.centroids[i][j] as f64);
            params.init_method(KMeansInit::Precomputed(prev))
        } else {
            params
        };
        let dataset = DatasetBase::from(obs);
        let Ok(fitted) = params.fit(&dataset) else {
            return;
        };
        let c = fitted.centroids();
        for i in 0..k {
            for j in 0..DIM {
                self.centroids[i][j] = c[[i, j]] as f32;
            }
        }
        self.k = k as u8;
        self.step = step as f32;
        let mut dists: Vec<f64> = dataset
            .records()
            .rows()
            .into_iter()
            .map(|r| {
                let mut f = [0.0; DIM];
                f.iter_mut().zip(r.iter()).for_each(|(a, b)| *a = *b);
                self.nearest(&f)
            })
            .collect();
        let at = ((dists.len() as f64) * 0.99) as usize;
        let at = at.min(dists.len() - 1);
        let (_, d99, _) = dists.select_nth_unstable_by(at, f64::total_cmp);
        // A perfectly regular series has d99 = 0; keep a floor of a tenth of
        // a typical step so the first irregular move is huge, not infinite.
        self.d99 = d99.max(0.1) as f32;
        self.since_train = 0;
    }
}

impl Model for KMeansModel {
    type Config = KMeansConfig;
    const NULL_TAIL: (f32, f32) = (1.195, 0.070);

    fn new(_cfg: &KMeansConfig) -> Self {
        KMeansModel::default()
    }

    fn observe(&mut self, cfg: &KMeansConfig, obs: &Observation<'_>) -> Surprise {
        let h = obs.history;
        let due = self.k == 0 || self.since_train >= cfg.retrain_every;
        if due && h.len() >= cfg.min_train {
            self.train(cfg, h);
        }
        self.since_train = self.since_train.saturating_add(1);
        if self.k == 0 || h.len() < SPAN {
            return Surprise::NOT_READY;
        }
        let step = self.step as f64;
        let f = features(|i| if i == 0 { obs.value } else { h.back(i - 1) }, step);
        let d = self.nearest(&f);
        Surprise {
            z: Z_P99 * d / self.d99 as f64,
            // The model predicts a shape, not a value: its "expected" is the
            // previous value plus the nearest centroid's newest step.
            expected: h.back(0),
            scale: step * self.d99 as f64 / Z_P99,
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
    use crate::model::synth::{Rng, check_table, max_z, run_model, scenario};

    fn run(cfg: &KMeansConfig, values: &[f64]) -> Vec<Surprise> {
        run_model::<KMeansModel>(cfg, None, values)
    }

    #[test]
    fn features_are_smoothed_normalised_differences() {
        // A ramp of slope 2 with step 2: every smoothed diff is exactly 1.
        let f = features(|i| 100.0 - 2.0 * i as f64, 2.0);
        assert_eq!(f, [1.0; DIM]);
    }

    #[test]
    fn scenarios() {
        let cfg = KMeansConfig::default();
        // (scenario, onset must exceed z; 0 = not this model's job). On
        // white noise, lag vectors are themselves noise, so k-means has
        // little contrast: it must see a 6× variance change, but the other
        // models carry spikes and shifts.
        let table: &[(&str, f64)] = &[
            ("spike", 0.0),
            ("variance_change", 4.5),
            ("level_shift", 0.0),
            ("noisy", 0.0),
        ];
        check_table(table, 41, (300, 6.0), 20, |v| run(&cfg, v));
    }

    #[test]
    fn new_dynamics_within_the_usual_range_stand_out() {
        // A smooth daily wave; then, for two hours, the series jitters
        // between points of the same wave: every value is in the usual
        // range, but the trajectory's shape was never seen.
        let mut rng = Rng::new(3);
        let v: Vec<f64> = (0..1200)
            .map(|i| {
                let wave = 50.0 * (i as f64 * 2.0 * std::f64::consts::PI / 288.0).sin();
                let jitter = if (1000..1012).contains(&i) && i % 2 == 0 {
                    15.0
                } else {
                    0.0
                };
                wave + jitter + 0.3 * rng.normal()
            })
            .collect();
        let s = run(&KMeansConfig::default(), &v);
        let quiet = max_z(&s, 400..1000);
        let hot = max_z(&s, 1000..1026);
        assert!(
            hot > 2.0 * quiet && hot > 5.0,
            "hot {hot:.2} vs quiet {quiet:.2}"
        );
    }

    #[test]
    fn retrains_on_schedule_and_is_deterministic() {
        let cfg = KMeansConfig::default();
        let sc = scenario("noisy", 5);
        let z = |s: Vec<Surprise>| s.iter().map(|s| s.z).collect::<Vec<_>>();
        let a = run(&cfg, &sc.values);
        assert_eq!(z(a.clone()), z(run(&cfg, &sc.values)));
        assert!(!a[100].ready && a[200].ready);
    }
}
