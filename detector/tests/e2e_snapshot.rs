//! Restarts of the real `argus-detector` binary keep what the models
//! learnt: after a graceful stop (final snapshot) and after `kill -9` (the
//! last periodic snapshot), a latency regression is detected at once — no
//! new warm-up, which would take 200 steps during which nothing can page.

#[path = "support/detector.rs"]
mod kit;

fn config(state: &std::path::Path, grpc: u16, http: u16, ops: u16) -> String {
    format!(
        r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
  http: {{ endpoint: "127.0.0.1:{http}" }}
scoring:
  step: 1s
  clock: event
  snapshot: {{ dir: "{dir}", interval: 1s }}
incidents: {{ window: 3s }}
ops: {{ listen: "127.0.0.1:{ops}" }}
"#,
        dir = state.display()
    )
}

async fn warm(otlp: &kit::Otlp, t0: i64, steps: std::ops::Range<i64>) {
    for k in steps {
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
    }
}

async fn metric(ops: &str, name: &str) -> f64 {
    kit::sample(&kit::get_text(&format!("{ops}/metrics")).await, name).unwrap_or(0.0)
}

/// After a restart: the series is not learning from its first point on,
/// and a regression opens an incident within a few steps.
async fn detects_without_warmup(det: &kit::Process, t0: i64, from: i64) {
    let otlp = kit::Otlp::new(det.grpc.clone(), None);
    assert!(
        metric(&det.ops, "argus_detector_snapshot_restored_series ").await >= 6.0,
        "RED series restored"
    );
    warm(&otlp, t0, from..from + 5).await;
    let sel = "span.latency.p99%7Bservice%3D%22checkout%22%7D";
    let s = kit::eventually(10, "the restored series scored again", || {
        let ops = det.ops.clone();
        async move {
            let v = kit::get_json(&format!("{ops}/api/v1/series?match={sel}")).await;
            let s = v["series"][0].clone();
            s["points_seen"]
                .as_u64()
                .is_some_and(|n| n > 0)
                .then_some(s)
        }
    })
    .await;
    assert_eq!(s["learning"], false, "restored state, no warm-up: {s}");
    assert!(s["points_seen"].as_u64().unwrap() >= 250, "{s}");
    assert!(metric(&det.ops, "argus_detector_snapshot_claimed_series_total ").await >= 1.0);
    for k in from + 5..from + 15 {
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
    }
    let inc = kit::eventually(20, "an incident right after the restart", || {
        let ops = det.ops.clone();
        async move {
            let v = kit::get_json(&format!("{ops}/api/v1/incidents?state=open")).await;
            v["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["entity"]["value"] == "checkout")
                .cloned()
        }
    })
    .await;
    assert!(
        inc["started_at"].as_i64().unwrap() >= t0 + from + 5,
        "{inc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_the_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (grpc, http, ops) = (kit::free_port(), kit::free_port(), kit::free_port());
    let mut det = kit::Process::start(
        dir.path(),
        &config(&state, grpc, http, ops),
        ops,
        grpc,
        http,
    )
    .await;
    let t0 = kit::now_secs() - 900;
    warm(&kit::Otlp::new(det.grpc.clone(), None), t0, 0..300).await;
    let status = det.stop();
    assert!(status.success(), "{status}\n{}", det.log_text());
    assert!(state.join("detector.snapshot").is_file());
    assert!(det.log_text().contains("shutting down"));

    det.spawn().await;
    assert!(
        det.log_text().contains("snapshot restored"),
        "{}",
        det.log_text()
    );
    detects_without_warmup(&det, t0, 300).await;
    assert!(det.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_restarts_from_the_last_periodic_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (grpc, http, ops) = (kit::free_port(), kit::free_port(), kit::free_port());
    let mut det = kit::Process::start(
        dir.path(),
        &config(&state, grpc, http, ops),
        ops,
        grpc,
        http,
    )
    .await;
    let t0 = kit::now_secs() - 900;
    warm(&kit::Otlp::new(det.grpc.clone(), None), t0, 0..300).await;
    // Two more periodic snapshots: the last one holds the warm state.
    let before = metric(
        &det.ops,
        "argus_detector_snapshot_writes_total{result=\"ok\"} ",
    )
    .await;
    kit::eventually(10, "two periodic snapshots after the warm-up", || {
        let ops = det.ops.clone();
        async move {
            (metric(&ops, "argus_detector_snapshot_writes_total{result=\"ok\"} ").await
                >= before + 2.0)
                .then_some(())
        }
    })
    .await;
    assert!(metric(&det.ops, "argus_detector_snapshot_bytes ").await > 1000.0);
    det.kill();
    assert!(state.join("detector.snapshot").is_file());

    det.spawn().await;
    detects_without_warmup(&det, t0, 300).await;

    // A corrupt snapshot is reported and skipped: the detector still starts.
    det.kill();
    let path = state.join("detector.snapshot");
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, data).unwrap();
    det.spawn().await;
    assert!(
        det.log_text().contains("snapshot skipped"),
        "{}",
        det.log_text()
    );
    assert_eq!(
        metric(&det.ops, "argus_detector_snapshot_restore_failures_total ").await,
        1.0
    );
    assert!(det.stop().success());
}
