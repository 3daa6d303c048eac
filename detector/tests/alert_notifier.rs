//! The notifier's Prometheus semantics against in-process fake
//! Alertmanagers, on tokio's paused clock: the fakes run on the same runtime,
//! so virtual time only moves when both sides are idle, and each fake stamps
//! every request with that clock. The wall clock given to the notifier is
//! tied to the same virtual time, so `startsAt`/`endsAt` are exact too.

#[path = "support/metrics.rs"]
mod metrics;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argus_common::backoff::BackoffConfig;
use argus_common::shutdown::Shutdown;
use argus_detector::alert::{Alert, AlertError, AlertKey, AlertmanagerConfig, Notifier, WallClock};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use metrics::sample;

/// Wall-clock time at the test's virtual t = 0.
const EPOCH_SECS: u64 = 1_700_000_000;

/// One request as a fake Alertmanager saw it.
#[derive(Clone, Debug)]
struct Received {
    /// Seconds since the test's t = 0, virtual time.
    at: f64,
    alerts: Vec<Alert>,
    authorization: Option<String>,
}

#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    StatusRetryAfter(u16, u64),
    /// Never answers (a hung replica).
    Hang,
}

#[derive(Default)]
struct FakeState {
    received: Vec<Received>,
    script: VecDeque<Reply>,
}

/// A scripted fake Alertmanager: answers 200 unless told otherwise.
#[derive(Clone)]
struct FakeAm {
    state: Arc<Mutex<FakeState>>,
    t0: Instant,
}

impl FakeAm {
    fn new(t0: Instant) -> Self {
        Self {
            state: Arc::default(),
            t0,
        }
    }

    fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().script.extend(replies);
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().received.clone()
    }

    /// (time, endsAt − time, alertname) of every alert received, in order.
    fn timeline(&self) -> Vec<(f64, Option<f64>, String)> {
        self.received()
            .iter()
            .flat_map(|r| {
                r.alerts.iter().map(move |a| {
                    (
                        r.at,
                        a.ends_at.map(|e| wall_secs(e) - r.at),
                        a.labels["alertname"].clone(),
                    )
                })
            })
            .collect()
    }

    async fn serve(&self, listener: TcpListener) -> JoinHandle<()> {
        let app = axum::Router::new()
            .route("/api/v2/alerts", axum::routing::post(post))
            .with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        })
    }
}

