//! End to end against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, from `scripts/setup-peers.sh`): the real
//! `argus-detector` binary receives OTLP spans over gRPC with real
//! timestamps (event clock), learns five minutes of history, sees a 10×
//! latency regression, and Alertmanager ends up holding the alert with the
//! documented labels and annotations — exemplar trace ids of the slow
//! requests and the error log template their records share included.
//! Alertmanager is restarted during the incident (it keeps no alerts
//! across restarts) and gets the alert back by the resend. After recovery
//! the alert resolves.

#[path = "support/alertmanager.rs"]
mod alertmanager;
#[path = "support/detector.rs"]
mod kit;

use std::time::Duration;

fn config(am: &str, grpc: u16, http: u16, ops: u16) -> String {
    format!(
        r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
  http: {{ endpoint: "127.0.0.1:{http}" }}
scoring: {{ step: 1s, clock: event }}
incidents: {{ window: 3s }}
alerting:
  alertmanager:
    urls: ["{am}"]
    resend_interval: 1s
    resolved_retention: 20s
    retry: {{ initial_interval: 100ms, max_interval: 1s, multiplier: 2 }}
  labels: {{ cluster: e2e }}
outputs:
  dashboard_url: "https://grafana.example/d/argus?var-service={{{{service}}}}&from={{{{from_ms}}}}&to={{{{to_ms}}}}"
  runbook_url: "https://runbooks.example/argus/{{{{signal}}}}"
  external_url: "http://127.0.0.1:{ops}"
ops: {{ listen: "127.0.0.1:{ops}" }}
"#
    )
}

fn find<'a>(alerts: &'a [serde_json::Value], service: &str) -> Option<&'a serde_json::Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "ArgusAnomaly" && a["labels"]["service"] == service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_regression_pages_through_a_real_alertmanager() {
    let mut am = alertmanager::Alertmanager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http, ops) = (kit::free_port(), kit::free_port(), kit::free_port());
    let mut det = kit::Process::start(
        dir.path(),
        &config(&am.url(), grpc, http, ops),
        ops,
        grpc,
        http,
    )
    .await;
    let otlp = kit::Otlp::new(det.grpc.clone(), None);

    let t0 = kit::now_secs() - 900;
    for k in 0..300 {
        otlp.traces(kit::spans(
            "checkout",
            "prod",
            "POST /pay",
            t0 + k,
            20,
            50.0,
            1,
        ))
        .await
        .unwrap();
        otlp.traces(kit::spans("search", "prod", "GET /q", t0 + k, 20, 20.0, 1))
            .await
            .unwrap();
    }
    for k in 300..320 {
        otlp.traces(kit::spans(
            "checkout",
            "prod",
            "POST /pay",
            t0 + k,
            20,
            500.0,
            2,
        ))
        .await
        .unwrap();
        otlp.traces(kit::spans("search", "prod", "GET /q", t0 + k, 20, 20.0, 1))
            .await
            .unwrap();
        let slow = kit::slowest(t0 + k, 20, 3, 2);
        otlp.logs(kit::error_logs(
            "checkout",
            "prod",
            t0 + k,
            "payment gateway timeout after 5023 ms",
            &slow,
        ))
        .await
        .unwrap();
    }

    let alert = kit::eventually(
        30,
        "the checkout alert in Alertmanager with its log template",
        || {
            let am = &am;
            async move {
                let alerts = am.alerts().await;
                find(&alerts, "checkout")
                    .filter(|a| {
                        a["annotations"]["log_templates"]
                            .as_str()
                            .is_some_and(|t| t.contains("payment gateway timeout"))
                    })
                    .cloned()
            }
        },
    )
    .await;
    let l = &alert["labels"];
    assert_eq!(l["namespace"], "prod", "{alert:#}");
    assert_eq!(l["signal"], "traces");
    assert_eq!(l["cluster"], "e2e", "static labels");
    assert!(
        ["warning", "critical"].contains(&l["severity"].as_str().unwrap()),
        "{alert:#}"
    );
    let a = &alert["annotations"];
    for k in [
        "summary",
        "description",
        "expected",
        "observed",
        "band",
        "top_series",
        "trace_ids",
        "log_templates",
        "dashboard_url",
        "runbook_url",
        "incident_id",
        "models",
        "score",
    ] {
        assert!(
            a[k].as_str().is_some_and(|v| !v.is_empty()),
            "annotation {k} missing: {alert:#}"
        );
    }
    let traces: Vec<&str> = a["trace_ids"].as_str().unwrap().split(',').collect();
    assert!(
        !traces.is_empty() && traces.iter().all(|t| t.len() == 32 && t.starts_with("02")),
        "slow-span exemplars: {traces:?}"
    );
    assert!(
        a["summary"]
            .as_str()
            .unwrap()
            .starts_with("checkout: span.latency"),
        "{a:#}"
    );
    assert!(
        a["top_series"]
            .as_str()
            .unwrap()
            .contains("service=\"checkout\""),
        "{a:#}"
    );
    assert_eq!(a["runbook_url"], "https://runbooks.example/argus/traces");
    let id = a["incident_id"].as_str().unwrap().to_string();
    assert_eq!(
        alert["generatorURL"],
        format!("http://127.0.0.1:{ops}/api/v1/incidents/{id}").as_str()
    );
    // startsAt is the incident's start in data time (the regression), not now.
    let starts = humantime::parse_rfc3339_weak(
        alert["startsAt"]
            .as_str()
            .unwrap()
            .trim_end_matches('Z')
            .split('.')
            .next()
            .unwrap(),
    )
    .unwrap()
    .duration_since(std::time::UNIX_EPOCH)
    .unwrap()
    .as_secs() as i64;
    assert!(
        (t0 + 300..=t0 + 320).contains(&starts),
        "startsAt {starts} vs regression at {}",
        t0 + 300
    );
    assert!(
        find(&am.alerts().await, "search").is_none(),
        "the calm service does not page"
    );

    // Alertmanager restarts mid-incident and forgets its alerts; the resend
    // brings the alert back.
    am.restart().await;
    kit::eventually(15, "the alert back after the Alertmanager restart", || {
        let am = &am;
        async move { find(&am.alerts().await, "checkout").map(|_| ()) }
    })
    .await;

    // Recovery: the series calm down (engine hysteresis), the quiet window
    // passes, the incident resolves and so does the alert.
    for k in 320..400 {
        otlp.traces(kit::spans(
            "checkout",
            "prod",
            "POST /pay",
            t0 + k,
            20,
            50.0,
            1,
        ))
        .await
        .unwrap();
        otlp.traces(kit::spans("search", "prod", "GET /q", t0 + k, 20, 20.0, 1))
            .await
            .unwrap();
    }
    kit::eventually(30, "the alert resolved in Alertmanager", || {
        let am = &am;
        async move { find(&am.alerts().await, "checkout").is_none().then_some(()) }
    })
    .await;
    let inc = kit::get_json(&format!("{}/api/v1/incidents/{id}", det.ops)).await;
    assert_eq!(inc["state"], "resolved", "{inc:#}");
    assert!(inc["resolved_at"].as_i64().unwrap() < t0 + 400);

    let status = det.stop();
    assert!(
        status.success(),
        "graceful exit: {status}\n{}",
        det.log_text()
    );
    let log = det.log_text();
    assert!(
        log.contains("incident opened") && log.contains("incident resolved"),
        "{log}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}
