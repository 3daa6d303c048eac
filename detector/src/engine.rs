//! The per-series detection engine: five models, one calibrated score, one
//! decision with hysteresis.
//!
//! For each point, in order and strictly causally (the verdict on point `t`
//! uses only points `≤ t`):
//!
//! 1. every model ([`crate::model`]) reports its surprise `z` (≈ |z-score|)
//!    against what it learnt so far, then learns the point;
//! 2. each surprise is **calibrated** against that model's own recent
//!    surprises ([`calibrate`]): a model that is routinely surprised on this
//!    series (heavy tails, a shape it cannot represent) is discounted, one
//!    that is usually spot-on is trusted — so no series is stuck at "100 %
//!    anomalous" and every model speaks the same unit, a tail probability;
//! 3. the probabilities are **combined** with a weighted Bonferroni bound
//!    (each model's p divided by its share of the voting models' weight,
//!    the smallest wins: valid however correlated the models are; see
//!    [`Weights`] for why the shares are unequal);
//! 4. evidence against a value **inside the range the series visited** over
//!    the last few thousand points is discounted by `seen_decades`
//!    ([`seen`]): being back at a level it has been at this week is less
//!    news than leaving every level seen — which is what lets the trigger
//!    sit lower for the latter than it could for every point;
//! 5. the result is mapped to a score in [0, 1] on a log scale:
//!    `score = −log₁₀(p) / 10`, so 0.5 means "one in 100 000", 1.0 means
//!    "one in 10¹⁰ or rarer";
//! 6. the **decision** has hysteresis ([`Hysteresis`]): an episode opens when
//!    the score reaches `trigger` and closes only after `recover_points`
//!    consecutive points below `recover`, so a flapping series pages once.
//!
//! While an episode is open the series has already paged; the verdict's
//! `alert_score` (what alerting and the NAB backtest threshold on) is
//! therefore the score only at points that could open an episode, and the
//! score capped below `trigger` inside one. `score` itself is never altered.
//!
//! Warm-up is a fixed number of points, the same for every series
//! (`warmup`): models learn but the verdict says `learning` and scores 0.
//!
//! State per series: see [`SeriesDetector::state_bytes`] (≈ 3.7 KiB with the
//! defaults; measured by the `engine` benchmark). A detector serialises with
//! serde; restoring it mid-stream continues with exactly the verdicts of an
//! uninterrupted run.

use serde::{Deserialize, Serialize};

use crate::model::{
    History, Model, Observation, ScaleFloor, Surprise,
    changepoint::{Changepoint, ChangepointConfig},
    ewma::{Ewma, EwmaConfig},
    kmeans::{KMeansConfig, KMeansModel},
    robust::{Robust, RobustConfig},
    seasonal::{Seasonal, SeasonalConfig},
    volatility::{Volatility, VolatilityConfig},
};

pub mod calibrate;
pub mod seen;

use calibrate::{CalibrationConfig, Calibrator};
use seen::Seen;

/// The models of the ensemble, in the order of [`Verdict::fired`]'s bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Robust,
    Ewma,
    Seasonal,
    Changepoint,
    Kmeans,
    Volatility,
}

/// Number of models in the ensemble.
pub const MODELS: usize = 6;

