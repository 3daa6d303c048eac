//! Self-healing: alert → rule → signed webhook, inside safeguards.
//!
//! The detector calls [`Remediator::on_alert`] when an incident opens (or
//! changes). Each rule whose matchers all hold decides, in this order:
//!
//! 1. **cooldown** per (rule, target): the target is the values of the
//!    rule's `target` labels (say `service` and `pod`), so two pods both get
//!    an action while the same pod is not acted on twice within `cooldown`;
//! 2. **circuit breaker**: at most `max_actions_per_hour` actions across all
//!    rules in any rolling hour — an alert storm produces at most that many
//!    actions, the rest are skipped and audited;
//! 3. **dry run** (the default): the decision, the target and the body that
//!    would have been sent are audited, nothing is sent;
//! 4. **concurrency**: at most `max_concurrent` webhooks in flight. An
//!    admitted action beyond that *waits* for a slot rather than being
//!    skipped: it already passed cooldown and breaker, and the breaker bounds
//!    how many can wait. Before it is sent the incident is checked again; if
//!    it closed while the action waited, the action is skipped
//!    (`incident_closed`);
//! 5. **send**: a JSON POST signed per Standard Webhooks ([`signing`]),
//!    retried with backoff up to `max_attempts` on timeouts, connection
//!    errors, 408, 429 and 5xx (`Retry-After` honoured) — every attempt with
//!    the same `webhook-id` so the receiver can deduplicate, and a fresh
//!    timestamp and signature. Other statuses (4xx, 3xx: redirects are not
//!    followed) fail at once;
//! 6. **verification**: `verify_after` after a successful send, the
//!    caller's [`IncidentStatus`] is asked whether the incident is still
//!    open. If it is, the [`Escalator`] is told to raise the alert's severity
//!    and annotate it (`escalated`), else the action is `verified`. A webhook
//!    that failed for good escalates at once if the incident is open.
//!
//! Cooldown and breaker count an action when it is admitted (dry-run ones
//! too, so a dry run shows exactly what a live run would do), not when it
//! succeeds: a failing endpoint must not be hammered by every new alert.
//!
//! Every decision is one line of the audit log (the `audit` module docs:
//! format, group commit, write-ahead before sending, fail-closed).
//!
//! # Default body
//! Without a `payload` template a webhook carries
//! `{"type":"argus.remediation.v1","webhook_id":…,"incident_id":…,"rule":…,
//! "target":…,"labels":{…},"annotations":{…}}`.
//!
//! # Shutdown
//! When the [`Shutdown`] given to `build` fires, new matches are skipped
//! (`shutdown`), actions waiting for a slot are skipped, attempts on the wire
//! finish (bounded by their timeout) but are not retried, and pending
//! verifications are audited `unverified`. [`Remediator::wait`] then waits for
//! all of it within a grace period and closes the audit log.

mod audit;
pub mod config;
mod matcher;
pub mod signing;
mod telemetry;
mod template;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use argus_common::error::chain;
use argus_common::shutdown::{Shutdown, TaskTracker};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use config::{ActionConfig, EscalateConfig, RemediationConfig, RuleConfig, SecretSource};

use crate::alert::{WallClock, system_clock};
use audit::{Audit, Record};
use matcher::Matcher;
use signing::SigningKey;
use telemetry::Telemetry;
use template::{Context, PayloadTemplate, Template};

const HOUR: Duration = Duration::from_secs(3600);
const PATH: &str = "remediation";

/// "Is incident X still open?" — answered by the detector's incident table.
pub trait IncidentStatus: Send + Sync + 'static {
    fn is_open(&self, incident_id: &str) -> bool;
}

impl<F: Fn(&str) -> bool + Send + Sync + 'static> IncidentStatus for F {
    fn is_open(&self, incident_id: &str) -> bool {
        self(incident_id)
    }
}

/// Told when an action did not help; the detector raises the alert's
/// severity to `severity` and adds `annotation` to it.
pub trait Escalator: Send + Sync + 'static {
    fn escalate(&self, escalation: Escalation);
}

impl<F: Fn(Escalation) + Send + Sync + 'static> Escalator for F {
    fn escalate(&self, escalation: Escalation) {
        self(escalation)
    }
}

