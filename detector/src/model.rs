//! The per-series anomaly models and what they share.
//!
//! Every model reads one point at a time and answers *before* learning from
//! it (strictly causal): how surprising is this value given everything
//! before it? The answer is a [`Surprise`]: a signed number in "standard
//! deviations" (≈ a z-score), plus the model's expected value and a
//! one-sigma scale so the engine can draw a band and explain itself.
//! Surprises of different models are not comparable as raw numbers; the
//! engine calibrates each against its own recent history
//! ([`crate::engine::calibrate`]) before combining them.
//!
//! Models are plain structs, not trait objects: a series holds all of them
//! inline, which keeps the per-series state to a few KiB and the hot path
//! free of virtual calls and allocation.
//!
//! | module | what it catches | state |
//! |---|---|---|
//! | [`robust`] | spikes and dips against a rolling median/MAD | 24 B (+ the shared [`History`]) |
//! | [`ewma`] | departures from an adaptive mean/variance | 32 B |
//! | [`seasonal`] | a broken daily/weekly pattern | ≈ 2.1 KiB |
//! | [`changepoint`] | small persistent shifts (two-sided CUSUM) | 40 B |
//! | [`kmeans`] | unusual shapes of the recent trajectory (linfa k-means) | ≈ 100 B (+ [`History`]) |
//! | [`volatility`] | a change in how much the series moves (burst density, jitter) | 16 B |

use serde::{Deserialize, Serialize};

pub mod changepoint;
pub mod ewma;
pub mod kmeans;
pub mod robust;
pub mod seasonal;
pub mod volatility;

/// One point as a model sees it.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// Unix seconds.
    pub ts: i64,
    pub value: f64,
    /// The values before this one, newest last.
    pub history: &'a History,
    /// The smallest σ any model may use for this series (see [`ScaleFloor`]).
    pub floor: f64,
}

/// The series-wide lower bound on every model's σ.
///
/// A model's own scale can collapse: a rolling window of a sparse series
/// can be all zeros (MAD 0), a quantised one can alternate between two
/// values, a winsorised variance never learns bursts bigger than itself.
/// A routine burst then reads as 10¹⁶σ and no calibration can learn that
/// in time. So every model's σ is floored at half the series' long-run mean
/// absolute deviation (and at 10⁻³ of its level): no model may claim the
/// series is calmer than it has routinely been. For a Gaussian series this
/// floor is 0.4σ and never binds. State: 16 bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScaleFloor {
    mean: f64,
    mad: f32,
    n: u32,
}

impl ScaleFloor {
    /// Weight of a new point once warm (≈ a 200-point horizon).
    const ALPHA: f64 = 0.005;

    pub fn floor(&self) -> f64 {
        (0.5 * self.mad as f64)
            .max(1e-3 * self.mean.abs())
            .max(1e-12)
    }

    pub fn learn(&mut self, x: f64) {
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.mean = x;
            return;
        }
        let a = Self::ALPHA.max(1.0 / self.n as f64);
        let dev = (x - self.mean).abs();
        self.mad += (a * (dev - self.mad as f64)) as f32;
        self.mean += a * (x - self.mean);
    }
}

/// A model's answer about one point.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Surprise {
    /// In standard deviations of the model's own residuals; negative when
    /// the value is below what the model expected (models without a
    /// direction, like k-means, report ≥ 0). Direction matters: a series
    /// whose routine surprises are spikes up has learnt nothing about drops.
    pub z: f64,
    /// What the model expected to see.
    pub expected: f64,
    /// One standard deviation around `expected`.
    pub scale: f64,
    /// False while the model has not seen enough to have an opinion.
    pub ready: bool,
}

impl Surprise {
    pub const NOT_READY: Surprise = Surprise {
        z: 0.0,
        expected: f64::NAN,
        scale: f64::NAN,
        ready: false,
    };
}

/// What every model does. `Config` is shared by all series of an engine and
/// never stored per series.
pub trait Model {
    type Config;

    /// The model's surprise distribution on Gaussian noise, as its
    /// calibrator's starting point: the 98th percentile of `ln(1 + z⁺)`
    /// and the mean excess beyond it (measured over 400,000 points of
    /// N(0, 1) with the default configuration; CUSUM's statistic, for
    /// one, has a much heavier tail than a z-score, and a calibrator that
    /// started from a Gaussian prior would page on it until it learnt).
    const NULL_TAIL: (f32, f32);

    fn new(cfg: &Self::Config) -> Self;