impl ModelKind {
    pub const ALL: [ModelKind; MODELS] = [
        ModelKind::Robust,
        ModelKind::Ewma,
        ModelKind::Seasonal,
        ModelKind::Changepoint,
        ModelKind::Kmeans,
        ModelKind::Volatility,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Robust => "robust",
            ModelKind::Ewma => "ewma",
            ModelKind::Seasonal => "seasonal",
            ModelKind::Changepoint => "changepoint",
            ModelKind::Kmeans => "kmeans",
            ModelKind::Volatility => "volatility",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// How the models' calibrated probabilities become one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// `M · min p`: valid under any dependence, ignores agreement.
    Bonferroni,
    /// Harmonic mean p-value `M / Σ 1/p` (Wilson, PNAS 2019): valid under
    /// dependence, and several models agreeing count for more than one.
    Harmonic,
    /// Fisher's `−2 Σ ln p ~ χ²(2M)`: assumes independence, so correlated
    /// models over-count; strongest when they agree.
    Fisher,
    /// Partial conjunction (Benjamini & Heller 2008) for "at least two
    /// models": `(M − 1) · p₍₂₎`, the second-smallest p. One model alone,
    /// however sure, does not page.
    Agreement,
}

/// Engine settings, shared by every series (never stored per series).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Points every series learns from before it may score.
    pub warmup: u32,
    /// Score at which an episode opens.
    pub trigger: f64,
    /// An open episode closes after `recover_points` consecutive points
    /// scoring below this.
    pub recover: f64,
    pub recover_points: u32,
    pub calibration: CalibrationConfig,
    pub robust: RobustConfig,
    pub ewma: EwmaConfig,
    pub seasonal: SeasonalConfig,
    pub changepoint: ChangepointConfig,
    pub kmeans: KMeansConfig,
    pub volatility: VolatilityConfig,
    /// Models switched off (e.g. `[kmeans]`).
    pub disabled: Vec<ModelKind>,
    /// A value whose excursion recurs at this time of day (see
    /// [`Seasonal::familiar`]) scores at most this tail probability's score:
    /// the nightly cron job is learnt, not paged on.
    pub familiar_p: f64,
    pub combine: Combine,
    /// "Not an anomaly" feedback makes a series this many decades of
    /// probability harder to page on (see [`SeriesDetector::feedback`]) …
    pub feedback_decades: f64,
    /// … and the effect halves every this many points.
    pub feedback_half_life: u32,
    /// How much of the false-alarm budget each model gets (see [`Weights`]).
    pub weights: Weights,
    /// Decades of probability by which the evidence against a value inside
    /// the range the series visited over the last
    /// [`seen::BLOCKS`]` · seen_block` points is discounted (0: off; see
    /// [`seen`]).
    pub seen_decades: f64,
    pub seen_block: u16,
    /// The range is widened by this many scale floors ([`ScaleFloor`]) on
    /// each side: in plain noise every new extreme beats the old one by a
    /// hair, and that is no departure.
    pub seen_margin: f64,
}

/// Each model's share of the false-alarm budget in the combination: a
/// weighted Bonferroni bound, `min p_i · W / w_i` with `W` the voting
/// models' total weight (Genovese, Roeder & Wasserman 2006), still valid
/// however the models correlate. Equal weights are plain Bonferroni.
/// Measured on NAB, the models are not equally useful at the same
/// calibrated probability: the rolling median caused 30 % of the false
/// pages while catching almost nothing the fast EWMA or the seasonal
/// model did not catch first, and k-means' shape distance added no
/// incident at all. So those get a small share — they page only when
/// really sure — and the models that find incidents gain the budget they
/// give up. Weights need not sum to 1 (only ratios matter).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub robust: f64,
    pub ewma: f64,
    pub seasonal: f64,
    pub changepoint: f64,
    pub kmeans: f64,
    pub volatility: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            robust: 0.003,
            ewma: 1.0,
            seasonal: 1.0,
            changepoint: 0.56,
            kmeans: 0.03,
            volatility: 0.32,
        }
    }
}

impl Weights {
    fn of(&self) -> [f64; MODELS] {
        [
            self.robust,
            self.ewma,
            self.seasonal,
            self.changepoint,
            self.kmeans,
            self.volatility,
        ]
    }

    fn problems(&self, path: &str) -> Vec<String> {
        ModelKind::ALL
            .iter()
            .zip(self.of())
            .filter(|(_, w)| !(*w > 0.0 && w.is_finite()))
            .map(|(m, w)| format!("{path}.{}: must be a positive number, got {w}", m.as_str()))
            .collect()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            warmup: 200,
            trigger: 0.28,
            recover: 0.18,
            recover_points: 30,
            calibration: CalibrationConfig::default(),
            robust: RobustConfig::default(),
            ewma: EwmaConfig::default(),
            seasonal: SeasonalConfig::default(),
            changepoint: ChangepointConfig::default(),
            kmeans: KMeansConfig::default(),
            volatility: VolatilityConfig::default(),
            disabled: Vec::new(),
            familiar_p: 1e-2,
            combine: Combine::Bonferroni,
            feedback_decades: 1.0,
            feedback_half_life: 8640,
            weights: Weights::default(),
            seen_decades: 1.25,
            seen_block: 512,
            seen_margin: 1.5,
        }
    }
}