/// An action that did not resolve its incident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escalation {
    pub incident_id: String,
    pub rule: String,
    pub target: String,
    pub webhook_id: String,
    /// From the rule's `escalate.severity`.
    pub severity: String,
    /// The rule's `escalate.annotation`, placeholders filled.
    pub annotation: String,
    pub reason: EscalationReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscalationReason {
    /// The webhook succeeded but the incident was still open `verify_after` later.
    StillOpen,
    /// The webhook failed for good.
    ActionFailed,
}

/// What `on_alert` decided for one matching rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub rule: String,
    pub target: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The webhook is being sent (or waits for a slot); the rest of its life
    /// is in the audit log.
    Admitted {
        webhook_id: String,
    },
    /// Dry run: this body would have been sent.
    DryRun {
        webhook_id: String,
        payload: serde_json::Value,
    },
    Skipped(SkipReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    Cooldown,
    BreakerOpen,
    Shutdown,
}

/// An invalid configuration: every problem, each naming its field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid remediation configuration:\n  {}", .problems.join("\n  "))]
pub struct BuildError {
    pub problems: Vec<String>,
}

/// Signing keys from a file or variable, re-read at each send so rotation
/// needs no restart; a failed re-read keeps the last good keys.
struct Secrets {
    source: SecretSource,
    last_good: Mutex<Arc<Vec<SigningKey>>>,
}

impl Secrets {
    fn load(source: &SecretSource) -> Result<Self, String> {
        let keys = read_keys(source)?;
        Ok(Self {
            source: source.clone(),
            last_good: Mutex::new(Arc::new(keys)),
        })
    }

    fn current(&self) -> Arc<Vec<SigningKey>> {
        match read_keys(&self.source) {
            Ok(k) => {
                let k = Arc::new(k);
                *self.last_good.lock() = k.clone();
                k
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook signing secret unreadable; signing with the last good one");
                self.last_good.lock().clone()
            }
        }
    }
}

fn read_keys(source: &SecretSource) -> Result<Vec<SigningKey>, String> {
    let text = match source {
        SecretSource::File { file } => std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
        SecretSource::Env { env } => {
            std::env::var(env).map_err(|_| format!("variable {env} is not set or not UTF-8"))?
        }
    };
    signing::parse_secrets(&text)
}

struct Rule {
    name: String,
    matchers: Vec<Matcher>,
    target: Vec<String>,
    cooldown: Duration,
    verify_after: Duration,
    url: Url,
    timeout: Duration,
    payload: Option<PayloadTemplate>,
    secrets: Option<Arc<Secrets>>,
    severity: String,
    annotation: Template,
}

impl Rule {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    fn target_of(&self, labels: &BTreeMap<String, String>) -> String {
        self.target
            .iter()
            .map(|l| format!("{l}={}", labels.get(l).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Default)]
struct Limits {
    /// (rule index, target) → end of cooldown.
    cooldowns: HashMap<(usize, String), Instant>,
    /// Admission times within the last hour, oldest first.
    window: VecDeque<Instant>,
    /// A task is watching for the breaker to close.
    watching: bool,
}

impl Limits {
    fn prune(&mut self, now: Instant) {
        if let Some(cut) = now.checked_sub(HOUR) {
            while self.window.front().is_some_and(|t| *t <= cut) {
                self.window.pop_front();
            }
        }
        if self.cooldowns.len() > 4096 {
            self.cooldowns.retain(|_, until| *until > now);
        }
    }
}

struct Inner {
    rules: Vec<Rule>,
    dry_run: bool,
    max_per_hour: u32,
    max_attempts: u32,
    retry: argus_common::backoff::BackoffConfig,
    limits: Mutex<Limits>,
    slots: Arc<Semaphore>,
    client: reqwest::Client,
    audit: Option<Audit>,
    writer: Mutex<Option<JoinHandle<()>>>,
    tracker: TaskTracker,
    shutdown: Shutdown,
    status: Arc<dyn IncidentStatus>,
    escalator: Arc<dyn Escalator>,
    clock: WallClock,
    telemetry: Telemetry,
}

/// The handle the detector calls. Cheap to clone.
#[derive(Clone)]
pub struct Remediator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Remediator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remediator")
            .field("rules", &self.inner.rules.len())
            .field("dry_run", &self.inner.dry_run)
            .finish_non_exhaustive()
    }
}

