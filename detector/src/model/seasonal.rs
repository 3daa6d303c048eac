//! Seasonal baseline: what is normal *at this time of day and week*.
//!
//! An additive Holt-Winters-style decomposition on wall-clock bins:
//! `x ≈ level + offset[bin(t)]`, where the bin comes from the timestamp
//! (never from row counts, so gaps and irregular sampling do not shift
//! the phase). Two cycles are kept:
//!
//! - **daily**: `day_bins` bins of `86400 / day_bins` seconds;
//! - **weekly**: 168 hourly bins, Monday 00:00 UTC first.
//!
//! Each daily bin keeps its offset and its own mean absolute residual, so a
//! series that is calm at night and busy by day gets a narrow band at night
//! and a wide one by day; weekly bins keep only an offset and borrow the
//! spread of the daily bin at the same time of day. The surprise is the
//! residual in units of that σ (≈ 1.2533 · mean |residual|).
//!
//! **Recurring excursions.** A nightly cron job that spikes the CPU for
//! five minutes barely moves a half-hour bin's mean, so by level alone it
//! would page every night. Each daily bin also remembers the largest
//! excursion above and below its prediction (decaying by 5 % a day,
//! whatever the sampling rate, so a job that stops is forgotten within two
//! weeks). [`Seasonal::familiar`] says whether a value's excursion is within 150 %
//! of what this bin or its neighbours (jobs drift by minutes) saw on an
//! earlier day; the engine then does not page on it, whichever model is
//! surprised. A spike twice the usual size is not familiar. A point is only as surprising as
//! the *less* surprised of the two cycles once the weekly one is trained:
//! Saturday's dip is normal for the weekly cycle even though the daily one
//! has never seen it.
//!
//! A cycle has an opinion only after the series spanned more than one
//! period and the bin was visited before, so the first day is learnt, not
//! paged on. Updates are winsorised like [`super::ewma`].
//!
//! **Decomposition for the other models.** Once a series has shown a real
//! cycle, the non-seasonal models should not page on every morning ramp:
//! [`Seasonal::adjustment`] gives the part of the value explained by the time
//! of day (or week), and the engine feeds the other models the value minus
//! it. The part is weighted by the cycle's *strength* — `1 − var(residual) /
//! var(value − level)`, tracked online — ramping from 0 at strength 0.3 to 1
//! at 0.7, so a series without seasonality is left exactly as it is and the
//! weight never jumps.
//!
//! State: `day_bins · 17 + 168 · 5` bytes plus ~100 (≈ 1.8 KiB with 48
//! daily bins).

use serde::{Deserialize, Serialize};

use super::{Model, Observation, Surprise};

const WEEK_BINS: usize = 168;
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// 1970-01-01 was a Thursday; shifting by 3 days puts Monday 00:00 at 0.
const MONDAY_SHIFT: i64 = 3 * DAY;
/// σ of a normal residual ≈ this times its mean absolute value.
const MAD_TO_SIGMA: f64 = 1.253_314_137;

/// Seasonal model settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeasonalConfig {
    /// Bins per day (must divide 86400 s evenly); 48 = half-hour bins.
    pub day_bins: usize,
    /// Learn the weekly cycle too (adds 168 bins).
    pub weekly: bool,
    /// Weight of a new point in the level.
    pub alpha_level: f64,
    /// Weight of a new point in its bin's offset and spread.
    pub alpha_season: f64,
    /// Residuals are clipped to this many σ before updating.
    pub clip: f64,
}

impl Default for SeasonalConfig {
    fn default() -> Self {
        SeasonalConfig {
            day_bins: 48,
            weekly: true,
            alpha_level: 0.02,
            alpha_season: 0.15,
            clip: 3.0,
        }
    }
}

