//! Turning one model's surprise into a tail probability *for this series*.
//!
//! A model's `z` is "σ of its own residuals", which assumes its residuals
//! are Gaussian at the scale it estimated. They rarely are: on a
//! heavy-tailed series a robust model sees 8σ points every day; on another
//! series the same model is a little over-cautious. A Gaussian reading of
//! `z` would page on the first series all day long.
//!
//! So each model's surprises get their own tail model, a streaming
//! peaks-over-threshold fit (after SPOT, Siffer et al., KDD 2017) on
//! `u = ln(1 + z)`. An exponential tail in `u` is a Pareto tail in `z`:
//! real series have tails that heavy (a disk that writes 0 bytes most of
//! the time and 10⁸ bytes now and then is 10⁸σ surprising to any model),
//! and in `z` itself such surprises could never be learnt as routine. In
//! what follows `z` stands for `u`:
//!
//! Each side — surprises above and below expectation — has its own tail:
//! a metric that spikes up every hour has learnt nothing about drops, so a
//! drop is judged against a quiet lower tail.
//!
//! - `t` tracks the `1 − tail` quantile of `z` by stochastic approximation
//!   (each exceedance raises it by `r·(1 − tail)·e`, each other point
//!   lowers it by `r·tail·e`, so it settles where `P(z > t) = tail`);
//! - `e` is the exponentially weighted mean excess `z − t` over the
//!   exceedances, winsorised at `clip·e` so one anomaly does not teach the
//!   model that anomalies are normal;
//! - both start with Robbins–Monro steps (`r = 1/(1 + n·tail)`, and a
//!   plain running mean of the first `1/alpha_excess` excesses), so a young
//!   series learns its tails within a few hundred points, and settle at the
//!   slow `rate` / `alpha_excess`, so an established one is not talked out
//!   of its tails by one bad hour;
//! - `p(z) = tail · exp(−(z − t)/e)` above `t`, and linear from 1 at
//!   `z = 0` to `tail` at `t` below it (below the threshold a point never
//!   pages, so only monotony matters there, and this is one multiply
//!   instead of a `pow` on the per-point path).
//!
//! A series that is routinely surprising raises `t` and `e` within a few
//! hundred points and stops paging — no series stays stuck at "100 %
//! anomalous" — while on a well-behaved series a 6σ point is a 1-in-10⁵
//! event and 10σ one in 10⁷. The priors are the Gaussian values
//! (`ln(1 + |Z|)` has its 98th percentile at 1.202 and a mean excess of
//! 0.094 beyond it). `e` is floored at `min_excess`: a model may be discounted
//! freely but trusted beyond its own estimate only so far. State: 12 bytes.

use serde::{Deserialize, Serialize};

/// Calibration settings (shared by all models).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Share of points above the tracked threshold.
    pub tail: f64,
    /// Step of the threshold's quantile tracking, in mean excesses.
    pub rate: f64,
    /// Weight of a new exceedance in the mean excess.
    pub alpha_excess: f64,
    /// Lower bound of the mean excess.
    pub min_excess: f64,
    /// Winsorising bound of an excess, in mean excesses.
    pub clip: f64,
    /// Surprises needed before the calibrator gives probabilities.
    pub min_points: u32,
    /// Weight of the Gaussian prior of the mean excess, in exceedances: a
    /// young series needs this many surprising points before its tail is
    /// its own, so two early incidents don't teach it that incidents are
    /// normal.
    pub prior_weight: f64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            tail: 0.02,
            rate: 0.05,
            alpha_excess: 0.01,
            min_excess: 0.05,
            clip: 3.0,
            min_points: 32,
            prior_weight: 20.0,
        }
    }
}

impl CalibrationConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.tail > 0.0 && self.tail < 0.5) {
            p.push(format!(
                "{path}.tail: must be in (0, 0.5), got {}",
                self.tail
            ));
        }
        for (name, v) in [("rate", self.rate), ("alpha_excess", self.alpha_excess)] {
            if !(v > 0.0 && v < 1.0) {
                p.push(format!("{path}.{name}: must be in (0, 1), got {v}"));
            }
        }
        if !(self.min_excess > 0.0 && self.min_excess.is_finite()) {
            p.push(format!("{path}.min_excess: must be a positive number"));
        }
        if !(self.prior_weight >= 1.0 && self.prior_weight.is_finite()) {
            p.push(format!("{path}.prior_weight: must be a finite number ≥ 1"));
        }
        if !(self.clip >= 1.0 && self.clip.is_finite()) {
            p.push(format!("{path}.clip: must be a finite number ≥ 1"));
        }
        p
    }
}

