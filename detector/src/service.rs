//! The running detector: wiring, tasks, and the shutdown story.
//!
//! ```text
//!  OTLP gRPC/HTTP ──▶ receiver ──▶ Consumer ──lock──▶ Core.ingest (event clock moves)
//!                                                          │ step closes
//!  scoring loop ──lock(chunks)──▶ flush ▶ score ▶ incidents ▶ outputs ──▶ Outbox
//!        │                                                               │
//!        │   outside the lock:  Notifier.fire / resolve ──▶ Alertmanager │
//!        │                      Remediator.on_alert ──▶ signed webhooks  │
//!        │   ◀── escalations (remediation did not help) ─────────────────┘
//!  snapshot loop ──lock(chunks)──▶ detector.snapshot (temp + fsync + rename)
//!  ops server: /metrics /healthz /readyz /api/v1/*
//! ```
//!
//! One lock ([`parking_lot::Mutex`]) guards the [`Core`]: ingest, the
//! registry with every series' detector, incidents, maintenance. It is held
//! per OTLP request (microseconds to a few ms for a 4 MiB batch), per chunk
//! of [`SCORE_CHUNK`] points while scoring, per chunk of series while
//! snapshotting, and per API call — never across an `.await` or I/O.
//! Alerts and webhooks are sent after the lock is released.
//!
//! # Shutdown
//!
//! When the [`Shutdown`] fires: `/readyz` turns 503; the receivers stop
//! accepting and drain (their grace); the scoring loop scores what is
//! closed and stops (steps still open — at most `step + grace` of data —
//! are not scored and not kept); the final snapshot is written; the
//! notifier sends the final state of every alert (firing ones stay firing
//! across a restart: their `endsAt` covers four resend intervals); pending
//! remediation actions get their grace and the audit log is closed; the ops
//! server stops last.

pub mod core;
pub mod telemetry;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argus_common::ops::{OpsError, Readiness};
use argus_common::otlp::auth::BearerAuth;
use argus_common::otlp::{
    Accepted, ConsumeError, OtlpConsumer, Payload, ReceiverError, RequestContext,
};
use argus_common::shutdown::Shutdown;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

pub use self::core::{Core, Scored, key_hash, newest_secs};
use self::telemetry::Telemetry;
use crate::alert::{Notifier, WallClock, system_clock};
use crate::config::DetectorConfig;
use crate::incident::Incidents;
use crate::maintenance::Maintenance;
use crate::outputs::Outputs;
use crate::remediation::{Escalation, Remediator};
use crate::scoring::ClockMode;
use crate::snapshot::{self, Encoder, Meta, SeriesOut, SnapshotError, Writer, engine_fingerprint};

/// Points scored per lock acquisition.
pub const SCORE_CHUNK: usize = 2048;
/// Open incidents whose log templates are re-examined per pass.
const TEMPLATE_REFRESH: usize = 16;
/// Series encoded per lock acquisition while snapshotting.
const SNAPSHOT_CHUNK: usize = 4096;

/// Why the service could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Permanent: fix the configuration. Every problem, with its path.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    #[error(transparent)]
    Ops(#[from] OpsError),
}

impl ServiceError {
    fn config(problems: Vec<String>) -> Self {
        ServiceError::Config(crate::config::ConfigError(problems))
    }
}

