//! The Numenta Anomaly Benchmark (NAB 1.1) scorer, as a pure function of
//! row-indexed inputs.
//!
//! The rules are those of `docs/nab-scoring.md` (a faithful restatement of
//! numenta/NAB 1.1's `scorer.py` + `sweeper.py`); this module knows nothing
//! about files, timestamps or the engine. A caller hands it, per data file,
//! one anomaly score per row (in file order) and the labelled windows as
//! inclusive row ranges, and gets back, for each profile, the corpus-wide
//! optimal threshold, the raw and normalised scores, counts, and a per-file
//! and per-window breakdown.
//!
//! # Model
//!
//! - A file of `n` rows has a probationary period `P = min(⌊0.15·n⌋, 750)`:
//!   rows `< P` are never flagged and their scores are not threshold
//!   candidates; they still count for window positions and widths.
//! - Row `r` is *flagged* at threshold `θ` when `r ≥ P` and `score_r ≥ θ`.
//! - Every row has a *unit value* that depends only on its position
//!   ([`RowValue`]): inside window `[a, b]` of width `W` it is
//!   `σ(−(b−r+1)/W) / σ(−1)` (1 on the first row, shrinking towards the end);
//!   outside, before any window has ended it is `−1`, and after window `j`
//!   ended it is `σ((r − b_j)/(W_j − 1))` (≈0 right after the window, → −1).
//!   A profile multiplies in-window values by `A_TP` and outside values by
//!   `A_FP`.
//! - A file's raw score: each window with at least one scorable row adds the
//!   value of its earliest flagged row, or `−A_FN` if none is flagged; each
//!   flagged row outside the windows adds its (negative) value.
//! - One threshold per profile for the whole corpus: the candidate (1.1 and
//!   every distinct score on a scorable row) maximising the summed raw score,
//!   ties going to the larger threshold.
//! - `NAB = 100·(S − S_null)/(S_perfect − S_null)` with
//!   `S_null = −A_FN·(windows with a scorable row)` and
//!   `S_perfect = A_TP·(all windows)`.
//!
//! # Counts (what TP / FP / FN mean here)
//!
//! NAB's own `tp/fp/fn/tn` count *rows*; a person reading a backtest wants
//! *incidents*. [`Counts`] therefore reports: `true_positives` = windows
//! (with a scorable row) that have at least one flagged row, `false_negatives`
//! = such windows with no flagged row, `false_positives` = flagged rows outside
//! every window (each one would page), plus `flagged_rows` and the window
//! totals. Windows entirely inside the probationary period are neither TP nor
//! FN (NAB cannot score them) but are still part of `S_perfect`, as upstream.
//!
//! # The sweep
//!
//! Because a row's unit value does not depend on the threshold or the
//! profile, one pass serves all three profiles: sort every scorable row of
//! the corpus by score, descending, and lower the threshold one distinct
//! score at a time, maintaining `T` (sum of the unit values of each window's
//! earliest flagged row so far), `F` (sum of the unit values of flagged
//! outside rows) and `D` (windows detected). At each candidate,
//! `S_p = A_TP·T + A_FP·F − A_FN·(windows_scorable − D)` for each profile
//! `p`. That is `O(N log N)` for `N` rows instead of the naive
//! `O(N · candidates)` ([`Corpus::optimise_naive`], kept as the reference the
//! property test checks the sweep against). The reported raw score and the
//! breakdown are then recomputed row by row at the chosen threshold, so they
//! are exactly what [`Corpus::evaluate`] says for that threshold.
//!
//! Checked against upstream `nab/sweeper.py` (`calcSweepScore`,
//! `calcScoreByThreshold`) and `optimizer.py` (stable sort by score, so ties
//! keep the larger threshold). Two edge cases differ on purpose: a window one
//! row wide has `W − 1 = 0`, and upstream divides by zero on the row after
//! it; here that row gets `y = +∞`, i.e. the full `−A_FP` (the limit of the
//! formula). And upstream's 1.1 entry is always "nothing flagged", even for
//! scores above 1.1; here 1.1 is an ordinary candidate (identical for scores
//! in `[0, 1]`, which is what the engine produces).

use serde::Serialize;

/// Weights of one NAB application profile.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Profile {
    /// Upstream name (`standard`, `reward_low_FP_rate`, `reward_low_FN_rate`).
    pub name: &'static str,
    pub a_tp: f64,
    pub a_fp: f64,
    pub a_fn: f64,
}