impl RemediationConfig {
    /// Validates (problems under `remediation.`), loads the secrets, opens
    /// the audit log, registers the metrics and starts the audit writer.
    /// Must run inside a tokio runtime.
    pub fn build(
        &self,
        registry: &mut Registry,
        status: impl IncidentStatus,
        escalator: impl Escalator,
        shutdown: Shutdown,
    ) -> Result<Remediator, BuildError> {
        self.build_with_clock(registry, status, escalator, shutdown, system_clock())
    }

    /// [`build`](Self::build) with an injected wall clock (audit timestamps
    /// and `webhook-timestamp`).
    pub fn build_with_clock(
        &self,
        registry: &mut Registry,
        status: impl IncidentStatus,
        escalator: impl Escalator,
        shutdown: Shutdown,
        clock: WallClock,
    ) -> Result<Remediator, BuildError> {
        let problems = self.problems(PATH);
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let mut problems = Vec::new();
        let default_secrets = self.secret.as_ref().and_then(|s| {
            Secrets::load(s)
                .map_err(|e| problems.push(format!("{PATH}.secret: {e}")))
                .ok()
                .map(Arc::new)
        });
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let field = format!("{PATH}.rules[{i}]");
            let secrets = match &r.action.secret {
                Some(s) => Secrets::load(s)
                    .map_err(|e| problems.push(format!("{field}.action.secret: {e}")))
                    .ok()
                    .map(Arc::new),
                None => default_secrets.clone(),
            };
            let url = Url::parse(&r.action.url).expect("checked by problems");
            if url.scheme() == "http" && !is_loopback(&url) && !self.dry_run {
                tracing::warn!(rule = %r.name, "remediation webhook over plaintext http://: signed but readable on the wire; use https://");
            }
            rules.push(Rule {
                name: r.name.clone(),
                matchers: r
                    .matchers
                    .iter()
                    .map(|m| Matcher::parse(m).expect("checked by problems"))
                    .collect(),
                target: r.target.clone(),
                cooldown: r.cooldown,
                verify_after: r.verify_after,
                url,
                timeout: r.action.timeout,
                payload: r
                    .action
                    .payload
                    .as_ref()
                    .map(|p| PayloadTemplate::parse(p).expect("checked by problems")),
                secrets,
                severity: r.escalate.severity.clone(),
                annotation: Template::parse(&r.escalate.annotation).expect("checked by problems"),
            });
        }
        let telemetry = Telemetry::register(registry);
        for r in &self.rules {
            telemetry.init_rule(&r.name);
        }
        let audit = match &self.audit_log {
            Some(path) => match Audit::open(path, telemetry.clone()) {
                Ok(a) => Some(a),
                Err(e) => {
                    problems.push(format!("{PATH}.audit_log: {e}"));
                    None
                }
            },
            None => None,
        };
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("argus-detector/", env!("CARGO_PKG_VERSION")))
            // Standard Webhooks: a redirect is a failure (update the URL).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError {
                problems: vec![format!("{PATH}: cannot build the HTTP client: {e}")],
            })?;
        let (audit, writer) = match audit {
            Some((a, w)) => (Some(a), Some(tokio::spawn(w.run()))),
            None => (None, None),
        };
        if self.dry_run && !rules.is_empty() {
            tracing::info!(
                rules = rules.len(),
                "remediation in dry-run mode: decisions are audited, no webhook is sent"
            );
        }
        Ok(Remediator {
            inner: Arc::new(Inner {
                rules,
                dry_run: self.dry_run,
                max_per_hour: self.max_actions_per_hour,
                max_attempts: self.max_attempts,
                retry: self.retry.clone(),
                limits: Mutex::new(Limits::default()),
                slots: Arc::new(Semaphore::new(self.max_concurrent)),
                client,
                audit,
                writer: Mutex::new(writer),
                tracker: TaskTracker::new(),
                shutdown,
                status: Arc::new(status),
                escalator: Arc::new(escalator),
                clock,
                telemetry,
            }),
        })
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The fields of one audit line that vary.
#[derive(Default)]
struct Line<'a> {
    reason: Option<&'static str>,
    webhook_id: Option<&'a str>,
    http_status: Option<u16>,
    attempt: Option<u32>,
    error: Option<&'a str>,
}

impl Inner {
    fn audit(&self, incident: &str, rule: &str, target: &str, decision: &'static str, l: Line<'_>) {
        if let Some(a) = &self.audit {
            a.record(&self.record(incident, rule, target, decision, l));
        }
    }

