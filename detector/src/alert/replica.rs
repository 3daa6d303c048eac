//! One Alertmanager replica: its queue of waiting alerts and the worker that
//! POSTs them.
//!
//! # Queue
//! The queue holds the newest state of each alert, not a log of sends: an
//! alert queued again (its resend came up, it was resolved) replaces the
//! waiting copy. During an outage the queue therefore stays at one entry per
//! alert however long the outage lasts, and when the replica comes back it
//! receives the current state, not a replay of history. Entries leave in
//! queueing order, `max_batch_size` per POST. Past `queue_capacity` distinct
//! alerts the oldest waiting one is dropped and counted; the notifier re-queues
//! it at its next resend.
//!
//! # Worker
//! Sends a batch, and on a retryable failure puts the batch back (unless a
//! newer state of an alert arrived meanwhile) and waits a backoff delay
//! (`Retry-After` honoured) before the next attempt. Each replica has its own
//! worker, queue and backoff, so a slow or dead replica delays nobody else.
//! A firing alert's `endsAt` is computed when the request is built, so an
//! alert that waited out an outage is not delivered already expired.
//!
//! # Final flush
//! On shutdown the notifier queues the current state of every alert and
//! gives the worker a deadline: the worker keeps sending (retrying without
//! waiting out a backoff begun before shutdown) until its queue is empty or
//! the deadline passes; whatever is left then is counted as dropped
//! (`shutdown`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use argus_common::backoff::BackoffConfig;
use argus_common::error::chain;
use parking_lot::Mutex;
use reqwest::{StatusCode, Url};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::read_secret;
use super::telemetry::{Outcome, ReplicaTelemetry};
use super::{Alert, Slot, WallClock};

/// How an alert's `endsAt` is set when it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ends {
    /// Firing: `endsAt = now + validity` at send time.
    Firing,
    /// Resolved at this time.
    Resolved(SystemTime),
}

/// One alert's state as queued for a replica.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub(crate) slot: Slot,
    /// Normalised, with `starts_at` set.
    pub(crate) alert: Arc<Alert>,
    pub(crate) ends: Ends,
    pub(crate) queued_at: Instant,
}

/// Credentials, read from their files at each request so rotation works;
/// a failed read keeps the last good value (and says so once).
#[derive(Debug)]
pub(crate) enum Auth {
    None,
    Basic {
        username: String,
        password: SecretFile,
    },
    Bearer(SecretFile),
}

#[derive(Debug)]
pub(crate) struct SecretFile {
    path: PathBuf,
    last_good: Mutex<(String, bool)>,
}

impl SecretFile {
    pub(crate) fn load(path: PathBuf) -> Result<Self, String> {
        let v = read_secret(&path)?;
        Ok(Self {
            path,
            last_good: Mutex::new((v, false)),
        })
    }

    fn current(&self) -> String {
        let mut g = self.last_good.lock();
        match read_secret(&self.path) {
            Ok(v) => {
                *g = (v, false);
            }
            Err(e) if !g.1 => {
                g.1 = true;
                tracing::warn!(error = %e, "Alertmanager credential file unreadable; still sending the last good value");
            }
            Err(_) => {}
        }
        g.0.clone()
    }
}

impl Auth {
    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::None => req,
            Auth::Basic { username, password } => {
                req.basic_auth(username, Some(password.current()))
            }
            Auth::Bearer(token) => req.bearer_auth(token.current()),
        }
    }
}

/// Alerts waiting for this replica, newest state per slot, in queueing order.
#[derive(Default)]
struct Pending {
    next_seq: u64,
    by_seq: BTreeMap<u64, Outgoing>,
    seq_of: HashMap<Slot, u64>,
}

