//! Reading history for a backtest: single files (CSV or Parquet) and the NAB
//! corpus layout, into plain vectors for the engine.
//!
//! # Files
//!
//! A file has a `timestamp` and a `value` column (other columns are
//! ignored). polars reads it: CSV with every column as text, so the
//! timestamps written to the results are byte-for-byte those of the input and
//! every parse error can name its row; Parquet with its own types.
//!
//! Timestamps may be (per row):
//! - `YYYY-MM-DD HH:MM:SS` with an optional fraction `.f` up to nanoseconds,
//!   also with a `T` separator — naive, taken as UTC (NAB's format);
//! - RFC 3339 with an offset (`2024-05-01T12:00:00.5+02:00`, `…Z`);
//! - an integer unix time: seconds, or milliseconds when any integer
//!   timestamp of the file has an absolute value ≥ 10¹¹ (10¹¹ s is the year
//!   5138, 10¹¹ ms is March 1973: millisecond data from before 1973 would be
//!   misread as seconds);
//! - in Parquet also a native `Datetime` (any unit, any zone) or `Date`.
//!
//! Values: any numeric column, or text that polars parses as a float
//! (surrounding spaces ignored; `inf` and `NaN` parse, and are then treated
//! as missing, see below). Blank lines at the end of a CSV are ignored.
//!
//! # Bad input
//!
//! Errors ([`InputError`]) name the file and, where it applies, the row
//! (`row` counts data rows from 0, as in the results file; for CSV `line` is
//! the 1-based line, header included, assuming one line per record): a
//! missing column, an empty file, an empty or unparsable timestamp, a value
//! that is not a number.
//!
//! Handled with a [`Note`] instead, because NAB itself has such data and
//! scores it by position:
//! - an empty, NaN or infinite value: the row stays in the results (value
//!   empty, anomaly score 0, its label kept) but is not shown to the engine;
//! - a timestamp equal to or earlier than the previous row's: rows are scored
//!   in file order, never sorted (NAB matches rows by position; six NAB files
//!   repeat a timestamp once, at a DST change or a collector hiccup).
//!
//! # NAB layout
//!
//! `<root>/data/<category>/<name>.csv` and `<root>/labels/combined_windows.json`
//! (`"<category>/<name>.csv"` → `[[start, end], …]`). Window bounds are
//! matched to rows by timestamp (first row with that instant, as upstream's
//! `timestamps.index(…)`); a bound that matches no row is an error naming the
//! file and the window. A data file without a labels entry is an error (it
//! cannot be scored); labels for files absent from `data/` are ignored, so a
//! trimmed copy of the corpus works.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};
use polars::prelude::*;

use super::nab::Window;