pub const STANDARD: Profile = Profile {
    name: "standard",
    a_tp: 1.0,
    a_fp: 0.11,
    a_fn: 1.0,
};
pub const REWARD_LOW_FP_RATE: Profile = Profile {
    name: "reward_low_FP_rate",
    a_tp: 1.0,
    a_fp: 0.22,
    a_fn: 1.0,
};
pub const REWARD_LOW_FN_RATE: Profile = Profile {
    name: "reward_low_FN_rate",
    a_tp: 1.0,
    a_fp: 0.11,
    a_fn: 2.0,
};
/// The three upstream profiles, in upstream order.
pub const PROFILES: [Profile; 3] = [STANDARD, REWARD_LOW_FP_RATE, REWARD_LOW_FN_RATE];

/// The threshold that flags nothing on `[0, 1]` scores: always a candidate.
pub const NULL_THRESHOLD: f64 = 1.1;

/// `σ(−1) = tanh(2.5)`, the value of a detection on a window's first row
/// before scaling; dividing by it makes that detection worth exactly `A_TP`.
const SIGMOID_AT_MINUS_ONE: f64 = 0.986_614_298_151_430_3;

/// NAB's scaled sigmoid: `2/(1+e^(5y)) − 1` for `y < 3`, `−1` from 3 on.
///
/// Upstream's `sweeper.scaledSigmoid` tests `>= 3.0` (the scoring page says
/// `> 3`); we follow the code, which produced the published scores. The two
/// differ by 3·10⁻⁷ at exactly `y = 3`.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// Rows `< probationary_period(n)` are not scored: `min(⌊0.15·n⌋, 750)`.
///
/// Computed in `f64` exactly like upstream (`math.floor(0.15 * n)`), so file
/// lengths where `0.15·n` is an integer round the same way.
pub fn probationary_period(n: usize) -> usize {
    ((0.15 * n as f64).floor() as usize).min(750)
}

/// A labelled anomaly window as an inclusive range of row indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: usize,
    pub end: usize,
}

impl Window {
    pub fn width(&self) -> usize {
        self.end - self.start + 1
    }
}

/// One data file as the scorer sees it. `scores.len()` is the row count.
#[derive(Clone, Copy, Debug)]
pub struct FileInput<'a> {
    /// Used in errors and the breakdown (e.g. `realTweets/Twitter_volume_AAPL.csv`).
    pub name: &'a str,
    /// One anomaly score per row, in file order; must be finite.
    pub scores: &'a [f64],
    /// Sorted, disjoint, inside `0..scores.len()`.
    pub windows: &'a [Window],
}

/// Inputs the scorer refuses. All permanent: the data must be fixed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NabError {
    #[error("{file}: window {index} (rows {start}..={end}) ends before it starts")]
    ReversedWindow {
        file: String,
        index: usize,
        start: usize,
        end: usize,
    },
    #[error(
        "{file}: window {index} (rows {start}..={end}) reaches past the last row ({rows} rows)"
    )]
    WindowOutOfRange {
        file: String,
        index: usize,
        start: usize,
        end: usize,
        rows: usize,
    },
    #[error(
        "{file}: window {index} (rows {start}..={end}) overlaps or precedes window {} (ending at row {previous_end})",
        index - 1
    )]
    WindowsNotSortedDisjoint {
        file: String,
        index: usize,
        start: usize,
        end: usize,
        previous_end: usize,
    },
    #[error("{file}: row {row}: anomaly score {score} is not a finite number")]
    NonFiniteScore {
        file: String,
        row: usize,
        score: f64,
    },
}

/// The position-only worth of flagging a row, before profile weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowValue {
    /// Inside window `window` (index within its file): multiply by `A_TP`.
    InWindow { window: usize, unit: f64 },
    /// Outside every window: multiply by `A_FP` (the unit is in `[−1, 0)`).
    Outside { unit: f64 },
}

/// Unit value of every row of a file with `n` rows and these (validated)
/// windows, in row order.
pub fn row_values(n: usize, windows: &[Window]) -> Vec<RowValue> {
    let mut out = Vec::with_capacity(n);
    let mut next = 0; // index of the first window not yet ended at row r
    for r in 0..n {
        while next < windows.len() && windows[next].end < r {
            next += 1;
        }
        let inside = windows.get(next).filter(|w| w.start <= r);
        let value = match inside {
            Some(w) => {
                let width = w.width() as f64;
                let y = -((w.end - r + 1) as f64) / width;
                RowValue::InWindow {
                    window: next,
                    unit: scaled_sigmoid(y) / SIGMOID_AT_MINUS_ONE,
                }
            }
            None if next == 0 => RowValue::Outside { unit: -1.0 },
            None => {
                let prev = windows[next - 1];
                let unit = if prev.width() == 1 {
                    -1.0
                } else {
                    scaled_sigmoid((r - prev.end) as f64 / (prev.width() - 1) as f64)
                };
                RowValue::Outside { unit }
            }
        };
        out.push(value);
    }
    out
}

