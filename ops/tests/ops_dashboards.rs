//! The dashboards are what current Grafana provisions: schema 39+, the
//! Prometheus datasource chosen through `${datasource}` on every panel and
//! query, the variables users filter by, and the panels the issue asks for
//! (the metric side is checked by ops_metrics.rs).

use argus_ops::root;
use serde_json::Value;

fn load(name: &str) -> Value {
    let p = root().join("dashboards").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn panels(d: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stack: Vec<Value> = d["panels"].as_array().unwrap().clone();
    while let Some(p) = stack.pop() {
        if let Some(c) = p["panels"].as_array() {
            stack.extend(c.iter().cloned());
        }
        out.push(p);
    }
    out
}

fn variables(d: &Value) -> Vec<String> {
    d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_dashboard_is_current_schema_with_a_datasource_variable() {
    let mut uids = Vec::new();
    for (file, vars) in [
        (
            "anomalies-overview.json",
            &["datasource", "namespace", "service"][..],
        ),
        (
            "service-health.json",
            &["datasource", "tracing", "namespace", "service"][..],
        ),
        ("agent-fleet.json", &["datasource", "job", "node"][..]),
    ] {
        let d = load(file);
        assert!(d["schemaVersion"].as_u64().unwrap() >= 39, "{file}");
        assert!(
            d["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u.len() <= 40),
            "{file}: uid"
        );
        uids.push(d["uid"].as_str().unwrap().to_string());
        let ds = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{file}: no $datasource"));
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        let got = variables(&d);
        for v in vars {
            assert!(got.iter().any(|g| g == v), "{file}: no ${v} ({got:?})");
        }
        let mut ids = Vec::new();
        for p in panels(&d) {
            ids.push(p["id"].as_u64().unwrap());
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap();
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: panel {title:?}"
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{file}: panel {title:?}"
                );
            }
            assert!(
                p["gridPos"]["w"].as_u64().is_some(),
                "{file}: {title:?} gridPos"
            );
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{file}: panel ids unique");
    }
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 3, "dashboard uids unique");
}

fn exprs_of(d: &Value) -> String {
    panels(d)
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn panels_the_issue_asks_for() {
    let a = exprs_of(&load("anomalies-overview.json"));
    for m in [
        "argus_detector_incidents_open",
        "argus_detector_series_anomaly_score",
        "topk(",
        "argus_detector_alerts_sent_total",
        "argus_detector_remediation_actions_total",
    ] {
        assert!(a.contains(m), "anomalies overview lacks {m}");
    }
    assert!(
        panels(&load("anomalies-overview.json"))
            .iter()
            .any(|p| p["type"] == "heatmap"),
        "anomaly score heatmap"
    );

    let s = load("service-health.json");
    let e = exprs_of(&s);
    for series in ["span.requests", "span.error_ratio", "span.latency.p99"] {
        for m in ["value", "expected", "lower", "upper"] {
            assert!(
                e.contains(&format!("argus_detector_series_{m}{{series=\"{series}\"")),
                "RED {series}: no {m} overlay"
            );
        }
    }
    assert!(
        e.contains("log.new_error_templates") && e.contains("signal=\"logs\""),
        "log-template anomalies"
    );
    // Exemplars on, linking to the trace datasource by trace_id.
    let latency = panels(&s)
        .into_iter()
        .find(|p| {
            p["targets"].as_array().is_some_and(|t| {
                t.iter().any(|t| {
                    t["expr"]
                        .as_str()
                        .unwrap_or("")
                        .contains("argus_detector_span_latency_seconds_bucket")
                        && t["exemplar"] == true
                })
            })
        })
        .expect("a latency panel with exemplars on");
    let links = latency["fieldConfig"]["defaults"]["links"].to_string();
    assert!(
        links.contains("${tracing}") && links.contains("trace_id"),
        "{links}"
    );

    let f = exprs_of(&load("agent-fleet.json"));
    for m in [
        "argus_agent_records_received_total",
        "argus_agent_records_sent_total",
        "argus_agent_records_dropped_total",
        "argus_agent_queue_bytes",
        "argus_agent_queue_oldest_record_age_seconds",
        "argus_agent_export_duration_seconds_bucket",
        "argus_agent_export_requests_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(f.contains(m), "agent fleet lacks {m}");
    }
    assert!(f.contains("by (node"), "per node");
}

#[test]
fn provisioning_points_at_the_dashboards_and_links_exemplars_to_traces() {
    let p: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("dashboards/provisioning/dashboards.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(p["apiVersion"], 1);
    assert_eq!(p["providers"][0]["type"], "file");
    let ds: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("dashboards/provisioning/datasources.yaml")).unwrap(),
    )
    .unwrap();
    let prom = ds["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "prometheus")
        .unwrap();
    assert_eq!(
        prom["jsonData"]["exemplarTraceIdDestinations"][0]["name"],
        "trace_id"
    );
}
