//! The notifier against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, installed by `scripts/setup-peers.sh`): what we
//! send is what Alertmanager stores, resolution removes it, and after a
//! `kill -9` and restart (Alertmanager keeps no alerts on disk) the alert is
//! back within one resend interval. Real time, short intervals.

#[path = "support/alertmanager.rs"]
mod alertmanager;
#[path = "support/metrics.rs"]
mod metrics;

use std::time::{Duration, Instant, SystemTime};

use argus_common::backoff::BackoffConfig;
use argus_common::shutdown::Shutdown;
use argus_detector::alert::{Alert, AlertKey, AlertmanagerConfig};
use prometheus_client::registry::Registry;
use serde_json::Value;

use alertmanager::Alertmanager;

const RESEND: Duration = Duration::from_secs(2);

/// Polls `GET /api/v2/alerts` until `pred` holds, at most `within`.
async fn wait_for(
    am: &Alertmanager,
    within: Duration,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, Duration) {
    let start = Instant::now();
    loop {
        let alerts = am.alerts().await;
        if pred(&alerts) {
            return (alerts, start.elapsed());
        }
        if start.elapsed() > within {
            panic!(
                "{what}: not within {within:?}; Alertmanager has {alerts:#?}\nits log:\n{}",
                am.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn named<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"]["alertname"] == name)
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339_weak(v.as_str().unwrap().trim_end_matches('Z')).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_stores_resolves_and_relearns_after_a_restart() {
    let mut am = Alertmanager::start().await;
    let mut cfg = AlertmanagerConfig::new([reqwest::Url::parse(&am.url()).unwrap()]);
    cfg.resend_interval = RESEND;
    cfg.resolved_retention = Duration::from_secs(10);
    cfg.timeout = Duration::from_secs(2);
    cfg.retry = BackoffConfig {
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_millis(400),
        multiplier: 2.0,
    };
    let mut registry = Registry::with_prefix("argus_detector");
    let (notifier, task) = cfg.build(&mut registry).unwrap();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(task.run(shutdown.clone(), Duration::from_secs(3)));

    // Fire: Alertmanager holds it with our labels, annotations and link.
    let mut alert = Alert::new([
        ("alertname", "ArgusLatencyAnomaly"),
        ("severity", "warning"),
        ("service", "checkout"),
        ("namespace", "payments"),
    ])
    .annotate("summary", "p99 latency of checkout is 3.1× its baseline")
    .annotate("runbook_url", "https://runbooks.example/checkout-latency");
    alert.generator_url = Some("http://argus-detector:8080/series/checkout".into());
    let key = AlertKey::fingerprint(&alert.labels);
    let fired_at = SystemTime::now();
    notifier.fire(key.clone(), alert.clone()).unwrap();

    let (alerts, _) = wait_for(&am, Duration::from_secs(10), "alert stored", |a| {
        named(a, "ArgusLatencyAnomaly").is_some()
    })
    .await;
    let got = named(&alerts, "ArgusLatencyAnomaly").unwrap();
    assert_eq!(got["labels"]["service"], "checkout");
    assert_eq!(got["labels"]["severity"], "warning");
    assert_eq!(
        got["annotations"]["summary"],
        "p99 latency of checkout is 3.1× its baseline"
    );
    assert_eq!(
        got["generatorURL"],
        "http://argus-detector:8080/series/checkout"
    );
    assert_eq!(got["status"]["state"], "active");
    assert_eq!(
        got["fingerprint"],
        key.as_str(),
        "our key is Alertmanager's own fingerprint"
    );
    let starts = time(&got["startsAt"]);
    let ends = time(&got["endsAt"]);
    let skew = |a: SystemTime, b: SystemTime| {
        a.duration_since(b)
            .unwrap_or_else(|e| e.duration())
            .as_secs_f64()
    };
    assert!(skew(starts, fired_at) < 1.0, "startsAt is the fire time");
    let validity = ends.duration_since(starts).unwrap();
    assert!(
        validity >= RESEND * 4 - Duration::from_secs(1) && validity <= RESEND * 4 + RESEND,
        "endsAt ≈ now + 4 × resend: {validity:?}"
    );

    // Resolve: gone from the active list.
    assert!(notifier.resolve(&key, SystemTime::now()));
    wait_for(&am, Duration::from_secs(10), "alert resolved", |a| {
        named(a, "ArgusLatencyAnomaly").is_none()
    })
    .await;

    // A second incident, then Alertmanager dies mid-incident (kill -9) and
    // comes back empty: the next resend brings the alert back, with its
    // original start.
    let second = Alert::new([("alertname", "ArgusErrorBurst"), ("service", "ledger")])
        .annotate("summary", "5xx rate 40× its baseline");
    let second_key = AlertKey::fingerprint(&second.labels);
    notifier.fire(second_key, second).unwrap();
    let (alerts, _) = wait_for(&am, Duration::from_secs(10), "second alert stored", |a| {
        named(a, "ArgusErrorBurst").is_some()
    })
    .await;
    let first_start = named(&alerts, "ArgusErrorBurst").unwrap()["startsAt"].clone();

    am.kill();
    // Down for longer than a resend interval: at least one resend fails and
    // is retried with backoff.
    tokio::time::sleep(RESEND + Duration::from_millis(500)).await;
    am.restart().await;
    let (alerts, took) = wait_for(
        &am,
        RESEND + Duration::from_secs(3),
        "alert back after restart",
        |a| named(a, "ArgusErrorBurst").is_some(),
    )
    .await;
    assert!(
        took <= RESEND + Duration::from_millis(600),
        "back within one resend interval (+ one backoff step): {took:?}"
    );
    let back = named(&alerts, "ArgusErrorBurst").unwrap();
    assert_eq!(back["startsAt"], first_start, "same incident, same start");
    assert_eq!(back["status"]["state"], "active");
    assert!(
        named(&alerts, "ArgusLatencyAnomaly").is_none(),
        "the resolved alert is not resurrected"
    );
    let failed = metrics::sample(
        &registry,
        "argus_detector_alertmanager_requests_total",
        &[("alertmanager", "0"), ("outcome", "unreachable")],
    );
    assert!(failed >= 1.0, "the outage was seen and counted");

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the notifier stops within its grace period")
        .unwrap();
}