/// What the tasks, the consumer and the API share.
pub struct Shared {
    pub(crate) core: Mutex<Core>,
    pub(crate) cfg: DetectorConfig,
    pub(crate) telemetry: Telemetry,
    pub(crate) outputs: Outputs,
    pub(crate) notifier: Option<Notifier>,
    pub(crate) remediator: Remediator,
    /// Ids of open incidents, for remediation's "still open?".
    open_ids: Arc<RwLock<HashSet<String>>>,
    /// Event mode: a step closed.
    wake: Notify,
    clock: WallClock,
    pub(crate) api_auth: Option<BearerAuth>,
    engine_fp: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl Shared {
    /// Wall clock, unix seconds.
    pub fn wall(&self) -> i64 {
        unix((self.clock)())
    }

    /// The scoring clock: wall, or the event watermark.
    pub fn now(&self) -> i64 {
        match self.cfg.scoring.clock {
            ClockMode::Wall => self.wall(),
            ClockMode::Event => self.core.lock().event_clock,
        }
    }

    fn now_locked(&self, core: &Core) -> i64 {
        match self.cfg.scoring.clock {
            ClockMode::Wall => self.wall(),
            ClockMode::Event => core.event_clock,
        }
    }

    /// One scoring pass at the current clock (see the module docs).
    pub async fn score_pass(&self) {
        let started = std::time::Instant::now();
        let (points, now) = {
            let mut core = self.core.lock();
            let now = self.now_locked(&core);
            (core.ingest.flush(now), now)
        };
        let mut scored = Scored::default();
        for chunk in points.chunks(SCORE_CHUNK) {
            {
                let mut core = self.core.lock();
                for p in chunk {
                    core.score(p, &mut scored);
                }
            }
            tokio::task::yield_now().await;
        }
        let (outbox, rows, learning, open, windows) = {
            let mut core = self.core.lock();
            core.housekeeping(now);
            core.refresh_templates(TEMPLATE_REFRESH);
            let outbox = core.outbox();
            let (rows, learning) = core.output_rows(self.cfg.outputs.max_series);
            let open: HashSet<String> =
                core.incidents.open().iter().map(|i| i.id.clone()).collect();
            let windows = core.maintenance.active_count(now);
            (outbox, rows, learning, open, windows)
        };
        *self.open_ids.write() = open.clone();
        self.outputs.publish(rows);
        let t = &self.telemetry;
        t.points.inc_by(scored.points);
        t.maintenance_points.inc_by(scored.maintenance);
        t.claimed_series.inc_by(scored.claimed);
        t.learning.set(learning);
        t.incidents_open.set(open.len() as i64);
        t.maintenance_active.set(windows as i64);
        if let Some(newest) = scored.newest {
            let end = newest + self.cfg.scoring.step.as_secs() as i64;
            t.lag.set((self.wall() - end) as f64);
        }
        self.deliver(outbox);
        t.step_duration.observe(started.elapsed().as_secs_f64());
    }

    /// Sends what a pass decided, outside the lock.
    pub(crate) fn deliver(&self, outbox: self::core::Outbox) {
        for inc in &outbox.opened {
            self.telemetry.incident_opened(inc);
        }
        for inc in &outbox.resolved {
            self.telemetry.incident_resolved(inc);
        }
        if let Some(n) = &self.notifier {
            for (key, alert, id) in outbox.fire {
                if let Err(e) = n.fire(key, alert) {
                    self.telemetry.alert_refused(&id, &e);
                }
            }
            for (key, at, _) in outbox.resolve {
                n.resolve(&key, UNIX_EPOCH + Duration::from_secs(at.max(0) as u64));
            }
        }
        for (id, labels, annotations) in outbox.remediate {
            self.remediator.on_alert(&id, &labels, &annotations);
        }
    }

    /// A remediation did not help: raise and annotate, re-send.
    fn escalate(&self, e: Escalation) {
        let outbox = {
            let mut core = self.core.lock();
            if !core
                .incidents
                .escalate(&e.incident_id, &e.severity, &e.annotation)
            {
                return;
            }
            core.outbox()
        };
        self.telemetry
            .incident_escalated(&e.incident_id, &e.severity, &e.rule);
        self.deliver(outbox);
    }

    /// Writes a snapshot (blocking: run it on a blocking thread).
    pub fn write_snapshot(&self) -> Result<Option<u64>, SnapshotError> {
        let Some(dir) = self.cfg.scoring.snapshot.dir.clone() else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let mut w = Writer::create(&dir)?;
        let mut enc = Encoder::default();
        let ids = {
            let core = self.core.lock();
            let (open, resolved, next) = core.incidents.export();
            enc.meta(&Meta {
                taken_at: self.wall(),
                clock: match self.cfg.scoring.clock {
                    ClockMode::Wall => core.ingest.now(),
                    ClockMode::Event => core.event_clock,
                },
                step_secs: self.cfg.scoring.step.as_secs(),
                engine: self.engine_fp,
                next_incident: next,
                version: env!("CARGO_PKG_VERSION").into(),
            });
            for inc in open.iter().chain(&resolved) {
                enc.incident(inc);
            }
            for win in core.maintenance.export() {
                enc.window(&win);
            }
            // Restored series not claimed yet are kept, so a restart
            // shortly after another does not forget them.
            for (display, p) in &core.pending {
                let (name, labels) = split_display(display);
                enc.series(&SeriesOut {
                    signal: p.signal,
                    name: &name,
                    labels: labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                    detector: &p.detector,
                    recent: p.recent.clone(),
                    incident: p.incident,
                });
            }
            core.ingest
                .registry()
                .iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        };
        w.take(&mut enc)?;
        let mut series = 0usize;
        for chunk in ids.chunks(SNAPSHOT_CHUNK) {
            {
                let core = self.core.lock();
                for &id in chunk {
                    let Some(s) = core.ingest.series(id) else {
                        continue;
                    };
                    let Some(out) = SeriesOut::live(&s) else {
                        continue;
                    };
                    enc.series(&out);
                    series += 1;
                }
            }
            w.take(&mut enc)?;
        }
        let bytes = w.finish()?;
        self.telemetry
            .snapshot_written(bytes, series, started.elapsed());
        Ok(Some(bytes))
    }
}

/// `name{k="v",…}` back into its parts (for pending series, which keep
/// only their display key).
fn split_display(display: &str) -> (String, Vec<(String, String)>) {
    let Some(open) = display.find('{') else {
        return (display.to_string(), Vec::new());
    };
    let name = display[..open].to_string();
    let body = &display[open + 1..display.len().saturating_sub(1)];
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let mut k = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            k.push(c);
            chars.next();
        }
        if chars.next().is_none() || chars.next() != Some('"') {
            break;
        }
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some(o) => v.push(o),
                    None => break,
                },
                '"' => break,
                c => v.push(c),
            }
        }
        labels.push((k, v));
        if chars.next() != Some(',') {
            break;
        }
    }
    (name, labels)
}

