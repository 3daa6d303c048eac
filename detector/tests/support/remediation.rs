//! Remediation test kit: a webhook receiver that verifies every request with
//! the shipped example's [`Verifier`] (the code users copy), scripted
//! answers, a wall clock tied to tokio's paused clock, and audit-log reading.
//!
//! Include with `#[path = "support/remediation.rs"] mod kit;` next to
//! `#[path = "../examples/webhook_receiver.rs"] mod example;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argus_detector::alert::WallClock;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::example::{Rejection, Verifier};

/// The secret the tests sign with (the Standard Webhooks test-vector key).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Wall-clock seconds at the test's virtual t = 0.
pub const EPOCH_SECS: u64 = 1_700_000_000;

/// A wall clock reading `EPOCH_SECS` at `t0` and moving with tokio's clock.
pub fn clock(t0: Instant) -> WallClock {
    Arc::new(move || UNIX_EPOCH + Duration::from_secs(EPOCH_SECS) + t0.elapsed())
}

/// The receiver's "now" on the same clock, in Unix seconds.
pub fn unix(t0: Instant) -> u64 {
    EPOCH_SECS + t0.elapsed().as_secs()
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// Virtual seconds since t0.
    pub at: f64,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub verdict: Result<String, Rejection>,
}

impl Request {
    pub fn id(&self) -> &str {
        self.headers["webhook-id"].to_str().unwrap()
    }
    pub fn timestamp(&self) -> u64 {
        self.headers["webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    /// Answer 200 after this many seconds.
    SlowOk(u64),
}

struct ReceiverState {
    verifier: Verifier,
    requests: Vec<Request>,
    script: VecDeque<Reply>,
    t0: Instant,
    in_flight: usize,
    max_in_flight: usize,
}

/// An in-process remediation endpoint.
#[derive(Clone)]
pub struct Receiver {
    state: Arc<Mutex<ReceiverState>>,
    pub addr: SocketAddr,
}

impl Receiver {
    pub async fn start(t0: Instant) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Receiver {
            state: Arc::new(Mutex::new(ReceiverState {
                verifier: Verifier::new(SECRET).unwrap(),
                requests: Vec::new(),
                script: VecDeque::new(),
                t0,
                in_flight: 0,
                max_in_flight: 0,
            })),
            addr,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(handle))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().script.extend(replies);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().requests.clone()
    }

    /// Requests that verified (each id processed once).
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.verdict.is_ok())
            .collect()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.lock().max_in_flight
    }
}

async fn handle(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (reply, id) = {
        let mut s = r.state.lock();
        let now = EPOCH_SECS + s.t0.elapsed().as_secs();
        let verdict = s.verifier.verify(&headers, &body, now);
        let at = s.t0.elapsed().as_secs_f64();
        let ok = verdict.clone().ok();
        s.requests.push(Request {
            at,
            headers,
            body,
            verdict: verdict.clone(),
        });
        if let Err(e) = verdict {
            return if e == Rejection::Replayed {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
        }
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        (s.script.pop_front(), ok.unwrap())
    };
    let status = match reply {
        None => 200,
        Some(Reply::Status(c)) => c,
        Some(Reply::SlowOk(secs)) => {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            200
        }
    };
    let mut s = r.state.lock();
    s.in_flight -= 1;
    if !(200..300).contains(&status) {
        // Not processed: the sender's retry (same id) must be accepted.
        s.verifier.forget(&id);
    }
    StatusCode::from_u16(status).unwrap()
}

/// Every line of the audit log, parsed.
pub fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}")))
        .collect()
}

/// `decision` (with `/reason` when there is one) of every line, in order.
pub fn decisions(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l["reason"].as_str() {
            Some(r) => format!("{}/{r}", l["decision"].as_str().unwrap()),
            None => l["decision"].as_str().unwrap().to_owned(),
        })
        .collect()
}

