//! Remediation safeguards, each as a user would see it: in the webhooks the
//! endpoint receives, the audit log, the escalations and the metrics.
//! Paused tokio time for cooldown, breaker and verification windows.

#[path = "../examples/webhook_receiver.rs"]
mod example;
#[path = "support/remediation.rs"]
mod kit;
#[path = "support/metrics.rs"]
mod metrics;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use argus_detector::remediation::{EscalationReason, Outcome, SkipReason};
use kit::{Reply, audit_lines, decisions, tally};
use metrics::sample;

async fn sleep(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

fn actions(run: &kit::Running, outcome: &str) -> f64 {
    sample(
        &run.registry,
        "argus_detector_remediation_actions_total",
        &[("rule", "restart"), ("outcome", outcome)],
    )
}

#[tokio::test(start_paused = true)]
async fn an_alert_storm_gets_no_more_actions_than_the_breaker_allows() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &rx.url());
    cfg.max_actions_per_hour = 5;
    let run = kit::start(&cfg, t0);

    // 1,000 matching alerts on 1,000 different pods within ten seconds.
    let mut admitted = 0;
    for i in 0..1000 {
        let d = run.alert(&format!("inc-{i}"), "checkout", &format!("pod-{i}"));
        if matches!(d[0].outcome, Outcome::Admitted { .. }) {
            admitted += 1;
        } else {
            assert_eq!(d[0].outcome, Outcome::Skipped(SkipReason::BreakerOpen));
        }
        if i % 100 == 0 {
            sleep(1.0).await;
        }
    }
    sleep(5.0).await;
    assert_eq!(admitted, 5);
    assert_eq!(
        rx.accepted().len(),
        5,
        "exactly the breaker's budget reached the endpoint"
    );
    let gauge = |run: &kit::Running| {
        sample(
            &run.registry,
            "argus_detector_remediation_breaker_open",
            &[],
        )
    };
    assert_eq!(gauge(&run), 1.0);
    assert_eq!(actions(&run, "skipped_breaker_open"), 995.0);
    assert_eq!(actions(&run, "sent"), 5.0);

    // The hour rolls on: the breaker closes by itself, and acts again.
    sleep(3600.0).await;
    assert_eq!(gauge(&run), 0.0, "the gauge follows the rolling window");
    let d = run.alert("inc-late", "checkout", "pod-late");
    assert!(matches!(d[0].outcome, Outcome::Admitted { .. }), "{d:?}");
    sleep(1.0).await;
    assert_eq!(rx.accepted().len(), 6);

    run.stop().await;
    let t = tally(&audit_lines(&dir.path().join("audit.jsonl")));
    assert_eq!(t["matched"], 1001);
    assert_eq!(t["skipped/breaker_open"], 995);
    assert_eq!(t["sent"], 6);
}

#[tokio::test(start_paused = true)]
async fn cooldown_is_per_rule_and_target() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    let dir = tempfile::tempdir().unwrap();
    let run = kit::start(&kit::config(dir.path(), &rx.url()), t0); // cooldown 10m
    let admitted = |d: Vec<argus_detector::remediation::Decision>| {
        matches!(d[0].outcome, Outcome::Admitted { .. })
    };

    assert!(admitted(run.alert("inc-1", "checkout", "a")));
    assert!(
        admitted(run.alert("inc-2", "checkout", "b")),
        "another target acts"
    );
    sleep(60.0).await;
    let d = run.alert("inc-3", "checkout", "a");
    assert_eq!(
        d[0].outcome,
        Outcome::Skipped(SkipReason::Cooldown),
        "same target, 1 min later"
    );
    assert!(
        admitted(run.alert("inc-4", "checkout-eu", "a")),
        "same pod name, other service: another target"
    );
    sleep(540.0).await; // 10 min after the first action
    assert!(
        admitted(run.alert("inc-5", "checkout", "a")),
        "cooldown over"
    );
    sleep(1.0).await;

    let pods: Vec<(String, String)> = rx
        .accepted()
        .iter()
        .map(|r| {
            let j = r.json();
            (
                j["labels"]["service"].as_str().unwrap().to_owned(),
                j["labels"]["pod"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let p = |s: &str, p: &str| (s.to_owned(), p.to_owned());
    assert_eq!(
        pods,
        [
            p("checkout", "a"),
            p("checkout", "b"),
            p("checkout-eu", "a"),
            p("checkout", "a")
        ]
    );
    assert_eq!(actions(&run, "skipped_cooldown"), 1.0);
    run.stop().await;
    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    let skipped: Vec<_> = lines
        .iter()
        .filter(|l| l["decision"] == "skipped")
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["reason"], "cooldown");
    assert_eq!(skipped[0]["incident_id"], "inc-3");
    assert_eq!(skipped[0]["target"], "service=checkout,pod=a");
}

#[tokio::test(start_paused = true)]
async fn dry_run_sends_nothing_and_audits_every_decision() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &rx.url());
    cfg.dry_run = true;
    cfg.max_actions_per_hour = 2;
    let run = kit::start(&cfg, t0);

    let d = run.alert("inc-1", "checkout", "a");
    let Outcome::DryRun {
        webhook_id,
        payload,
    } = &d[0].outcome
    else {
        panic!("{d:?}")
    };
    assert_eq!(payload["type"], "argus.remediation.v1");
    assert_eq!(payload["webhook_id"], webhook_id.as_str());
    assert_eq!(payload["labels"]["pod"], "a");
    assert_eq!(payload["annotations"]["summary"], "p99 3× the baseline");
    run.alert("inc-2", "checkout", "a"); // cooldown, as live
    run.alert("inc-3", "checkout", "b"); // dry run
    run.alert("inc-4", "checkout", "c"); // breaker, as live
    run.remediator
        .on_alert("inc-5", &kit::labels("ledger", "x"), &kit::annotations()); // no match
    sleep(3600.0).await;

    assert!(rx.requests().is_empty(), "dry run sends nothing");
    assert!(run.escalations.lock().is_empty(), "and verifies nothing");
    run.stop().await;
    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    assert_eq!(
        decisions(&lines),
        [
            "matched",
            "dry_run",
            "matched",
            "skipped/cooldown",
            "matched",
            "dry_run",
            "matched",
            "skipped/breaker_open"
        ]
    );
    assert!(lines.iter().all(|l| l["dry_run"] == true));
    assert_eq!(lines[1]["webhook_id"], webhook_id.as_str());
    assert_eq!(actions(&run, "dry_run"), 2.0);
}

