//! Alerts out: the Alertmanager v2 client, with Prometheus' notification
//! semantics.
//!
//! The detector calls [`Notifier::fire`] when an incident opens or its
//! explanation changes, and [`Notifier::resolve`] when it closes. A
//! [`NotifierTask`] turns that state into `POST /api/v2/alerts` requests to
//! every configured Alertmanager replica, exactly as Prometheus' rule manager
//! and notifier do:
//!
//! - a **firing** alert is sent when it appears or changes, and re-sent
//!   every `resend_interval` (default 1m) with
//!   `endsAt = now + 4 × resend_interval`. Alertmanager keeps no alert state
//!   across restarts: the resend is how a restarted replica learns the alert
//!   back within one interval, and the `endsAt` is how an Alertmanager that
//!   stops hearing from a dead detector resolves its alerts by itself
//!   (after four missed resends, not at the first hiccup);
//! - a **resolved** alert is sent with `endsAt` = the resolution time, then
//!   re-sent every `resend_interval` for `resolved_retention` (default 15m),
//!   so a replica that was down when the incident closed still learns it;
//!   then it is forgotten. Exactly: sent at `R + k·resend_interval` for every
//!   `k ≥ 0` with `k·resend_interval < resolved_retention`;
//! - each replica has its own queue, worker and backoff (the `replica` module):
//!   replicas do not forward alerts to each other, and one that is slow or
//!   down never delays the others. Retries go on with backoff until the
//!   replica answers; only the newest state of each alert waits, so the
//!   queue stays bounded by the number of alerts, not the outage's length.
//!   `Retry-After` is honoured; a 4xx other than 408/429 is not retried
//!   (the batch comes back with the alerts' next resend).
//!
//! Unlike Prometheus, resends are scheduled per alert on tokio's clock, not
//! on an evaluation tick, so "every `resend_interval`" is exact (Prometheus'
//! strict comparison re-sends every *two* intervals when the evaluation and
//! resend intervals are equal).
//!
//! # Identity
//! Each alert is kept under the caller's [`AlertKey`]. Changing an alert's
//! labels under the same key (say, escalating `severity`) makes it a
//! different alert to Alertmanager, so the notifier resolves the alert with
//! the old labels (kept and re-sent like any resolved alert) rather than
//! leaving it to expire four resends later.
//!
//! # Time
//! Scheduling uses `tokio::time`, so tests run on the paused clock; alert
//! timestamps come from one injectable [`WallClock`].
//!
//! # Shutdown
//! On shutdown the task queues the current state of every alert (firing
//! alerts stay firing: a detector restart must not resolve incidents, and
//! their `endsAt` covers a restart of up to four resend intervals) and each
//! replica gets until `grace` to take it; what is left is counted as
//! dropped (`shutdown`). The task returns when every replica is done.

pub mod config;
mod replica;
mod telemetry;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use argus_common::shutdown::Shutdown;
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use config::{AlertmanagerConfig, BasicAuth, TlsConfig};
pub use wire::{Alert, AlertError, AlertKey, is_label_name};

use replica::{Auth, Ends, Outgoing, Replica, ReplicaParts, SecretFile};
use telemetry::Telemetry;

/// Where alert timestamps (`startsAt`, `endsAt`) come from. Injectable so
/// tests can tie them to tokio's paused clock.
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> WallClock {
    Arc::new(SystemTime::now)
}

/// An invalid configuration: every problem, each naming its field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid Alertmanager configuration:\n  {}", .problems.join("\n  "))]
pub struct BuildError {
    pub problems: Vec<String>,
}

/// Where a kept alert lives: under the caller's key, or, once its labels
/// were replaced under that key, under the fingerprint of its old labels
/// while its resolution is re-sent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    Key(AlertKey),
    Retired(u64),
}

#[derive(Debug)]
struct Entry {
    alert: Arc<Alert>,
    resolved: Option<Resolved>,
    last_sent: Option<Instant>,
    /// Changed since last queued: send at the next pass.
    dirty: bool,
}

#[derive(Clone, Copy, Debug)]
struct Resolved {
    ends_at: SystemTime,
    at: Instant,
}

struct Shared {
    entries: Mutex<HashMap<Slot, Entry>>,
    wake: Notify,
    clock: WallClock,
    resend: Duration,
    retention: Duration,
    telemetry: Telemetry,
}

/// The handle the detector calls. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

/// The background work: run it once with [`NotifierTask::run`].
pub struct NotifierTask {
    shared: Arc<Shared>,
    replicas: Vec<Arc<Replica>>,
}

impl std::fmt::Debug for NotifierTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierTask")
            .field("replicas", &self.replicas.len())
            .finish_non_exhaustive()
    }
}

const PATH: &str = "alertmanager";

impl AlertmanagerConfig {
    /// Validates (problems under `alertmanager.`), reads credential and CA
    /// files, and registers the metrics.
    pub fn build(&self, registry: &mut Registry) -> Result<(Notifier, NotifierTask), BuildError> {
        self.build_with_clock(registry, system_clock())
    }

