//! `argus-detector validate-config FILE` names every problem at once, with
//! its field path, and exits 1; a good file (and the printed defaults,
//! minus `ingest.step`) passes; the environment overrides are applied as
//! `run` applies them.

use std::process::Command;

fn validate(file: &std::path::Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_argus-detector"));
    c.arg("validate-config").arg(file);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        r#"
receiver:
  grpc: { endpoint: "localhost" }
scoring: { step: 500ms, recent_points: 0 }
incidents: { entity_labels: [service, service] }
alerting:
  alertmanager: { urls: ["ftp://am:9093"] }
  labels: { severity: page }
remediation:
  rules:
    - name: r
      match: ['service=~"("']
      action: { url: "not a url" }
outputs: { runbook_url: "https://r/{{nope}}" }
maintenance:
  windows: [{ match: '{service="x"}', start: 2025-01-02T00:00:00Z, end: 2025-01-01T00:00:00Z }]
ops: { listen: ":4318" }
engine: { recover: 0.9 }
"#,
    )
    .unwrap();
    let (code, out) = validate(&bad, &[]);
    assert_eq!(code, 1, "{out}");
    for path in [
        "receiver.grpc.endpoint:",
        "scoring.step:",
        "scoring.recent_points:",
        "incidents.entity_labels[1]:",
        "alerting.alertmanager.urls[0]:",
        "alerting.labels.severity:",
        "remediation.rules[0]",
        "outputs.runbook_url:",
        "maintenance.windows[0].end:",
        "ops.listen: same address as receiver.http.endpoint",
        "engine.recover:",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(path)),
            "{path} missing:\n{out}"
        );
    }
    let n: usize = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        n,
        out.lines().count() - 1,
        "the count matches the list:\n{out}"
    );
}

#[test]
fn good_files_and_env_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "scoring: { step: 30s, clock: event }\nalerting: { alertmanager: { urls: [\"http://am:9093\"] } }\n",
    )
    .unwrap();
    let (code, out) = validate(&good, &[]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{}: ok", good.display()).as_str())
    );
    let (code, out) = validate(&good, &[("ARGUS_DETECTOR__SCORING__CLOCK", "sundial")]);
    assert_eq!(code, 1);
    assert!(out.contains("sundial"), "{out}");

    // The printed defaults are a valid config once the derived ingest.step
    // is dropped.
    let out = Command::new(env!("CARGO_BIN_EXE_argus-detector"))
        .arg("print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut doc: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    doc["ingest"].as_mapping_mut().unwrap().remove("step");
    let defaults = dir.path().join("defaults.yaml");
    std::fs::write(&defaults, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let (code, out) = validate(&defaults, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(doc["ops"]["listen"], "0.0.0.0:9095");
}