/// One series read from a file, in file order.
#[derive(Clone, Debug)]
pub struct TimeSeries {
    /// How the series is named in output and errors: `<category>/<file>`.
    pub name: String,
    /// Results and plots go under this directory name.
    pub category: String,
    /// File name without extension; results are `argus_<stem>.csv`.
    pub stem: String,
    /// Timestamps as written in the input (Parquet datetimes formatted as
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`).
    pub timestamps: Vec<String>,
    /// The same instants as unix microseconds.
    pub unix_micros: Vec<i64>,
    /// `None`: empty, NaN or infinite; the engine does not see the row.
    pub values: Vec<Option<f64>>,
    /// Things the user should know about this file (see the module docs).
    pub notes: Vec<Note>,
}

impl TimeSeries {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Unix seconds (floored), what the engine takes.
    pub fn unix_seconds(&self) -> impl Iterator<Item = i64> + '_ {
        self.unix_micros.iter().map(|us| us.div_euclid(1_000_000))
    }
}

/// A tolerated oddity in a file, with how many rows and the first one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub kind: NoteKind,
    pub rows: usize,
    pub first_row: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// Empty, NaN or infinite value: skipped by the engine, score 0.
    MissingValue,
    /// Same timestamp as the previous row.
    RepeatedTimestamp,
    /// Earlier timestamp than the previous row.
    BackwardsTimestamp,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            NoteKind::MissingValue => {
                "with an empty, NaN or infinite value (not shown to the engine, anomaly_score 0)"
            }
            NoteKind::RepeatedTimestamp => {
                "repeating the previous row's timestamp (scored in file order)"
            }
            NoteKind::BackwardsTimestamp => {
                "with a timestamp earlier than the previous row's (scored in file order)"
            }
        };
        write!(
            f,
            "{} row(s) {what}, first at row {}",
            self.rows, self.first_row
        )
    }
}

/// A NAB data file with its windows as row ranges.
#[derive(Clone, Debug)]
pub struct LabelledSeries {
    pub series: TimeSeries,
    pub windows: Vec<Window>,
}

/// Where in a file: data row (0-based) and, for CSV, the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowRef {
    pub row: usize,
    pub line: Option<usize>,
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "row {} (line {line})", self.row),
            None => write!(f, "row {}", self.row),
        }
    }
}

/// Input the backtest refuses; all permanent (the file must be fixed).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: PolarsError },
    #[error("{path}: unsupported file type (expected .csv or .parquet)")]
    UnsupportedFormat { path: PathBuf },
    #[error("{path}: no `{column}` column (columns: {found})")]
    MissingColumn {
        path: PathBuf,
        column: &'static str,
        found: String,
    },
    #[error("{path}: column `{column}` has type {dtype}, which is not a {expected}")]
    ColumnType {
        path: PathBuf,
        column: &'static str,
        dtype: String,
        expected: &'static str,
    },
    #[error("{path}: no data rows")]
    Empty { path: PathBuf },
    #[error("{path}: {at}: empty timestamp")]
    EmptyTimestamp { path: PathBuf, at: RowRef },
    #[error(
        "{path}: {at}: timestamp {text:?} is not `YYYY-MM-DD HH:MM:SS[.ffffff]`, RFC 3339 or integer unix seconds/milliseconds"
    )]
    BadTimestamp {
        path: PathBuf,
        at: RowRef,
        text: String,
    },
    #[error("{path}: {at}: value {text:?} is not a number")]
    BadValue {
        path: PathBuf,
        at: RowRef,
        text: String,
    },
    #[error("{root}: not a NAB corpus: {reason}")]
    NotNab { root: PathBuf, reason: String },
    #[error("{path}: invalid labels: {reason}")]
    Labels { path: PathBuf, reason: String },
    #[error(
        "{file}: no entry in {labels}; every data file needs one (an empty list if it has no window)"
    )]
    Unlabelled { file: String, labels: PathBuf },
    #[error("{file}: window {index} [{start}, {end}]: {bound} timestamp matches no row")]
    WindowUnmatched {
        file: String,
        index: usize,
        start: String,
        end: String,
        bound: &'static str,
    },
    #[error("{file}: window {index} [{start}, {end}]: {reason}")]
    WindowInvalid {
        file: String,
        index: usize,
        start: String,
        end: String,
        reason: String,
    },
}

/// Reads a CSV or Parquet file (by extension) named `<category>/<stem>`.
pub fn read_file(path: &Path, category: &str) -> Result<TimeSeries, InputError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (df, csv) = match ext.as_deref() {
        Some("csv") => (read_csv(path)?, true),
        Some("parquet" | "pq") => (read_parquet(path)?, false),
        _ => {
            return Err(InputError::UnsupportedFormat {
                path: path.to_owned(),
            });
        }
    };
    let at = |row: usize| RowRef {
        row,
        line: csv.then_some(row + 2),
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();

    column(&df, path, "timestamp")?;
    column(&df, path, "value")?;
    let df = without_trailing_blank_rows(df);
    let ts_col = column(&df, path, "timestamp")?;
    let value_col = column(&df, path, "value")?;
    if df.height() == 0 {
        return Err(InputError::Empty {
            path: path.to_owned(),
        });
    }
    let (timestamps, unix_micros) = timestamps(path, ts_col, &at)?;
    let values = values(path, value_col, &at)?;

    let mut notes = Vec::new();
    note_rows(
        &mut notes,
        NoteKind::MissingValue,
        values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_none())
            .map(|(i, _)| i),
    );
    let steps = || unix_micros.windows(2).enumerate();
    note_rows(
        &mut notes,
        NoteKind::RepeatedTimestamp,
        steps().filter(|(_, w)| w[1] == w[0]).map(|(i, _)| i + 1),
    );
    note_rows(
        &mut notes,
        NoteKind::BackwardsTimestamp,
        steps().filter(|(_, w)| w[1] < w[0]).map(|(i, _)| i + 1),
    );

    Ok(TimeSeries {
        name: format!("{category}/{file_name}"),
        category: category.to_owned(),
        stem,
        timestamps,
        unix_micros,
        values,
        notes,
    })
}

/// Blank lines at the end of a CSV (an editor's trailing newlines) read
/// as rows of nulls; they are not data. Blank lines inside the data stay and
/// fail with their line number.
fn without_trailing_blank_rows(df: DataFrame) -> DataFrame {
    let blank = |name: &str| -> Vec<bool> {
        let Ok(c) = df.column(name) else {
            return vec![];
        };
        let c = c.as_materialized_series();
        match c.str() {
            Ok(t) => t
                .iter()
                .map(|v| v.is_none_or(|v| v.trim().is_empty()))
                .collect(),
            Err(_) => c.is_null().iter().map(|v| v.unwrap_or(true)).collect(),
        }
    };
    let (ts, values) = (blank("timestamp"), blank("value"));
    let keep = (0..df.height())
        .rev()
        .find(|&i| !(ts[i] && values[i]))
        .map_or(0, |i| i + 1);
    if keep == df.height() {
        df
    } else {
        df.slice(0, keep)
    }
}

fn note_rows(notes: &mut Vec<Note>, kind: NoteKind, mut rows: impl Iterator<Item = usize>) {
    if let Some(first_row) = rows.next() {
        notes.push(Note {
            kind,
            rows: 1 + rows.count(),
            first_row,
        });
    }
}

fn read_csv(path: &Path) -> Result<DataFrame, InputError> {
    let read = || {
        CsvReadOptions::default()
            .with_has_header(true)
            // Everything as text: exact timestamps out, row-precise errors.
            .with_infer_schema_length(Some(0))
            // One file per rayon task already keeps every core busy.
            .with_n_threads(Some(1))
            .try_into_reader_with_file_path(Some(path.to_owned()))?
            .finish()
    };
    match read() {
        Ok(df) => Ok(df),
        Err(PolarsError::NoData(_)) => Err(InputError::Empty {
            path: path.to_owned(),
        }),
        Err(PolarsError::IO { error, .. }) => Err(InputError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(error.kind(), error.to_string()),
        }),
        Err(source) => Err(InputError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn read_parquet(path: &Path) -> Result<DataFrame, InputError> {
    let file = std::fs::File::open(path).map_err(|source| InputError::Io {
        path: path.to_owned(),
        source,
    })?;
    ParquetReader::new(file)
        .finish()
        .map_err(|source| InputError::Read {
            path: path.to_owned(),
            source,
        })
}

fn column<'a>(
    df: &'a DataFrame,
    path: &Path,
    name: &'static str,
) -> Result<&'a Column, InputError> {
    df.column(name).map_err(|_| InputError::MissingColumn {
        path: path.to_owned(),
        column: name,
        found: df
            .get_column_names()
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn timestamps(
    path: &Path,
    col: &Column,
    at: &dyn Fn(usize) -> RowRef,
) -> Result<(Vec<String>, Vec<i64>), InputError> {
    let col = col.as_materialized_series();
    let type_err = || InputError::ColumnType {
        path: path.to_owned(),
        column: "timestamp",
        dtype: col.dtype().to_string(),
        expected: "timestamp (text, integer, Datetime or Date)",
    };
    let read = |source| InputError::Read {
        path: path.to_owned(),
        source,
    };
    let empty = |row| InputError::EmptyTimestamp {
        path: path.to_owned(),
        at: at(row),
    };
    match col.dtype() {
        DataType::String => {
            let texts: Vec<Option<&str>> = col.str().map_err(read)?.iter().collect();
            let mut raw = Vec::with_capacity(texts.len());
            let mut micros = Vec::with_capacity(texts.len());
            let millis = texts
                .iter()
                .flatten()
                .filter_map(|t| t.trim().parse::<i64>().ok())
                .any(|n| n.unsigned_abs() >= 100_000_000_000);
            for (row, text) in texts.into_iter().enumerate() {
                let text = text
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| empty(row))?;
                let us = parse_timestamp(text, millis).ok_or_else(|| InputError::BadTimestamp {
                    path: path.to_owned(),
                    at: at(row),
                    text: text.to_owned(),
                })?;
                raw.push(text.to_owned());
                micros.push(us);
            }
            Ok((raw, micros))
        }
        DataType::Datetime(_, _) | DataType::Date => {
            let us = col
                .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                .and_then(|s| s.cast(&DataType::Int64))
                .map_err(read)?;
            let mut raw = Vec::with_capacity(us.len());
            let mut micros = Vec::with_capacity(us.len());
            for (row, v) in us.i64().map_err(read)?.iter().enumerate() {
                let v = v.ok_or_else(|| empty(row))?;
                let dt = DateTime::from_timestamp_micros(v).ok_or_else(type_err)?;
                raw.push(dt.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string());
                micros.push(v);
            }
            Ok((raw, micros))
        }
        dt if dt.is_integer() => {
            let ints = col.cast(&DataType::Int64).map_err(read)?;
            let ints: Vec<Option<i64>> = ints.i64().map_err(read)?.iter().collect();
            let millis = ints
                .iter()
                .flatten()
                .any(|n| n.unsigned_abs() >= 100_000_000_000);
            let mut raw = Vec::with_capacity(ints.len());
            let mut micros = Vec::with_capacity(ints.len());
            for (row, v) in ints.into_iter().enumerate() {
                let v = v.ok_or_else(|| empty(row))?;
                let us = integer_micros(v, millis).ok_or_else(|| InputError::BadTimestamp {
                    path: path.to_owned(),
                    at: at(row),
                    text: v.to_string(),
                })?;
                raw.push(v.to_string());
                micros.push(us);
            }
            Ok((raw, micros))
        }
        _ => Err(type_err()),
    }
}

fn integer_micros(n: i64, millis: bool) -> Option<i64> {
    if millis {
        n.checked_mul(1_000)
    } else {
        n.checked_mul(1_000_000)
    }
}

/// One timestamp in any of the documented text forms → unix microseconds.
/// `millis`: integers are milliseconds (decided per file).
pub fn parse_timestamp(text: &str, millis: bool) -> Option<i64> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return integer_micros(n, millis);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_micros());
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .map(|dt| dt.and_utc().timestamp_micros())
}

fn values(
    path: &Path,
    col: &Column,
    at: &dyn Fn(usize) -> RowRef,
) -> Result<Vec<Option<f64>>, InputError> {
    let col = col.as_materialized_series();
    let read = |source| InputError::Read {
        path: path.to_owned(),
        source,
    };
    let dtype = col.dtype();
    if !(dtype.is_primitive_numeric() || dtype == &DataType::String) {
        return Err(InputError::ColumnType {
            path: path.to_owned(),
            column: "value",
            dtype: dtype.to_string(),
            expected: "number",
        });
    }
    // A non-strict cast turns unparsable text into null; a null that was not
    // null (nor blank) before is a bad value. Text is trimmed first: padded
    // numbers (` 3.5 `) are numbers.
    let trimmed;
    let col = if dtype == &DataType::String {
        let t = col.str().map_err(read)?;
        trimmed = StringChunked::from_iter_options(
            col.name().clone(),
            t.iter().map(|v| v.map(str::trim)),
        )
        .into_series();
        &trimmed
    } else {
        col
    };
    let floats = col.cast(&DataType::Float64).map_err(read)?;
    let floats = floats.f64().map_err(read)?;
    if dtype == &DataType::String {
        let texts = col.str().map_err(read)?;
        for (row, (text, v)) in texts.iter().zip(floats.iter()).enumerate() {
            if let (Some(text), None) = (text, v)
                && !text.trim().is_empty()
            {
                return Err(InputError::BadValue {
                    path: path.to_owned(),
                    at: at(row),
                    text: text.to_owned(),
                });
            }
        }
    }
    Ok(floats.iter().map(|v| v.filter(|v| v.is_finite())).collect())
}

/// The NAB labels file: `"<category>/<name>.csv"` → `[[start, end], …]`.
type WindowLabels = BTreeMap<String, Vec<[String; 2]>>;

/// One data file of a NAB corpus, before reading.
#[derive(Clone, Debug)]
pub struct NabFile {
    pub path: PathBuf,
    pub category: String,
    /// Key in the labels file: `<category>/<name>.csv`.
    pub key: String,
    /// Window bounds as written in the labels file.
    pub windows: Vec<[String; 2]>,
}

/// Lists a NAB corpus: every `data/<category>/*.csv` (sorted) with its
/// labelled windows. Cheap; the files are read by [`NabFile::read`].
pub fn list_nab(root: &Path) -> Result<Vec<NabFile>, InputError> {
    let not_nab = |reason: String| InputError::NotNab {
        root: root.to_owned(),
        reason,
    };
    let labels_path = root.join("labels").join("combined_windows.json");
    let text = std::fs::read_to_string(&labels_path)
        .map_err(|e| not_nab(format!("{}: {e}", labels_path.display())))?;
    let mut labels: WindowLabels = serde_json::from_str(&text).map_err(|e| InputError::Labels {
        path: labels_path.clone(),
        reason: e.to_string(),
    })?;

    let data = root.join("data");
    let io = |path: &Path, source| InputError::Io {
        path: path.to_owned(),
        source,
    };
    let mut categories: Vec<PathBuf> = std::fs::read_dir(&data)
        .map_err(|e| not_nab(format!("{}: {e}", data.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    categories.sort();
    let mut files = Vec::new();
    for dir in categories {
        let category = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut csvs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
            .collect();
        csvs.sort();
        for path in csvs {
            let name = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = format!("{category}/{name}");
            let windows = labels.remove(&key).ok_or_else(|| InputError::Unlabelled {
                file: key.clone(),
                labels: labels_path.clone(),
            })?;
            files.push(NabFile {
                path,
                category: category.clone(),
                key,
                windows,
            });
        }
    }
    if files.is_empty() {
        return Err(not_nab(format!(
            "no data/<category>/*.csv under {}",
            data.display()
        )));
    }
    Ok(files)
}

impl NabFile {
    /// Reads the file and converts its windows to row ranges.
    pub fn read(&self) -> Result<LabelledSeries, InputError> {
        let series = read_file(&self.path, &self.category)?;
        let windows = window_rows(&self.key, &series, &self.windows)?;
        Ok(LabelledSeries { series, windows })
    }
}

/// Matches window bounds to rows by instant (first row with it).
pub fn window_rows(
    file: &str,
    series: &TimeSeries,
    bounds: &[[String; 2]],
) -> Result<Vec<Window>, InputError> {
    let mut first_row: HashMap<i64, usize> = HashMap::with_capacity(series.len());
    for (row, &us) in series.unix_micros.iter().enumerate() {
        first_row.entry(us).or_insert(row);
    }
    let mut windows: Vec<Window> = Vec::with_capacity(bounds.len());
    for (index, [start, end]) in bounds.iter().enumerate() {
        let find = |text: &str, bound: &'static str| {
            parse_timestamp(text, false)
                .and_then(|us| first_row.get(&us).copied())
                .ok_or_else(|| InputError::WindowUnmatched {
                    file: file.to_owned(),
                    index,
                    start: start.clone(),
                    end: end.clone(),
                    bound,
                })
        };
        let w = Window {
            start: find(start, "start")?,
            end: find(end, "end")?,
        };
        let invalid = |reason: String| InputError::WindowInvalid {
            file: file.to_owned(),
            index,
            start: start.clone(),
            end: end.clone(),
            reason,
        };
        if w.end < w.start {
            return Err(invalid(format!(
                "ends at row {} before it starts at row {}",
                w.end, w.start
            )));
        }
        if let Some(prev) = windows.last()
            && prev.end >= w.start
        {
            return Err(invalid(format!(
                "starts at row {}, inside or before the previous window (rows {}..={})",
                w.start, prev.start, prev.end
            )));
        }
        windows.push(w);
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn timestamp_forms() {
        let base = 1_424_987_573_000_000; // 2015-02-26 21:52:53 UTC
        assert_eq!(parse_timestamp("2015-02-26 21:52:53", false), Some(base));
        assert_eq!(
            parse_timestamp("2015-02-26 21:52:53.000000", false),
            Some(base)
        );
        assert_eq!(
            parse_timestamp("2015-02-26T21:52:53.25", false),
            Some(base + 250_000)
        );
        assert_eq!(
            parse_timestamp("2015-02-26T22:52:53+01:00", false),
            Some(base)
        );
        assert_eq!(parse_timestamp("2015-02-26T21:52:53Z", false), Some(base));
        assert_eq!(parse_timestamp("1424987573", false), Some(base));
        assert_eq!(parse_timestamp("1424987573000", true), Some(base));
        assert_eq!(parse_timestamp("2015-02-30 00:00:00", false), None);
        assert_eq!(parse_timestamp("yesterday", false), None);
    }

    #[test]
    fn csv_keeps_raw_timestamps_and_notes_missing_values_and_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.csv",
            "timestamp,value,extra\n\
             2015-01-01 00:00:00.000000,1.5,x\n\
             2015-01-01 00:05:00,,y\n\
             2015-01-01 00:05:00,NaN,z\n\
             2015-01-01 00:04:00,3,w\n",
        );
        let s = read_file(&p, "cat").unwrap();
        assert_eq!(s.name, "cat/a.csv");
        assert_eq!(s.stem, "a");
        assert_eq!(s.timestamps[0], "2015-01-01 00:00:00.000000");
        assert_eq!(s.values, vec![Some(1.5), None, None, Some(3.0)]);
        assert_eq!(
            s.unix_seconds().collect::<Vec<_>>(),
            vec![1_420_070_400, 1_420_070_700, 1_420_070_700, 1_420_070_640]
        );
        let kinds: Vec<_> = s
            .notes
            .iter()
            .map(|n| (n.kind, n.rows, n.first_row))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (NoteKind::MissingValue, 2, 1),
                (NoteKind::RepeatedTimestamp, 1, 2),
                (NoteKind::BackwardsTimestamp, 1, 3),
            ]
        );
    }

    #[test]
    fn trailing_blank_lines_and_padded_values_are_fine_inner_blanks_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.csv",
            "timestamp,value\r\n2015-01-01 00:00:00, 3.5 \r\n\"2015-01-01 00:05:00\",1e3\r\n\r\n\n",
        );
        let s = read_file(&p, "c").unwrap();
        assert_eq!(s.values, vec![Some(3.5), Some(1000.0)]);
        assert!(s.notes.is_empty());
        let p = write(
            dir.path(),
            "u.csv",
            "timestamp,value\n2015-01-01 00:00:00,1\n\n2015-01-01 00:10:00,2\n",
        );
        let e = read_file(&p, "c").unwrap_err().to_string();
        assert!(e.ends_with("u.csv: row 1 (line 3): empty timestamp"), "{e}");
    }

    #[test]
    fn integer_timestamps_seconds_or_millis_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let secs = write(
            dir.path(),
            "s.csv",
            "timestamp,value\n1700000000,1\n1700000060,2\n",
        );
        let ms = write(
            dir.path(),
            "m.csv",
            "value,timestamp\n1,1700000000000\n2,1700000060000\n",
        );
        let a = read_file(&secs, "c").unwrap();
        let b = read_file(&ms, "c").unwrap();
        assert_eq!(a.unix_micros, b.unix_micros);
        assert_eq!(b.timestamps[1], "1700000060000");
    }

    #[test]
    fn bad_csv_inputs_name_file_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let err = |name: &str, text: &str| {
            let p = write(dir.path(), name, text);
            let e = read_file(&p, "c").unwrap_err().to_string();
            assert!(e.starts_with(&p.display().to_string()), "{e}");
            e[p.display().to_string().len()..].to_owned()
        };
        assert_eq!(
            err("nocol.csv", "time,value\n2015-01-01 00:00:00,1\n"),
            ": no `timestamp` column (columns: `time`, `value`)"
        );
        assert_eq!(err("header.csv", "timestamp,value\n"), ": no data rows");
        assert_eq!(err("empty.csv", ""), ": no data rows");
        assert_eq!(
            err(
                "ts.csv",
                "timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 25:00:00,2\n"
            ),
            ": row 1 (line 3): timestamp \"2015-01-01 25:00:00\" is not `YYYY-MM-DD HH:MM:SS[.ffffff]`, RFC 3339 or integer unix seconds/milliseconds"
        );
        assert_eq!(
            err("nots.csv", "timestamp,value\n2015-01-01 00:00:00,1\n,2\n"),
            ": row 1 (line 3): empty timestamp"
        );
        assert_eq!(
            err(
                "val.csv",
                "timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:01:00,1\n2015-01-01 00:02:00,12abc\n"
            ),
            ": row 2 (line 4): value \"12abc\" is not a number"
        );
        assert_eq!(
            err("x.txt", "timestamp,value\n"),
            ": unsupported file type (expected .csv or .parquet)"
        );
    }

    #[test]
    fn parquet_with_native_datetimes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.parquet");
        let ts = polars::prelude::Series::new(
            "timestamp".into(),
            [1_420_070_400_000i64, 1_420_070_460_500],
        )
        .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
        .unwrap();
        let mut df = DataFrame::new(
            2,
            vec![
                ts.into(),
                polars::prelude::Series::new("value".into(), [1i32, 2]).into(),
            ],
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(&p).unwrap())
            .finish(&mut df)
            .unwrap();
        let s = read_file(&p, "c").unwrap();
        assert_eq!(
            s.timestamps,
            vec!["2015-01-01 00:00:00", "2015-01-01 00:01:00.500"]
        );
        assert_eq!(s.values, vec![Some(1.0), Some(2.0)]);
        assert_eq!(
            s.unix_seconds().collect::<Vec<_>>(),
            vec![1_420_070_400, 1_420_070_460]
        );
    }

    fn series(ts: &[&str]) -> TimeSeries {
        TimeSeries {
            name: "c/f.csv".into(),
            category: "c".into(),
            stem: "f".into(),
            timestamps: ts.iter().map(|s| s.to_string()).collect(),
            unix_micros: ts
                .iter()
                .map(|t| parse_timestamp(t, false).unwrap())
                .collect(),
            values: vec![Some(0.0); ts.len()],
            notes: vec![],
        }
    }

    #[test]
    fn windows_match_rows_by_instant_with_repeated_timestamps() {
        let s = series(&[
            "2015-01-01 00:00:00",
            "2015-01-01 00:05:00",
            "2015-01-01 00:05:00",
            "2015-01-01 00:10:00",
            "2015-01-01 00:15:00",
        ]);
        let b = |a: &str, z: &str| [a.to_owned(), z.to_owned()];
        // A bound on a repeated timestamp takes its first row, as upstream.
        let w = window_rows(
            "c/f.csv",
            &s,
            &[b(
                "2015-01-01 00:05:00.000000",
                "2015-01-01 00:10:00.000000",
            )],
        )
        .unwrap();
        assert_eq!(w, vec![Window { start: 1, end: 3 }]);
        let e = window_rows(
            "c/f.csv",
            &s,
            &[b(
                "2015-01-01 00:00:00.000000",
                "2015-01-01 00:11:00.000000",
            )],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c/f.csv: window 0 [2015-01-01 00:00:00.000000, 2015-01-01 00:11:00.000000]: end timestamp matches no row"
        );
        let e = window_rows(
            "c/f.csv",
            &s,
            &[
                b("2015-01-01 00:00:00", "2015-01-01 00:10:00"),
                b("2015-01-01 00:05:00", "2015-01-01 00:15:00"),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("c/f.csv: window 1 ["), "{e}");
    }

    /// Repeated timestamps, end to end through the scorer: rows count by
    /// position, so the duplicated row shifts the window by one row and both
    /// copies of the repeated instant are separate false positives.
    #[test]
    fn repeated_timestamps_are_scored_by_position() {
        use super::super::nab::{Corpus, FileInput, STANDARD};
        let dir = tempfile::tempdir().unwrap();
        let t = |m: usize| format!("2015-01-01 {:02}:{:02}:00", m / 60, m % 60);
        // Rows 0..=100; row 51 repeats row 50's instant (minute 50), so row
        // r > 50 holds minute r − 1.
        let mut text = String::from("timestamp,value\n");
        for row in 0..=100 {
            let minute = if row > 50 { row - 1 } else { row };
            text.push_str(&format!("{},1\n", t(minute)));
        }
        let p = write(dir.path(), "r.csv", &text);
        let series = read_file(&p, "c").unwrap();
        assert_eq!(series.notes[0].kind, NoteKind::RepeatedTimestamp);
        // Minutes 60..=69 are rows 61..=70.
        let windows = window_rows(
            "c/r.csv",
            &series,
            &[[format!("{}.000000", t(60)), format!("{}.000000", t(69))]],
        )
        .unwrap();
        assert_eq!(windows, vec![Window { start: 61, end: 70 }]);
        let mut scores = vec![0.0; series.len()];
        scores[50] = 0.9;
        scores[51] = 0.9;
        scores[61] = 0.9; // first row of the window: worth exactly A_TP
        let c = Corpus::new([FileInput {
            name: "c/r.csv",
            scores: &scores,
            windows: &windows,
        }])
        .unwrap();
        let s = c.evaluate(&STANDARD, 0.9);
        // +1 for the window, −0.11 for each copy of minute 50 (before any
        // window ended).
        assert!(
            (s.raw_score - (1.0 - 0.22)).abs() < 1e-12,
            "{}",
            s.raw_score
        );
        assert_eq!(s.counts.false_positives, 2);
        assert_eq!(s.files[0].windows[0].detected_at, Some(61));
    }

    #[test]
    fn nab_listing_requires_labels_for_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/cat")).unwrap();
        std::fs::create_dir_all(root.join("labels")).unwrap();
        write(
            &root.join("data/cat"),
            "a.csv",
            "timestamp,value\n2015-01-01 00:00:00,1\n",
        );
        write(
            &root.join("data/cat"),
            "b.csv",
            "timestamp,value\n2015-01-01 00:00:00,1\n",
        );
        write(
            &root.join("labels"),
            "combined_windows.json",
            r#"{"cat/a.csv": [], "gone/x.csv": [["2015-01-01 00:00:00.000000", "2015-01-01 00:00:00.000000"]]}"#,
        );
        let e = list_nab(root).unwrap_err().to_string();
        assert!(e.starts_with("cat/b.csv: no entry in "), "{e}");
        std::fs::remove_file(root.join("data/cat/b.csv")).unwrap();
        let files = list_nab(root).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].key, "cat/a.csv");
    }
}