    /// [`build`](Self::build) with an injected wall clock.
    pub fn build_with_clock(
        &self,
        registry: &mut Registry,
        clock: WallClock,
    ) -> Result<(Notifier, NotifierTask), BuildError> {
        let mut problems = self.problems(PATH);
        if problems.is_empty() {
            problems = self.file_problems(PATH);
        }
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        let one = |p: String| BuildError { problems: vec![p] };

        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("argus-detector/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Alertmanager never redirects; following one would turn the POST
            // into a GET and the alerts into a 405.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &self.tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                one(format!(
                    "{PATH}.tls.ca_file: cannot read {}: {e}",
                    ca.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| one(format!("{PATH}.tls.ca_file: {e}")))?;
            builder = builder.tls_built_in_root_certs(false);
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .build()
            .map_err(|e| one(format!("{PATH}: cannot build the HTTP client: {e}")))?;

        let telemetry = Telemetry::register(registry);
        let mut replicas = Vec::with_capacity(self.urls.len());
        for (i, url) in self.urls.iter().enumerate() {
            let auth = if let Some(b) = &self.basic_auth {
                Auth::Basic {
                    username: b.username.clone(),
                    password: SecretFile::load(b.password_file.clone())
                        .map_err(|e| one(format!("{PATH}.basic_auth.password_file: {e}")))?,
                }
            } else if let Some(f) = &self.bearer_token_file {
                Auth::Bearer(
                    SecretFile::load(f.clone())
                        .map_err(|e| one(format!("{PATH}.bearer_token_file: {e}")))?,
                )
            } else {
                Auth::None
            };
            if url.scheme() == "http" && !matches!(auth, Auth::None) {
                tracing::warn!(alertmanager = i, endpoint = %endpoint(url), "Alertmanager credentials are sent over plaintext http://; use https:// unless a service mesh encrypts this hop");
            }
            replicas.push(Arc::new(Replica::new(ReplicaParts {
                api: api_url(url),
                client: client.clone(),
                auth,
                timeout: self.timeout,
                retry: self.retry.clone(),
                max_batch: self.max_batch_size,
                capacity: self.queue_capacity,
                validity: self.resend_interval * 4,
                clock: clock.clone(),
                telemetry: telemetry.replica(i, endpoint(url)),
            })));
        }
        let shared = Arc::new(Shared {
            entries: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            clock,
            resend: self.resend_interval,
            retention: self.resolved_retention,
            telemetry,
        });
        Ok((
            Notifier {
                shared: shared.clone(),
            },
            NotifierTask { shared, replicas },
        ))
    }
}

/// `{base}/api/v2/alerts`, keeping a route prefix in the base.
fn api_url(base: &reqwest::Url) -> reqwest::Url {
    let mut u = base.clone();
    let path = u.path().trim_end_matches('/').to_owned();
    u.set_path(&format!("{path}/api/v2/alerts"));
    u
}

