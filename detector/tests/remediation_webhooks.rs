//! Remediation webhooks on the wire: Standard Webhooks signatures that the
//! shipped verifying receiver (`examples/webhook_receiver.rs`) accepts, its
//! rejections of forged, tampered, stale and replayed requests, and retries
//! that keep the webhook id. Paused tokio time; the receiver's clock is the
//! same virtual clock.

#[path = "../examples/webhook_receiver.rs"]
mod example;
#[path = "support/remediation.rs"]
mod kit;
#[path = "support/metrics.rs"]
mod metrics;

use std::time::Duration;

use axum::http::HeaderValue;
use tokio::time::Instant;

use argus_detector::remediation::{EscalationReason, Outcome};
use example::{Rejection, Verifier};
use kit::{Reply, audit_lines, decisions};

async fn sleep(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn webhooks_are_signed_so_the_example_receiver_accepts_them() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &rx.url());
    cfg.rules[0].action.payload = Some(serde_json::json!({
        "action": "rollout-restart",
        "deployment": "{{labels.service}}",
        "pod": "{{labels.pod}}",
        "why": "{{annotations.summary}} (incident {{incident.id}})",
        "idempotency_key": "{{webhook.id}}",
    }));
    let run = kit::start(&cfg, t0);
    let d = run.alert("inc-1", "checkout", "checkout-7d9f");
    let Outcome::Admitted { webhook_id } = &d[0].outcome else {
        panic!("{d:?}")
    };
    assert_eq!(d[0].target, "service=checkout,pod=checkout-7d9f");
    sleep(1.0).await;

    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(
        req.verdict,
        Ok(webhook_id.clone()),
        "verifies with the shared secret"
    );
    assert_eq!(req.id(), webhook_id);
    assert_eq!(
        req.timestamp(),
        kit::EPOCH_SECS,
        "the attempt's time, unix seconds"
    );
    assert_eq!(req.headers["content-type"], "application/json");
    assert!(
        req.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .starts_with("v1,")
    );
    assert_eq!(
        req.json(),
        serde_json::json!({
            "action": "rollout-restart",
            "deployment": "checkout",
            "pod": "checkout-7d9f",
            "why": "p99 3× the baseline (incident inc-1)",
            "idempotency_key": webhook_id,
        })
    );
    run.stop().await;
    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    assert_eq!(
        decisions(&lines),
        ["matched", "sent", "unverified/shutdown"]
    );
    assert_eq!(lines[1]["http_status"], 200);
    assert_eq!(lines[1]["webhook_id"], webhook_id.as_str());
    assert_eq!(lines[1]["attempt"], 1);
    assert_eq!(lines[1]["ts"], "2023-11-14T22:13:20.000Z");
}

