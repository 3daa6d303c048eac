//! An alert storm through the whole service: 1 000 services' gauges jump
//! at once, 1 000 incidents open, and the remediation breaker lets exactly
//! `max_actions_per_hour` signed webhooks out (verified by the shipped
//! example receiver); dry run sends none; the audit log has a line for
//! every decision.

#[path = "../examples/webhook_receiver.rs"]
mod example;
#[path = "support/detector.rs"]
mod kit;
#[path = "support/remediation.rs"]
mod rkit;

use std::collections::BTreeSet;

use argus_common::shutdown::Shutdown;
use argus_detector::config::DetectorConfig;

const SERVICES: usize = 1000;
const BREAKER: usize = 10;

struct Storm {
    receiver: rkit::Receiver,
    audit: Vec<serde_json::Value>,
    incidents: BTreeSet<String>,
}

async fn storm(dry_run: bool) -> Storm {
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
ingest:
  series: {{ max_per_name: 5000 }}
engine: {{ warmup: 100 }}
scoring: {{ step: 1s, clock: event }}
remediation:
  dry_run: {dry_run}
  max_actions_per_hour: {BREAKER}
  max_concurrent: 4
  audit_log: "{audit}"
  secret: {{ file: "{secret}" }}
  rules:
    - name: restart
      match: ['alertname="ArgusAnomaly"']
      target: [service]
      action: {{ url: "{url}" }}
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
    let services: Vec<String> = (0..SERVICES).map(|i| format!("svc-{i:04}")).collect();

    // Data time ends before the (test) wall clock, as real data does.
    let d0 = rkit::EPOCH_SECS as i64 - 400;
    for k in 0..160 {
        let t = d0 + k;
        let spike = k >= 140;
        otlp.metrics(kit::gauges(&services, "queue.depth", t, |i| {
            let base = 100.0 + 10.0 * kit::noise(t as u64, i as u64);
            if spike { base * 20.0 } else { base }
        }))
        .await
        .unwrap();
    }
    // Every service's incident is open (it stays open: the spike goes on).
    let incidents = kit::eventually(60, "1000 open incidents", || {
        let api = api.clone();
        async move {
            let v = kit::get_json(&format!("{api}/api/v1/incidents?state=open&limit=1000")).await;
            let ids: BTreeSet<String> = v["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["entity"]["value"].as_str().unwrap().starts_with("svc-"))
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect();
            (ids.len() >= SERVICES).then_some(ids)
        }
    })
    .await;
    shutdown.trigger();
    running.wait().await.unwrap();
    Storm {
        receiver,
        audit: rkit::audit_lines(&audit),
        incidents,
    }
}

fn check_audit(s: &Storm, acted: &str) -> usize {
    let tally = rkit::tally(&s.audit);
    let matched: BTreeSet<&str> = s
        .audit
        .iter()
        .filter(|l| l["decision"] == "matched")
        .map(|l| l["incident_id"].as_str().unwrap())
        .collect();
    for id in &s.incidents {
        assert!(
            matched.contains(id.as_str()),
            "incident {id} has no audit line: {tally:?}"
        );
    }
    let m = tally["matched"];
    assert!(m >= SERVICES, "{tally:?}");
    assert_eq!(tally.get(acted).copied().unwrap_or(0), BREAKER, "{tally:?}");
    assert_eq!(tally["skipped/breaker_open"], m - BREAKER, "{tally:?}");
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_1000_incidents_triggers_only_what_the_breaker_allows() {
    let s = storm(false).await;
    check_audit(&s, "sent");
    let reqs = s.receiver.requests();
    assert_eq!(
        reqs.len(),
        BREAKER,
        "exactly the breaker's worth of webhooks"
    );
    for r in &reqs {
        assert!(
            r.verdict.is_ok(),
            "signature verified by the example receiver: {:?}",
            r.verdict
        );
        let body = r.json();
        assert_eq!(body["type"], "argus.remediation.v1");
        assert!(
            s.incidents.contains(body["incident_id"].as_str().unwrap()),
            "{body}"
        );
        assert_eq!(body["labels"]["alertname"], "ArgusAnomaly");
        assert!(
            body["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("queue.depth"),
            "{body}"
        );
    }
    let targets: BTreeSet<String> = reqs
        .iter()
        .map(|r| r.json()["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(targets.len(), BREAKER, "one action per target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_audits_the_same_decisions() {
    let s = storm(true).await;
    check_audit(&s, "dry_run");
    assert!(s.receiver.requests().is_empty(), "dry run sent a webhook");
    assert!(s.audit.iter().all(|l| l["dry_run"] == true));
}
