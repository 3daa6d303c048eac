//! Every PromQL expression of the bundle — dashboard panels and variables,
//! alert rules — parses with `promtool`, and every metric it names is
//! exposed by the binaries as built: `argus-agent` and `argus-detector` are
//! started (the agent exporting to the detector, the detector with
//! Alertmanager, remediation and snapshots configured, and one span sent so
//! every family has a sample) and their `/metrics` scraped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use argus_ops::binaries::{Running, binary, exposed_names};
use argus_ops::{grafana, promql, root, tools};

/// Series Prometheus itself makes: `up` per target. Nothing else outside
/// the binaries' `/metrics` may be used.
const PROMETHEUS_SYNTHETIC: [&str; 1] = ["up"];

/// (file, location, expression) of every dashboard and rule expression.
fn all_expressions() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let dir = root().join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "three dashboards in {}", dir.display());
    for f in files {
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for e in grafana::expressions(&d).unwrap_or_else(|e| panic!("{}: {e}", f.display())) {
            out.push((file_name(&f), e.location, e.expr));
        }
    }
    let rules = root().join("alerts/argus-rules.yaml");
    let y: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&rules).unwrap()).unwrap();
    for g in y["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            out.push((
                "alerts/argus-rules.yaml".into(),
                name.to_string(),
                r["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

fn file_name(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// The problems of a set of expressions against the exposed names: syntax
/// (promtool), variables outside strings, and unknown metrics.
fn problems(exprs: &[(String, String, String)], exposed: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rules = String::from("groups:\n  - name: bundle\n    rules:\n");
    let mut index = BTreeMap::new();
    for (i, (file, loc, expr)) in exprs.iter().enumerate() {
        let expanded = match promql::expand_grafana(expr) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{file}: {loc}: {e}"));
                continue;
            }
        };
        let record = format!("bundle_expr_{i}");
        rules.push_str(&format!(
            "      - record: {record}\n        expr: {}\n",
            serde_json::to_string(&expanded).unwrap()
        ));
        index.insert(record, (file, loc));
        match promql::metric_names(&expanded) {
            Ok(names) => {
                for n in names {
                    if !exposed.contains(&n) && !PROMETHEUS_SYNTHETIC.contains(&n.as_str()) {
                        problems.push(format!(
                            "{file}: {loc}: metric {n} is not exposed by argus-agent or argus-detector"
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("{file}: {loc}: {e}")),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.rules.yaml");
    std::fs::write(&path, &rules).unwrap();
    let (ok, out) = tools::run("promtool", &["check", "rules", path.to_str().unwrap()]);
    if !ok {
        // Name the expression behind promtool's "group …, rule N" message.
        let mut msg = format!("promtool check rules failed:\n{out}");
        for (record, (file, loc)) in &index {
            let n: usize = record.trim_start_matches("bundle_expr_").parse().unwrap();
            if out.contains(&format!("rule {}", n + 1)) || out.contains(record.as_str()) {
                msg.push_str(&format!("\n  → {file}: {loc}"));
            }
        }
        problems.push(msg);
    }
    problems
}

fn start_binaries(dir: &Path) -> (Running, Running) {
    let secret = dir.join("webhook-secret");
    std::fs::write(&secret, format!("whsec_{}", "a2".repeat(24))).unwrap();
    let det_cfg = dir.join("detector.yaml");
    std::fs::write(
        &det_cfg,
        format!(
            r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:0" }}
  http: {{ endpoint: "127.0.0.1:0" }}
scoring:
  snapshot: {{ dir: "{snap}" }}
alerting:
  alertmanager: {{ urls: ["http://127.0.0.1:9"] }}
remediation:
  secret: {{ file: "{secret}" }}
  audit_log: "{audit}"
  rules:
    - name: restart
      match: ['service="checkout"']
      action: {{ url: "http://127.0.0.1:9/restart" }}
ops: {{ listen: "127.0.0.1:0" }}
"#,
            snap = dir.join("snapshots").display(),
            secret = secret.display(),
            audit = dir.join("audit.jsonl").display(),
        ),
    )
    .unwrap();
    let detector = Running::start(&binary("argus-detector", &["detector", "common"]), &det_cfg);
    // The receivers log their bound addresses (ports are chosen by the OS).
    let addr = |transport: &str| -> String {
        let re = regex::Regex::new(r"(127\.0\.0\.1:\d+)").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = detector.log();
            let found = log
                .lines()
                .filter(|l| l.contains("OTLP receiver listening"))
                .filter(|l| l.contains(&format!("\"{transport}\"")))
                .find_map(|l| re.captures(l).map(|c| c[1].to_string()));
            if let Some(a) = found {
                return a;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {transport} receiver in the detector log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (grpc, http) = (addr("grpc"), addr("http"));

    let agent_cfg = dir.join("agent.yaml");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(
        &agent_cfg,
        format!(
            r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:0" }}
  http: {{ endpoint: "127.0.0.1:0" }}
file: {{ include: ["{logs}/*.log"] }}
host: {{ interval: 1s, filesystem: {{ stat_timeout: 500ms }} }}
scrape: {{ targets: [{{ url: "http://127.0.0.1:9/metrics" }}] }}
queue: {{ dir: "{queue}" }}
exporter: {{ endpoint: "http://{grpc}" }}
ops: {{ listen: "127.0.0.1:0" }}
"#,
            logs = dir.join("logs").display(),
            queue = dir.join("queue").display(),
        ),
    )
    .unwrap();
    let agent = Running::start(&binary("argus-agent", &["agent", "common"]), &agent_cfg);

    // One SERVER span, so the detector's latency histogram has a sample.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"checkout"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /pay","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}"}}]}}]}}]}}"#,
        now - 20_000_000,
        now
    );
    let mut s = std::net::TcpStream::connect(&http).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "POST /v1/traces HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "span not accepted: {resp}"
    );
    (agent, detector)
}

#[test]
fn every_expression_parses_and_names_only_metrics_the_binaries_expose() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, detector) = start_binaries(dir.path());
    let agent_metrics = agent.metrics_when(Duration::from_secs(30), |m| {
        m.contains("argus_agent_records_sent_total{signal=\"metrics\"} ")
            && !m.contains("argus_agent_records_sent_total{signal=\"metrics\"} 0\n")
    });
    let detector_metrics = detector.metrics_when(Duration::from_secs(30), |m| {
        m.contains("argus_detector_span_latency_seconds_bucket")
    });
    let mut exposed = exposed_names(&agent_metrics);
    exposed.extend(exposed_names(&detector_metrics));
    // The set is what the running binaries expose, not a list in this test.
    for family in [
        "argus_agent_records_sent_total",
        "argus_agent_export_requests_total",
        "argus_detector_span_latency_seconds_bucket",
        "argus_detector_alertmanager_requests_total",
        "argus_detector_remediation_actions_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            exposed.contains(family),
            "{family} missing\nagent:\n{agent_metrics}\ndetector:\n{detector_metrics}\nagent log:\n{}",
            agent.log()
        );
    }
    // The exemplar carries the span's trace id (OpenMetrics scrape).
    let (_, om) = argus_ops::binaries::http_get_accept(
        detector.ops,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    );
    assert!(
        om.lines().any(
            |l| l.starts_with("argus_detector_span_latency_seconds_bucket")
                && l.contains(r#"service="checkout""#)
                && l.contains(r#"# {trace_id="5b8efff798038103d269b633813fc60c"}"#)
        ),
        "the span's trace id is the exemplar of its bucket:\n{om}"
    );
    let exprs = all_expressions();
    assert!(exprs.len() > 60, "{} expressions", exprs.len());
    let p = problems(&exprs, &exposed);
    assert!(p.is_empty(), "{} problems:\n{}", p.len(), p.join("\n"));
}

/// The check has teeth: a dashboard naming a metric nobody exposes, a
/// syntax error, or a variable promtool cannot see through all fail it.
#[test]
fn a_missing_metric_or_bad_syntax_fails_the_check() {
    let exposed: BTreeSet<String> = ["argus_agent_records_received_total".to_string()].into();
    let dashboard = serde_json::json!({
        "panels": [{"title": "bad", "targets": [
            {"refId": "A", "expr": "sum(rate(argus_agent_records_received_total[$__rate_interval]))"},
            {"refId": "B", "expr": "sum(rate(argus_agent_recods_received_total[$__rate_interval]))"},
            {"refId": "C", "expr": "sum(rate(argus_agent_records_received_total[5m])"},
            {"refId": "D", "expr": "topk($n, argus_agent_records_received_total)"}
        ]}]
    });
    let exprs: Vec<_> = grafana::expressions(&dashboard)
        .unwrap()
        .into_iter()
        .map(|e| ("bad.json".to_string(), e.location, e.expr))
        .collect();
    let p = problems(&exprs, &exposed);
    let text = p.join("\n");
    assert!(
        text.contains("target B: metric argus_agent_recods_received_total is not exposed"),
        "{text}"
    );
    assert!(text.contains("promtool check rules failed"), "{text}");
    assert!(
        text.contains("target D: a Grafana variable outside a string literal"),
        "{text}"
    );
    assert!(!text.contains("target A"), "{text}");
}