impl Pending {
    fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Queues `o` behind everything waiting, replacing a waiting copy of the
    /// same alert. Returns how many alerts were dropped to stay in capacity.
    fn push(&mut self, o: Outgoing, capacity: usize) -> usize {
        if let Some(old) = self.seq_of.remove(&o.slot) {
            self.by_seq.remove(&old);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.seq_of.insert(o.slot.clone(), seq);
        self.by_seq.insert(seq, o);
        self.trim(capacity)
    }

    /// Puts a failed batch back at its old place, except alerts that have a
    /// newer state waiting.
    fn put_back(&mut self, batch: Vec<(u64, Outgoing)>, capacity: usize) -> usize {
        for (seq, o) in batch {
            if !self.seq_of.contains_key(&o.slot) {
                self.seq_of.insert(o.slot.clone(), seq);
                self.by_seq.insert(seq, o);
            }
        }
        self.trim(capacity)
    }

    fn trim(&mut self, capacity: usize) -> usize {
        let mut dropped = 0;
        while self.by_seq.len() > capacity {
            let (_, o) = self.by_seq.pop_first().expect("non-empty");
            self.seq_of.remove(&o.slot);
            dropped += 1;
        }
        dropped
    }

    fn take(&mut self, max: usize) -> Vec<(u64, Outgoing)> {
        let mut out = Vec::with_capacity(max.min(self.by_seq.len()));
        while out.len() < max {
            let Some((seq, o)) = self.by_seq.pop_first() else {
                break;
            };
            self.seq_of.remove(&o.slot);
            out.push((seq, o));
        }
        out
    }
}

/// Why an attempt failed.
enum Failure {
    Retryable {
        outcome: Outcome,
        error: String,
        retry_after: Option<Duration>,
    },
    Permanent(String),
}

pub(crate) struct Replica {
    api: Url,
    client: reqwest::Client,
    auth: Auth,
    timeout: Duration,
    retry: BackoffConfig,
    max_batch: usize,
    capacity: usize,
    /// `4 × resend_interval`.
    validity: Duration,
    clock: WallClock,
    pending: Mutex<Pending>,
    wake: Notify,
    /// Fired once the notifier queued the final state; the deadline is set first.
    finishing: CancellationToken,
    deadline: Mutex<Option<Instant>>,
    pub(crate) telemetry: ReplicaTelemetry,
}

pub(crate) struct ReplicaParts {
    pub(crate) api: Url,
    pub(crate) client: reqwest::Client,
    pub(crate) auth: Auth,
    pub(crate) timeout: Duration,
    pub(crate) retry: BackoffConfig,
    pub(crate) max_batch: usize,
    pub(crate) capacity: usize,
    pub(crate) validity: Duration,
    pub(crate) clock: WallClock,
    pub(crate) telemetry: ReplicaTelemetry,
}

impl Replica {
    pub(crate) fn new(p: ReplicaParts) -> Self {
        Self {
            api: p.api,
            client: p.client,
            auth: p.auth,
            timeout: p.timeout,
            retry: p.retry,
            max_batch: p.max_batch,
            capacity: p.capacity,
            validity: p.validity,
            clock: p.clock,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            finishing: CancellationToken::new(),
            deadline: Mutex::new(None),
            telemetry: p.telemetry,
        }
    }

    pub(crate) fn enqueue(&self, batch: &[Outgoing]) {
        let (dropped, len) = {
            let mut p = self.pending.lock();
            let dropped: usize = batch.iter().map(|o| p.push(o.clone(), self.capacity)).sum();
            (dropped, p.len())
        };
        self.telemetry.set_pending(len);
        if dropped > 0 {
            self.telemetry.queue_full(dropped);
        }
        self.wake.notify_one();
    }

    /// Queues the final state and starts the final flush, due by `deadline`.
    pub(crate) fn finish(&self, batch: &[Outgoing], deadline: Instant) {
        *self.deadline.lock() = Some(deadline);
        self.enqueue(batch);
        self.finishing.cancel();
    }

