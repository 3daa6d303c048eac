//! The tables a backtest prints on stdout.
//!
//! Labelled runs: per category and in total, for each profile, the NAB score
//! (normalised within the category, at the corpus threshold) and the counts
//! (TP/FN: windows detected/missed, FP: flagged rows outside windows), then
//! the published detectors on NAB's development split, with this run ranked
//! among them. The published numbers only mean something on that exact
//! split, so they are shown only when the corpus has its shape (51 files,
//! 295,997 rows, 97 windows).
//!
//! Unlabelled runs: per file, rows, the engine's flags and the top score.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::nab::{ProfileScore, Subtotal};
use super::results::{FileFlags, category_of};

/// Published NAB 1.1 scores on the development split (from the corpus
/// README): standard, reward_low_FP_rate, reward_low_FN_rate.
pub const PUBLISHED: [(&str, [f64; 3]); 7] = [
    ("ARTime", [77.0, 67.7, 82.3]),
    ("CAD OSE", [75.4, 72.7, 77.8]),
    ("Numenta HTM", [73.0, 65.8, 76.8]),
    ("KNN CAD", [60.5, 46.4, 66.8]),
    ("Random Cut Forest", [53.4, 42.7, 62.1]),
    ("Twitter ADVec", [51.1, 36.0, 58.1]),
    ("Windowed Gaussian", [44.8, 23.0, 53.6]),
];

/// Shape of the development split the published scores refer to.
pub const DEV_SPLIT: (usize, usize, usize) = (51, 295_997, 97);

fn nab(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// The labelled summary. `profiles` in [`super::nab::PROFILES`] order.
pub fn labelled(profiles: &[ProfileScore], rows: usize) -> String {
    let mut out = String::new();
    let Some(first) = profiles.first() else {
        return out;
    };
    let files = first.files.len();
    let windows = first.counts.windows;
    let _ = writeln!(
        out,
        "NAB score of argus: {files} files, {rows} rows, {windows} windows \
         (TP/FN: windows detected/missed; FP: flagged rows outside windows)\n"
    );

    let mut categories: BTreeMap<&str, ()> = BTreeMap::new();
    for f in &first.files {
        categories.insert(category_of(&f.name), ());
    }
    let width = categories
        .keys()
        .map(|c| c.len())
        .max()
        .unwrap_or(0)
        .max("threshold".len());

    let _ = write!(out, "{:width$} {:>5}", "", "");
    for p in profiles {
        let _ = write!(out, "  {:>27}", p.profile.name);
    }
    let _ = write!(out, "\n{:width$} {:>5}", "category", "files");
    for _ in profiles {
        let _ = write!(out, "  {:>6} {:>5} {:>5} {:>8}", "NAB", "TP", "FN", "FP");
    }
    out.push('\n');
    let mut row = |label: &str, subtotals: Vec<Subtotal>| {
        let _ = write!(out, "{label:width$} {:>5}", subtotals[0].files);
        for t in subtotals {
            let c = t.counts;
            let _ = write!(
                out,
                "  {:>6} {:>5} {:>5} {:>8}",
                nab(t.nab_score),
                c.true_positives,
                c.false_negatives,
                c.false_positives
            );
        }
        out.push('\n');
    };
    for category in categories.keys() {
        let subtotals = profiles
            .iter()
            .map(|p| Subtotal::of(p.files.iter().filter(|f| category_of(&f.name) == *category)))
            .collect();
        row(category, subtotals);
    }
    row(
        "total",
        profiles.iter().map(|p| Subtotal::of(&p.files)).collect(),
    );
    let _ = write!(out, "{:width$} {:>5}", "threshold", "");
    for p in profiles {
        let _ = write!(out, "  {:>27}", format!("{:.6}", p.threshold));
    }
    out.push('\n');

    if (files, rows, windows) == DEV_SPLIT && profiles.len() == 3 {
        let _ = writeln!(
            out,
            "\nOn NAB's development split, against published detectors (NAB 1.1 scorer):"
        );
        let mut table: Vec<(String, [Option<f64>; 3])> = PUBLISHED
            .iter()
            .map(|(n, s)| (n.to_string(), s.map(Some)))
            .collect();
        table.push((
            "argus (this run)".to_owned(),
            [
                profiles[0].nab_score,
                profiles[1].nab_score,
                profiles[2].nab_score,
            ],
        ));
        table.sort_by(|a, b| {
            b.1[0]
                .unwrap_or(f64::MIN)
                .total_cmp(&a.1[0].unwrap_or(f64::MIN))
        });
        let _ = writeln!(
            out,
            "{:20} {:>9} {:>9} {:>9}",
            "detector", "standard", "low_FP", "low_FN"
        );
        for (name, s) in table {
            let _ = writeln!(
                out,
                "{name:20} {:>9} {:>9} {:>9}",
                nab(s[0]),
                nab(s[1]),
                nab(s[2])
            );
        }
    }
    out
}

/// The unlabelled summary.
pub fn unlabelled(files: &[FileFlags]) -> String {
    let mut out = String::new();
    let width = files
        .iter()
        .map(|f| f.file.len())
        .max()
        .unwrap_or(0)
        .max("file".len());
    let _ = writeln!(
        out,
        "{:width$} {:>9} {:>8} {:>8} {:>6} {:>9}  max score at",
        "file", "rows", "skipped", "flagged", "runs", "max score"
    );
    for f in files {
        let _ = writeln!(
            out,
            "{:width$} {:>9} {:>8} {:>8} {:>6} {:>9.3}  {}",
            f.file,
            f.rows,
            f.skipped_rows,
            f.flagged_rows,
            f.flagged_runs,
            f.max_score,
            f.max_score_at.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::nab::{Corpus, FileInput, Window};
    use super::*;

    #[test]
    fn labelled_table_has_categories_total_and_thresholds() {
        let mut a = vec![0.0; 100];
        a[40] = 0.9;
        let b = vec![0.0; 100];
        let wa = [Window { start: 40, end: 49 }];
        let c = Corpus::new([
            FileInput {
                name: "realA/a.csv",
                scores: &a,
                windows: &wa,
            },
            FileInput {
                name: "quiet/b.csv",
                scores: &b,
                windows: &[],
            },
        ])
        .unwrap();
        let t = labelled(&c.score(), 200);
        let line = |prefix: &str| {
            t.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{t}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        // label, files, then NAB TP FN FP per profile.
        assert_eq!(line("realA")[..6], ["realA", "1", "100.0", "1", "0", "0"]);
        assert_eq!(line("quiet")[..6], ["quiet", "1", "-", "0", "0", "0"]);
        assert_eq!(line("total")[..6], ["total", "2", "100.0", "1", "0", "0"]);
        assert_eq!(line("threshold")[1..], ["0.900000"; 3]);
        assert!(!t.contains("ARTime"), "not the dev split:\n{t}");
    }
}