/// Incident-level counts; see the module docs for the exact definitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// All labelled windows.
    pub windows: usize,
    /// Windows with at least one row past the probationary period.
    pub scorable_windows: usize,
    /// Scorable windows with at least one flagged row.
    pub true_positives: usize,
    /// Scorable windows with no flagged row.
    pub false_negatives: usize,
    /// Flagged rows outside every window.
    pub false_positives: usize,
    /// All flagged rows, inside windows or not.
    pub flagged_rows: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.windows += o.windows;
        self.scorable_windows += o.scorable_windows;
        self.true_positives += o.true_positives;
        self.false_negatives += o.false_negatives;
        self.false_positives += o.false_positives;
        self.flagged_rows += o.flagged_rows;
    }
}

/// What happened to one window at the chosen threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowOutcome {
    pub start: usize,
    pub end: usize,
    /// False when the whole window lies in the probationary period.
    pub scorable: bool,
    /// Earliest flagged row, if any.
    pub detected_at: Option<usize>,
    /// Contribution to the raw score: `A_TP`-weighted value, `−A_FN`, or 0
    /// when not scorable.
    pub value: f64,
}

/// One file's share of a profile's score at the corpus threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileScore {
    pub name: String,
    pub rows: usize,
    pub probationary_rows: usize,
    pub raw_score: f64,
    /// This file's `S_null` and `S_perfect`; sum them over a group of files
    /// and pass them to [`normalise`] for a per-category NAB score.
    pub null_score: f64,
    pub perfect_score: f64,
    pub counts: Counts,
    pub windows: Vec<WindowOutcome>,
}

/// A profile's result over the corpus.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProfileScore {
    pub profile: Profile,
    pub threshold: f64,
    pub raw_score: f64,
    pub null_score: f64,
    pub perfect_score: f64,
    /// `None` when the corpus has no window at all (`S_perfect = S_null = 0`).
    pub nab_score: Option<f64>,
    pub counts: Counts,
    pub files: Vec<FileScore>,
}

/// `100·(raw − null)/(perfect − null)`, or `None` when undefined.
pub fn normalise(raw: f64, null: f64, perfect: f64) -> Option<f64> {
    let span = perfect - null;
    (span > 0.0).then(|| 100.0 * (raw - null) / span)
}

/// A group of files' share of a profile's score (e.g. one NAB category), at
/// the corpus threshold.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Subtotal {
    pub files: usize,
    pub raw_score: f64,
    pub null_score: f64,
    pub perfect_score: f64,
    /// Normalised within the group; `None` when it has no window.
    pub nab_score: Option<f64>,
    pub counts: Counts,
}

impl Subtotal {
    pub fn of<'a>(files: impl IntoIterator<Item = &'a FileScore>) -> Self {
        let mut t = Self::default();
        for f in files {
            t.files += 1;
            t.raw_score += f.raw_score;
            t.null_score += f.null_score;
            t.perfect_score += f.perfect_score;
            t.counts += f.counts;
        }
        t.nab_score = normalise(t.raw_score, t.null_score, t.perfect_score);
        t
    }
}

#[derive(Clone, Debug)]
struct PreparedFile {
    name: String,
    scores: Vec<f64>,
    windows: Vec<Window>,
    probation: usize,
    values: Vec<RowValue>,
}

impl PreparedFile {
    fn scorable_windows(&self) -> usize {
        self.windows
            .iter()
            .filter(|w| w.end >= self.probation)
            .count()
    }
}

/// A validated set of files, ready to be scored under any profile.
#[derive(Clone, Debug)]
pub struct Corpus {
    files: Vec<PreparedFile>,
}