#[tokio::test(start_paused = true)]
async fn the_receiver_rejects_forged_tampered_stale_and_replayed_requests() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    let dir = tempfile::tempdir().unwrap();
    let run = kit::start(&kit::config(dir.path(), &rx.url()), t0);
    run.alert("inc-1", "checkout", "a");
    sleep(1.0).await;
    let genuine = rx.requests().pop().unwrap();
    assert!(genuine.verdict.is_ok());
    let now = kit::unix(t0);
    let (h, body) = (genuine.headers.clone(), genuine.body.clone());

    // A receiver holding a different secret.
    let other = Verifier::new("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    assert_eq!(other.verify(&h, &body, now), Err(Rejection::BadSignature));

    let fresh = || Verifier::new(kit::SECRET).unwrap();
    // The body changed in transit.
    let mut tampered = body.to_vec();
    let pos = tampered.iter().position(|b| *b == b'a').unwrap();
    tampered[pos] = b'b';
    assert_eq!(
        fresh().verify(&h, &tampered, now),
        Err(Rejection::BadSignature)
    );
    // The id or timestamp changed: both are signed.
    let mut h2 = h.clone();
    h2.insert("webhook-id", HeaderValue::from_static("msg_forged"));
    assert_eq!(
        fresh().verify(&h2, &body, now),
        Err(Rejection::BadSignature)
    );
    let mut h3 = h.clone();
    h3.insert("webhook-timestamp", HeaderValue::from(now + 1));
    assert_eq!(
        fresh().verify(&h3, &body, now),
        Err(Rejection::BadSignature)
    );
    // The genuine request, captured and sent again six minutes later.
    assert_eq!(
        fresh().verify(&h, &body, now + 6 * 60),
        Err(Rejection::StaleTimestamp)
    );
    // ...or again at once: same id, already processed.
    assert_eq!(fresh().verify(&h, &body, now), Ok(genuine.id().to_owned()));
    let v = fresh();
    assert!(v.verify(&h, &body, now).is_ok());
    assert_eq!(v.verify(&h, &body, now + 1), Err(Rejection::Replayed));
    // An unsigned request.
    let mut h4 = h.clone();
    h4.remove("webhook-signature");
    assert_eq!(
        fresh().verify(&h4, &body, now),
        Err(Rejection::MissingHeader("webhook-signature"))
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn retries_reuse_the_webhook_id_with_a_fresh_timestamp_and_signature() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    rx.script([Reply::Status(503), Reply::Status(502)]);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &rx.url());
    // Delays of at least 1 s and 2 s: each attempt lands in a later second.
    cfg.retry.initial_interval = Duration::from_secs(2);
    let run = kit::start(&cfg, t0);
    run.alert("inc-1", "checkout", "a");
    sleep(30.0).await;

    let got = rx.requests();
    assert_eq!(got.len(), 3, "two failures, then success");
    let ids: Vec<&str> = got.iter().map(|r| r.id()).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one id for every attempt: {ids:?}"
    );
    assert!(
        got.iter().all(|r| r.verdict.is_ok()),
        "each attempt verifies (a failed attempt does not burn the id)"
    );
    let ts: Vec<u64> = got.iter().map(|r| r.timestamp()).collect();
    assert!(ts[0] < ts[1] && ts[1] < ts[2], "fresh timestamps: {ts:?}");
    let sigs: Vec<&str> = got
        .iter()
        .map(|r| r.headers["webhook-signature"].to_str().unwrap())
        .collect();
    assert_ne!(sigs[0], sigs[1]);
    assert_eq!(got[0].body, got[2].body, "same body");

    run.stop().await;
    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    assert_eq!(
        decisions(&lines),
        [
            "matched",
            "retried",
            "retried",
            "sent",
            "unverified/shutdown"
        ]
    );
    let status: Vec<_> = lines[1..4]
        .iter()
        .map(|l| l["http_status"].clone())
        .collect();
    assert_eq!(status, [503, 502, 200]);
    let attempts: Vec<_> = lines[1..4].iter().map(|l| l["attempt"].clone()).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(lines[1..4].iter().all(|l| l["webhook_id"] == ids[0]));
    assert_eq!(
        metrics::sample(
            &run.registry,
            "argus_detector_remediation_retries_total",
            &[("rule", "restart")]
        ),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_webhook_that_fails_for_good_escalates_at_once() {
    let t0 = Instant::now();
    let rx = kit::Receiver::start(t0).await;
    rx.script([Reply::Status(400)]);
    let dir = tempfile::tempdir().unwrap();
    let run = kit::start(&kit::config(dir.path(), &rx.url()), t0);
    run.alert("inc-1", "checkout", "a");
    sleep(5.0).await;
    assert_eq!(rx.requests().len(), 1, "a 4xx is not retried");
    let esc = run.escalations.lock().clone();
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].reason, EscalationReason::ActionFailed);
    assert_eq!(esc[0].severity, "critical");
    run.stop().await;
    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    assert_eq!(
        decisions(&lines),
        ["matched", "failed", "escalated/action_failed"]
    );
    assert_eq!(lines[1]["http_status"], 400);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_max_attempts_and_connection_errors_count_as_retryable() {
    let t0 = Instant::now();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = kit::config(dir.path(), &format!("http://127.0.0.1:{port}/hook"));
    cfg.max_attempts = 3;
    let run = kit::start(&cfg, t0);
    run.alert("inc-1", "checkout", "a");
    sleep(60.0).await;
    run.stop().await;
    let lines = audit_lines(&dir.path().join("audit.jsonl"));
    assert_eq!(
        decisions(&lines),
        [
            "matched",
            "retried",
            "retried",
            "failed",
            "escalated/action_failed"
        ]
    );
    assert!(lines[3]["http_status"].is_null());
    let err = lines[3]["error"].as_str().unwrap();
    assert!(
        !err.contains("127.0.0.1"),
        "errors are stripped of the URL: {err}"
    );
}