    /// Scores `obs` against the past, then learns from it.
    fn observe(&mut self, cfg: &Self::Config, obs: &Observation<'_>) -> Surprise;

    /// Bytes of state this model holds for one series, heap included.
    fn state_bytes(&self) -> usize;
}

/// The last [`History::CAPACITY`] values of a series, shared by the models
/// that look back (rolling median, k-means lags and training set). Stored as
/// `f32`: anomaly scores need relative precision, not 15 digits, and it
/// halves the largest piece of per-series state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    buf: Vec<f32>,
    /// Index of the slot the next value goes to.
    head: u16,
    len: u16,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    pub const CAPACITY: usize = 256;

    pub fn new() -> Self {
        History {
            buf: vec![0.0; Self::CAPACITY],
            head: 0,
            len: 0,
        }
    }

    pub fn push(&mut self, v: f64) {
        self.buf[self.head as usize] = v as f32;
        self.head = ((self.head as usize + 1) % Self::CAPACITY) as u16;
        self.len = (self.len as usize + 1).min(Self::CAPACITY) as u16;
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `back(0)` is the newest value, `back(len-1)` the oldest.
    pub fn back(&self, i: usize) -> f64 {
        debug_assert!(i < self.len());
        let idx = (self.head as usize + Self::CAPACITY - 1 - i) % Self::CAPACITY;
        self.buf[idx] as f64
    }

    /// Copies the newest `n` values, oldest first, into `out`.
    pub fn newest_into(&self, n: usize, out: &mut Vec<f32>) {
        let n = n.min(self.len());
        out.clear();
        out.extend((0..n).rev().map(|i| self.back(i) as f32));
    }

    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.buf.capacity() * std::mem::size_of::<f32>()
    }
}