    pub(crate) async fn run(self: Arc<Self>) {
        let mut backoff = self.retry.build();
        loop {
            let finishing = self.finishing.is_cancelled();
            let deadline = *self.deadline.lock();
            let batch = {
                let mut p = self.pending.lock();
                p.take(self.max_batch)
            };
            if batch.is_empty() {
                self.telemetry.set_pending(0);
                if finishing {
                    return;
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = self.finishing.cancelled() => {}
                }
                continue;
            }
            let mut timeout = self.timeout;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let rest = batch.len() + self.pending.lock().take(usize::MAX).len();
                    self.telemetry.set_pending(0);
                    self.telemetry.shutdown_unsent(rest);
                    return;
                }
                timeout = timeout.min(left);
            }
            let oldest = batch
                .iter()
                .map(|(_, o)| o.queued_at)
                .min()
                .expect("non-empty");
            match self.send(&batch, timeout).await {
                Ok(()) => {
                    backoff.reset();
                    self.telemetry.delivered(batch.len(), oldest.elapsed());
                }
                Err(Failure::Permanent(error)) => {
                    backoff.reset();
                    self.telemetry.rejected(batch.len(), &error);
                }
                Err(Failure::Retryable {
                    outcome,
                    error,
                    retry_after,
                }) => {
                    let n = batch.len();
                    let delay = backoff.next_with_hint(retry_after);
                    let (dropped, len) = {
                        let mut p = self.pending.lock();
                        let d = p.put_back(batch, self.capacity);
                        (d, p.len())
                    };
                    self.telemetry.set_pending(len);
                    if dropped > 0 {
                        self.telemetry.queue_full(dropped);
                    }
                    self.telemetry.failed(outcome, n, &error, delay);
                    let mut until = Instant::now() + delay;
                    if let Some(d) = deadline {
                        until = until.min(d);
                    }
                    if finishing {
                        tokio::time::sleep_until(until).await;
                    } else {
                        // Shutdown cuts the wait short: the final state goes
                        // out at once, within the grace period.
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => {}
                            _ = self.finishing.cancelled() => {}
                        }
                    }
                }
            }
        }
    }

    fn body(&self, batch: &[(u64, Outgoing)]) -> Vec<Alert> {
        let now = (self.clock)();
        batch
            .iter()
            .map(|(_, o)| {
                let mut a = (*o.alert).clone();
                let starts = a.starts_at.unwrap_or(now);
                let ends = match o.ends {
                    Ends::Firing => now + self.validity,
                    Ends::Resolved(t) => t,
                };
                // Alertmanager refuses endsAt before startsAt (and the whole
                // batch with it).
                a.ends_at = Some(ends.max(starts));
                a
            })
            .collect()
    }

    async fn send(&self, batch: &[(u64, Outgoing)], timeout: Duration) -> Result<(), Failure> {
        let body = self.body(batch);
        let req = self
            .client
            .post(self.api.clone())
            .timeout(timeout)
            .json(&body);
        let req = self.auth.apply(req);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let outcome = if e.is_timeout() {
                    Outcome::Timeout
                } else {
                    Outcome::Unreachable
                };
                return Err(Failure::Retryable {
                    outcome,
                    error: chain(&e),
                    retry_after: None,
                });
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        let error = format!("HTTP {status}: {}", snippet(&text));
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(Failure::Retryable {
                outcome: Outcome::RetryableError,
                error,
                retry_after,
            })
        } else {
            Err(Failure::Permanent(error))
        }
    }
}

/// The first line of a response body, bounded, for a log line.
fn snippet(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut s: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKey;

    fn out(key: &str, ends: Ends) -> Outgoing {
        Outgoing {
            slot: Slot::Key(AlertKey::from(key)),
            alert: Arc::new(Alert::new([("alertname", key)])),
            ends,
            queued_at: Instant::now(),
        }
    }

    fn keys(p: &Pending) -> Vec<String> {
        p.by_seq
            .values()
            .map(|o| match &o.slot {
                Slot::Key(k) => k.to_string(),
                Slot::Retired(f) => format!("{f:x}"),
            })
            .collect()
    }

    #[test]
    fn a_requeued_alert_replaces_its_waiting_copy_and_capacity_drops_the_oldest() {
        let mut p = Pending::default();
        assert_eq!(p.push(out("a", Ends::Firing), 2), 0);
        assert_eq!(p.push(out("b", Ends::Firing), 2), 0);
        // "a" again: one copy, now behind "b", with its newest state.
        let resolved = Ends::Resolved(SystemTime::UNIX_EPOCH);
        assert_eq!(p.push(out("a", resolved), 2), 0);
        assert_eq!(keys(&p), ["b", "a"]);
        assert_eq!(p.by_seq.values().last().unwrap().ends, resolved);
        // A third distinct alert overflows: the oldest waiting ("b") goes.
        assert_eq!(p.push(out("c", Ends::Firing), 2), 1);
        assert_eq!(keys(&p), ["a", "c"]);
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_unless_superseded() {
        let mut p = Pending::default();
        for k in ["a", "b", "c"] {
            p.push(out(k, Ends::Firing), 10);
        }
        let batch = p.take(2);
        assert_eq!(keys(&p), ["c"]);
        // While the batch was in flight, "a" was resolved.
        p.push(out("a", Ends::Resolved(SystemTime::UNIX_EPOCH)), 10);
        p.put_back(batch, 10);
        assert_eq!(keys(&p), ["b", "c", "a"]);
        assert!(matches!(
            p.by_seq.values().last().unwrap().ends,
            Ends::Resolved(_)
        ));
    }
}