#[tokio::test(start_paused = true)]
async fn the_audit_log_has_one_line_per_decision_and_survives_restarts() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let cfg = kit::config(dir.path(), &rx.url());

    let run = kit::start(&cfg, t0);
    run.alert("inc-1", "checkout", "a"); // matched, sent, then verified
    run.alert("inc-2", "checkout", "a"); // matched, skipped/cooldown
    sleep(1.0).await;
    run.incidents.close("inc-1");
    sleep(300.0).await;
    run.stop().await;
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        decisions(&audit_lines(&path)),
        // on_alert decides at once; the webhook's result comes later.
        ["matched", "matched", "skipped/cooldown", "sent", "verified"]
    );

    // The detector was killed mid-write: a torn last line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(br#"{"ts":"2023-11-14T22:20:00.000Z","incident_id":"inc-x","ru"#)
        .unwrap();

    // Restart: the log is appended to, never rewritten.
    let run = kit::start(&cfg, t0);
    run.alert("inc-3", "checkout", "b");
    sleep(1.0).await;
    run.stop().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&first), "earlier lines untouched");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5 + 1 + 3, "5 old, the torn one, 3 new");
    assert!(serde_json::from_str::<serde_json::Value>(lines[5]).is_err());
    let new: Vec<serde_json::Value> = lines[6..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decisions(&new), ["matched", "sent", "unverified/shutdown"]);

    // Every line carries the fields an auditor needs, and never a secret.
    for l in audit_lines_lenient(&text) {
        for field in [
            "ts",
            "incident_id",
            "rule",
            "target",
            "decision",
            "webhook_id",
            "http_status",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
    }
    assert!(
        !text.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "no secret"
    );
    assert!(!text.contains("v1,"), "no signature");
}