impl Corpus {
    /// Validates every file (windows sorted, disjoint and in range; scores
    /// finite) and precomputes each row's unit value.
    pub fn new<'a>(files: impl IntoIterator<Item = FileInput<'a>>) -> Result<Self, NabError> {
        let mut prepared = Vec::new();
        for f in files {
            validate(&f)?;
            prepared.push(PreparedFile {
                name: f.name.to_owned(),
                scores: f.scores.to_vec(),
                windows: f.windows.to_vec(),
                probation: probationary_period(f.scores.len()),
                values: row_values(f.scores.len(), f.windows),
            });
        }
        Ok(Self { files: prepared })
    }

    /// All three profiles, each at its own optimal threshold.
    pub fn score(&self) -> Vec<ProfileScore> {
        let best = self.sweep(&PROFILES);
        PROFILES
            .iter()
            .zip(best)
            .map(|(p, (theta, _))| self.evaluate(p, theta))
            .collect()
    }

    /// One profile at its optimal threshold.
    pub fn score_profile(&self, profile: &Profile) -> ProfileScore {
        let (theta, _) = self.sweep(std::slice::from_ref(profile))[0];
        self.evaluate(profile, theta)
    }

    /// The full result for `profile` at a given threshold, computed row by
    /// row (no sweep).
    pub fn evaluate(&self, profile: &Profile, threshold: f64) -> ProfileScore {
        let files: Vec<FileScore> = self
            .files
            .iter()
            .map(|f| evaluate_file(f, profile, threshold))
            .collect();
        let mut counts = Counts::default();
        let (mut raw, mut null, mut perfect) = (0.0, 0.0, 0.0);
        for f in &files {
            counts += f.counts;
            raw += f.raw_score;
            null += f.null_score;
            perfect += f.perfect_score;
        }
        ProfileScore {
            profile: *profile,
            threshold,
            raw_score: raw,
            null_score: null,
            perfect_score: perfect,
            nab_score: normalise(raw, null, perfect),
            counts,
            files,
        }
    }

    /// The optimal `(threshold, raw score)` for each profile, by the sweep.
    pub fn optimise(&self, profiles: &[Profile]) -> Vec<(f64, f64)> {
        self.sweep(profiles)
    }

    /// Reference implementation of [`Corpus::optimise`] for one profile:
    /// evaluates every candidate from scratch. Quadratic; for tests and
    /// cross-checks only.
    pub fn optimise_naive(&self, profile: &Profile) -> (f64, f64) {
        let mut candidates: Vec<f64> = self
            .files
            .iter()
            .flat_map(|f| f.scores[f.probation..].iter().copied())
            .chain(std::iter::once(NULL_THRESHOLD))
            .collect();
        candidates.sort_by(|a, b| b.total_cmp(a));
        candidates.dedup();
        let mut best = (f64::NAN, f64::NEG_INFINITY);
        for theta in candidates {
            let s = self.evaluate(profile, theta).raw_score;
            if s > best.1 {
                best = (theta, s);
            }
        }
        best
    }

    fn sweep(&self, profiles: &[Profile]) -> Vec<(f64, f64)> {
        struct Entry {
            score: f64,
            row: usize,
            /// Corpus-wide window index, or `usize::MAX` outside windows.
            window: usize,
            unit: f64,
        }
        let mut entries = Vec::new();
        let mut window_base = 0;
        let mut scorable_windows = 0usize;
        for f in &self.files {
            for r in f.probation..f.scores.len() {
                let (window, unit) = match f.values[r] {
                    RowValue::InWindow { window, unit } => (window_base + window, unit),
                    RowValue::Outside { unit } => (usize::MAX, unit),
                };
                entries.push(Entry {
                    score: f.scores[r],
                    row: r,
                    window,
                    unit,
                });
            }
            window_base += f.windows.len();
            scorable_windows += f.scorable_windows();
        }
        entries.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));

        // Earliest flagged (row, unit) per window so far.
        let mut earliest: Vec<Option<(usize, f64)>> = vec![None; window_base];
        let (mut tp_units, mut fp_units, mut detected) = (0.0f64, 0.0f64, 0usize);
        let mut best = vec![(f64::NAN, f64::NEG_INFINITY); profiles.len()];
        let mut null_pending = true;
        let mut i = 0;
        loop {
            let candidate = match entries.get(i).map(|e| e.score) {
                Some(s) if s >= NULL_THRESHOLD => {
                    if s == NULL_THRESHOLD {
                        null_pending = false;
                    }
                    s
                }
                _ if null_pending => {
                    null_pending = false;
                    NULL_THRESHOLD
                }
                Some(s) => s,
                None => break,
            };
            while let Some(e) = entries.get(i).filter(|e| e.score >= candidate) {
                if e.window == usize::MAX {
                    fp_units += e.unit;
                } else {
                    match &mut earliest[e.window] {
                        slot @ None => {
                            *slot = Some((e.row, e.unit));
                            tp_units += e.unit;
                            detected += 1;
                        }
                        Some((row, unit)) if e.row < *row => {
                            tp_units += e.unit - *unit;
                            *row = e.row;
                            *unit = e.unit;
                        }
                        Some(_) => {}
                    }
                }
                i += 1;
            }
            let missed = (scorable_windows - detected) as f64;
            for (p, b) in profiles.iter().zip(best.iter_mut()) {
                let s = p.a_tp * tp_units + p.a_fp * fp_units - p.a_fn * missed;
                // Strictly greater: on a tie the earlier (larger) θ stays.
                if s > b.1 {
                    *b = (candidate, s);
                }
            }
        }
        best
    }
}

