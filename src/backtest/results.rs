//! What a backtest writes: per-file results in NAB's format and the JSON
//! reports.
//!
//! - `results/argus/<category>/argus_<stem>.csv`: `timestamp,value,anomaly_score,label`,
//!   one line per input row in input order, so NAB's own tools can score it.
//!   Timestamps are those of the input, unchanged; a value the engine did not
//!   see (empty, NaN, infinite) is written empty with score 0; `label` is 1
//!   inside a labelled window, else 0.
//! - `scores.json` (labelled runs): per profile the threshold, raw and NAB
//!   scores, counts, per-category subtotals and per-file detail, plus the
//!   engine config and the notes on each input. See [`ScoresReport`].
//! - `flags.json` (unlabelled runs): per file the engine's own flags. See
//!   [`FlagsReport`].
//!
//! Every file is written to a temporary name and renamed into place, so an
//! interrupted run never leaves a truncated results file that looks whole.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::input::Note;
use super::nab::{Counts, FileScore, Profile, ProfileScore, Subtotal, Window};

/// Name of the detector in NAB's results layout.
pub const DETECTOR: &str = "argus";

#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot write: {source}")]
pub struct OutputError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// `<out>/results/argus/<category>/argus_<stem>.csv`.
pub fn results_path(out: &Path, category: &str, stem: &str) -> PathBuf {
    out.join("results")
        .join(DETECTOR)
        .join(category)
        .join(format!("{DETECTOR}_{stem}.csv"))
}

/// Writes `path` atomically (temp file + rename), creating parent dirs.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    let err = |source| OutputError {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// One row of a results file.
pub struct ResultRow<'a> {
    pub timestamp: &'a str,
    pub value: Option<f64>,
    pub anomaly_score: f64,
    pub label: bool,
}

/// Writes a results file in NAB's format.
pub fn write_results<'a>(
    path: &Path,
    rows: impl IntoIterator<Item = ResultRow<'a>>,
) -> Result<(), OutputError> {
    write_atomically(path, |w| {
        writeln!(w, "timestamp,value,anomaly_score,label")?;
        for r in rows {
            write_csv_field(w, r.timestamp)?;
            match r.value {
                Some(v) => write!(w, ",{v},")?,
                None => write!(w, ",,")?,
            }
            writeln!(w, "{},{}", r.anomaly_score, u8::from(r.label))?;
        }
        Ok(())
    })
}

/// `label` per row for these windows.
pub fn labels(rows: usize, windows: &[Window]) -> Vec<bool> {
    let mut labels = vec![false; rows];
    for w in windows {
        labels[w.start..=w.end].fill(true);
    }
    labels
}

fn write_csv_field(w: &mut dyn Write, s: &str) -> std::io::Result<()> {
    if s.contains([',', '"', '\n', '\r']) {
        write!(w, "\"{}\"", s.replace('"', "\"\""))
    } else {
        w.write_all(s.as_bytes())
    }
}

/// Notes on one input file (only files with notes are listed).
#[derive(Clone, Debug, Serialize)]
pub struct InputNotes {
    pub file: String,
    pub notes: Vec<Note>,
}

/// A profile in `scores.json`.
#[derive(Debug, Serialize)]
pub struct ProfileReport<'a> {
    #[serde(flatten)]
    pub weights: &'a Profile,
    pub threshold: f64,
    pub nab_score: Option<f64>,
    pub raw_score: f64,
    pub null_score: f64,
    pub perfect_score: f64,
    pub counts: Counts,
    pub categories: BTreeMap<String, Subtotal>,
    pub files: &'a [FileScore],
}

impl<'a> ProfileReport<'a> {
    pub fn new(score: &'a ProfileScore) -> Self {
        let mut groups: BTreeMap<String, Vec<&FileScore>> = BTreeMap::new();
        for f in &score.files {
            groups
                .entry(category_of(&f.name).to_owned())
                .or_default()
                .push(f);
        }
        Self {
            weights: &score.profile,
            threshold: score.threshold,
            nab_score: score.nab_score,
            raw_score: score.raw_score,
            null_score: score.null_score,
            perfect_score: score.perfect_score,
            counts: score.counts,
            categories: groups
                .into_iter()
                .map(|(k, files)| (k, Subtotal::of(files)))
                .collect(),
            files: &score.files,
        }
    }
}

/// `category/name.csv` → `category`.
pub fn category_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(c, _)| c)
}

/// `scores.json`.
#[derive(Debug, Serialize)]
pub struct ScoresReport<'a, C: Serialize> {
    pub detector: &'static str,
    pub corpus: &'a Path,
    pub files: usize,
    pub rows: usize,
    pub windows: usize,
    pub engine_config: &'a C,
    /// Keyed by profile name.
    pub profiles: BTreeMap<&'static str, ProfileReport<'a>>,
    pub input_notes: &'a [InputNotes],
}

/// One file in `flags.json`.
#[derive(Debug, Serialize)]
pub struct FileFlags {
    pub file: String,
    pub results: PathBuf,
    pub rows: usize,
    /// Rows the engine was still learning on.
    pub learning_rows: usize,
    /// Rows the engine did not see (empty, NaN or infinite value).
    pub skipped_rows: usize,
    /// Rows the engine decided were anomalous (its hysteresis included).
    pub flagged_rows: usize,
    /// Flagged rows grouped into runs of consecutive flags: one per page.
    pub flagged_runs: usize,
    pub max_score: f64,
    /// Timestamp of the row with the highest score.
    pub max_score_at: Option<String>,
}

/// `flags.json`.
#[derive(Debug, Serialize)]
pub struct FlagsReport<'a, C: Serialize> {
    pub detector: &'static str,
    pub engine_config: &'a C,
    pub files: &'a [FileFlags],
    pub input_notes: &'a [InputNotes],
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), OutputError> {
    write_atomically(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other)?;
        writeln!(w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_rows_quote_and_blank_as_nab_expects() {
        let dir = tempfile::tempdir().unwrap();
        let p = results_path(dir.path(), "cat", "x");
        assert!(p.ends_with("results/argus/cat/argus_x.csv"));
        write_results(
            &p,
            [
                ResultRow {
                    timestamp: "2015-01-01 00:00:00",
                    value: Some(1.5),
                    anomaly_score: 0.25,
                    label: false,
                },
                ResultRow {
                    timestamp: "1,5",
                    value: None,
                    anomaly_score: 0.0,
                    label: true,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "timestamp,value,anomaly_score,label\n2015-01-01 00:00:00,1.5,0.25,0\n\"1,5\",,0,1\n"
        );
        assert!(!p.with_file_name("argus_x.csv.tmp").exists());
    }

    #[test]
    fn labels_cover_windows_inclusively() {
        let l = labels(
            6,
            &[Window { start: 1, end: 2 }, Window { start: 5, end: 5 }],
        );
        assert_eq!(l, vec![false, true, true, false, false, true]);
    }
}