/// Every problem of an [`EngineConfig`], each naming its field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid engine configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl EngineConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(0.0 < self.trigger && self.trigger <= 1.0) {
            p.push(format!(
                "{path}.trigger: must be in (0, 1], got {}",
                self.trigger
            ));
        }
        if !(0.0 <= self.recover && self.recover <= self.trigger) {
            p.push(format!(
                "{path}.recover: must be between 0 and trigger ({}), got {}",
                self.trigger, self.recover
            ));
        }
        if !(self.familiar_p > 0.0 && self.familiar_p <= 1.0) {
            p.push(format!(
                "{path}.familiar_p: must be in (0, 1], got {}",
                self.familiar_p
            ));
        }
        if !(self.feedback_decades >= 0.0 && self.feedback_decades.is_finite()) {
            p.push(format!(
                "{path}.feedback_decades: must be a finite number ≥ 0"
            ));
        }
        if self.feedback_half_life == 0 {
            p.push(format!("{path}.feedback_half_life: must be at least 1"));
        }
        for (name, v) in [
            ("seen_decades", self.seen_decades),
            ("seen_margin", self.seen_margin),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                p.push(format!("{path}.{name}: must be a finite number ≥ 0"));
            }
        }
        if self.seen_block == 0 {
            p.push(format!("{path}.seen_block: must be at least 1"));
        }
        if self.recover_points == 0 {
            p.push(format!("{path}.recover_points: must be at least 1"));
        }
        if self.disabled.len() >= ModelKind::ALL.len()
            && ModelKind::ALL.iter().all(|m| self.disabled.contains(m))
        {
            p.push(format!(
                "{path}.disabled: at least one model must stay enabled"
            ));
        }
        p.extend(self.weights.problems(&format!("{path}.weights")));
        p.extend(self.calibration.problems(&format!("{path}.calibration")));
        p.extend(self.robust.problems(&format!("{path}.robust")));
        p.extend(self.ewma.problems(&format!("{path}.ewma")));
        p.extend(self.seasonal.problems(&format!("{path}.seasonal")));
        p.extend(self.changepoint.problems(&format!("{path}.changepoint")));
        p.extend(self.kmeans.problems(&format!("{path}.kmeans")));
        p.extend(self.volatility.problems(&format!("{path}.volatility")));
        p
    }

    /// Validates, reporting every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = self.problems("engine");
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p))
        }
    }

    fn enabled(&self, m: ModelKind) -> bool {
        !self.disabled.contains(&m)
    }
}

/// What the engine says about one point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Calibrated anomaly score in [0, 1] (log scale, see the module doc).
    pub score: f64,
    /// `score` where a page could start, capped below `trigger` inside an
    /// already-open episode: what alerting thresholds on.
    pub alert_score: f64,
    /// The decision with hysteresis.
    pub anomalous: bool,
    /// This point opened an episode.
    pub onset: bool,
    /// What the best-informed model expected (seasonal when trained,
    /// otherwise the rolling median).
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// Still warming up: scores are 0 and no decision is made.
    pub learning: bool,
    /// Bit set of the models whose own calibrated score reached `trigger`
    /// (bit `i` = `ModelKind::ALL[i]`).
    pub fired: u8,
    /// The excursion recurs at this time of day, so it was not paged on.
    pub familiar: bool,
}

impl Verdict {
    pub fn fired_models(&self) -> impl Iterator<Item = ModelKind> + '_ {
        ModelKind::ALL
            .into_iter()
            .filter(move |m| self.fired & m.bit() != 0)
    }
}

/// One model's contribution to a verdict: why the score is what it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelScore {
    /// The model's raw surprise (≈ |z|); 0 when not ready.
    pub z: f64,
    /// Calibrated tail probability; 1 when the model has no opinion yet.
    pub p: f64,
    pub expected: f64,
}

/// Open/closed episode state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hysteresis {
    open: bool,
    /// Consecutive points below `recover` while open.
    calm: u32,
}

impl Hysteresis {
    /// Returns (anomalous, onset).
    fn step(&mut self, cfg: &EngineConfig, score: f64) -> (bool, bool) {
        if !self.open {
            if score >= cfg.trigger {
                self.open = true;
                self.calm = 0;
                return (true, true);
            }
            return (false, false);
        }
        if score < cfg.recover {
            self.calm += 1;
            if self.calm >= cfg.recover_points {
                self.open = false;
                self.calm = 0;
                return (false, false);
            }
        } else {
            self.calm = 0;
        }
        (true, false)
    }
}

