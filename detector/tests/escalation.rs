//! Remediation wired into incidents: an incident that opens calls the
//! matching webhook (signed, verified by the example receiver); when the
//! incident is still open `verify_after` later, the service escalates it —
//! severity raised to the rule's `escalate.severity`, the rule's annotation
//! added — and the audit log says `escalated/still_open`.

#[path = "../examples/webhook_receiver.rs"]
mod example;
#[path = "support/detector.rs"]
mod kit;
#[path = "support/remediation.rs"]
mod rkit;

use argus_common::shutdown::Shutdown;
use argus_detector::config::DetectorConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_that_does_not_help_escalates_the_incident() {
    let t0 = tokio::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let receiver = rkit::Receiver::start(t0).await;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", rkit::SECRET)).unwrap();
    let audit = dir.path().join("audit.jsonl");
    let yaml = format!(
        r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:0" }}
  http: {{ endpoint: "127.0.0.1:0" }}
engine: {{ warmup: 100 }}
scoring: {{ step: 1s, clock: event }}
alerting: {{ critical_score: 1.0 }}
remediation:
  dry_run: false
  audit_log: "{audit}"
  secret: {{ file: "{secret}" }}
  rules:
    - name: restart-queue
      match: ['service="svc-0000"', 'alertname="ArgusAnomaly"']
      target: [service]
      verify_after: 1s
      action: {{ url: "{url}" }}
      escalate: {{ severity: critical, annotation: "restart of {{{{labels.service}}}} did not help" }}
ops: {{ listen: "127.0.0.1:0" }}
"#,
        audit = audit.display(),
        secret = secret.display(),
        url = receiver.url(),
    );
    let cfg = DetectorConfig::from_yaml_with_env(&yaml, std::iter::empty()).unwrap();
    let shutdown = Shutdown::new();
    let running = argus_detector::service::start_with_clock(cfg, shutdown.clone(), rkit::clock(t0))
        .await
        .unwrap();
    let api = format!("http://{}", running.ops_addr);
    let otlp = kit::Otlp::new(format!("http://{}", running.grpc_addr.unwrap()), None);
    let services = vec!["svc-0000".to_string()];
    let d0 = rkit::EPOCH_SECS as i64 - 400;
    for k in 0..160 {
        let t = d0 + k;
        otlp.metrics(kit::gauges(&services, "queue.depth", t, |_| {
            let base = 100.0 + 10.0 * kit::noise(t as u64, 7);
            if k >= 140 { base * 20.0 } else { base }
        }))
        .await
        .unwrap();
    }
    let inc = kit::eventually(20, "the incident escalated", || {
        let api = api.clone();
        async move {
            let v = kit::get_json(&format!("{api}/api/v1/incidents?state=open")).await;
            v["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["escalations"].as_array().is_some_and(|e| !e.is_empty()))
                .cloned()
        }
    })
    .await;
    assert_eq!(inc["severity"], "critical", "{inc:#}");
    assert_eq!(inc["alert"]["labels"]["severity"], "critical");
    assert_eq!(
        inc["alert"]["annotations"]["escalation"],
        "restart of svc-0000 did not help"
    );
    let reqs = receiver.accepted();
    assert_eq!(reqs.len(), 1, "one signed webhook");
    assert_eq!(reqs[0].json()["incident_id"], inc["id"]);
    let metrics = kit::get_text(&format!("{api}/metrics")).await;
    assert_eq!(
        kit::sample(
            &metrics,
            "argus_detector_incidents_total{event=\"escalated\"} "
        ),
        Some(1.0)
    );
    shutdown.trigger();
    running.wait().await.unwrap();
    let tally = rkit::tally(&rkit::audit_lines(&audit));
    assert_eq!(tally.get("sent"), Some(&1), "{tally:?}");
    assert_eq!(tally.get("escalated/still_open"), Some(&1), "{tally:?}");
}