async fn post(
    State(am): State<FakeAm>,
    headers: HeaderMap,
    Json(alerts): Json<Vec<Alert>>,
) -> Response {
    let reply = {
        let mut s = am.state.lock();
        s.received.push(Received {
            at: am.t0.elapsed().as_secs_f64(),
            alerts,
            authorization: headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
        });
        s.script.pop_front()
    };
    match reply {
        None => StatusCode::OK.into_response(),
        Some(Reply::Status(c)) => StatusCode::from_u16(c).unwrap().into_response(),
        Some(Reply::StatusRetryAfter(c, secs)) => (
            StatusCode::from_u16(c).unwrap(),
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Some(Reply::Hang) => {
            tokio::time::sleep(Duration::from_secs(86_400)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// Equal to the millisecond (`endsAt` travels with millisecond precision,
/// request times are jittered to the nanosecond).
#[track_caller]
fn assert_ms(got: f64, want: f64) {
    assert!((got - want).abs() < 0.002, "{got} ≠ {want}");
}

/// Seconds between the test's t = 0 and a wall-clock time from the notifier.
fn wall_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() - EPOCH_SECS as f64
}

fn wall(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EPOCH_SECS) + Duration::from_secs_f64(secs)
}

/// A wall clock that reads `EPOCH_SECS` at t0 and moves with tokio's clock.
fn clock(t0: Instant) -> WallClock {
    Arc::new(move || wall(t0.elapsed().as_secs_f64()))
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A port with nothing listening (connections are refused).
async fn closed_port() -> SocketAddr {
    listener().await.1
}

fn config(addrs: &[SocketAddr]) -> AlertmanagerConfig {
    let mut cfg = AlertmanagerConfig::new(
        addrs
            .iter()
            .map(|a| reqwest::Url::parse(&format!("http://{a}")).unwrap()),
    );
    cfg.timeout = Duration::from_secs(5);
    cfg.retry = BackoffConfig {
        initial_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(8),
        multiplier: 2.0,
    };
    cfg
}

struct Running {
    notifier: Notifier,
    registry: Registry,
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

fn start(cfg: &AlertmanagerConfig, t0: Instant, grace: Duration) -> Running {
    let mut registry = Registry::with_prefix("argus_detector");
    let (notifier, task) = cfg
        .build_with_clock(&mut registry, clock(t0))
        .expect("valid config");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(task.run(shutdown.clone(), grace));
    Running {
        notifier,
        registry,
        shutdown,
        task,
    }
}

fn alert(name: &str) -> Alert {
    Alert::new([("alertname", name), ("service", "checkout")])
        .annotate("summary", "p99 latency 3× the baseline")
}

fn key(name: &str) -> AlertKey {
    AlertKey::from(name)
}

async fn sleep(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

fn times(timeline: &[(f64, Option<f64>, String)], name: &str) -> Vec<f64> {
    timeline
        .iter()
        .filter(|(_, _, n)| n == name)
        .map(|(t, _, _)| *t)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn firing_alert_is_resent_every_interval_with_ends_at_four_intervals_ahead() {
    let t0 = Instant::now();
    let am = FakeAm::new(t0);
    let (l, addr) = listener().await;
    am.serve(l).await;
    let run = start(&config(&[addr]), t0, Duration::from_secs(5));

    run.notifier.fire(key("a"), alert("HighLatency")).unwrap();
    sleep(150.0).await;
    // An identical repeat is not a change: the cadence is kept.
    run.notifier.fire(key("a"), alert("HighLatency")).unwrap();
    sleep(50.0).await; // t = 200

    let tl = am.timeline();
    assert_eq!(times(&tl, "HighLatency"), [0.0, 60.0, 120.0, 180.0]);
    for (_, ends_in, _) in &tl {
        assert_eq!(*ends_in, Some(240.0), "endsAt = send time + 4 × 1m");
    }
    // startsAt stays the first fire time across resends.
    for r in am.received() {
        assert_eq!(r.alerts[0].starts_at, Some(wall(0.0)));
        assert_eq!(
            r.alerts[0].annotations["summary"],
            "p99 latency 3× the baseline"
        );
    }

    // A changed annotation goes out at once and restarts the cadence.
    run.notifier
        .fire(key("a"), alert("HighLatency").annotate("summary", "now 5×"))
        .unwrap();
    sleep(130.0).await; // t = 330
    let tl = am.timeline();
    assert_eq!(
        times(&tl, "HighLatency"),
        [0.0, 60.0, 120.0, 180.0, 200.0, 260.0, 320.0]
    );
    let last = am.received().pop().unwrap();
    assert_eq!(last.alerts[0].annotations["summary"], "now 5×");
    assert_eq!(last.alerts[0].starts_at, Some(wall(0.0)));
    assert_eq!(
        sample(
            &run.registry,
            "argus_detector_alerts_active",
            &[("state", "firing")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &run.registry,
            "argus_detector_alertmanager_requests_total",
            &[("alertmanager", "0"), ("outcome", "success")]
        ),
        7.0
    );
}

#[tokio::test(start_paused = true)]
async fn resolved_alert_is_resent_for_the_retention_then_forgotten() {
    let t0 = Instant::now();
    let am = FakeAm::new(t0);
    let (l, addr) = listener().await;
    am.serve(l).await;
    let run = start(&config(&[addr]), t0, Duration::from_secs(5));

    run.notifier.fire(key("a"), alert("Errors")).unwrap();
    sleep(30.0).await;
    // The detector saw the anomaly end a little before it tells us.
    assert!(run.notifier.resolve(&key("a"), wall(25.0)));
    assert!(
        !run.notifier.resolve(&key("a"), wall(29.0)),
        "resolving twice changes nothing"
    );
    sleep(20.0 * 60.0).await;

    let tl = am.timeline();
    let resolved: Vec<_> = am
        .received()
        .iter()
        .filter(|r| r.alerts[0].ends_at == Some(wall(25.0)))
        .map(|r| r.at)
        .collect();
    // Sent at resolution, then every minute while younger than 15 minutes.
    let expect: Vec<f64> = (0..15).map(|k| 30.0 + 60.0 * k as f64).collect();
    assert_eq!(resolved, expect);
    // Before resolution: the initial firing send only.
    assert_eq!(tl.len(), 1 + 15, "{tl:?}");
    assert_eq!(tl[0], (0.0, Some(240.0), "Errors".into()));
    assert_eq!(run.notifier.active(), (0, 0));
    assert_eq!(
        sample(
            &run.registry,
            "argus_detector_alerts_active",
            &[("state", "resolved")]
        ),
        0.0
    );

    // A resolved alert that fires again is a new alert instance.
    run.notifier.fire(key("a"), alert("Errors")).unwrap();
    sleep(1.0).await;
    let last = am.received().pop().unwrap();
    assert_eq!(last.alerts[0].starts_at, Some(wall(last.at)));
}

#[tokio::test(start_paused = true)]
async fn a_down_or_hung_replica_never_delays_the_others() {
    let t0 = Instant::now();
    let healthy = FakeAm::new(t0);
    let (l, healthy_addr) = listener().await;
    healthy.serve(l).await;
    let hung = FakeAm::new(t0);
    hung.script([Reply::Hang; 64]);
    let (l, hung_addr) = listener().await;
    hung.serve(l).await;
    let down_addr = closed_port().await;

    let run = start(
        &config(&[healthy_addr, down_addr, hung_addr]),
        t0,
        Duration::from_secs(5),
    );
    run.notifier.fire(key("a"), alert("A")).unwrap();
    sleep(30.0).await;
    run.notifier.fire(key("b"), alert("B")).unwrap();
    sleep(100.0).await; // t = 130

    // The healthy replica got everything exactly on time.
    let tl = healthy.timeline();
    assert_eq!(times(&tl, "A"), [0.0, 60.0, 120.0]);
    assert_eq!(times(&tl, "B"), [30.0, 90.0]);
    let r = &run.registry;
    let requests = |i: &str, outcome: &str| {
        sample(
            r,
            "argus_detector_alertmanager_requests_total",
            &[("alertmanager", i), ("outcome", outcome)],
        )
    };
    assert_eq!(requests("0", "success"), 5.0);
    assert!(
        requests("1", "unreachable") >= 5.0,
        "the down one keeps being retried"
    );
    assert!(
        requests("2", "timeout") >= 5.0,
        "the hung one times out, then retries"
    );
    assert_eq!(requests("0", "timeout") + requests("0", "unreachable"), 0.0);

    // The down replica comes up: it receives the current state of both
    // alerts, with endsAt fresh from the moment of sending.
    let down = FakeAm::new(t0);
    down.serve(TcpListener::bind(down_addr).await.unwrap())
        .await;
    sleep(10.0).await;
    let got = down.received();
    assert!(!got.is_empty(), "the recovered replica is caught up");
    let first = &got[0];
    let mut names: Vec<_> = first
        .alerts
        .iter()
        .map(|a| a.labels["alertname"].clone())
        .collect();
    names.sort();
    assert_eq!(names, ["A", "B"]);
    for a in &first.alerts {
        assert_ms(wall_secs(a.ends_at.unwrap()) - first.at, 240.0);
    }
    assert!(
        first.at > 130.0 && first.at <= 138.5,
        "retry cadence ≤ max_interval: {}",
        first.at
    );
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_back_off_and_honour_retry_after() {
    let t0 = Instant::now();
    let am = FakeAm::new(t0);
    am.script([
        Reply::Status(503),
        Reply::Status(500),
        Reply::Status(502),
        Reply::StatusRetryAfter(429, 7),
    ]);
    let (l, addr) = listener().await;
    am.serve(l).await;
    let run = start(&config(&[addr]), t0, Duration::from_secs(5));

    run.notifier.fire(key("a"), alert("A")).unwrap();
    sleep(40.0).await;
    let at: Vec<f64> = am.received().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 5, "four failures then the success: {at:?}");
    let gaps: Vec<f64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Backoff ceilings 1 s, 2 s, 4 s with half jitter, then Retry-After: 7.
    for (gap, ceiling) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            *gap >= ceiling / 2.0 - 1e-6 && *gap <= ceiling + 1e-6,
            "gap {gap} outside [{}, {ceiling}]: {gaps:?}",
            ceiling / 2.0
        );
    }
    assert!(
        gaps[3] >= 7.0 - 1e-6 && gaps[3] <= 8.0 + 1e-6,
        "Retry-After honoured: {gaps:?}"
    );
    // Every attempt carries the same alert, endsAt fresh at each attempt.
    for r in am.received() {
        assert_ms(wall_secs(r.alerts[0].ends_at.unwrap()) - r.at, 240.0);
    }
    let rq = |o: &str| {
        sample(
            &run.registry,
            "argus_detector_alertmanager_requests_total",
            &[("alertmanager", "0"), ("outcome", o)],
        )
    };
    assert_eq!(rq("retryable_error"), 4.0);
    assert_eq!(rq("success"), 1.0);
    assert_eq!(
        sample(
            &run.registry,
            "argus_detector_alerts_sent_total",
            &[("outcome", "success")]
        ),
        1.0
    );
    // The resend cadence is counted from when the alert was queued, not delivered.
    sleep(30.0).await; // t = 70
    assert_eq!(am.received().last().unwrap().at, 60.0);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_batch_is_not_retried_but_comes_back_at_the_next_resend() {
    let t0 = Instant::now();
    let am = FakeAm::new(t0);
    am.script([Reply::Status(400)]);
    let (l, addr) = listener().await;
    am.serve(l).await;
    let run = start(&config(&[addr]), t0, Duration::from_secs(5));
    run.notifier.fire(key("a"), alert("A")).unwrap();
    sleep(59.0).await;
    assert_eq!(am.received().len(), 1, "4xx is final");
    assert_eq!(
        sample(
            &run.registry,
            "argus_detector_alerts_dropped_total",
            &[("reason", "rejected")]
        ),
        1.0
    );
    sleep(2.0).await;
    assert_eq!(times(&am.timeline(), "A"), [0.0, 60.0]);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_the_oldest_and_resends_bring_them_back() {
    let t0 = Instant::now();
    let addr = closed_port().await;
    let mut cfg = config(&[addr]);
    cfg.queue_capacity = 3;
    let run = start(&cfg, t0, Duration::from_secs(5));
    for name in ["A", "B", "C"] {
        run.notifier.fire(key(name), alert(name)).unwrap();
    }
    sleep(10.0).await;
    run.notifier.fire(key("D"), alert("D")).unwrap();
    sleep(10.0).await;
    run.notifier.fire(key("E"), alert("E")).unwrap();
    sleep(1.0).await; // t = 21
    let dropped = || {
        sample(
            &run.registry,
            "argus_detector_alerts_dropped_total",
            &[("reason", "queue_full")],
        )
    };
    assert_eq!(dropped(), 2.0, "A and B made room for D and E");
    assert_eq!(
        sample(
            &run.registry,
            "argus_detector_alertmanager_pending_alerts",
            &[("alertmanager", "0")]
        ),
        3.0
    );
    // The replica comes up: it gets what waited, then the dropped ones at
    // their next resend (t = 60).
    let am = FakeAm::new(t0);
    am.serve(TcpListener::bind(addr).await.unwrap()).await;
    sleep(12.0).await; // t = 33
    let first: Vec<String> = am.received()[0]
        .alerts
        .iter()
        .map(|a| a.labels["alertname"].clone())
        .collect();
    assert_eq!(first, ["C", "D", "E"]);
    sleep(30.0).await; // t = 63
    let tl = am.timeline();
    assert_eq!(times(&tl, "A"), [60.0]);
    assert_eq!(times(&tl, "B"), [60.0]);
    assert_eq!(dropped(), 2.0);
}

#[tokio::test(start_paused = true)]
async fn relabelling_under_one_key_resolves_the_old_labels() {
    let t0 = Instant::now();
    let am = FakeAm::new(t0);
    let (l, addr) = listener().await;
    am.serve(l).await;
    let run = start(&config(&[addr]), t0, Duration::from_secs(5));
    let mut warning = alert("Latency");
    warning.labels.insert("severity".into(), "warning".into());
    run.notifier
        .fire(key("incident-7"), warning.clone())
        .unwrap();
    sleep(10.0).await;
    let mut critical = warning.clone();
    critical.labels.insert("severity".into(), "critical".into());
    run.notifier.fire(key("incident-7"), critical).unwrap();
    sleep(1.0).await;

    let batch = am.received().pop().unwrap();
    assert_eq!(batch.at, 10.0);
    let by_sev: BTreeMap<String, f64> = batch
        .alerts
        .iter()
        .map(|a| {
            (
                a.labels["severity"].clone(),
                wall_secs(a.ends_at.unwrap()) - batch.at,
            )
        })
        .collect();
    assert_eq!(
        by_sev,
        BTreeMap::from([("critical".into(), 240.0), ("warning".into(), 0.0)]),
        "the warning is resolved now, the critical fires"
    );
    // The escalated alert keeps its incident's start time.
    assert!(batch.alerts.iter().all(|a| a.starts_at == Some(wall(0.0))));
    assert_eq!(run.notifier.active(), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_the_final_state_within_the_grace_period() {
    let t0 = Instant::now();
    let am = FakeAm::new(t0);
    let (l, addr) = listener().await;
    am.serve(l).await;
    let down = closed_port().await;
    let run = start(&config(&[addr, down]), t0, Duration::from_secs(5));
    run.notifier.fire(key("a"), alert("A")).unwrap();
    run.notifier.fire(key("b"), alert("B")).unwrap();
    sleep(20.0).await;
    run.notifier.resolve(&key("b"), wall(20.0));
    sleep(10.0).await; // t = 30
    let before = am.received().len();

    run.shutdown.trigger();
    let started = Instant::now();
    run.task.await.unwrap();
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(5),
        "bounded by the grace: {took:?}"
    );

    let last = am.received();
    assert_eq!(last.len(), before + 1, "one final batch");
    let fin = last.last().unwrap();
    assert_eq!(fin.at, 30.0);
    let ends: BTreeMap<String, f64> = fin
        .alerts
        .iter()
        .map(|a| (a.labels["alertname"].clone(), wall_secs(a.ends_at.unwrap())))
        .collect();
    // Firing stays firing (a restart must not resolve incidents); resolved
    // keeps its resolution time.
    assert_eq!(
        ends,
        BTreeMap::from([("A".into(), 270.0), ("B".into(), 20.0)])
    );
    assert_eq!(
        sample(
            &run.registry,
            "argus_detector_alerts_dropped_total",
            &[("reason", "shutdown")]
        ),
        2.0,
        "the down replica never got the final state, and says so"
    );
}

#[tokio::test(start_paused = true)]
async fn credentials_come_from_files_and_follow_rotation() {
    let t0 = Instant::now();
    let am = FakeAm::new(t0);
    let (l, addr) = listener().await;
    am.serve(l).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let mut cfg = config(&[addr]);
    cfg.bearer_token_file = Some(token.clone());
    let run = start(&cfg, t0, Duration::from_secs(5));
    run.notifier.fire(key("a"), alert("A")).unwrap();
    sleep(1.0).await;
    std::fs::write(&token, "second-token").unwrap();
    sleep(60.0).await;
    let auth: Vec<_> = am.received().into_iter().map(|r| r.authorization).collect();
    assert_eq!(
        auth,
        [
            Some("Bearer first-token".to_owned()),
            Some("Bearer second-token".to_owned())
        ]
    );
    let text = metrics::text(&run.registry);
    assert!(!text.contains("token"), "no credential in metrics");
}

#[tokio::test]
async fn an_alert_alertmanager_would_reject_is_refused_at_fire() {
    let mut registry = Registry::default();
    let cfg = config(&["127.0.0.1:9".parse().unwrap()]);
    let (notifier, _task) = cfg.build(&mut registry).unwrap();
    assert_eq!(
        notifier.fire(key("a"), Alert::new([("k8s.pod", "x")])),
        Err(AlertError::InvalidLabelName("k8s.pod".into()))
    );
    assert_eq!(
        notifier.fire(key("a"), Alert::new([("alertname", "")])),
        Err(AlertError::NoLabels)
    );
    assert_eq!(notifier.active(), (0, 0));
}

#[test]
fn build_reports_every_problem_with_its_field() {
    let mut cfg = AlertmanagerConfig::new([reqwest::Url::parse("http://am:9093").unwrap()]);
    cfg.resend_interval = Duration::ZERO;
    cfg.max_batch_size = 0;
    let err = cfg.build(&mut Registry::default()).unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.starts_with("alertmanager.resend_interval"))
    );
    assert!(
        err.problems
            .iter()
            .any(|p| p.starts_with("alertmanager.max_batch_size"))
    );

    let mut cfg = AlertmanagerConfig::new([reqwest::Url::parse("http://am:9093").unwrap()]);
    cfg.bearer_token_file = Some("/nonexistent/argus-am-token".into());
    let err = cfg.build(&mut Registry::default()).unwrap_err();
    assert!(
        err.problems[0].starts_with("alertmanager.bearer_token_file: cannot read"),
        "{err}"
    );
}
