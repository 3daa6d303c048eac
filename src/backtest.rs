//! `argus backtest`: runs the detection engine over history and scores it.
//!
//! Two modes:
//! - **Labelled** (`--nab ROOT`): a corpus in NAB's layout. Every file is
//!   scored by a fresh engine, then the whole corpus is scored the NAB way
//!   (one threshold per profile for all files), so the numbers compare with
//!   the published detectors.
//! - **Unlabelled** (`FILE...`, CSV or Parquet with `timestamp,value`): the
//!   engine's own decisions (its `anomalous` flag, hysteresis included) are
//!   reported per file; there is nothing to score against.
//!
//! Pipeline: list inputs (cheap, fails early on a bad corpus layout) → per
//! file, in parallel on a rayon pool: read with polars, run a fresh
//! [`SeriesDetector`] over the rows in file order, write the results file →
//! score the corpus (labelled) → plots in parallel → `scores.json` /
//! `flags.json` → the summary on stdout. Every file gets the same
//! [`EngineConfig`] (the default, or `--config`), as NAB requires.
//!
//! A file that cannot be read fails the run, after every file has been tried,
//! with one error line per bad file: a NAB score over part of a corpus would
//! be misleading, and the user fixes all inputs in one go.
//!
//! Output layout under `--out` (default `out/backtest`):
//! `results/argus/<category>/argus_<name>.csv` (see [`results`]),
//! `scores.json` or `flags.json`, `plots/<category>/<name>.png` (see [`plot`]).
//!
//! Modules:
//! - [`nab`]: the NAB 1.1 scorer (pure, row-indexed).
//! - [`input`]: CSV/Parquet via polars, the NAB layout, windows → rows.
//! - [`results`]: results files and JSON reports.
//! - [`plot`]: one PNG per file.
//! - [`summary`]: the tables on stdout.

pub mod input;
pub mod nab;
pub mod plot;
pub mod results;
pub mod summary;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use argus_detector::engine::{EngineConfig, SeriesDetector, Verdict};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use input::{InputError, NabFile, TimeSeries};
use nab::{Corpus, FileInput, NabError, Window};
use plot::PlotError;
use results::{FileFlags, InputNotes, OutputError, ProfileReport, ResultRow};

/// Score the detection engine on history: a NAB corpus (labelled) or
/// CSV/Parquet files (unlabelled).
#[derive(clap::Args, Debug, Clone)]
#[command(
    group(clap::ArgGroup::new("input").required(true).args(["nab", "files"])),
    after_help = "Writes under --out: results/argus/<category>/argus_<name>.csv (NAB's results \
                  format), scores.json (--nab: NAB scores per profile) or flags.json (files: the \
                  engine's flags), plots/<category>/<name>.png.\n\
                  Exit status: 0 on success, 2 on any error; every bad input file is listed."
)]
pub struct BacktestArgs {
    /// A corpus in NAB's layout (`data/<category>/*.csv`,
    /// `labels/combined_windows.json`): scored the NAB way.
    #[arg(long, value_name = "ROOT", conflicts_with = "files")]
    pub nab: Option<PathBuf>,
    /// Unlabelled CSV or Parquet files with `timestamp` and `value` columns.
    /// Timestamps: `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC), RFC 3339, or integer
    /// unix seconds/milliseconds.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "out/backtest")]
    pub out: PathBuf,
    /// Engine config overrides (YAML, `EngineConfig` fields); the same for
    /// every file.
    #[arg(long, value_name = "ENGINE_YAML")]
    pub config: Option<PathBuf>,
    /// Skip the PNG plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<NonZeroUsize>,
}

impl BacktestArgs {
    /// Every problem with the arguments, each naming the argument.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(root) = &self.nab
            && !root.is_dir()
        {
            p.push(format!("--nab {}: not a directory", root.display()));
        }
        for f in &self.files {
            if !f.is_file() {
                p.push(format!("{}: no such file", f.display()));
            } else if !has_supported_extension(f) {
                p.push(format!(
                    "{}: unsupported file type (expected .csv or .parquet)",
                    f.display()
                ));
            }
        }
        if let Some(c) = &self.config
            && !c.is_file()
        {
            p.push(format!("--config {}: no such file", c.display()));
        }
        if self.out.exists() && !self.out.is_dir() {
            p.push(format!(
                "--out {}: exists and is not a directory",
                self.out.display()
            ));
        }
        p
    }
}

fn has_supported_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["csv", "parquet", "pq"].contains(&e.to_ascii_lowercase().as_str()))
}