/// Upper tail probability of the standard normal, `P(Z > z)`, accurate to
/// ~1e-7 relative over the whole range (W. J. Cody's rational
/// approximations via `erfc`), cheap enough for the per-point path.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative
/// error < 1.2e-7 everywhere), which keeps precision deep in the tail where
/// `1 - erf` would round to zero.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Deterministic series generators for the models' table-driven tests.
#[cfg(test)]
pub(crate) mod synth {
    /// A seeded xorshift so tests never depend on a crate's RNG stream.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Standard normal (Box–Muller).
        pub fn normal(&mut self) -> f64 {
            let u1 = self.uniform().max(1e-300);
            let u2 = self.uniform();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    /// Five-minute steps starting on a Monday 00:00 UTC.
    pub const STEP: i64 = 300;
    pub const T0: i64 = 1_700_438_400; // 2023-11-20 00:00:00 UTC, a Monday

    pub fn timestamps(n: usize) -> Vec<i64> {
        (0..n as i64).map(|i| T0 + i * STEP).collect()
    }

    /// The named scenarios every model is tested on. Each returns the series
    /// and the index where the anomaly begins (None for no anomaly).
    pub struct Scenario {
        pub name: &'static str,
        pub values: Vec<f64>,
        /// Where the anomaly begins; None for the no-anomaly scenario.
        pub onset: Option<usize>,
    }

    impl Scenario {
        /// Before the onset, the model stays calm: on Gaussian scenarios no
        /// ready point passes `max_z`; on the heavy-tailed "noisy" one
        /// (where single points legitimately reach 8σ) fewer than 3 % of
        /// points pass 4σ — a model stuck at "anomalous" on plain noise is
        /// the classic false-positive machine users complain about.
        pub fn assert_quiet(&self, s: &[super::Surprise], from: usize, max_z: f64) {
            let end = self.onset.unwrap_or(self.values.len());
            let ready = || s[from..end].iter().filter(|s| s.ready);
            if self.name == "noisy" {
                let hot = ready().filter(|s| s.z.abs() > 4.0).count();
                let share = hot as f64 / (end - from) as f64;
                assert!(
                    share < 0.03,
                    "noisy: {:.1}% of points above 4σ",
                    share * 100.0
                );
            } else {
                let quiet = ready().map(|s| s.z.abs()).fold(0.0, f64::max);
                assert!(
                    quiet < max_z,
                    "{}: quiet stretch reached z={quiet:.2}",
                    self.name
                );
            }
        }

        /// Within `within` points of the onset, some point passes `min_z`.
        pub fn assert_hot(&self, s: &[super::Surprise], within: usize, min_z: f64) {
            let on = self.onset.expect("scenario has an anomaly");
            let hot = s[on..on + within]
                .iter()
                .filter(|s| s.ready)
                .map(|s| s.z.abs())
                .fold(0.0, f64::max);
            assert!(
                hot > min_z,
                "{}: onset z={hot:.2} not above {min_z}",
                self.name
            );
        }
    }

    /// A model's scenario table: `(scenario, min_z)` rows, where `min_z`
    /// is what the onset must exceed within `within` points (0: not this
    /// model's job). Every scenario, seeded with `seed`, must also stay
    /// below `quiet_z` from point `quiet_from` until its onset.
    pub fn check_table(
        table: &[(&'static str, f64)],
        seed: u64,
        (quiet_from, quiet_z): (usize, f64),
        within: usize,
        run: impl Fn(&[f64]) -> Vec<super::Surprise>,
    ) {
        for &(name, min_z) in table {
            let sc = scenario(name, seed);
            let s = run(&sc.values);
            sc.assert_quiet(&s, quiet_from, quiet_z);
            if min_z > 0.0 {
                sc.assert_hot(&s, within, min_z);
            }
        }
    }

    /// Runs a fresh model over `values` at five-minute steps (or the given
    /// timestamps), maintaining the shared history and scale floor as the
    /// engine does.
    pub fn run_model<M: super::Model>(
        cfg: &M::Config,
        ts: Option<&[i64]>,
        values: &[f64],
    ) -> Vec<super::Surprise> {
        run_model_floored::<M>(cfg, ts, values, true)
    }

    /// [`run_model`] with the floor switched off: the engine learns the
    /// floor from the deseasonalised series, so the seasonal model's tests
    /// must not floor it with the raw cycle's spread.
    pub fn run_model_floored<M: super::Model>(
        cfg: &M::Config,
        ts: Option<&[i64]>,
        values: &[f64],
        floored: bool,
    ) -> Vec<super::Surprise> {
        let mut m = M::new(cfg);
        let mut h = super::History::new();
        let mut floor = super::ScaleFloor::default();
        let own;
        let ts = match ts {
            Some(ts) => ts,
            None => {
                own = timestamps(values.len());
                &own
            }
        };
        ts.iter()
            .zip(values)
            .map(|(&t, &v)| {
                let s = m.observe(
                    cfg,
                    &super::Observation {
                        ts: t,
                        value: v,
                        history: &h,
                        floor: if floored { floor.floor() } else { 1e-12 },
                    },
                );
                h.push(v);
                floor.learn(v);
                s
            })
            .collect()
    }

    /// Largest surprise of the ready points in `r`.
    pub fn max_z(s: &[super::Surprise], r: std::ops::Range<usize>) -> f64 {
        s[r].iter()
            .filter(|s| s.ready)
            .map(|s| s.z.abs())
            .fold(0.0, f64::max)
    }

    pub const N: usize = 3000;
    pub const ONSET: usize = 2400;

    pub fn scenario(name: &'static str, seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let ts = timestamps(N);
        let daily = |t: i64| {
            let h = ((t - T0).rem_euclid(86_400)) as f64 / 3600.0;
            20.0 * (2.0 * std::f64::consts::PI * h / 24.0).sin()
        };
        let mut onset = Some(ONSET);
        let values = (0..N)
            .map(|i| {
                let e = rng.normal();
                let after = i >= ONSET;
                match name {
                    "spike" => 100.0 + e + if i == ONSET { 12.0 } else { 0.0 },
                    "level_shift" => 100.0 + e + if after { 6.0 } else { 0.0 },
                    "variance_change" => 100.0 + e * if after { 6.0 } else { 1.0 },
                    "drift" => {
                        100.0
                            + e
                            + if after {
                                (i - ONSET) as f64 * 0.05
                            } else {
                                0.0
                            }
                    }
                    "seasonal_break" => {
                        // The daily cycle stops: the value freezes at the mean.
                        100.0 + e + if after { 0.0 } else { daily(ts[i]) }
                    }
                    "flatline" => {
                        if after {
                            100.0
                        } else {
                            100.0 + e
                        }
                    }
                    "noisy" => {
                        // Heavy-ish tails: one point in twenty has triple noise.
                        onset = None;
                        let wide = if rng.uniform() < 0.05 { 3.0 } else { 1.0 };
                        100.0 + 3.0 * e * wide
                    }
                    other => panic!("unknown scenario {other}"),
                }
            })
            .collect();
        Scenario {
            name,
            values,
            onset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_newest_values_in_order() {
        let mut h = History::new();
        for i in 0..300 {
            h.push(i as f64);
        }
        assert_eq!(h.len(), History::CAPACITY);
        assert_eq!(h.back(0), 299.0);
        assert_eq!(h.back(255), 44.0);
        let mut v = Vec::new();
        h.newest_into(3, &mut v);
        assert_eq!(v, vec![297.0, 298.0, 299.0]);
    }

    #[test]
    fn normal_tail_matches_known_values() {
        for (z, p) in [
            (0.0, 0.5),
            (1.0, 0.158_655_253_9),
            (3.0, 1.349_898_031_6e-3),
            (6.0, 9.865_876_450e-10),
            (-2.0, 0.977_249_868_1),
        ] {
            let got = normal_sf(z);
            assert!((got - p).abs() / p < 1e-6, "z={z}: {got} vs {p}");
        }
    }
}