fn validate(f: &FileInput<'_>) -> Result<(), NabError> {
    let n = f.scores.len();
    for (index, w) in f.windows.iter().enumerate() {
        let file = || f.name.to_owned();
        if w.end < w.start {
            return Err(NabError::ReversedWindow {
                file: file(),
                index,
                start: w.start,
                end: w.end,
            });
        }
        if w.end >= n {
            return Err(NabError::WindowOutOfRange {
                file: file(),
                index,
                start: w.start,
                end: w.end,
                rows: n,
            });
        }
        if index > 0 && f.windows[index - 1].end >= w.start {
            return Err(NabError::WindowsNotSortedDisjoint {
                file: file(),
                index,
                start: w.start,
                end: w.end,
                previous_end: f.windows[index - 1].end,
            });
        }
    }
    if let Some((row, &score)) = f.scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(NabError::NonFiniteScore {
            file: f.name.to_owned(),
            row,
            score,
        });
    }
    Ok(())
}

fn evaluate_file(f: &PreparedFile, p: &Profile, threshold: f64) -> FileScore {
    let mut windows: Vec<WindowOutcome> = f
        .windows
        .iter()
        .map(|w| WindowOutcome {
            start: w.start,
            end: w.end,
            scorable: w.end >= f.probation,
            detected_at: None,
            value: 0.0,
        })
        .collect();
    let mut counts = Counts {
        windows: f.windows.len(),
        scorable_windows: f.scorable_windows(),
        ..Counts::default()
    };
    let mut fp_value = 0.0;
    for r in f.probation..f.scores.len() {
        if f.scores[r] < threshold {
            continue;
        }
        counts.flagged_rows += 1;
        match f.values[r] {
            RowValue::InWindow { window, unit } => {
                let w = &mut windows[window];
                if w.detected_at.is_none() {
                    w.detected_at = Some(r);
                    w.value = p.a_tp * unit;
                }
            }
            RowValue::Outside { unit } => {
                counts.false_positives += 1;
                fp_value += p.a_fp * unit;
            }
        }
    }
    let mut raw = 0.0;
    for w in windows.iter_mut().filter(|w| w.scorable) {
        if w.detected_at.is_some() {
            counts.true_positives += 1;
        } else {
            counts.false_negatives += 1;
            w.value = -p.a_fn;
        }
        raw += w.value;
    }
    raw += fp_value;
    FileScore {
        name: f.name.clone(),
        rows: f.scores.len(),
        probationary_rows: f.probation,
        raw_score: raw,
        null_score: -p.a_fn * counts.scorable_windows as f64,
        perfect_score: p.a_tp * counts.windows as f64,
        counts,
        windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EPS: f64 = 1e-12;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= EPS * (1.0 + a.abs().max(b.abs()))
    }

    fn w(start: usize, end: usize) -> Window {
        Window { start, end }
    }

    /// 100 rows (probation 15), one window on rows 40..=49, scores 0
    /// except the given rows.
    fn one_window(spikes: &[(usize, f64)]) -> (Vec<f64>, Vec<Window>) {
        let mut scores = vec![0.0; 100];
        for &(r, s) in spikes {
            scores[r] = s;
        }
        (scores, vec![w(40, 49)])
    }

    fn corpus(name: &str, scores: &[f64], windows: &[Window]) -> Corpus {
        Corpus::new([FileInput {
            name,
            scores,
            windows,
        }])
        .unwrap()
    }

    #[test]
    fn sigmoid_and_probation_match_upstream() {
        assert!(close(scaled_sigmoid(-1.0), 2.5f64.tanh()));
        assert!(close(scaled_sigmoid(-1.0), SIGMOID_AT_MINUS_ONE));
        assert_eq!(scaled_sigmoid(3.0), -1.0);
        assert!(scaled_sigmoid(2.999_999) > -1.0);
        assert!(close(scaled_sigmoid(0.0), 0.0));
        assert_eq!(probationary_period(100), 15);
        assert_eq!(probationary_period(4032), 604);
        assert_eq!(probationary_period(10_000), 750);
        assert_eq!(probationary_period(3), 0);
    }

    #[test]
    fn early_detection_earns_full_credit() {
        let (scores, windows) = one_window(&[(40, 0.9)]);
        let s = corpus("f.csv", &scores, &windows).score_profile(&STANDARD);
        assert_eq!(s.threshold, 0.9);
        assert!(close(s.raw_score, 1.0), "{}", s.raw_score);
        assert!(close(s.nab_score.unwrap(), 100.0));
        assert_eq!(s.null_score, -1.0);
        assert_eq!(s.perfect_score, 1.0);
        assert_eq!(
            (
                s.counts.true_positives,
                s.counts.false_negatives,
                s.counts.false_positives
            ),
            (1, 0, 0)
        );
        assert_eq!(s.files[0].windows[0].detected_at, Some(40));
    }

    #[test]
    fn late_detection_earns_little() {
        // Last row of a 10-row window: y = −0.1, value σ(−0.1)/σ(−1).
        let (scores, windows) = one_window(&[(49, 0.9)]);
        let s = corpus("f.csv", &scores, &windows).score_profile(&STANDARD);
        assert_eq!(s.threshold, 0.9);
        assert!(
            close(s.raw_score, 0.248_241_549_775_429_9),
            "{}",
            s.raw_score
        );
        assert!(close(s.nab_score.unwrap(), 62.412_077_488_771_5));
        assert_eq!(s.counts.true_positives, 1);
    }

    #[test]
    fn earliest_flag_in_a_window_counts_and_later_ones_are_free() {
        // Row 45 earns σ(−0.5)/σ(−1); flagging 47 as well changes nothing.
        let (scores, windows) = one_window(&[(45, 0.8), (47, 0.8)]);
        let c = corpus("f.csv", &scores, &windows);
        let s = c.evaluate(&STANDARD, 0.8);
        assert!(
            close(s.raw_score, 0.859_792_566_909_783_7),
            "{}",
            s.raw_score
        );
        assert_eq!(s.counts.flagged_rows, 2);
        assert_eq!(s.counts.false_positives, 0);
        assert_eq!(s.files[0].windows[0].detected_at, Some(45));
    }

    #[test]
    fn false_positive_right_after_a_window_costs_little_and_later_costs_full() {
        let (scores, windows) = one_window(&[(40, 0.9), (50, 0.8), (70, 0.7), (80, 0.6)]);
        let c = corpus("f.csv", &scores, &windows);
        // Row 50: y = 1/9 → 0.11·σ(1/9) = −0.0298…
        let at_08 = c.evaluate(&STANDARD, 0.8);
        assert!(
            close(at_08.raw_score, 0.970_206_816_963_160_7),
            "{}",
            at_08.raw_score
        );
        assert_eq!(at_08.counts.false_positives, 1);
        // Row 70: y = 21/9 → almost the full −0.11.
        let at_07 = c.evaluate(&STANDARD, 0.7);
        assert!(
            close(at_07.raw_score, 0.860_208_703_433_586_9),
            "{}",
            at_07.raw_score
        );
        // Row 80: y = 31/9 > 3 → exactly −0.11; low-FP profile doubles it.
        let at_06 = c.evaluate(&STANDARD, 0.6);
        assert!(close(at_06.raw_score - at_07.raw_score, -0.11));
        let low_fp = c.evaluate(&REWARD_LOW_FP_RATE, 0.6);
        assert!(close(low_fp.raw_score - 1.0, 2.0 * (at_06.raw_score - 1.0)));
        // The optimum keeps the false positives out.
        let best = c.score_profile(&STANDARD);
        assert_eq!(best.threshold, 0.9);
        assert_eq!(best.counts.false_positives, 0);
    }

    #[test]
    fn false_positive_before_any_window_costs_full_a_fp() {
        let (scores, windows) = one_window(&[(40, 0.9), (20, 0.5)]);
        let c = corpus("f.csv", &scores, &windows);
        assert!(close(c.evaluate(&STANDARD, 0.5).raw_score, 1.0 - 0.11));
        assert!(close(
            c.evaluate(&REWARD_LOW_FP_RATE, 0.5).raw_score,
            1.0 - 0.22
        ));
    }

    #[test]
    fn missed_window_costs_a_fn_per_profile() {
        let mut scores = vec![0.0; 200];
        scores[60] = 0.9; // detects the first window on its first row
        let windows = [w(60, 69), w(120, 129)];
        let c = corpus("f.csv", &scores, &windows);
        let all = c.score();
        let std = &all[0];
        assert_eq!(std.threshold, 0.9);
        assert!(close(std.raw_score, 0.0));
        assert_eq!((std.null_score, std.perfect_score), (-2.0, 2.0));
        assert!(close(std.nab_score.unwrap(), 50.0));
        assert_eq!(
            (std.counts.true_positives, std.counts.false_negatives),
            (1, 1)
        );
        assert_eq!(std.files[0].windows[1].value, -1.0);
        let low_fn = &all[2];
        assert_eq!(low_fn.profile.name, "reward_low_FN_rate");
        assert!(close(low_fn.raw_score, -1.0));
        assert_eq!(low_fn.null_score, -4.0);
        assert!(close(low_fn.nab_score.unwrap(), 50.0));
    }

    #[test]
    fn threshold_tie_keeps_the_larger_threshold() {
        // θ = 0.9 and θ = 0.5 both detect the window on row 40: same S.
        let (scores, windows) = one_window(&[(40, 0.9), (45, 0.5)]);
        let c = corpus("f.csv", &scores, &windows);
        assert!(close(
            c.evaluate(&STANDARD, 0.9).raw_score,
            c.evaluate(&STANDARD, 0.5).raw_score
        ));
        assert_eq!(c.score_profile(&STANDARD).threshold, 0.9);
        assert_eq!(c.optimise_naive(&STANDARD).0, 0.9);
        // Nothing worth flagging: the null threshold wins over score 0.
        let empty = corpus("g.csv", &[0.0; 50], &[]);
        let s = empty.score_profile(&STANDARD);
        assert_eq!(s.threshold, NULL_THRESHOLD);
        assert_eq!(s.raw_score, 0.0);
        assert_eq!(s.nab_score, None);
    }

    #[test]
    fn equal_scores_are_flagged_together() {
        // An in-window row and an early false positive share the score 0.7:
        // no threshold separates them. σ(−0.5)/σ(−1) − 0.11.
        let (scores, windows) = one_window(&[(45, 0.7), (20, 0.7)]);
        let s = corpus("f.csv", &scores, &windows).score_profile(&STANDARD);
        assert_eq!(s.threshold, 0.7);
        assert!(
            close(s.raw_score, 0.749_792_566_909_783_7),
            "{}",
            s.raw_score
        );
        assert_eq!((s.counts.true_positives, s.counts.false_positives), (1, 1));
    }

    #[test]
    fn probationary_rows_are_neither_flagged_nor_candidates() {
        // 100 rows → P = 15. Window 2..=5 lies inside the probation (not
        // scorable, but in S_perfect); window 10..=19 straddles it.
        let mut scores = vec![0.0; 100];
        scores[3] = 1.0; // in probation: ignored
        scores[12] = 0.95; // in probation: ignored, not a candidate
        scores[16] = 0.8; // y = −4/10
        let windows = [w(2, 5), w(10, 19)];
        let c = corpus("f.csv", &scores, &windows);
        let s = c.score_profile(&STANDARD);
        assert_eq!(s.threshold, 0.8);
        assert!(
            close(s.raw_score, 0.771_926_939_821_088_3),
            "{}",
            s.raw_score
        );
        assert_eq!((s.null_score, s.perfect_score), (-1.0, 2.0));
        assert!(close(s.nab_score.unwrap(), 59.064_231_327_369_6));
        assert_eq!(s.counts.scorable_windows, 1);
        assert_eq!((s.counts.true_positives, s.counts.false_negatives), (1, 0));
        assert!(!s.files[0].windows[0].scorable);
        assert_eq!(s.files[0].windows[1].detected_at, Some(16));
        // The probationary row with a higher score must not be flagged even
        // at a threshold below it.
        assert_eq!(c.evaluate(&STANDARD, 0.9).counts.flagged_rows, 0);
    }

    #[test]
    fn threshold_is_shared_across_files() {
        // File a alone would pick 0.9; file b's window needs 0.3, and that
        // costs a's two false positives at 0.5 (−0.22) but earns b's +1 − (−1).
        let mut a = vec![0.0; 100];
        a[40] = 0.9;
        a[20] = 0.5;
        a[25] = 0.5;
        let mut b = vec![0.0; 100];
        b[60] = 0.3;
        let (wa, wb) = ([w(40, 49)], [w(60, 69)]);
        let c = Corpus::new([
            FileInput {
                name: "a.csv",
                scores: &a,
                windows: &wa,
            },
            FileInput {
                name: "b.csv",
                scores: &b,
                windows: &wb,
            },
        ])
        .unwrap();
        let s = c.score_profile(&STANDARD);
        assert_eq!(s.threshold, 0.3);
        assert!(close(s.raw_score, 2.0 - 0.22));
        assert!(close(s.files[0].raw_score, 1.0 - 0.22));
        assert!(close(s.files[1].raw_score, 1.0));
    }

    #[test]
    fn subtotals_normalise_within_the_group() {
        let mut a = vec![0.0; 100];
        a[40] = 0.9; // detected on its first row
        let b = vec![0.0; 100]; // window missed
        let quiet = vec![0.0; 100]; // no window
        let (wa, wb) = ([w(40, 49)], [w(60, 69)]);
        let input = |name, scores, windows| FileInput {
            name,
            scores,
            windows,
        };
        let c = Corpus::new([
            input("x/a.csv", &a[..], &wa[..]),
            input("x/b.csv", &b[..], &wb[..]),
            input("y/q.csv", &quiet[..], &[][..]),
        ])
        .unwrap();
        let s = c.score_profile(&STANDARD);
        let x = Subtotal::of(&s.files[..2]);
        assert_eq!(x.files, 2);
        assert!(close(x.nab_score.unwrap(), 50.0));
        assert_eq!((x.counts.true_positives, x.counts.false_negatives), (1, 1));
        let y = Subtotal::of(&s.files[2..]);
        assert_eq!(y.nab_score, None);
        let all = Subtotal::of(&s.files);
        assert!(close(all.raw_score, s.raw_score));
        assert_eq!(all.nab_score, s.nab_score);
    }

    #[test]
    fn one_row_window_penalises_later_rows_fully() {
        let mut scores = vec![0.0; 100];
        scores[40] = 0.9;
        scores[41] = 0.8;
        let c = corpus("f.csv", &scores, &[w(40, 40)]);
        assert!(close(c.evaluate(&STANDARD, 0.8).raw_score, 1.0 - 0.11));
    }

    #[test]
    fn bad_inputs_are_named() {
        let s = [0.0; 10];
        let err = |windows: &[Window], scores: &[f64]| {
            Corpus::new([FileInput {
                name: "x.csv",
                scores,
                windows,
            }])
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            err(&[w(5, 3)], &s),
            "x.csv: window 0 (rows 5..=3) ends before it starts"
        );
        assert_eq!(
            err(&[w(5, 10)], &s),
            "x.csv: window 0 (rows 5..=10) reaches past the last row (10 rows)"
        );
        assert_eq!(
            err(&[w(2, 4), w(4, 6)], &s),
            "x.csv: window 1 (rows 4..=6) overlaps or precedes window 0 (ending at row 4)"
        );
        let mut bad = s;
        bad[7] = f64::NAN;
        assert_eq!(
            err(&[], &bad),
            "x.csv: row 7: anomaly score NaN is not a finite number"
        );
    }

    /// Files of 1..120 rows with random sorted disjoint windows and scores
    /// drawn from a coarse grid (many ties) or anywhere in [0, 1].
    fn file_strategy() -> impl Strategy<Value = (Vec<f64>, Vec<Window>)> {
        (1usize..120).prop_flat_map(|n| {
            let score = prop_oneof![(0u8..=10).prop_map(|k| f64::from(k) / 10.0), 0.0f64..=1.0,];
            (
                proptest::collection::vec(score, n),
                proptest::collection::vec((0..n, 1usize..15), 0..4),
            )
                .prop_map(move |(scores, raw)| {
                    let mut starts: Vec<(usize, usize)> = raw;
                    starts.sort();
                    let mut windows: Vec<Window> = Vec::new();
                    for (start, len) in starts {
                        let free = windows.last().is_none_or(|p| start > p.end);
                        if free {
                            windows.push(w(start, (start + len - 1).min(n - 1)));
                        }
                    }
                    (scores, windows)
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn sweep_equals_brute_force(files in proptest::collection::vec(file_strategy(), 1..4)) {
            let names: Vec<String> = (0..files.len()).map(|i| format!("f{i}.csv")).collect();
            let c = Corpus::new(files.iter().zip(&names).map(|((s, w), name)| FileInput {
                name, scores: s, windows: w,
            })).unwrap();
            let swept = c.optimise(&PROFILES);
            for (p, (theta, s)) in PROFILES.iter().zip(swept) {
                let (naive_theta, naive_s) = c.optimise_naive(p);
                prop_assert!(close(s, naive_s), "{}: sweep {s} vs naive {naive_s}", p.name);
                // Same threshold, unless the two candidates' scores differ
                // only by rounding. An exact tie (same value row by row) must
                // go to the larger threshold in both.
                let at_theta = c.evaluate(p, theta).raw_score;
                let at_naive = c.evaluate(p, naive_theta).raw_score;
                prop_assert!(close(at_theta, naive_s));
                prop_assert!(theta == naive_theta || (at_theta != at_naive && close(at_theta, at_naive)),
                    "{}: θ {theta} vs naive {naive_theta}", p.name);
                let full = c.score_profile(p);
                prop_assert!(close(full.raw_score, naive_s));
                // Counts partition the scorable windows.
                prop_assert_eq!(full.counts.true_positives + full.counts.false_negatives,
                    full.counts.scorable_windows);
            }
        }
    }
}