/// Gaussian priors for `tail` = 2 %: the 98th percentile of ln(1 + Z⁺) and
/// its mean excess beyond it (one side of a standard normal). Models
/// supply their own ([`crate::model::Model::NULL_TAIL`]).
const PRIOR_T: f32 = 1.116;
const PRIOR_E: f32 = 0.109;

/// One side's tail fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tail {
    /// Threshold: the tracked `1 − tail` quantile of ln(1 + z) on this side.
    t: f32,
    /// Mean excess over `t`.
    e: f32,
    /// Exceedances seen (saturating): drives the prior-weighted start of `e`.
    exceedances: u16,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            t: PRIOR_T,
            e: PRIOR_E,
            exceedances: 0,
        }
    }
}

impl Tail {
    /// Tail probability of `u = ln(1 + z)`, `z ≥ 0` on this side.
    fn p(&self, cfg: &CalibrationConfig, u: f64) -> f64 {
        let t = self.t as f64;
        let e = (self.e as f64).max(cfg.min_excess);
        if u > t {
            cfg.tail * (-(u - t) / e).exp()
        } else if t > 0.0 {
            1.0 - (1.0 - cfg.tail) * (u / t)
        } else {
            1.0
        }
    }

    fn learn(&mut self, cfg: &CalibrationConfig, u: f64, n: u32) {
        let e = (self.e as f64).max(cfg.min_excess);
        let t = self.t as f64;
        let r = cfg.rate.max(1.0 / (1.0 + n as f64 * cfg.tail));
        if u > t {
            self.exceedances = self.exceedances.saturating_add(1);
            let a = cfg
                .alpha_excess
                .max(1.0 / (cfg.prior_weight + self.exceedances as f64));
            let excess = (u - t).min(cfg.clip * e);
            self.e += (a * (excess - self.e as f64)) as f32;
            self.t = (t + r * (1.0 - cfg.tail) * e) as f32;
        } else {
            self.t = (t - r * cfg.tail * e).max(0.0) as f32;
        }
    }
}

/// Both tails of one model's surprises on one series.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    up: Tail,
    down: Tail,
    n: u32,
}

impl Calibrator {
    /// A calibrator starting from the given null tail `(t, e)` on both sides.
    pub fn with_prior((t, e): (f32, f32)) -> Self {
        let tail = Tail {
            t,
            e,
            exceedances: 0,
        };
        Calibrator {
            up: tail.clone(),
            down: tail,
            n: 0,
        }
    }
}

/// Side and `u = ln(1 + |z|)`, in f32: the tail fit needs three digits,
/// and `log1pf` is markedly cheaper on the per-point path.
fn side(z: f64) -> (bool, f64) {
    (z >= 0.0, (z.abs() as f32).ln_1p() as f64)
}

impl Calibrator {
    /// One-sided tail probability of the signed surprise `z` under the
    /// current fit of its side.
    pub fn p(&self, cfg: &CalibrationConfig, z: f64) -> f64 {
        let (up, u) = side(z);
        if up {
            self.up.p(cfg, u)
        } else {
            self.down.p(cfg, u)
        }
    }

    /// The (non-negative) surprise on side `up` whose tail probability is
    /// `exp(ln_p)`: how far out the band must reach on that side. Takes the
    /// logarithm so the per-point path needs no `pow`.
    /// `ln_ratio` is `ln(tail / p)`, precomputed by the caller once per
    /// point for both sides.
    pub fn z_at_ln(&self, cfg: &CalibrationConfig, ln_ratio: f64, up: bool) -> f64 {
        let tail = if up { &self.up } else { &self.down };
        let e = (tail.e as f64).max(cfg.min_excess);
        (tail.t as f64 + e * ln_ratio.max(0.0)).exp_m1()
    }

    /// The surprise on side `up` whose tail probability is `p`.
    pub fn z_at(&self, cfg: &CalibrationConfig, p: f64, up: bool) -> f64 {
        self.z_at_ln(cfg, (cfg.tail / p).ln(), up)
    }