/// The OTLP consumer: into the core, under the lock.
#[derive(Clone)]
struct Consumer(Arc<Shared>);

impl OtlpConsumer for Consumer {
    async fn consume(
        &self,
        payload: Payload,
        _ctx: RequestContext,
    ) -> Result<Accepted, ConsumeError> {
        let s = &self.0;
        let wall = s.wall();
        let (stats, wake) = {
            let mut core = s.core.lock();
            let (now, wake) = match s.cfg.scoring.clock {
                ClockMode::Wall => (wall, false),
                ClockMode::Event => {
                    let wake = core.advance_event_clock(&payload, wall);
                    (core.event_clock, wake)
                }
            };
            (core.ingest(&payload, now), wake)
        };
        if wake {
            s.wake.notify_one();
        }
        Ok(match stats.message() {
            Some(m) => Accepted::partial(stats.rejected() as i64, m),
            None => Accepted::all(),
        })
    }
}

/// A started detector.
pub struct Running {
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub ops_addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// The process' shutdown (given to `start`).
    main: Shutdown,
    /// Stops the ops server, last.
    ops_stop: Shutdown,
    readiness: Readiness,
    receiver: JoinHandle<Result<(), ReceiverError>>,
    scoring: JoinHandle<()>,
    snapshots: Option<JoinHandle<()>>,
    /// Re-reads the API token file (a mounted Secret changes in place).
    reloader: Option<JoinHandle<()>>,
    notifier: Option<(JoinHandle<()>, Shutdown)>,
    ops: JoinHandle<Result<(), OpsError>>,
}