impl SeasonalConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.day_bins == 0 || self.day_bins > 288 || DAY % self.day_bins as i64 != 0 {
            p.push(format!(
                "{path}.day_bins: must divide 86400 and be at most 288 (got {})",
                self.day_bins
            ));
        }
        for (name, a) in [
            ("alpha_level", self.alpha_level),
            ("alpha_season", self.alpha_season),
        ] {
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

/// One cycle's bins. Only the daily cycle has spreads and peaks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Cycle {
    offset: Vec<f32>,
    /// Mean absolute residual of the bin.
    spread: Vec<f32>,
    /// Largest excursion above / below the prediction, decaying per visit.
    peak_up: Vec<f32>,
    peak_down: Vec<f32>,
    /// Updates seen, saturating.
    seen: Vec<u8>,
}

/// Decay of a bin's remembered peak per day.
const PEAK_DAILY_DECAY: f64 = 0.95;
/// An excursion up to this multiple of a remembered peak is familiar.
const PEAK_TOLERANCE: f64 = 1.5;

impl Cycle {
    fn new(bins: usize, full: bool) -> Self {
        let per_bin = || if full { vec![0.0; bins] } else { Vec::new() };
        Cycle {
            offset: vec![0.0; bins],
            spread: per_bin(),
            peak_up: per_bin(),
            peak_down: per_bin(),
            seen: vec![0; bins],
        }
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + 4 * (self.offset.capacity()
                + self.spread.capacity()
                + self.peak_up.capacity()
                + self.peak_down.capacity())
            + self.seen.capacity()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Seasonal {
    level: f64,
    /// EW mean of (value − level)²: the variance a cycle could explain.
    var_raw: f32,
    /// EW mean of the daily and weekly cycles' squared residuals.
    var_day: f32,
    var_week: f32,
    /// Mean absolute residual over all bins: the fallback spread of a bin
    /// with too few visits, and the floor of every bin's spread (a bin that
    /// happened to be calm must not make the band razor-thin).
    global_spread: f64,
    first_ts: Option<i64>,
    last_ts: i64,
    day: Cycle,
    week: Option<Cycle>,
}

fn day_bin(cfg: &SeasonalConfig, ts: i64) -> usize {
    (ts.rem_euclid(DAY) / (DAY / cfg.day_bins as i64)) as usize
}

fn week_bin(ts: i64) -> usize {
    ((ts + MONDAY_SHIFT).rem_euclid(WEEK) / 3600) as usize
}

/// Strength below which a series is treated as non-seasonal, and the width
/// of the ramp to full decomposition.
const STRENGTH_FROM: f64 = 0.3;
const STRENGTH_RAMP: f64 = 0.4;
/// Weight of a new point in the strength's variances.
const ALPHA_VAR: f64 = 0.01;

impl Seasonal {
    /// Cycle strength in [0, 1]: the share of variance the daily (or, once
    /// trained and better, weekly) offsets explain.
    pub fn strength(&self) -> f64 {
        if self.var_raw <= 0.0 {
            return 0.0;
        }
        let res = self.best_var() as f64;
        (1.0 - res / self.var_raw as f64).clamp(0.0, 1.0)
    }

    fn best_var(&self) -> f32 {
        if self.week.is_some() && self.var_week > 0.0 {
            self.var_day.min(self.var_week)
        } else {
            self.var_day
        }
    }

    fn use_week(&self, ts: i64) -> bool {
        let Some(w) = &self.week else { return false };
        let age = self.first_ts.map_or(0, |f| ts - f);
        age > WEEK
            && w.seen[week_bin(ts)] > 0
            && self.var_week > 0.0
            && self.var_week < self.var_day
    }

    /// How much of a value at `ts` the cycle explains (0 for a non-seasonal
    /// series or before a day was seen), from what was learnt so far: call
    /// it *before* [`Model::observe`] on the same point.
    pub fn adjustment(&self, cfg: &SeasonalConfig, ts: i64) -> f64 {
        let w = self.decomposition_weight(ts);
        if w == 0.0 {
            return 0.0;
        }
        let offset = if self.use_week(ts) {
            self.week
                .as_ref()
                .map_or(0.0, |c| c.offset[week_bin(ts)] as f64)
        } else {
            if self.day.seen[day_bin(cfg, ts)] == 0 {
                return 0.0;
            }
            self.day_offset(cfg, ts)
        };
        w * offset
    }
    /// The daily profile at `ts`: the offset of its bin.
    fn day_offset(&self, cfg: &SeasonalConfig, ts: i64) -> f64 {
        self.day.offset[day_bin(cfg, ts)] as f64
    }

    /// How much of the cycle [`adjustment`](Self::adjustment) removes, in
    /// [0, 1]: 0 before a day was seen or for a weak cycle.
    pub fn decomposition_weight(&self, ts: i64) -> f64 {
        let age = self.first_ts.map_or(0, |f| ts - f);
        if age <= DAY {
            return 0.0;
        }
        ((self.strength() - STRENGTH_FROM) / STRENGTH_RAMP).clamp(0.0, 1.0)
    }

    /// σ at daily bin `bin`. A bin sees only a few points a day, so its own
    /// spread is a noisy estimate: shrink it halfway towards the series'
    /// overall spread.
    fn sigma(&self, bin: usize, floor: f64) -> f64 {
        let own = 0.5 * (self.day.spread[bin] as f64 + self.global_spread);
        (MAD_TO_SIGMA * own).max(floor)
    }

    /// Whether `value` at `ts` departs from the daily prediction by no more
    /// than this bin or a neighbour did on an earlier day (see the module
    /// doc). Call before [`Model::observe`] on the same point.
    pub fn familiar(&self, cfg: &SeasonalConfig, ts: i64, value: f64, floor: f64) -> bool {
        let age = self.first_ts.map_or(0, |f| ts - f);
        if age <= DAY {
            return false;
        }
        let b = day_bin(cfg, ts);
        if self.day.seen[b] == 0 {
            return false;
        }
        let r = value - (self.level + self.day_offset(cfg, ts));
        let n = cfg.day_bins;
        let peaks = if r >= 0.0 {
            &self.day.peak_up
        } else {
            &self.day.peak_down
        };
        let peak = [(b + n - 1) % n, b, (b + 1) % n]
            .into_iter()
            .map(|i| peaks[i])
            .fold(0.0f32, f32::max) as f64;
        // Within the band a point is not an excursion at all.
        let band = 3.0 * self.sigma(b, floor);
        r.abs() > band && r.abs() <= PEAK_TOLERANCE * peak
    }
}

impl Model for Seasonal {
    type Config = SeasonalConfig;
    const NULL_TAIL: (f32, f32) = (1.102, 0.122);

    fn new(cfg: &SeasonalConfig) -> Self {
        Seasonal {
            day: Cycle::new(cfg.day_bins, true),
            week: cfg.weekly.then(|| Cycle::new(WEEK_BINS, false)),
            ..Default::default()
        }
    }

    fn observe(&mut self, cfg: &SeasonalConfig, obs: &Observation<'_>) -> Surprise {
        let (ts, x) = (obs.ts, obs.value);
        let first = *self.first_ts.get_or_insert(ts);
        if first == ts && self.global_spread == 0.0 && self.level == 0.0 {
            self.level = x;
        }
        let age = ts - first;
        let db = day_bin(cfg, ts);
        let wb = week_bin(ts);

        // Predictions from each cycle that has an opinion.
        let day_pred = self.level + self.day_offset(cfg, ts);
        let day_ready = age > DAY && self.day.seen[db] > 0;
        let week_ready = self
            .week
            .as_ref()
            .is_some_and(|w| age > WEEK && w.seen[wb] > 0);
        let day_sigma = self.sigma(db, obs.floor);
        let day_z = (x - day_pred) / day_sigma;
        let mut out = Surprise {
            z: day_z,
            expected: day_pred,
            scale: day_sigma,
            ready: day_ready,
        };
        if week_ready {
            let w = self
                .week
                .as_ref()
                .expect("week_ready implies a weekly cycle");
            let pred = self.level + w.offset[wb] as f64;
            let z = (x - pred) / day_sigma;
            if z.abs() < day_z.abs() {
                out = Surprise {
                    z,
                    expected: pred,
                    scale: day_sigma,
                    ready: true,
                };
            }
        }
        if !out.ready {
            out = Surprise {
                ready: false,
                ..out
            };
        }

        // Strength bookkeeping, from the predictions made before learning.
        let dev = x - self.level;
        self.var_raw += (ALPHA_VAR * (dev * dev - self.var_raw as f64)) as f32;
        let rd = x - day_pred;
        self.var_day += (ALPHA_VAR * (rd * rd - self.var_day as f64)) as f32;
        if week_ready {
            let w = self
                .week
                .as_ref()
                .expect("week_ready implies a weekly cycle");
            let rw = x - (self.level + w.offset[wb] as f64);
            self.var_week += (ALPHA_VAR * (rw * rw - self.var_week as f64)) as f32;
        }

        // Learn: level from the deseasonalised value, then each bin.
        let clip = |r: f64, sigma: f64| {
            if self.global_spread > 0.0 {
                let b = cfg.clip * sigma;
                r.clamp(-b, b)
            } else {
                r
            }
        };
        let r_day = clip(x - day_pred, day_sigma);
        self.level += cfg.alpha_level * r_day;
        let g = cfg.alpha_season;
        let update = |c: &mut Cycle, bin: usize, level: f64| {
            let target = x - level;
            let first_visit = c.seen[bin] == 0;
            let r = target - c.offset[bin] as f64;
            let bound = cfg.clip * day_sigma;
            let rc = if first_visit {
                r
            } else {
                r.clamp(-bound, bound)
            };
            let a = if first_visit { 1.0 } else { g };
            c.offset[bin] += (a * rc) as f32;
            if !c.spread.is_empty() {
                c.spread[bin] += (g * (rc.abs() - c.spread[bin] as f64)) as f32;
            }
            c.seen[bin] = c.seen[bin].saturating_add(1);
        };
        // Peaks remember the unclipped excursion from the prediction made
        // before this point was learnt.
        // A bin is visited about bin_width / step times a day; decaying by
        // daily_decay^(step / bin_width) per visit makes the decay per day.
        if self.day.seen[db] > 0 {
            let step = (ts - self.last_ts).clamp(1, DAY) as f64;
            let width = (DAY / cfg.day_bins as i64) as f64;
            // First order in step/width (a visit is a fraction of a day);
            // no `pow` on the per-point path.
            let decay = (1.0 - (1.0 - PEAK_DAILY_DECAY) * step / width).max(0.5) as f32;
            let up = &mut self.day.peak_up[db];
            *up = (*up * decay).max(rd.max(0.0) as f32);
            let down = &mut self.day.peak_down[db];
            *down = (*down * decay).max((-rd).max(0.0) as f32);
        }
        self.last_ts = ts;
        let level = self.level;
        update(&mut self.day, db, level);
        if let Some(w) = self.week.as_mut() {
            update(w, wb, level);
        }
        let ga = 0.01;
        self.global_spread += ga * (r_day.abs() - self.global_spread);
        out
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.day.bytes() + self.week.as_ref().map_or(0, |w| w.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::History;
    use crate::model::synth::{
        ONSET, T0, check_table, max_z, run_model_floored, scenario, timestamps,
    };

    fn run_ts(cfg: &SeasonalConfig, ts: &[i64], values: &[f64]) -> Vec<Surprise> {
        run_model_floored::<Seasonal>(cfg, Some(ts), values, false)
    }

    fn run(values: &[f64]) -> Vec<Surprise> {
        run_model_floored::<Seasonal>(&SeasonalConfig::default(), None, values, false)
    }

    #[test]
    fn bins_come_from_wall_clock() {
        let cfg = SeasonalConfig::default();
        assert_eq!(week_bin(T0), 0, "T0 is a Monday 00:00 UTC");
        assert_eq!(week_bin(T0 + 6 * DAY + 23 * 3600), 167);
        assert_eq!(day_bin(&cfg, T0 + 1800), 1);
        assert_eq!(day_bin(&cfg, T0 - 1), 47);
    }

    #[test]
    fn scenarios() {
        // (scenario, onset must exceed z; 0 = not this model's job)
        let table: &[(&str, f64)] = &[
            ("seasonal_break", 6.0),
            ("spike", 8.0),
            ("level_shift", 4.0),
            ("noisy", 0.0),
            ("drift", 0.0),
        ];
        check_table(table, 21, (600, 5.5), 60, run);
    }

    #[test]
    fn first_day_is_learnt_not_scored() {
        let sc = scenario("seasonal_break", 1);
        let s = run(&sc.values);
        assert!(s[..288].iter().all(|s| !s.ready));
        assert!(s[400].ready);
    }

    #[test]
    fn weekly_dip_is_normal_once_learnt() {
        // Weekdays at 100, weekends at 40: the daily cycle alone would page
        // every Saturday; with the weekly cycle, the third weekend is calm.
        let ts: Vec<i64> = (0..(21 * 288)).map(|i| T0 + i * 300).collect();
        let mut rng = crate::model::synth::Rng::new(9);
        let v: Vec<f64> = ts
            .iter()
            .map(|&t| {
                let dow = (t - T0).rem_euclid(WEEK) / DAY;
                (if dow >= 5 { 40.0 } else { 100.0 }) + rng.normal()
            })
            .collect();
        let s = run_ts(&SeasonalConfig::default(), &ts, &v);
        let third_saturday = 19 * 288;
        let third_weekend = max_z(&s, third_saturday..third_saturday + 2 * 288);
        assert!(
            third_weekend < 6.0,
            "weekend still surprising: {third_weekend:.1}"
        );
        let daily_only = SeasonalConfig {
            weekly: false,
            ..Default::default()
        };
        let s = run_ts(&daily_only, &ts, &v);
        let z = max_z(&s, third_saturday..third_saturday + 12);
        assert!(
            z > 6.0,
            "daily-only should be surprised by Saturday: {z:.1}"
        );
    }

    #[test]
    fn adjustment_only_for_a_real_cycle() {
        let cfg = SeasonalConfig::default();
        let mut with_cycle = Seasonal::new(&cfg);
        let mut without = Seasonal::new(&cfg);
        let cyc = scenario("seasonal_break", 3);
        let flat = scenario("noisy", 3);
        let h = History::new();
        for (i, t) in timestamps(ONSET).into_iter().enumerate() {
            let obs = |v| Observation {
                ts: t,
                value: v,
                history: &h,
                floor: 1e-9,
            };
            with_cycle.observe(&cfg, &obs(cyc.values[i]));
            without.observe(&cfg, &obs(flat.values[i]));
        }
        assert!(with_cycle.strength() > 0.9, "{}", with_cycle.strength());
        assert!(without.strength() < 0.2, "{}", without.strength());
        // At the daily peak (06:00 UTC for the synthetic sine) the cycle
        // explains ≈ +20; the noise explains nothing.
        let peak = T0 + 10 * DAY + 6 * 3600;
        let adj = with_cycle.adjustment(&cfg, peak);
        assert!((adj - 20.0).abs() < 3.0, "adjustment {adj}");
        assert_eq!(without.adjustment(&cfg, peak), 0.0);
    }

    #[test]
    fn gaps_do_not_shift_the_phase() {
        // Same daily pattern, but with a 5-hour hole every day: the phase
        // comes from timestamps, so the pattern is still learnt.
        let ts: Vec<i64> = (0..(10 * 288))
            .map(|i| T0 + i * 300)
            .filter(|t| (t - T0).rem_euclid(DAY) < 19 * 3600)
            .collect();
        let v: Vec<f64> = ts
            .iter()
            .map(|&t| {
                if (t - T0).rem_euclid(DAY) < 6 * 3600 {
                    10.0
                } else {
                    50.0
                }
            })
            .collect();
        let s = run_ts(&SeasonalConfig::default(), &ts, &v);
        let late = max_z(&s, ts.len() - 300..ts.len());
        assert!(late < 3.0, "pattern with gaps not learnt: {late:.1}");
    }
}