/// One series' complete state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesDetector {
    n: u64,
    history: History,
    floor: ScaleFloor,
    robust: Robust,
    ewma: Ewma,
    seasonal: Seasonal,
    changepoint: Changepoint,
    kmeans: KMeansModel,
    volatility: Volatility,
    calib: [Calibrator; MODELS],
    /// Decades of probability subtracted from this series' evidence
    /// because users said its pages were not anomalies; decays.
    desensitized: f32,
    hysteresis: Hysteresis,
    seen: Seen,
}

/// The score of a tail probability: `−log₁₀(p) / 10`, clamped to [0, 1].
pub fn score_of(p: f64) -> f64 {
    // −log₁₀(p)/10 = −ln(p) / (10 · ln 10)
    (-p.max(1e-300).ln() * (1.0 / (10.0 * std::f64::consts::LN_10))).clamp(0.0, 1.0)
}

impl SeriesDetector {
    pub fn new(cfg: &EngineConfig) -> Self {
        SeriesDetector {
            n: 0,
            history: History::new(),
            floor: ScaleFloor::default(),
            robust: Robust::new(&cfg.robust),
            ewma: Ewma::new(&cfg.ewma),
            seasonal: Seasonal::new(&cfg.seasonal),
            changepoint: Changepoint::new(&cfg.changepoint),
            kmeans: KMeansModel::new(&cfg.kmeans),
            volatility: Volatility::new(&cfg.volatility),
            calib: [
                Calibrator::with_prior(Robust::NULL_TAIL),
                Calibrator::with_prior(Ewma::NULL_TAIL),
                Calibrator::with_prior(Seasonal::NULL_TAIL),
                Calibrator::with_prior(Changepoint::NULL_TAIL),
                Calibrator::with_prior(KMeansModel::NULL_TAIL),
                Calibrator::with_prior(Volatility::NULL_TAIL),
            ],
            desensitized: 0.0,
            hysteresis: Hysteresis::default(),
            seen: Seen::default(),
        }
    }

    /// Points seen so far.
    pub fn points(&self) -> u64 {
        self.n
    }

    /// "Not an anomaly": this series' last page was wrong. Its evidence is
    /// discounted by `feedback_decades` more (so its band widens by the
    /// same amount), fading with `feedback_half_life`; repeated feedback
    /// adds up. The models' baselines are untouched: the data was real,
    /// only its importance is in question.
    pub fn feedback(&mut self, cfg: &EngineConfig) {
        self.desensitized += cfg.feedback_decades as f32;
    }

    /// Decades of evidence currently discounted by feedback.
    pub fn desensitized(&self) -> f64 {
        self.desensitized as f64
    }

    /// The verdict `value` would get now, without learning from it: what a
    /// maintenance window shows while keeping the window out of training.
    pub fn peek(&self, cfg: &EngineConfig, ts: i64, value: f64) -> Verdict {
        self.clone().update(cfg, ts, value)
    }

    /// Still in warm-up.
    pub fn learning(&self, cfg: &EngineConfig) -> bool {
        self.n <= cfg.warmup as u64
    }

    /// Scores `value` observed at `ts` (unix seconds), then learns it.
    /// Non-finite values are not learnt and get a neutral verdict.
    pub fn update(&mut self, cfg: &EngineConfig, ts: i64, value: f64) -> Verdict {
        self.update_detailed(cfg, ts, value).0
    }