/// Builds and starts the detector with the system clock.
pub async fn start(cfg: DetectorConfig, shutdown: Shutdown) -> Result<Running, ServiceError> {
    start_with_clock(cfg, shutdown, system_clock()).await
}

/// [`start`] with an injected wall clock (alert times, webhook times, the
/// wall scoring clock).
pub async fn start_with_clock(
    cfg: DetectorConfig,
    shutdown: Shutdown,
    clock: WallClock,
) -> Result<Running, ServiceError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(ServiceError::config(problems));
    }
    let mut reg = Registry::with_prefix("argus_detector");
    let ingest = cfg
        .ingest
        .build(&mut reg)
        .map_err(|e| ServiceError::config(e.0))?;
    let telemetry = Telemetry::register(&mut reg);
    let outputs = Outputs::default();
    reg.register_collector(Box::new(outputs.clone()));

    let (notifier, notifier_task) = match &cfg.alerting.alertmanager {
        Some(am) => {
            let (n, t) = am
                .build_with_clock(&mut reg, clock.clone())
                .map_err(|e| ServiceError::config(e.problems))?;
            (Some(n), Some(t))
        }
        None => {
            tracing::warn!(
                "alerting.alertmanager is not set: incidents are logged and served by /api/v1/incidents only"
            );
            (None, None)
        }
    };

    let open_ids: Arc<RwLock<HashSet<String>>> = Arc::default();
    let (esc_tx, mut esc_rx) = mpsc::unbounded_channel::<Escalation>();
    let status_ids = open_ids.clone();
    let remediator = cfg
        .remediation
        .build_with_clock(
            &mut reg,
            move |id: &str| status_ids.read().contains(id),
            move |e: Escalation| {
                let _ = esc_tx.send(e);
            },
            shutdown.child(),
            clock.clone(),
        )
        .map_err(|e| ServiceError::config(e.problems))?;
    let api_auth = match &cfg.api.auth {
        Some(a) => {
            Some(BearerAuth::load(a, "api.auth").map_err(|p| ServiceError::config(vec![p]))?)
        }
        None => None,
    };

    let engine_fp = engine_fingerprint(&cfg.engine);
    let mut core = Core::new(
        ingest,
        cfg.engine.clone(),
        Incidents::new(cfg.incidents.clone(), cfg.alerting.critical_score),
        Maintenance::new(&cfg.maintenance),
        cfg.scoring.recent_points,
        cfg.alerting.clone(),
        cfg.outputs.links(),
    );
    restore(&cfg, &mut core, &telemetry, engine_fp, unix(clock())).await;
    if cfg.scoring.snapshot.dir.is_none() {
        tracing::warn!(
            "scoring.snapshot.dir is not set: learnt baselines are lost at every restart"
        );
    }

    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        cfg: cfg.clone(),
        telemetry,
        outputs,
        notifier,
        remediator,
        open_ids,
        wake: Notify::new(),
        clock,
        api_auth,
        engine_fp,
    });
    {
        // Restored incidents are open: remediation's status must know.
        let core = shared.core.lock();
        *shared.open_ids.write() = core.incidents.open().iter().map(|i| i.id.clone()).collect();
    }

    let receiver = cfg
        .receiver
        .build_at("receiver", Consumer(shared.clone()), &mut reg)?
        .bind()
        .await?;
    let grpc_addr = receiver.grpc_addr();
    let http_addr = receiver.http_addr();

    let readiness = Readiness::new();
    let ready = readiness.register("detector");
    let ops = cfg
        .ops
        .server()
        .build(Arc::new(reg), readiness.clone())?
        .merge(crate::api::routes(shared.clone()))
        .bind()
        .await?;
    let ops_addr = ops.local_addr();

    // Restored open incidents keep paging: re-fire them now.
    {
        let outbox = {
            let mut core = shared.core.lock();
            let ids: Vec<u64> = core.incidents.open().iter().map(|i| i.seq).collect();
            for seq in ids {
                core.incidents.mark_changed(seq);
            }
            core.outbox()
        };
        shared.deliver(self::core::Outbox {
            remediate: Vec::new(),
            opened: Vec::new(),
            ..outbox
        });
    }

    let receiver = tokio::spawn(receiver.serve(shutdown.child()));
    let ops_shutdown = Shutdown::new();
    let ops_task = {
        let stop = ops_shutdown.clone();
        tokio::spawn(ops.serve(stop))
    };
    // The ops server outlives everything else; it is stopped in `wait`.
    let ops_guard = ops_shutdown;

    let scoring = {
        let s = shared.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = next_tick(&s) => s.score_pass().await,
                    Some(e) = esc_rx.recv() => s.escalate(e),
                    _ = stop.wait() => break,
                }
            }
        })
    };
    let snapshots = cfg.scoring.snapshot.dir.as_ref().map(|_| {
        let s = shared.clone();
        let stop = shutdown.clone();
        let every = cfg.scoring.snapshot.interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => snapshot_now(&s).await,
                    _ = stop.wait() => break,
                }
            }
        })
    });
    let reloader = cfg
        .api
        .auth
        .as_ref()
        .filter(|a| a.token_file.is_some())
        .map(|a| {
            let s = shared.clone();
            let stop = shutdown.clone();
            let every = a.token_reload_interval;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {
                            if let Some(Err(e)) = s.api_auth.as_ref().map(|a| a.reload()) {
                                tracing::warn!(error = %e, "api.auth: token file unreadable; keeping the previous tokens");
                            }
                        }
                        _ = stop.wait() => break,
                    }
                }
            })
        });
    let notifier = notifier_task.map(|t| {
        let stop = Shutdown::new();
        let grace = cfg.alerting.shutdown_grace;
        (tokio::spawn(t.run(stop.clone(), grace)), stop)
    });
    ready.ready();
    tracing::info!(
        grpc = ?grpc_addr,
        http = ?http_addr,
        ops = %ops_addr,
        clock = ?cfg.scoring.clock,
        step = ?cfg.scoring.step,
        "argus-detector started"
    );
    Ok(Running {
        grpc_addr,
        http_addr,
        ops_addr,
        shared,
        main: shutdown,
        ops_stop: ops_guard,
        readiness,
        receiver,
        scoring,
        snapshots,
        reloader,
        notifier,
        ops: ops_task,
    })
}

