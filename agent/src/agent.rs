//! Assembly: an [`AgentConfig`] becomes running tasks, and a shutdown
//! signal becomes an orderly stop.
//!
//! # Start
//!
//! [`start`] builds every component in one pass, registering all metrics in
//! one registry prefixed `argus_agent` (so the registry can be frozen for
//! the ops server before anything listens), opens and recovers the disk
//! queue, binds the ops server and the OTLP receivers, and spawns:
//!
//! - the sources: OTLP receivers, file, host, scrape;
//! - one [`Batcher`] per signal that has a source;
//! - the drain ([`crate::pipeline::drain`]) from the queue to the exporter;
//! - the ops server (`/metrics`, `/healthz`, `/readyz`).
//!
//! `/readyz` says ready once the queue is open and the receivers are bound,
//! and not ready from the moment shutdown begins.
//!
//! # Stop
//!
//! When the shutdown signal fires (SIGTERM/SIGINT in the binary):
//!
//! 1. `/readyz` turns 503, so the pod leaves its Services.
//! 2. Sources stop: the receivers stop accepting and let in-flight requests
//!    finish (each waits for its batch to be durable); the file source stops
//!    reading, waits for its in-flight batches' acks and writes its last
//!    checkpoint; host and scrape stop. Each closes its channels.
//! 3. Each batcher, once all its channels are closed, flushes its open batch
//!    into the queue and fires the acks.
//! 4. The drain stops reading the queue; exports on the wire finish (bounded
//!    by `exporter.timeout`), retry waits end at once. Records not
//!    delivered stay queued for the next start.
//! 5. After everything finished, or `shutdown_grace` ran out (logged: what
//!    was not finished is still in the queue or re-read from the files),
//!    the ops server stops last.
//!
//! A task that fails (the file source cannot read its checkpoints, a
//! receiver's socket breaks) stops the agent with an error, so the
//! orchestrator restarts it visibly rather than it running half-blind.

use std::net::SocketAddr;
use std::sync::Arc;

use argus_common::ops::{OpsError, Readiness};
use argus_common::otlp::{ReceiverError, Signal};
use argus_common::shutdown::{Shutdown, TaskTracker, wait_all};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::batch::{Batcher, Inputs};
use crate::config::AgentConfig;
use crate::exporter::BuildError;
use crate::pipeline::{DroppedRecords, Envelope, MemoryLimiter, PipelineTelemetry, drain};
use crate::queue::QueueError;
use crate::sources::file::{FileSourceContext, FileSourceError};
use crate::sources::otlp::{DEFAULT_ACK_TIMEOUT, OtlpSource};
use crate::transform;

/// Envelopes each source may have waiting for its batcher. Small: a waiting
/// envelope holds memory budget, and the batcher takes them quickly unless
/// the queue pushes back, which is then what the source should feel.
const FILE_CHANNEL: usize = 8;
const OTLP_CHANNEL: usize = 64;
const HOST_CHANNEL: usize = 2;
const SCRAPE_CHANNEL: usize = 4;

/// Why the agent could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Permanent: fix the configuration.
    #[error("{}", .0.join("\n"))]
    Config(Vec<String>),
    #[error("disk queue: {0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Receiver(#[from] ReceiverError),
    #[error("{0}")]
    Ops(#[from] OpsError),
    #[error("file source: {0}")]
    FileSource(#[from] FileSourceError),
}

impl From<BuildError> for AgentError {
    fn from(e: BuildError) -> Self {
        AgentError::Config(e.problems)
    }
}

impl From<transform::ConfigError> for AgentError {
    fn from(e: transform::ConfigError) -> Self {
        AgentError::Config(e.0)
    }
}

impl From<crate::config::ConfigError> for AgentError {
    fn from(e: crate::config::ConfigError) -> Self {
        AgentError::Config(e.problems)
    }
}

/// A started agent.
pub struct RunningAgent {
    /// Where the OTLP receivers listen (the real ports when configured as 0).
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub ops_addr: SocketAddr,
    pub readiness: Readiness,
    /// The pipeline's counters (tests read them; production scrapes them).
    pub telemetry: PipelineTelemetry,
    shutdown: Shutdown,
    grace: std::time::Duration,
    pipeline: TaskTracker,
    ops: TaskTracker,
    ops_shutdown: Shutdown,
    failure: Arc<Mutex<Option<AgentError>>>,
}

impl std::fmt::Debug for RunningAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningAgent")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("ops_addr", &self.ops_addr)
            .finish_non_exhaustive()
    }
}

