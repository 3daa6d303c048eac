//! `argus backtest` end to end: the real binary on fixture files in a temp
//! dir. Nothing here depends on the engine's exact scores (the engine is
//! being replaced); only on plumbing a user would notice and on the engine
//! ranking a 40σ spike above noise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn argus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_argus"))
        .arg("backtest")
        .args(args)
        .output()
        .expect("run argus")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deterministic noise in [-1, 1) (no RNG dependency needed).
fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` every 5 minutes from 2015-01-01.
fn ts(i: usize) -> String {
    let t = chrono::DateTime::from_timestamp(1_420_070_400 + 300 * i as i64, 0).unwrap();
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn write_series(path: &Path, values: &[f64]) {
    let mut text = String::from("timestamp,value\n");
    for (i, v) in values.iter().enumerate() {
        text.push_str(&format!("{},{v}\n", ts(i)));
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn read_results(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score,label"));
    lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    let be = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    (be(16), be(20))
}

/// 1000 rows of noise around 10 with a 40σ spike at row 700, windowed
/// 680..=720, plus a quiet file without windows.
fn nab_fixture(root: &Path) -> PathBuf {
    let mut spike: Vec<f64> = noise(1000, 1).iter().map(|v| 10.0 + v).collect();
    spike[700] = 50.0;
    write_series(&root.join("data/synthetic/spike.csv"), &spike);
    let quiet: Vec<f64> = noise(800, 2).iter().map(|v| 5.0 + v).collect();
    write_series(&root.join("data/quiet/flat.csv"), &quiet);
    std::fs::create_dir_all(root.join("labels")).unwrap();
    std::fs::write(
        root.join("labels/combined_windows.json"),
        format!(
            r#"{{"synthetic/spike.csv": [["{}.000000", "{}.000000"]], "quiet/flat.csv": []}}"#,
            ts(680),
            ts(720)
        ),
    )
    .unwrap();
    root.to_owned()
}

#[test]
fn nab_layout_with_a_planted_spike_scores_above_the_null_detector() {
    let dir = tempfile::tempdir().unwrap();
    let root = nab_fixture(&dir.path().join("nab"));
    let out = dir.path().join("out");
    let o = argus(&["--nab", s(&root), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));

    let rows = read_results(&out.join("results/argus/synthetic/argus_spike.csv"));
    assert_eq!(rows.len(), 1000);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 4);
        assert_eq!(r[0], ts(i), "timestamps are the input's");
        let score: f64 = r[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "row {i}: {score}");
        assert_eq!(
            r[3],
            if (680..=720).contains(&i) { "1" } else { "0" },
            "row {i}"
        );
    }
    assert_eq!(
        read_results(&out.join("results/argus/quiet/argus_flat.csv")).len(),
        800
    );

    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    let std = &scores["profiles"]["standard"];
    // Detected on the spike (a causal engine may need a row or two), which
    // is worth ≈ 93 with no false positive; noise alone reached 48 here.
    let nab = std["nab_score"].as_f64().unwrap();
    assert!(nab > 80.0, "standard NAB score {nab}");
    assert_eq!(std["counts"]["true_positives"], 1);
    assert_eq!(std["counts"]["windows"], 1);
    assert_eq!(scores["rows"], 1800);
    let files = std["files"].as_array().unwrap();
    let spike = files
        .iter()
        .find(|f| f["name"] == "synthetic/spike.csv")
        .unwrap();
    let detected = spike["windows"][0]["detected_at"].as_u64().unwrap();
    assert!(
        (700..=702).contains(&detected),
        "detected at row {detected}"
    );
    for p in ["reward_low_FP_rate", "reward_low_FN_rate"] {
        assert!(scores["profiles"][p]["threshold"].is_number(), "{p}");
    }
    assert!(scores["engine_config"].is_object());

    let table = stdout(&o);
    let total = table
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("total row");
    assert!(total.split_whitespace().nth(1) == Some("2"), "{total}");
    assert!(table.lines().any(|l| l.starts_with("synthetic")), "{table}");
    assert!(!table.contains("ARTime"), "not NAB's split:\n{table}");

    assert_eq!(
        png_size(&out.join("plots/synthetic/spike.png")),
        (1600, 800)
    );
    assert_eq!(png_size(&out.join("plots/quiet/flat.png")), (1600, 800));
}

#[test]
fn unlabelled_csv_and_parquet_give_results_for_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    let csv = inputs.join("a.csv");
    let mut values: Vec<f64> = noise(300, 3).iter().map(|v| 100.0 + v).collect();
    values[250] = 400.0;
    write_series(&csv, &values);

    // Parquet with native datetimes and integer values.
    use polars::prelude::*;
    let pq = inputs.join("b.parquet");
    let t: Vec<i64> = (0..200).map(|i| 1_700_000_000_000 + i * 60_000).collect();
    let mut df = DataFrame::new(
        200,
        vec![
            polars::prelude::Series::new("timestamp".into(), t)
                .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
                .unwrap()
                .into(),
            polars::prelude::Series::new(
                "value".into(),
                (0..200).map(|i| i % 7).collect::<Vec<i64>>(),
            )
            .into(),
        ],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(&pq).unwrap())
        .finish(&mut df)
        .unwrap();

    let out = dir.path().join("out");
    let o = argus(&[s(&csv), s(&pq), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));

    let a = read_results(&out.join("results/argus/in/argus_a.csv"));
    assert_eq!(a.len(), 300);
    assert!(a.iter().all(|r| r[3] == "0"), "no labels → label 0");
    assert_eq!(a[17][0], ts(17));
    assert_eq!(a[250][1], "400");
    let b = read_results(&out.join("results/argus/in/argus_b.csv"));
    assert_eq!(b.len(), 200);
    assert_eq!(b[0][0], "2023-11-14 22:13:20");

    let flags: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("flags.json")).unwrap()).unwrap();
    let files = flags["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["file"], "in/a.csv");
    assert_eq!(files[0]["rows"], 300);
    let table = stdout(&o);
    assert!(
        table.contains("in/a.csv") && table.contains("in/b.parquet"),
        "{table}"
    );
    assert!(!out.join("scores.json").exists());
    assert_eq!(png_size(&out.join("plots/in/a.png")), (1600, 800));
}

#[test]
fn missing_values_and_repeated_timestamps_are_scored_in_place_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gaps.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..100 {
        let t = if i == 51 { ts(50) } else { ts(i) };
        let v = match i {
            10 => String::new(),
            20 => "NaN".to_owned(),
            _ => format!("{}", i % 5),
        };
        text.push_str(&format!("{t},{v}\n"));
    }
    std::fs::write(&f, text).unwrap();
    let out = dir.path().join("out");
    let o = argus(&[s(&f), "--out", s(&out), "--no-plots"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("gaps.csv: 2 row(s) with an empty, NaN or infinite value")
            && err.contains("first at row 10"),
        "{err}"
    );
    assert!(
        err.contains("1 row(s) repeating the previous row's timestamp"),
        "{err}"
    );
    let rows = read_results(&out.join(format!(
        "results/argus/{}/argus_gaps.csv",
        dir.path().file_name().unwrap().to_str().unwrap()
    )));
    assert_eq!(rows.len(), 100);
    assert_eq!((rows[10][1].as_str(), rows[10][2].as_str()), ("", "0"));
    assert_eq!((rows[20][1].as_str(), rows[20][2].as_str()), ("", "0"));
    assert_eq!(rows[51][0], ts(50));
    assert!(!out.join("plots").exists(), "--no-plots");
}

#[test]
fn bad_inputs_fail_naming_file_and_row_and_every_bad_file_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good = w("good.csv", "timestamp,value\n2015-01-01 00:00:00,1\n");
    let cases = [
        (
            w("nocol.csv", "time,value\n1,2\n"),
            "nocol.csv: no `timestamp` column (columns: `time`, `value`)",
        ),
        (
            w(
                "badts.csv",
                "timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:00:99,1\n",
            ),
            "badts.csv: row 1 (line 3): timestamp \"2015-01-01 00:00:99\" is not",
        ),
        (
            w(
                "badval.csv",
                "timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:05:00,n/a\n",
            ),
            "badval.csv: row 1 (line 3): value \"n/a\" is not a number",
        ),
        (w("empty.csv", ""), "empty.csv: no data rows"),
        (
            w("header.csv", "timestamp,value\n"),
            "header.csv: no data rows",
        ),
    ];
    let out = dir.path().join("out-one");
    for (path, expected) in &cases {
        // A report from an earlier good run into the same dir…
        let o = argus(&[s(&good), "--out", s(&out), "--no-plots"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(out.join("flags.json").exists());
        let o = argus(&[s(&good), s(path), "--out", s(&out), "--no-plots"]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
        assert!(err.contains("1 of 2 input files failed"), "{err}");
        // …must not pass for the failed run's.
        assert!(
            !out.join("flags.json").exists(),
            "stale report after a failed run"
        );
    }
    // All bad files reported in one run.
    let mut args: Vec<&str> = cases.iter().map(|(p, _)| s(p)).collect();
    let out = dir.path().join("out-all");
    args.extend(["--out", s(&out), "--no-plots"]);
    let o = argus(&args);
    let err = stderr(&o);
    assert!(err.contains("5 of 5 input files failed"), "{err}");
    for (_, expected) in &cases {
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    }
}

#[test]
fn argument_problems_are_all_reported_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("x.txt");
    std::fs::write(&txt, "timestamp,value\n").unwrap();
    let o = argus(&[
        "nope.csv",
        s(&txt),
        "--config",
        "missing.yaml",
        "--out",
        s(&dir.path().join("out")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for expected in [
        "nope.csv: no such file",
        "x.txt: unsupported file type (expected .csv or .parquet)",
        "--config missing.yaml: no such file",
    ] {
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    }
    assert!(!dir.path().join("out").exists());

    let o = argus(&["--out", s(&dir.path().join("out"))]);
    assert_eq!(o.status.code(), Some(2), "no input is a usage error");
}

#[test]
fn nab_window_that_matches_no_row_is_an_error_naming_file_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let root = nab_fixture(&dir.path().join("nab"));
    std::fs::write(
        root.join("labels/combined_windows.json"),
        r#"{"synthetic/spike.csv": [["2015-01-01 00:00:00.000000", "2015-01-01 00:07:00.000000"]], "quiet/flat.csv": []}"#,
    )
    .unwrap();
    let o = argus(&[
        "--nab",
        s(&root),
        "--out",
        s(&dir.path().join("out")),
        "--no-plots",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(
            "synthetic/spike.csv: window 0 [2015-01-01 00:00:00.000000, 2015-01-01 00:07:00.000000]: end timestamp matches no row"
        ),
        "{err}"
    );
}

#[test]
fn engine_config_overrides_reach_every_file_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = nab_fixture(&dir.path().join("nab"));
    // Change one numeric field of the default config, whatever the engine's
    // fields are today.
    let default = serde_json::to_value(argus_detector::engine::EngineConfig::default()).unwrap();
    let (field, value) = default
        .as_object()
        .unwrap()
        .iter()
        .find_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n + 3)))
        .expect("EngineConfig has an integer field to override");
    let cfg = dir.path().join("engine.yaml");
    std::fs::write(&cfg, format!("{field}: {value}\n")).unwrap();
    let out = dir.path().join("out");
    let o = argus(&[
        "--nab",
        s(&root),
        "--out",
        s(&out),
        "--config",
        s(&cfg),
        "--no-plots",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scores.json")).unwrap()).unwrap();
    assert_eq!(scores["engine_config"][&field], value);

    std::fs::write(&cfg, "no_such_field: 1\n").unwrap();
    let o = argus(&["--nab", s(&root), "--out", s(&out), "--config", s(&cfg)]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("--config {}: ", cfg.display())) && err.contains("no_such_field"),
        "{err}"
    );
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let root = nab_fixture(&dir.path().join("nab"));
    let run = |threads: &str| {
        let out = dir.path().join(format!("out-{threads}"));
        let o = argus(&[
            "--nab",
            s(&root),
            "--out",
            s(&out),
            "--threads",
            threads,
            "--no-plots",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        (
            std::fs::read(out.join("results/argus/synthetic/argus_spike.csv")).unwrap(),
            std::fs::read(out.join("results/argus/quiet/argus_flat.csv")).unwrap(),
            stdout(&o),
        )
    };
    assert_eq!(run("1"), run("3"));
}