    /// Like [`Inner::audit`], answering whether the line reached the disk.
    fn audit_durable(
        &self,
        incident: &str,
        rule: &str,
        target: &str,
        decision: &'static str,
    ) -> Option<tokio::sync::oneshot::Receiver<bool>> {
        let a = self.audit.as_ref()?;
        Some(a.record_durable(&self.record(incident, rule, target, decision, Line::default())))
    }

    fn record<'a>(
        &self,
        incident: &'a str,
        rule: &'a str,
        target: &'a str,
        decision: &'static str,
        l: Line<'a>,
    ) -> Record<'a> {
        Record {
            ts: (self.clock)(),
            incident_id: incident,
            rule,
            target,
            decision,
            reason: l.reason,
            webhook_id: l.webhook_id,
            http_status: l.http_status,
            attempt: l.attempt,
            dry_run: self.dry_run,
            error: l.error,
        }
    }
}

/// One admitted action, as its task carries it.
struct Action {
    rule: usize,
    incident: String,
    target: String,
    webhook_id: String,
    body: Vec<u8>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    /// Whether the `matched` line reached the disk.
    matched_on_disk: Option<tokio::sync::oneshot::Receiver<bool>>,
}

impl Remediator {
    /// Decides, for every rule matching `labels`, what to do about incident
    /// `incident_id`, audits it, and starts admitted actions in the
    /// background (call it inside the tokio runtime). Returns one decision
    /// per matching rule. Calling it again for the same incident is safe:
    /// cooldown makes repeats `skipped`.
    pub fn on_alert(
        &self,
        incident_id: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> Vec<Decision> {
        let inner = &self.inner;
        let mut out = Vec::new();
        for (idx, rule) in inner.rules.iter().enumerate() {
            if !rule.matches(labels) {
                continue;
            }
            let target = rule.target_of(labels);
            let name = rule.name.as_str();
            let matched_on_disk = inner.audit_durable(incident_id, name, &target, "matched");
            let skip = |reason: SkipReason| {
                let r = match reason {
                    SkipReason::Cooldown => "cooldown",
                    SkipReason::BreakerOpen => "breaker_open",
                    SkipReason::Shutdown => "shutdown",
                };
                inner.audit(
                    incident_id,
                    name,
                    &target,
                    "skipped",
                    Line {
                        reason: Some(r),
                        ..Line::default()
                    },
                );
                inner.telemetry.skipped(name, &target, r);
                Decision {
                    rule: rule.name.clone(),
                    target: target.clone(),
                    outcome: Outcome::Skipped(reason),
                }
            };
            if inner.shutdown.is_triggered() {
                out.push(skip(SkipReason::Shutdown));
                continue;
            }
            let now = Instant::now();
            let verdict = {
                let mut l = inner.limits.lock();
                l.prune(now);
                let key = (idx, target.clone());
                let verdict = if l.cooldowns.get(&key).is_some_and(|until| *until > now) {
                    Err(SkipReason::Cooldown)
                } else if l.window.len() >= inner.max_per_hour as usize {
                    Err(SkipReason::BreakerOpen)
                } else {
                    l.window.push_back(now);
                    l.cooldowns.insert(key, now + rule.cooldown);
                    Ok(())
                };
                let open = l.window.len() >= inner.max_per_hour as usize;
                if open && !l.watching {
                    l.watching = true;
                    self.watch_breaker();
                }
                inner.telemetry.breaker(open, inner.max_per_hour);
                verdict
            };
            if let Err(reason) = verdict {
                out.push(skip(reason));
                continue;
            }
            let webhook_id = signing::new_webhook_id();
            let cx = Context {
                labels,
                annotations,
                incident_id,
                rule: name,
                webhook_id: &webhook_id,
                target: &target,
            };
            let payload = match &rule.payload {
                Some(t) => t.render(&cx),
                None => serde_json::json!({
                    "type": "argus.remediation.v1",
                    "webhook_id": webhook_id,
                    "incident_id": incident_id,
                    "rule": name,
                    "target": target,
                    "labels": labels,
                    "annotations": annotations,
                }),
            };
            if inner.dry_run {
                inner.audit(
                    incident_id,
                    name,
                    &target,
                    "dry_run",
                    Line {
                        webhook_id: Some(&webhook_id),
                        ..Line::default()
                    },
                );
                inner.telemetry.dry_run(name, &target, &webhook_id);
                out.push(Decision {
                    rule: rule.name.clone(),
                    target,
                    outcome: Outcome::DryRun {
                        webhook_id,
                        payload,
                    },
                });
                continue;
            }
            let action = Action {
                rule: idx,
                incident: incident_id.to_owned(),
                target: target.clone(),
                webhook_id: webhook_id.clone(),
                body: serde_json::to_vec(&payload).expect("JSON values serialise"),
                labels: labels.clone(),
                annotations: annotations.clone(),
                matched_on_disk,
            };
            let task = inner.clone();
            inner.tracker.spawn(act(task, action));
            out.push(Decision {
                rule: rule.name.clone(),
                target,
                outcome: Outcome::Admitted { webhook_id },
            });
        }
        out
    }

    /// After the [`Shutdown`] given to `build` fired: waits for in-flight
    /// actions (at most `grace`), then closes the audit log. False when the
    /// grace period ran out first. Fire the shutdown first: without it,
    /// pending verifications would hold this call for the whole grace.
    pub async fn wait(&self, grace: Duration) -> bool {
        let inner = &self.inner;
        inner.tracker.close();
        let done = tokio::time::timeout(grace, inner.tracker.wait())
            .await
            .is_ok();
        if let Some(a) = &inner.audit {
            a.close();
        }
        let writer = inner.writer.lock().take();
        if let Some(w) = writer {
            let _ = w.await;
        }
        done
    }

    /// Keeps `remediation_breaker_open` true to the hour: while the breaker
    /// is open, wakes when its oldest action leaves the window.
    fn watch_breaker(&self) {
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            loop {
                let next = {
                    let mut l = inner.limits.lock();
                    l.prune(Instant::now());
                    let open = l.window.len() >= inner.max_per_hour as usize;
                    inner.telemetry.breaker(open, inner.max_per_hour);
                    if !open {
                        l.watching = false;
                        return;
                    }
                    *l.window.front().expect("open means non-empty") + HOUR
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(next + Duration::from_millis(1)) => {}
                    _ = inner.shutdown.wait() => {
                        inner.limits.lock().watching = false;
                        return;
                    }
                }
            }
        });
    }
}