/// Validates `config`, builds and starts everything; the agent runs until
/// `shutdown` fires, then [`RunningAgent::wait`] carries out the stop.
pub async fn start(config: &AgentConfig, shutdown: Shutdown) -> Result<RunningAgent, AgentError> {
    let problems = config.problems();
    if !problems.is_empty() {
        return Err(AgentError::Config(problems));
    }
    let mut registry = Registry::with_prefix("argus_agent");
    let readiness = Readiness::new();
    let queue_ready = readiness.register("queue");

    let limiter = MemoryLimiter::new(config.memory.limit as usize);
    let dropped = DroppedRecords::register(&mut registry);
    let telemetry = PipelineTelemetry::register(&mut registry, &limiter, dropped.clone());
    let exporter = config.exporter.build_with(&mut registry, dropped)?;
    let transform = Arc::new(config.transform.build("transform", &mut registry)?);

    // Recovery reads every segment: blocking, but it is startup and nothing
    // else runs yet.
    let (writer, reader) = config.queue.build(&mut registry)?;
    queue_ready.ready();

    let mut inputs: [Inputs; 3] = Default::default();
    let mut channel = |source: &'static str, signal: Signal, capacity: usize| {
        let (tx, rx) = mpsc::channel::<Envelope>(capacity);
        telemetry.watch_channel(source, signal, &tx);
        inputs[index(signal)].add(source, rx);
        tx
    };

    let file = match &config.file {
        Some(fc) => {
            let out = channel(
                crate::sources::file::SOURCE_NAME,
                Signal::Logs,
                FILE_CHANNEL,
            );
            Some(fc.build(FileSourceContext {
                registry: &mut registry,
                limiter: limiter.clone(),
                out,
                transform: transform.clone(),
            })?)
        }
        None => None,
    };
    let mut problems = Vec::new();
    let host = match &config.host {
        Some(hc) => match hc.build("host", &mut registry) {
            Ok(h) => Some((h, channel("host", Signal::Metrics, HOST_CHANNEL))),
            Err(e) => {
                problems.extend(e.0);
                None
            }
        },
        None => None,
    };
    let scrape = match &config.scrape {
        Some(sc) => match sc.build("scrape", &mut registry) {
            Ok(s) => Some((s, channel("scrape", Signal::Metrics, SCRAPE_CHANNEL))),
            Err(e) => {
                problems.extend(e.0);
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return Err(AgentError::Config(problems));
    }
    let receiver = match &config.receiver {
        Some(rc) => {
            let senders = [
                channel(
                    crate::sources::otlp::SOURCE_NAME,
                    Signal::Logs,
                    OTLP_CHANNEL,
                ),
                channel(
                    crate::sources::otlp::SOURCE_NAME,
                    Signal::Traces,
                    OTLP_CHANNEL,
                ),
                channel(
                    crate::sources::otlp::SOURCE_NAME,
                    Signal::Metrics,
                    OTLP_CHANNEL,
                ),
            ];
            let consumer = OtlpSource::new(
                senders,
                limiter.clone(),
                telemetry.clone(),
                config.queue.max_record_bytes,
                DEFAULT_ACK_TIMEOUT,
            );
            Some(rc.build_at("receiver", consumer, &mut registry)?)
        }
        None => None,
    };

    let batchers: Vec<Batcher> = Signal::ALL
        .into_iter()
        .zip(inputs)
        .filter(|(_, inputs)| !inputs.is_empty())
        .map(|(signal, inputs)| {
            Batcher::new(
                signal,
                config.batch.clone(),
                inputs,
                transform.clone(),
                writer.clone(),
                telemetry.clone(),
                config.queue.max_record_bytes,
                config.queue.compression,
            )
        })
        .collect();
    // The batchers hold the only writers: the queue closes for the drain
    // once they are gone.
    drop(writer);

    let readiness_receiver = config
        .receiver
        .as_ref()
        .map(|_| readiness.register("otlp_receiver"));
    let registry = Arc::new(registry);
    let ops_server = config
        .ops
        .server_config()
        .build(registry, readiness.clone())?
        .bind()
        .await?;
    let ops_addr = ops_server.local_addr();
    let receiver = match receiver {
        Some(r) => Some(r.bind().await?),
        None => None,
    };
    let (grpc_addr, http_addr) = receiver
        .as_ref()
        .map_or((None, None), |r| (r.grpc_addr(), r.http_addr()));
    if let Some(h) = &readiness_receiver {
        h.ready();
    }

    // Spawn. Intake (sources) and drain stop with `shutdown`; the batchers
    // stop when their sources did; the ops server stops last.
    let failure: Arc<Mutex<Option<AgentError>>> = Arc::default();
    let fail = {
        let failure = failure.clone();
        let shutdown = shutdown.clone();
        move |e: AgentError| {
            tracing::error!(error = %e, "agent task failed; stopping");
            failure.lock().get_or_insert(e);
            shutdown.trigger();
        }
    };
    let pipeline = TaskTracker::new();
    let ops = TaskTracker::new();
    let ops_shutdown = Shutdown::new();
    {
        let (s, fail) = (ops_shutdown.clone(), fail.clone());
        ops.spawn(async move {
            if let Err(e) = ops_server.serve(s).await {
                fail(e.into());
            }
        });
    }
    if let Some(r) = receiver {
        let (s, fail) = (shutdown.child(), fail.clone());
        pipeline.spawn(async move {
            if let Err(e) = r.serve(s).await {
                fail(e.into());
            }
        });
    }
    if let Some(f) = file {
        let (s, fail) = (shutdown.child(), fail.clone());
        pipeline.spawn(async move {
            if let Err(e) = f.run(s).await {
                fail(e.into());
            }
        });
    }
    if let Some((h, out)) = host {
        pipeline.spawn(h.run(out, limiter.clone(), shutdown.child()));
    }
    if let Some((s, out)) = scrape {
        pipeline.spawn(s.run(out, limiter.clone(), shutdown.child()));
    }
    for b in batchers {
        pipeline.spawn(b.run(shutdown.child()));
    }
    pipeline.spawn(drain::run(
        reader,
        exporter,
        config.exporter.concurrency,
        telemetry.clone(),
        shutdown.child(),
    ));
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        grpc = grpc_addr.map(|a| a.to_string()),
        http = http_addr.map(|a| a.to_string()),
        ops = %ops_addr,
        endpoint = %config.exporter.endpoint,
        allocator = crate::allocator::AgentAllocator::in_use().unwrap_or("system"),
        "argus-agent started"
    );
    Ok(RunningAgent {
        grpc_addr,
        http_addr,
        ops_addr,
        readiness,
        telemetry,
        shutdown,
        grace: config.shutdown_grace,
        pipeline,
        ops,
        ops_shutdown,
        failure,
    })
}