/// `scheme://host:port` for logs.
fn endpoint(url: &reqwest::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl Notifier {
    /// Fires the alert under `key`, or updates it. A new alert, or one whose
    /// labels, annotations, start or generator URL changed, is sent at once;
    /// an identical repeat changes nothing (resends keep their cadence).
    /// `alert.ends_at` is ignored: the notifier sets it on every send.
    ///
    /// An alert Alertmanager would reject is refused here instead, so it
    /// cannot spoil the batch it would ride in (see [`Alert::normalise`]).
    pub fn fire(&self, key: AlertKey, mut alert: Alert) -> Result<(), AlertError> {
        alert.normalise()?;
        alert.ends_at = None;
        let s = &self.shared;
        let now_wall = (s.clock)();
        let now = Instant::now();
        let changed = {
            let mut entries = s.entries.lock();
            // The same labels may still be re-sent as resolved after a
            // relabel; they fire again now, so that must stop.
            entries.remove(&Slot::Retired(wire::fingerprint(&alert.labels)));
            let slot = Slot::Key(key);
            let previous = entries.remove(&slot);
            let changed = match previous {
                None => {
                    alert.starts_at.get_or_insert(now_wall);
                    true
                }
                Some(prev) => {
                    let was_firing = prev.resolved.is_none();
                    if was_firing {
                        alert.starts_at = alert.starts_at.or(prev.alert.starts_at);
                    } else {
                        alert.starts_at.get_or_insert(now_wall);
                    }
                    if prev.alert.labels != alert.labels {
                        // A different alert to Alertmanager: resolve the old one.
                        let resolved = prev.resolved.unwrap_or(Resolved {
                            ends_at: now_wall,
                            at: now,
                        });
                        entries.insert(
                            Slot::Retired(wire::fingerprint(&prev.alert.labels)),
                            Entry {
                                dirty: was_firing || prev.dirty,
                                resolved: Some(resolved),
                                ..prev
                            },
                        );
                        true
                    } else if was_firing && *prev.alert == alert {
                        entries.insert(slot.clone(), prev);
                        false
                    } else {
                        true
                    }
                }
            };
            if changed {
                entries.insert(
                    slot,
                    Entry {
                        alert: Arc::new(alert),
                        resolved: None,
                        last_sent: None,
                        dirty: true,
                    },
                );
            }
            changed
        };
        if changed {
            s.wake.notify_one();
        }
        Ok(())
    }

    /// Resolves the alert under `key` as of `resolved_at` (clamped to its
    /// start). Returns false when no firing alert has that key (unknown, or
    /// already resolved: the first resolution time stands).
    pub fn resolve(&self, key: &AlertKey, resolved_at: SystemTime) -> bool {
        let s = &self.shared;
        let done = {
            let mut entries = s.entries.lock();
            match entries.get_mut(&Slot::Key(key.clone())) {
                Some(e) if e.resolved.is_none() => {
                    let start = e.alert.starts_at.unwrap_or(resolved_at);
                    e.resolved = Some(Resolved {
                        ends_at: resolved_at.max(start),
                        at: Instant::now(),
                    });
                    e.dirty = true;
                    true
                }
                _ => false,
            }
        };
        if done {
            s.wake.notify_one();
        } else {
            tracing::debug!(key = %key, "resolve for an alert that is not firing; ignored");
        }
        done
    }

    /// Alerts kept now: (firing, resolved and still re-sent).
    pub fn active(&self) -> (usize, usize) {
        count(&self.shared.entries.lock())
    }
}

fn count(entries: &HashMap<Slot, Entry>) -> (usize, usize) {
    let resolved = entries.values().filter(|e| e.resolved.is_some()).count();
    (entries.len() - resolved, resolved)
}

impl Shared {
    /// The alerts due now (all of them when `all`), marked sent, and when the
    /// next one falls due. Forgets resolved alerts past retention.
    fn collect(&self, now: Instant, all: bool) -> (Vec<Outgoing>, Option<Instant>) {
        let mut out = Vec::new();
        let mut next: Option<Instant> = None;
        let mut entries = self.entries.lock();
        entries.retain(|_, e| match e.resolved {
            Some(r) => e.dirty || now < r.at + self.retention,
            None => true,
        });
        for (slot, e) in entries.iter_mut() {
            let due = all || e.dirty || e.last_sent.is_none_or(|t| now >= t + self.resend);
            if due {
                e.dirty = false;
                e.last_sent = Some(now);
                out.push(Outgoing {
                    slot: slot.clone(),
                    alert: e.alert.clone(),
                    ends: match e.resolved {
                        Some(r) => Ends::Resolved(r.ends_at),
                        None => Ends::Firing,
                    },
                    queued_at: now,
                });
            }
            let mut due_at = e.last_sent.map_or(now, |t| t + self.resend);
            if let Some(r) = e.resolved {
                due_at = due_at.min(r.at + self.retention);
            }
            next = Some(next.map_or(due_at, |n| n.min(due_at)));
        }
        let (firing, resolved) = count(&entries);
        drop(entries);
        self.telemetry.set_active(firing, resolved);
        // Stable order: keeps batches (and test expectations) deterministic.
        out.sort_by(|a, b| a.alert.labels.cmp(&b.alert.labels));
        (out, next)
    }
}

impl NotifierTask {
    /// Sends until `shutdown` fires, then sends the final state of every
    /// alert to every replica, each within `grace`, and returns.
    pub async fn run(self, shutdown: Shutdown, grace: Duration) {
        let mut workers = JoinSet::new();
        for r in &self.replicas {
            workers.spawn(r.clone().run());
        }
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        loop {
            let (batch, next) = self.shared.collect(Instant::now(), false);
            if !batch.is_empty() {
                for r in &self.replicas {
                    r.enqueue(&batch);
                }
            }
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep_until(next.unwrap_or_else(far)) => {}
                _ = shutdown.wait() => break,
            }
        }
        let deadline = Instant::now() + grace;
        let (batch, _) = self.shared.collect(Instant::now(), true);
        tracing::info!(
            alerts = batch.len(),
            ?grace,
            "shutdown: sending the final state of every alert to every Alertmanager"
        );
        for r in &self.replicas {
            r.finish(&batch, deadline);
        }
        while let Some(res) = workers.join_next().await {
            if let Err(e) = res
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_keeps_a_route_prefix() {
        let u = |s: &str| api_url(&reqwest::Url::parse(s).unwrap()).to_string();
        assert_eq!(u("http://am:9093"), "http://am:9093/api/v2/alerts");
        assert_eq!(u("http://am:9093/"), "http://am:9093/api/v2/alerts");
        assert_eq!(
            u("https://proxy/alertmanager/"),
            "https://proxy/alertmanager/api/v2/alerts"
        );
        assert_eq!(
            endpoint(&reqwest::Url::parse("https://am/x").unwrap()),
            "https://am:443"
        );
    }
}