/// One admitted action's life: wait for a slot, send, verify.
async fn act(inner: Arc<Inner>, mut a: Action) {
    let rule = &inner.rules[a.rule];
    let name = rule.name.as_str();
    let line = |decision: &'static str, l: Line<'_>| {
        inner.audit(&a.incident, name, &a.target, decision, l);
    };
    let id = Some(a.webhook_id.as_str());

    inner.telemetry.queued.inc();
    let permit = tokio::select! {
        p = inner.slots.clone().acquire_owned() => p.expect("semaphore never closed"),
        _ = inner.shutdown.wait() => {
            inner.telemetry.queued.dec();
            line("skipped", Line { reason: Some("shutdown"), webhook_id: id, ..Line::default() });
            inner.telemetry.skipped(name, &a.target, "shutdown");
            return;
        }
    };
    inner.telemetry.queued.dec();
    if !inner.status.is_open(&a.incident) {
        line(
            "skipped",
            Line {
                reason: Some("incident_closed"),
                webhook_id: id,
                ..Line::default()
            },
        );
        inner.telemetry.skipped(name, &a.target, "incident_closed");
        return;
    }
    // Write-ahead: the decision to act is on disk before the action.
    let audited = match a.matched_on_disk.take() {
        Some(ack) => ack.await.unwrap_or(false),
        None => false,
    };
    if !audited {
        line(
            "skipped",
            Line {
                reason: Some("audit_unavailable"),
                webhook_id: id,
                ..Line::default()
            },
        );
        inner
            .telemetry
            .skipped(name, &a.target, "audit_unavailable");
        return;
    }

    inner.telemetry.in_flight.inc();
    let sent = send(&inner, rule, &a).await;
    inner.telemetry.in_flight.dec();
    drop(permit);

    let escalate = |reason: EscalationReason, audit_reason: &'static str| {
        let cx = Context {
            labels: &a.labels,
            annotations: &a.annotations,
            incident_id: &a.incident,
            rule: name,
            webhook_id: &a.webhook_id,
            target: &a.target,
        };
        inner.escalator.escalate(Escalation {
            incident_id: a.incident.clone(),
            rule: name.to_owned(),
            target: a.target.clone(),
            webhook_id: a.webhook_id.clone(),
            severity: rule.severity.clone(),
            annotation: rule.annotation.render(&cx),
            reason,
        });
        line(
            "escalated",
            Line {
                reason: Some(audit_reason),
                webhook_id: id,
                ..Line::default()
            },
        );
        inner.telemetry.verification(name, &a.incident, "escalated");
    };

    if !sent {
        if inner.status.is_open(&a.incident) {
            escalate(EscalationReason::ActionFailed, "action_failed");
        }
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(rule.verify_after) => {}
        _ = inner.shutdown.wait() => {
            line("unverified", Line { reason: Some("shutdown"), webhook_id: id, ..Line::default() });
            inner.telemetry.verification(name, &a.incident, "unverified");
            return;
        }
    }
    if inner.status.is_open(&a.incident) {
        escalate(EscalationReason::StillOpen, "still_open");
    } else {
        line(
            "verified",
            Line {
                webhook_id: id,
                ..Line::default()
            },
        );
        inner.telemetry.verification(name, &a.incident, "verified");
    }
}