/// How many lines have each decision(/reason).
pub fn tally(lines: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in decisions(lines) {
        *m.entry(d).or_default() += 1;
    }
    m
}

/// Labels of an alert on `service`/`pod`.
pub fn labels(service: &str, pod: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_owned(), "HighLatency".to_owned()),
        ("service".to_owned(), service.to_owned()),
        ("pod".to_owned(), pod.to_owned()),
        ("severity".to_owned(), "warning".to_owned()),
    ])
}

pub fn annotations() -> BTreeMap<String, String> {
    BTreeMap::from([("summary".to_owned(), "p99 3× the baseline".to_owned())])
}

/// The set of open incidents the remediator asks about.
#[derive(Clone, Default)]
pub struct Incidents(pub Arc<Mutex<BTreeSet<String>>>);

impl Incidents {
    pub fn open(&self, id: &str) {
        self.0.lock().insert(id.to_owned());
    }
    pub fn close(&self, id: &str) {
        self.0.lock().remove(id);
    }
    pub fn status(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let s = self.0.clone();
        move |id: &str| s.lock().contains(id)
    }
}

pub fn wall_now() -> SystemTime {
    SystemTime::now()
}

use argus_common::backoff::BackoffConfig;
use argus_common::shutdown::Shutdown;
use argus_detector::remediation::{
    ActionConfig, Escalation, RemediationConfig, Remediator, RuleConfig, SecretSource,
};
use prometheus_client::registry::Registry;

/// A live (not dry-run) config with one rule `restart` on
/// `service=~"checkout.*"`, targeting `[service, pod]`, signing with
/// [`SECRET`] from a file in `dir`, auditing to `dir/audit.jsonl`.
pub fn config(dir: &Path, url: &str) -> RemediationConfig {
    let secret = dir.join("webhook-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let mut rule = RuleConfig::new(
        "restart",
        &[r#"service=~"checkout.*""#],
        ActionConfig::new(url),
    );
    rule.target = vec!["service".into(), "pod".into()];
    rule.cooldown = Duration::from_secs(600);
    rule.verify_after = Duration::from_secs(300);
    RemediationConfig {
        dry_run: false,
        max_actions_per_hour: 100,
        max_concurrent: 4,
        audit_log: Some(dir.join("audit.jsonl")),
        secret: Some(SecretSource::File { file: secret }),
        retry: BackoffConfig {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(8),
            multiplier: 2.0,
        },
        max_attempts: 4,
        rules: vec![rule],
    }
}

/// A built remediator and what the test needs around it.
pub struct Running {
    pub remediator: Remediator,
    pub registry: Registry,
    pub shutdown: Shutdown,
    pub incidents: Incidents,
    pub escalations: Arc<Mutex<Vec<Escalation>>>,
}

pub fn start(cfg: &RemediationConfig, t0: Instant) -> Running {
    let mut registry = Registry::with_prefix("argus_detector");
    let incidents = Incidents::default();
    let escalations: Arc<Mutex<Vec<Escalation>>> = Arc::default();
    let sink = escalations.clone();
    let shutdown = Shutdown::new();
    let remediator = cfg
        .build_with_clock(
            &mut registry,
            incidents.status(),
            move |e: Escalation| sink.lock().push(e),
            shutdown.clone(),
            clock(t0),
        )
        .expect("valid config");
    Running {
        remediator,
        registry,
        shutdown,
        incidents,
        escalations,
    }
}

impl Running {
    /// Opens the incident and reports its alert.
    pub fn alert(
        &self,
        incident: &str,
        service: &str,
        pod: &str,
    ) -> Vec<argus_detector::remediation::Decision> {
        self.incidents.open(incident);
        self.remediator
            .on_alert(incident, &labels(service, pod), &annotations())
    }

    /// Shuts down and waits, so the audit log is complete.
    pub async fn stop(&self) {
        self.shutdown.trigger();
        assert!(self.remediator.wait(Duration::from_secs(30)).await);
    }
}