/// Failures of one file or of the run; the top level turns them into text.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Nab(#[from] NabError),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("--config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// A bug (in the engine, polars or here) hit on one file: reported with
    /// the file's name like any other failure instead of aborting the run.
    #[error("{file}: internal error: {message}")]
    Panicked { file: String, message: String },
}

/// Runs `f` for one file, turning a panic into [`BacktestError::Panicked`].
fn guarded<T>(
    file: &dyn std::fmt::Display,
    f: impl FnOnce() -> Result<T, BacktestError>,
) -> Result<T, BacktestError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        Err(BacktestError::Panicked {
            file: file.to_string(),
            message,
        })
    })
}

/// Reads `--config`: YAML overriding [`EngineConfig::default`] field by
/// field; an empty file means the defaults.
pub fn engine_config(path: Option<&Path>) -> Result<EngineConfig, BacktestError> {
    let Some(path) = path else {
        return Ok(EngineConfig::default());
    };
    let err = |reason: String| BacktestError::Config {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if text.trim().is_empty() {
        return Ok(EngineConfig::default());
    }
    serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))
}

/// One input, before reading.
enum Job {
    Nab(NabFile),
    File { path: PathBuf, category: String },
}

impl Job {
    fn path(&self) -> &Path {
        match self {
            Job::Nab(f) => &f.path,
            Job::File { path, .. } => path,
        }
    }

    fn load(&self) -> Result<(TimeSeries, Vec<Window>), InputError> {
        match self {
            Job::Nab(f) => f.read().map(|l| (l.series, l.windows)),
            Job::File { path, category } => Ok((input::read_file(path, category)?, Vec::new())),
        }
    }
}

/// One file after the engine ran over it.
pub struct FileRun {
    pub series: TimeSeries,
    pub windows: Vec<Window>,
    /// `None` for rows the engine did not see (missing value).
    pub verdicts: Vec<Option<Verdict>>,
    pub results: PathBuf,
}

impl FileRun {
    /// Score per row as alerting sees it (`Verdict::alert_score`: the
    /// score where an episode could open, capped below the trigger inside
    /// one, so one incident is one detection, as one page), 0 where the
    /// engine did not see the row. This is what the NAB threshold applies
    /// to and what the results CSV carries.
    pub fn scores(&self) -> Vec<f64> {
        self.verdicts
            .iter()
            .map(|v| v.map_or(0.0, |v| v.alert_score))
            .collect()
    }
}

/// Runs a fresh detector over the series in file order.
pub fn run_engine(cfg: &EngineConfig, series: &TimeSeries) -> Vec<Option<Verdict>> {
    let mut det = SeriesDetector::new(cfg);
    series
        .values
        .iter()
        .zip(series.unix_seconds())
        .map(|(v, ts)| v.map(|v| det.update(cfg, ts, v)))
        .collect()
}

fn process(job: &Job, cfg: &EngineConfig, out: &Path) -> Result<FileRun, BacktestError> {
    let (series, windows) = job.load()?;
    let verdicts = run_engine(cfg, &series);
    let results = results::results_path(out, &series.category, &series.stem);
    let labels = results::labels(series.len(), &windows);
    results::write_results(
        &results,
        (0..series.len()).map(|i| ResultRow {
            timestamp: &series.timestamps[i],
            value: series.values[i],
            anomaly_score: verdicts[i].map_or(0.0, |v| v.alert_score),
            label: labels[i],
        }),
    )?;
    Ok(FileRun {
        series,
        windows,
        verdicts,
        results,
    })
}