fn index(signal: Signal) -> usize {
    match signal {
        Signal::Logs => 0,
        Signal::Traces => 1,
        Signal::Metrics => 2,
    }
}

impl RunningAgent {
    /// Waits for the shutdown signal (or a failed task), then stops in
    /// order within `shutdown_grace`. `Ok` for a clean stop, even when the
    /// grace ran out (logged: nothing is lost, it is in the queue or the
    /// files); the first task failure otherwise.
    pub async fn wait(self) -> Result<(), AgentError> {
        self.shutdown.wait().await;
        self.readiness.shutting_down();
        tracing::info!(grace = ?self.grace, "shutting down: stopping sources, flushing batches into the disk queue");
        if !wait_all(&self.pipeline, self.grace).await {
            tracing::warn!(
                grace = ?self.grace,
                tasks = self.pipeline.len(),
                "shutdown_grace ran out; exiting anyway (unsent data is in the disk queue, unread lines are re-read from their checkpoints)"
            );
        }
        self.ops_shutdown.trigger();
        let _ = wait_all(&self.ops, std::time::Duration::from_secs(2)).await;
        tracing::info!("argus-agent stopped");
        match self.failure.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Fires the shutdown signal (what SIGTERM does in the binary).
    pub fn stop(&self) {
        self.shutdown.trigger();
    }
}