fn audit_lines_lenient(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn verification_escalates_an_open_incident_and_verifies_a_cleared_one() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &rx.url());
    cfg.rules[0].escalate.annotation =
        "restart of {{labels.service}}/{{labels.pod}} did not help".into();
    let run = kit::start(&cfg, t0); // verify_after 5m
    let d1 = run.alert("inc-cleared", "checkout", "a");
    let d2 = run.alert("inc-stuck", "checkout", "b");
    sleep(60.0).await;
    run.incidents.close("inc-cleared");
    sleep(239.0).await; // t = 299: not yet
    assert!(run.escalations.lock().is_empty());
    sleep(2.0).await; // t = 301

    let esc = run.escalations.lock().clone();
    assert_eq!(esc.len(), 1, "{esc:?}");
    let Outcome::Admitted { webhook_id } = &d2[0].outcome else {
        panic!()
    };
    assert_eq!(esc[0].incident_id, "inc-stuck");
    assert_eq!(esc[0].webhook_id, *webhook_id);
    assert_eq!(esc[0].reason, EscalationReason::StillOpen);
    assert_eq!(esc[0].severity, "critical");
    assert_eq!(esc[0].annotation, "restart of checkout/b did not help");
    run.stop().await;

    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    let last: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["decision"] == "verified" || l["decision"] == "escalated")
        .map(|l| {
            (
                l["incident_id"].as_str().unwrap().to_owned(),
                decisions(std::slice::from_ref(l))[0].clone(),
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        last,
        [
            ("inc-cleared".to_owned(), "verified".to_owned()),
            ("inc-stuck".to_owned(), "escalated/still_open".to_owned())
        ]
    );
    let Outcome::Admitted { webhook_id: w1 } = &d1[0].outcome else {
        panic!()
    };
    assert!(
        lines
            .iter()
            .any(|l| l["decision"] == "verified" && l["webhook_id"] == w1.as_str())
    );
    let v = |r: &str| {
        sample(
            &run.registry,
            "argus_detector_remediation_verifications_total",
            &[("rule", "restart"), ("result", r)],
        )
    };
    assert_eq!((v("verified"), v("escalated")), (1.0, 1.0));
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_queues_actions_and_drops_those_whose_incident_closed() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    rx.script([Reply::SlowOk(10), Reply::SlowOk(10)]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &rx.url());
    cfg.max_concurrent = 1;
    cfg.rules[0].action.timeout = Duration::from_secs(30);
    let run = kit::start(&cfg, t0);
    run.alert("inc-1", "checkout", "a");
    run.alert("inc-2", "checkout", "b");
    run.alert("inc-3", "checkout", "c");
    sleep(1.0).await;
    let gauge = |name: &str| sample(&run.registry, name, &[]);
    assert_eq!(gauge("argus_detector_remediation_in_flight"), 1.0);
    assert_eq!(gauge("argus_detector_remediation_queued"), 2.0);
    run.incidents.close("inc-3"); // resolves by itself while waiting
    sleep(30.0).await;

    assert_eq!(rx.max_in_flight(), 1, "never two at once");
    let sent: Vec<String> = rx
        .accepted()
        .iter()
        .map(|r| r.json()["incident_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["inc-1", "inc-2"]);
    assert_eq!(gauge("argus_detector_remediation_queued"), 0.0);
    assert_eq!(actions(&run, "skipped_incident_closed"), 1.0);
    run.stop().await;
    let t = tally(&audit_lines(&dir.path().join("audit.jsonl")));
    assert_eq!(t["skipped/incident_closed"], 1);
    assert_eq!(t["sent"], 2);
}

#[tokio::test(start_paused = true)]
async fn shutdown_skips_new_and_waiting_actions_and_returns_within_grace() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    rx.script([Reply::SlowOk(5)]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &rx.url());
    cfg.max_concurrent = 1;
    let run = kit::start(&cfg, t0);
    run.alert("inc-1", "checkout", "a"); // on the wire for 5 s
    run.alert("inc-2", "checkout", "b"); // waits for the slot
    sleep(1.0).await;
    run.shutdown.trigger();
    let d = run.alert("inc-3", "checkout", "c");
    assert_eq!(d[0].outcome, Outcome::Skipped(SkipReason::Shutdown));
    let started = Instant::now();
    assert!(run.remediator.wait(Duration::from_secs(30)).await);
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "the attempt on the wire finishes, nothing waits for verification"
    );
    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    let by_incident = |id: &str| {
        decisions(
            &lines
                .iter()
                .filter(|l| l["incident_id"] == id)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        by_incident("inc-1"),
        ["matched", "sent", "unverified/shutdown"]
    );
    assert_eq!(by_incident("inc-2"), ["matched", "skipped/shutdown"]);
    assert_eq!(by_incident("inc-3"), ["matched", "skipped/shutdown"]);
}

#[tokio::test(start_paused = true)]
async fn an_unwritable_audit_log_stops_actions() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &rx.url());
    // /dev/full accepts the open and fails every write with ENOSPC.
    cfg.audit_log = Some("/dev/full".into());
    let run = kit::start(&cfg, t0);
    run.alert("inc-1", "checkout", "a");
    sleep(5.0).await;
    assert!(rx.requests().is_empty(), "no unaudited action");
    assert_eq!(actions(&run, "skipped_audit_unavailable"), 1.0);
    assert!(
        sample(
            &run.registry,
            "argus_detector_remediation_audit_errors_total",
            &[]
        ) >= 1.0
    );
    run.stop().await;
}

#[tokio::test]
async fn build_names_unusable_secrets_and_audit_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), "http://127.0.0.1:9/hook");
    std::fs::write(dir.path().join("webhook-secret"), "not-a-whsec-secret").unwrap();
    cfg.audit_log = Some(dir.path().join("webhook-secret").join("audit.jsonl"));
    let err = cfg
        .build(
            &mut prometheus_client::registry::Registry::default(),
            |_: &str| true,
            |_| {},
            argus_common::shutdown::Shutdown::new(),
        )
        .unwrap_err();
    assert!(
        err.problems[0]
            .starts_with("remediation.secret: secret #1: a secret must start with whsec_"),
        "{err}"
    );
    assert!(
        err.problems[1].starts_with("remediation.audit_log: "),
        "{err}"
    );
    assert!(
        !err.to_string().contains("not-a-whsec-secret"),
        "never echo a secret"
    );
}