fn progress(len: usize, message: &'static str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} files {elapsed} (eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// `argus backtest`.
pub fn run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let problems = args.problems();
    if !problems.is_empty() {
        anyhow::bail!("invalid arguments:\n  {}", problems.join("\n  "));
    }
    let cfg = engine_config(args.config.as_deref())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.map_or(0, NonZeroUsize::get))
        .build()
        .context("cannot start worker threads")?;
    let jobs: Vec<Job> = match &args.nab {
        Some(root) => input::list_nab(root)?.into_iter().map(Job::Nab).collect(),
        None => plain_jobs(&args.files)?,
    };
    // A report left by an earlier run must not pass for this one's if this
    // one fails.
    for stale in ["scores.json", "flags.json"] {
        match std::fs::remove_file(args.out.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).context(format!("{}", args.out.join(stale).display()));
            }
            _ => {}
        }
    }

    let started = Instant::now();
    let runs = run_all(&pool, &jobs, &cfg, &args.out)?;
    let rows: usize = runs.iter().map(|r| r.series.len()).sum();
    let scored_in = started.elapsed();

    let notes: Vec<InputNotes> = runs
        .iter()
        .filter(|r| !r.series.notes.is_empty())
        .map(|r| InputNotes {
            file: r.series.name.clone(),
            notes: r.series.notes.clone(),
        })
        .collect();
    for n in &notes {
        for note in &n.notes {
            eprintln!("note: {}: {note}", n.file);
        }
    }

    let report = match &args.nab {
        Some(root) => labelled(&runs, &cfg, root, &notes, &args.out)?,
        None => unlabelled(&runs, &cfg, &notes, &args.out)?,
    };
    let plotted_in = if args.no_plots {
        None
    } else {
        let started = Instant::now();
        plot_all(&pool, &runs, &report, &args.out)?;
        Some(started.elapsed())
    };

    print!("{}", report.table);
    eprintln!(
        "scored {} files, {rows} rows in {:.2}s ({:.0} rows/s){}; output in {}",
        runs.len(),
        scored_in.as_secs_f64(),
        rows as f64 / scored_in.as_secs_f64().max(1e-9),
        plotted_in.map_or(String::new(), |d| format!(
            ", plotted in {:.2}s",
            d.as_secs_f64()
        )),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads, scores and writes the results of every file in parallel. Fails
/// after all files were tried, listing every failure.
fn run_all(
    pool: &rayon::ThreadPool,
    jobs: &[Job],
    cfg: &EngineConfig,
    out: &Path,
) -> anyhow::Result<Vec<FileRun>> {
    let bar = progress(jobs.len(), "scoring");
    let outcomes: Vec<Result<FileRun, BacktestError>> = pool.install(|| {
        jobs.par_iter()
            .map(|job| {
                let r = guarded(&job.path().display(), || process(job, cfg, out));
                bar.inc(1);
                r
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut runs = Vec::with_capacity(outcomes.len());
    let mut failures = Vec::new();
    for o in outcomes {
        match o {
            Ok(r) => runs.push(r),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if !failures.is_empty() {
        anyhow::bail!(
            "{} of {} input files failed:\n  {}",
            failures.len(),
            jobs.len(),
            failures.join("\n  ")
        );
    }
    Ok(runs)
}

/// What the summary and the plots need once the corpus is scored.
struct Report {
    table: String,
    /// Per file, per row: marked as flagged in the plot.
    flagged: Vec<Vec<bool>>,
    threshold: Option<f64>,
}

/// NAB scoring, `scores.json`; plots mark what the standard profile's
/// threshold flags.
fn labelled(
    runs: &[FileRun],
    cfg: &EngineConfig,
    root: &Path,
    notes: &[InputNotes],
    out: &Path,
) -> anyhow::Result<Report> {
    let scores: Vec<Vec<f64>> = runs.iter().map(FileRun::scores).collect();
    let corpus = Corpus::new(runs.iter().zip(&scores).map(|(r, s)| FileInput {
        name: &r.series.name,
        scores: s,
        windows: &r.windows,
    }))?;
    let profiles = corpus.score();
    let rows = runs.iter().map(|r| r.series.len()).sum();
    let report = results::ScoresReport {
        detector: results::DETECTOR,
        corpus: root,
        files: runs.len(),
        rows,
        windows: profiles[0].counts.windows,
        engine_config: cfg,
        profiles: profiles
            .iter()
            .map(|p| (p.profile.name, ProfileReport::new(p)))
            .collect(),
        input_notes: notes,
    };
    results::write_json(&out.join("scores.json"), &report)?;
    let threshold = profiles[0].threshold;
    let flagged = scores
        .iter()
        .map(|s| {
            let p = nab::probationary_period(s.len());
            s.iter()
                .enumerate()
                .map(|(i, &s)| i >= p && s >= threshold)
                .collect()
        })
        .collect();
    Ok(Report {
        table: summary::labelled(&profiles, rows),
        flagged,
        threshold: Some(threshold),
    })
}

/// The engine's own flags, `flags.json`.
fn unlabelled(
    runs: &[FileRun],
    cfg: &EngineConfig,
    notes: &[InputNotes],
    out: &Path,
) -> anyhow::Result<Report> {
    let files: Vec<FileFlags> = runs.iter().map(flags).collect();
    let report = results::FlagsReport {
        detector: results::DETECTOR,
        engine_config: cfg,
        files: &files,
        input_notes: notes,
    };
    results::write_json(&out.join("flags.json"), &report)?;
    let flagged = runs
        .iter()
        .map(|r| {
            r.verdicts
                .iter()
                .map(|v| v.is_some_and(|v| v.anomalous))
                .collect()
        })
        .collect();
    Ok(Report {
        table: summary::unlabelled(&files),
        flagged,
        threshold: None,
    })
}

fn plot_all(
    pool: &rayon::ThreadPool,
    runs: &[FileRun],
    report: &Report,
    out: &Path,
) -> anyhow::Result<()> {
    let bar = progress(runs.len(), "plotting");
    let outcomes: Vec<Result<(), BacktestError>> = pool.install(|| {
        runs.par_iter()
            .zip(&report.flagged)
            .map(|(r, flagged)| {
                let path = plot::plot_path(out, &r.series.category, &r.series.stem);
                let res = guarded(&r.series.name, || {
                    plot::plot(
                        &path,
                        &plot::PlotInput {
                            series: &r.series,
                            verdicts: &r.verdicts,
                            windows: &r.windows,
                            flagged,
                            threshold: report.threshold,
                        },
                    )
                    .map_err(BacktestError::from)
                });
                bar.inc(1);
                res
            })
            .collect()
    });
    bar.finish_and_clear();
    let failures: Vec<String> = outcomes
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    if !failures.is_empty() {
        anyhow::bail!(
            "{} plots failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Jobs for unlabelled files: category = the parent directory's name.
fn plain_jobs(files: &[PathBuf]) -> anyhow::Result<Vec<Job>> {
    let mut seen: BTreeMap<(String, String), &Path> = BTreeMap::new();
    let mut jobs = Vec::with_capacity(files.len());
    for path in files {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.clone());
        let category = abs
            .parent()
            .and_then(|p| p.file_name())
            .map_or_else(|| "files".to_owned(), |n| n.to_string_lossy().into_owned());
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(other) = seen.insert((category.clone(), stem.clone()), path) {
            anyhow::bail!(
                "{} and {} would write the same results file (results/argus/{category}/argus_{stem}.csv)",
                other.display(),
                path.display()
            );
        }
        jobs.push(Job::File {
            path: path.clone(),
            category,
        });
    }
    Ok(jobs)
}

fn flags(r: &FileRun) -> FileFlags {
    let mut f = FileFlags {
        file: r.series.name.clone(),
        results: r.results.clone(),
        rows: r.series.len(),
        learning_rows: 0,
        skipped_rows: 0,
        flagged_rows: 0,
        flagged_runs: 0,
        max_score: 0.0,
        max_score_at: None,
    };
    let mut previous = false;
    for (i, v) in r.verdicts.iter().enumerate() {
        let Some(v) = v else {
            f.skipped_rows += 1;
            continue;
        };
        f.learning_rows += usize::from(v.learning);
        if v.anomalous {
            f.flagged_rows += 1;
            f.flagged_runs += usize::from(!previous);
        }
        previous = v.anomalous;
        if v.score > f.max_score || f.max_score_at.is_none() {
            f.max_score = v.score;
            f.max_score_at = Some(r.series.timestamps[i].clone());
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_on_one_file_becomes_an_error_naming_it() {
        let r: Result<(), _> = guarded(&"cat/x.csv", || panic!("index out of bounds"));
        assert_eq!(
            r.unwrap_err().to_string(),
            "cat/x.csv: internal error: index out of bounds"
        );
        let r: Result<(), _> = guarded(&"cat/y.csv", || panic!("row {}", 7));
        assert_eq!(
            r.unwrap_err().to_string(),
            "cat/y.csv: internal error: row 7"
        );
    }

    #[test]
    fn engine_skips_missing_values_and_keeps_row_positions() {
        let series = TimeSeries {
            name: "c/f.csv".into(),
            category: "c".into(),
            stem: "f".into(),
            timestamps: vec!["a".into(); 4],
            unix_micros: vec![0, 60_000_000, 120_000_000, 180_000_000],
            values: vec![Some(1.0), None, Some(2.0), Some(3.0)],
            notes: vec![],
        };
        let cfg = EngineConfig::default();
        let v = run_engine(&cfg, &series);
        assert_eq!(v.len(), 4);
        assert!(v[1].is_none());
        // The engine saw exactly the present values, in order.
        let mut det = SeriesDetector::new(&cfg);
        let expected: Vec<Option<Verdict>> = [(0, 1.0), (120, 2.0), (180, 3.0)]
            .iter()
            .map(|&(t, x)| Some(det.update(&cfg, t, x)))
            .collect();
        assert_eq!(vec![v[0], v[2], v[3]], expected);
    }
}