    /// [`update`](Self::update), plus each model's part in the verdict (in
    /// [`ModelKind::ALL`] order).
    pub fn update_detailed(
        &mut self,
        cfg: &EngineConfig,
        ts: i64,
        value: f64,
    ) -> (Verdict, [ModelScore; MODELS]) {
        if !value.is_finite() {
            let v = Verdict {
                learning: self.learning(cfg),
                expected: f64::NAN,
                lower: f64::NAN,
                upper: f64::NAN,
                ..Verdict::default()
            };
            return (v, [ModelScore::default(); MODELS]);
        }
        self.n += 1;
        let on = |m: ModelKind| cfg.enabled(m);
        // The seasonal model sees the raw value; the others see it with the
        // learnt time-of-day part removed (zero unless the series has a
        // real cycle), so a daily ramp is not a level shift to them.
        let (adj, familiar) = if on(ModelKind::Seasonal) {
            (
                self.seasonal.adjustment(&cfg.seasonal, ts),
                self.seasonal
                    .familiar(&cfg.seasonal, ts, value, self.floor.floor()),
            )
        } else {
            (0.0, false)
        };
        let seasonal = if on(ModelKind::Seasonal) {
            let raw = Observation {
                ts,
                value,
                history: &self.history,
                floor: self.floor.floor(),
            };
            self.seasonal.observe(&cfg.seasonal, &raw)
        } else {
            Surprise::NOT_READY
        };
        // The deseasonalised value carries the decomposition's own error:
        // no model may judge it more finely than the seasonal residual σ.
        let floor = if adj != 0.0 && seasonal.ready {
            let w = self.seasonal.decomposition_weight(ts);
            self.floor.floor().max(w * seasonal.scale)
        } else {
            self.floor.floor()
        };
        let obs = Observation {
            ts,
            value: value - adj,
            history: &self.history,
            floor,
        };
        let mut others = |m: ModelKind| -> Surprise {
            if !on(m) {
                return Surprise::NOT_READY;
            }
            let s = match m {
                ModelKind::Robust => self.robust.observe(&cfg.robust, &obs),
                ModelKind::Ewma => self.ewma.observe(&cfg.ewma, &obs),
                ModelKind::Changepoint => self.changepoint.observe(&cfg.changepoint, &obs),
                ModelKind::Kmeans => self.kmeans.observe(&cfg.kmeans, &obs),
                ModelKind::Volatility => self.volatility.observe(&cfg.volatility, &obs),
                ModelKind::Seasonal => unreachable!("observed above"),
            };
            Surprise {
                expected: s.expected + adj,
                ..s
            }
        };
        let surprises: [Surprise; MODELS] = [
            others(ModelKind::Robust),
            others(ModelKind::Ewma),
            seasonal,
            others(ModelKind::Changepoint),
            others(ModelKind::Kmeans),
            others(ModelKind::Volatility),
        ];
        let floor0 = self.floor.floor();
        self.history.push(value - adj);
        self.floor.learn(value - adj);

        let learning = self.learning(cfg);
        let w = cfg.weights.of();
        let mut ps = [1.0f64; MODELS];
        let mut voters = 0u32;
        // Total weight of the voting models: what the budget is split over.
        let mut total = 0.0;
        for (i, s) in surprises.iter().enumerate() {
            if s.ready
                && let Some(p) = self.calib[i].observe(&cfg.calibration, s.z)
            {
                voters += 1;
                total += w[i];
                ps[i] = p;
            }
        }
        // A model's p as the combination counts it: p · W / w.
        let share = |i: usize| if total > 0.0 { total / w[i] } else { 1.0 };
        let mut p = combine(cfg.combine, &ps, voters, &w, total);
        // Judged on the raw value: a level is "seen" whatever the time of day.
        if cfg.seen_decades > 0.0 && self.seen.contains(value, cfg.seen_margin * floor0) {
            p = (p * (cfg.seen_decades * std::f64::consts::LN_10).exp()).min(1.0);
        }
        self.seen.learn(value, cfg.seen_block);
        if familiar {
            p = p.max(cfg.familiar_p);
        }
        if self.desensitized > 0.0 {
            p = (p * 10f64.powf(self.desensitized as f64)).min(1.0);
            let half = cfg.feedback_half_life as f64;
            self.desensitized *= 0.5f64.powf(1.0 / half) as f32;
            if self.desensitized < 1e-3 {
                self.desensitized = 0.0;
            }
        }
        let score = if learning { 0.0 } else { score_of(p) };
        let mut fired = 0u8;
        if !learning {
            // score_of(p·m) ≥ trigger  ⇔  p·m ≤ 10^(−10·trigger)
            let p_fire = (-10.0 * cfg.trigger * std::f64::consts::LN_10).exp();
            for (i, &p) in ps.iter().enumerate() {
                if p * share(i) <= p_fire {
                    fired |= ModelKind::ALL[i].bit();
                }
            }
        }

        // Explanation: the seasonal model when it has an opinion (it knows
        // the time of day), else the rolling median, else the EWMA. The
        // band is where that model alone would not reach the trigger.
        let basis = [2, 0, 1].into_iter().find(|&i| surprises[i].ready);
        let (expected, lower, upper) = match basis {
            Some(i) => {
                // ln(tail / p_trigger), p_trigger = 10^−(10·trigger + desensitized) · w / W
                let ln_ratio = cfg.calibration.tail.ln()
                    + (10.0 * cfg.trigger + self.desensitized as f64) * std::f64::consts::LN_10
                    + share(i).ln();
                let c = &self.calib[i];
                let sc = surprises[i].scale;
                let up = sc * c.z_at_ln(&cfg.calibration, ln_ratio, true);
                let down = sc * c.z_at_ln(&cfg.calibration, ln_ratio, false);
                let e = surprises[i].expected;
                (e, e - down, e + up)
            }
            None => (value, value, value),
        };

        let (anomalous, onset) = if learning {
            (false, false)
        } else {
            self.hysteresis.step(cfg, score)
        };
        let alert_score = if anomalous && !onset {
            score.min(cfg.recover)
        } else {
            score
        };
        let detail = std::array::from_fn(|i| ModelScore {
            z: if surprises[i].ready {
                surprises[i].z
            } else {
                0.0
            },
            p: ps[i],
            expected: surprises[i].expected,
        });
        let verdict = Verdict {
            score,
            alert_score,
            anomalous,
            onset,
            expected,
            lower,
            upper,
            learning,
            fired,
            familiar,
        };
        (verdict, detail)
    }