/// Waits until the scoring loop should run.
async fn next_tick(s: &Shared) {
    match s.cfg.scoring.clock {
        ClockMode::Event => {
            // A step closed — or, as a safety net, a second passed.
            tokio::select! {
                _ = s.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        ClockMode::Wall => {
            let step = s.cfg.scoring.step.as_secs_f64();
            let grace = s.cfg.ingest.grace().as_secs_f64();
            let now = (s.clock)()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            // Steps close at k·step + grace; wake just after the next one.
            let next = (((now - grace) / step).floor() + 1.0) * step + grace;
            let wait = (next - now).max(0.0) + 0.05;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
    }
}

async fn snapshot_now(s: &Arc<Shared>) {
    let s2 = s.clone();
    let res = tokio::task::spawn_blocking(move || s2.write_snapshot()).await;
    match res {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => s.telemetry.snapshot_failed(&e),
        Err(e) => tracing::error!(error = %e, "snapshot task panicked"),
    }
}

/// Reads the snapshot into the core (a corrupt one is reported, skipped).
async fn restore(cfg: &DetectorConfig, core: &mut Core, t: &Telemetry, engine_fp: u64, wall: i64) {
    let Some(dir) = cfg.scoring.snapshot.dir.clone() else {
        return;
    };
    let read = tokio::task::spawn_blocking(move || snapshot::read(&dir)).await;
    let snap = match read {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => {
            tracing::info!("no snapshot yet: every series starts learning");
            return;
        }
        Ok(Err(e)) => {
            t.snapshot_unusable(&e);
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "snapshot reader panicked; starting fresh");
            return;
        }
    };
    let idle = cfg.ingest.series.idle_after.as_secs() as i64;
    let start = match cfg.scoring.clock {
        ClockMode::Wall => wall,
        ClockMode::Event => snap.meta.clock,
    };
    let mut series = snap.series;
    if snap.meta.engine != engine_fp {
        tracing::warn!(
            series = series.len(),
            "engine settings changed since the snapshot: learnt model states are discarded (incidents and windows kept)"
        );
        series.clear();
    }
    if snap.meta.step_secs != cfg.scoring.step.as_secs() {
        tracing::warn!(
            was = snap.meta.step_secs,
            now = cfg.scoring.step.as_secs(),
            "scoring.step changed since the snapshot: learnt model states are discarded"
        );
        series.clear();
    }
    let n = series.len();
    let open = snap.open.len();
    core.restore_series(series, start.saturating_add(idle));
    core.incidents
        .restore(snap.open, snap.resolved, snap.meta.next_incident);
    core.maintenance.restore(snap.windows);
    if cfg.scoring.clock == ClockMode::Event {
        core.event_clock = snap.meta.clock;
        // Steps up to the snapshot's clock were scored: data for them is late.
        core.ingest.flush(snap.meta.clock);
    }
    t.snapshot_restored(n, open, snap.bytes, wall - snap.meta.taken_at);
}

impl Running {
    /// Stops after `shutdown` fired, in the order of the module docs.
    /// Returns the first task error.
    pub async fn wait(self) -> Result<(), ServiceError> {
        self.main.wait().await;
        self.readiness.shutting_down();
        tracing::info!("shutting down");
        let mut first_err: Option<ServiceError> = None;
        match self.receiver.await {
            Ok(Err(e)) => first_err = Some(e.into()),
            Err(e) => tracing::error!(error = %e, "receiver task failed"),
            Ok(Ok(())) => {}
        }
        let _ = self.scoring.await;
        if let Some(h) = self.snapshots {
            let _ = h.await;
        }
        if let Some(h) = self.reloader {
            let _ = h.await;
        }
        // Score what closed while the receivers drained, then persist.
        self.shared.score_pass().await;
        if self.shared.cfg.scoring.snapshot.dir.is_some() {
            snapshot_now(&self.shared).await;
        }
        if let Some((h, stop)) = self.notifier {
            stop.trigger();
            let _ = h.await;
        }
        let grace = self.shared.cfg.alerting.shutdown_grace;
        if !self.shared.remediator.wait(grace).await {
            tracing::warn!(
                ?grace,
                "remediation actions still running after the grace period"
            );
        }
        self.ops_stop.trigger();
        match self.ops.await {
            Ok(Err(e)) => {
                first_err.get_or_insert(e.into());
            }
            Err(e) => tracing::error!(error = %e, "ops server task failed"),
            Ok(Ok(())) => {}
        }
        tracing::info!("argus-detector stopped");
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_keys_split_back() {
        let d = crate::snapshot::display_key(
            "span.latency.p99",
            [("operation", "GET /a,\"b\"\\c"), ("service", "x\ny")].into_iter(),
        );
        let (n, l) = split_display(&d);
        assert_eq!(n, "span.latency.p99");
        assert_eq!(
            l,
            vec![
                ("operation".to_string(), "GET /a,\"b\"\\c".to_string()),
                ("service".to_string(), "x\ny".to_string())
            ]
        );
        assert_eq!(split_display("up"), ("up".to_string(), vec![]));
    }
}