    /// Calibrated tail probability of the signed surprise `z`, then learns
    /// it (each side learns its own magnitude; the other side sees a 0).
    /// `None` until `min_points` surprises were seen.
    pub fn observe(&mut self, cfg: &CalibrationConfig, z: f64) -> Option<f64> {
        let z = if z.is_finite() {
            z
        } else {
            1e12f64.copysign(z)
        };
        let p = self.p(cfg, z);
        self.n = self.n.saturating_add(1);
        let (up, u) = side(z);
        self.up.learn(cfg, if up { u } else { 0.0 }, self.n);
        self.down.learn(cfg, if up { 0.0 } else { u }, self.n);
        (self.n > cfg.min_points).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synth::Rng;

    fn feed(c: &mut Calibrator, cfg: &CalibrationConfig, n: usize, mut f: impl FnMut() -> f64) {
        for _ in 0..n {
            c.observe(cfg, f());
        }
    }

    #[test]
    fn gaussian_surprises_get_gaussian_like_tails() {
        let cfg = CalibrationConfig::default();
        let mut c = Calibrator::default();
        let mut rng = Rng::new(1);
        feed(&mut c, &cfg, 20_000, || rng.normal());
        // The thresholds settle near the true 98th percentile of each side.
        let t = (c.up.t as f64).exp_m1();
        assert!((t - 2.05).abs() < 0.3, "t = {t}");
        let t_down = (c.down.t as f64).exp_m1();
        assert!((t_down - 2.05).abs() < 0.3, "t = {t_down}");
        // Exceedance rate ≈ tail.
        let mut over = 0;
        for _ in 0..20_000 {
            if rng.normal() > t {
                over += 1;
            }
        }
        assert!((200..700).contains(&over), "{over} exceedances in 20000");
        for z in [6.0, -6.0] {
            let p = c.p(&cfg, z);
            assert!(p < 1e-4, "p({z}σ) = {p}");
        }
        let p10 = c.p(&cfg, 10.0);
        assert!(p10 < 1e-6, "p(10σ) = {p10}");
        let p3 = c.p(&cfg, 3.0);
        assert!(p3 > 1e-3 && p3 < 0.02, "p(3σ) = {p3}");
    }

    #[test]
    fn heavy_tails_are_discounted() {
        // One point in twenty has triple noise: 8σ is routine here.
        let cfg = CalibrationConfig::default();
        let mut c = Calibrator::default();
        let mut rng = Rng::new(2);
        feed(&mut c, &cfg, 5000, || {
            let wide = if rng.uniform() < 0.05 { 3.0 } else { 1.0 };
            rng.normal() * wide
        });
        for z in [8.0, -8.0] {
            let p = c.p(&cfg, z);
            assert!(p > 1e-4, "p({z}σ) = {p} on a heavy-tailed series");
        }
    }

    #[test]
    fn routine_huge_spikes_are_learnt() {
        // A sparse series: 0 most of the time, a 10⁸σ burst one point in
        // ten. After a few hundred points a burst is no news.
        let cfg = CalibrationConfig::default();
        let mut c = Calibrator::default();
        let mut rng = Rng::new(7);
        feed(&mut c, &cfg, 1000, || {
            if rng.uniform() < 0.1 {
                1e8 * (1.0 + rng.uniform())
            } else {
                rng.normal()
            }
        });
        let p = c.p(&cfg, 1.5e8);
        assert!(p > 1e-3, "p(burst) = {p}");
        // But bursts taught it nothing about drops.
        let p = c.p(&cfg, -50.0);
        assert!(p < 1e-6, "p(drop) = {p}");
    }

    #[test]
    fn one_anomaly_does_not_teach_that_anomalies_are_normal() {
        let cfg = CalibrationConfig::default();
        let mut c = Calibrator::default();
        let mut rng = Rng::new(3);
        feed(&mut c, &cfg, 3000, || rng.normal());
        let before = c.p(&cfg, 6.0);
        c.observe(&cfg, 1e6);
        let after = c.p(&cfg, 6.0);
        assert!(after < 10.0 * before, "p(6σ) {before} → {after}");
        assert!(after < 1e-4);
    }

    #[test]
    fn sustained_surprise_becomes_the_new_normal() {
        let cfg = CalibrationConfig::default();
        let mut c = Calibrator::default();
        let mut rng = Rng::new(4);
        feed(&mut c, &cfg, 3000, || rng.normal());
        let first = c.p(&cfg, 6.0);
        feed(&mut c, &cfg, 1500, || 6.0 + rng.normal().abs());
        assert!(c.p(&cfg, 6.0) > 1000.0 * first);
    }

    #[test]
    fn probability_is_monotone_and_z_at_inverts_it() {
        let cfg = CalibrationConfig::default();
        let c = Calibrator::default();
        let mut last = 1.0;
        for i in 0..100 {
            let p = c.p(&cfg, i as f64 * 0.1);
            assert!(p <= last, "not monotone at z={}", i as f64 * 0.1);
            last = p;
        }
        let z = c.z_at(&cfg, 1e-6, true);
        assert!((c.p(&cfg, z) - 1e-6).abs() < 1e-12);
        let z = c.z_at(&cfg, 1e-6, false);
        assert!((c.p(&cfg, -z) - 1e-6).abs() < 1e-12);
    }

    #[test]
    fn silent_until_min_points() {
        let cfg = CalibrationConfig::default();
        let mut c = Calibrator::default();
        for i in 0..cfg.min_points {
            assert!(c.observe(&cfg, 1.0).is_none(), "point {i}");
        }
        assert!(c.observe(&cfg, 1.0).is_some());
    }
}