    /// Bytes of state for this series, heap included.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            - std::mem::size_of::<History>()
            - std::mem::size_of::<Seasonal>()
            + self.history.state_bytes()
            + self.seasonal.state_bytes()
    }
}

/// Combines the voting models' probabilities (non-voters hold p = 1) under
/// the weights `w`, of which the voters' sum to `total` (Bonferroni and
/// harmonic only: the others have no weighted form worth its cost).
fn combine(how: Combine, ps: &[f64; MODELS], voters: u32, w: &[f64; MODELS], total: f64) -> f64 {
    if voters == 0 {
        return 1.0;
    }
    match how {
        Combine::Bonferroni => {
            // A non-voter's p = 1 can never be the minimum of p/w · W ≤ 1
            // unless it is the only one, where the result is 1 anyway.
            let min = ps
                .iter()
                .zip(w)
                .filter(|(p, _)| **p < 1.0)
                .map(|(p, w)| p / w)
                .fold(1.0 / total, f64::min);
            (min * total).min(1.0)
        }
        Combine::Harmonic => {
            // Non-voters (and voters at p = 1) contribute their weight;
            // remove the non-voters'.
            let all: f64 = w.iter().sum();
            let inv: f64 = ps
                .iter()
                .zip(w)
                .map(|(p, w)| w / p.max(1e-300))
                .sum::<f64>()
                - (all - total);
            (total / inv.max(1e-300)).min(1.0)
        }
        Combine::Agreement => {
            let mut sorted = *ps;
            sorted.sort_by(f64::total_cmp);
            let k = (voters.max(2) - 1) as f64;
            (sorted[1] * k).min(1.0)
        }
        Combine::Fisher => {
            let x: f64 = ps.iter().map(|p| -2.0 * p.max(1e-300).ln()).sum();
            chi2_sf_even(x, 2 * voters.max(1))
        }
    }
}

/// Survival function of χ² with an even number of degrees of freedom `k`:
/// `e^{−x/2} Σ_{i<k/2} (x/2)^i / i!` (exact, no special functions).
fn chi2_sf_even(x: f64, k: u32) -> f64 {
    let h = x / 2.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..k / 2 {
        term *= h / i as f64;
        sum += term;
    }
    ((-h).exp() * sum).min(1.0)
}

/// Scores a whole series in order with a fresh detector.
pub fn score_series(cfg: &EngineConfig, ts: &[i64], values: &[f64]) -> Vec<Verdict> {
    let mut d = SeriesDetector::new(cfg);
    ts.iter()
        .zip(values)
        .map(|(&t, &v)| d.update(cfg, t, v))
        .collect()
}

#[cfg(test)]
mod tests;