/// Sends with retries; audits every attempt's end. True when delivered.
async fn send(inner: &Inner, rule: &Rule, a: &Action) -> bool {
    let name = rule.name.as_str();
    let id = a.webhook_id.as_str();
    let line = |decision: &'static str, l: Line<'_>| {
        inner.audit(&a.incident, name, &a.target, decision, l);
    };
    let mut backoff = inner.retry.build();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let keys = match &rule.secrets {
            Some(s) => s.current(),
            None => unreachable!("a live rule always has a secret (checked by problems)"),
        };
        let ts = (inner.clock)()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let signature = signing::signature_header(&keys, id, ts, &a.body);
        let result = inner
            .client
            .post(rule.url.clone())
            .timeout(rule.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(a.body.clone())
            .send()
            .await;
        let (status, retry_after, error) = match result {
            Ok(r) if r.status().is_success() => {
                let status = r.status().as_u16();
                line(
                    "sent",
                    Line {
                        webhook_id: Some(id),
                        http_status: Some(status),
                        attempt: Some(attempt),
                        ..Line::default()
                    },
                );
                inner.telemetry.sent(name, &a.target, id, status);
                return true;
            }
            Ok(r) => {
                let s = r.status();
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let retryable = s.is_server_error()
                    || s == StatusCode::TOO_MANY_REQUESTS
                    || s == StatusCode::REQUEST_TIMEOUT;
                let error = format!("HTTP {s}");
                if !retryable {
                    if s == StatusCode::GONE {
                        tracing::error!(
                            rule = name,
                            "the remediation endpoint answered 410 Gone: it no longer wants these webhooks; fix or remove the rule"
                        );
                    }
                    line(
                        "failed",
                        Line {
                            webhook_id: Some(id),
                            http_status: Some(s.as_u16()),
                            attempt: Some(attempt),
                            error: Some(&error),
                            ..Line::default()
                        },
                    );
                    inner.telemetry.failed(name, &a.target, id, &error);
                    return false;
                }
                (Some(s.as_u16()), retry_after, error)
            }
            Err(e) => (None, None, chain(&e.without_url())),
        };
        let last = attempt >= inner.max_attempts || inner.shutdown.is_triggered();
        line(
            if last { "failed" } else { "retried" },
            Line {
                webhook_id: Some(id),
                http_status: status,
                attempt: Some(attempt),
                error: Some(&error),
                reason: (last && inner.shutdown.is_triggered()).then_some("shutdown"),
            },
        );
        if last {
            inner.telemetry.failed(name, &a.target, id, &error);
            return false;
        }
        inner.telemetry.retried(name, id, &error);
        let delay = backoff.next_with_hint(retry_after);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inner.shutdown.wait() => {
                line("failed", Line {
                    webhook_id: Some(id),
                    attempt: Some(attempt),
                    reason: Some("shutdown"),
                    error: Some("shutdown before the next attempt"),
                    ..Line::default()
                });
                inner.telemetry.failed(name, &a.target, id, "shutdown before the next attempt");
                return false;
            }
        }
    }
}
