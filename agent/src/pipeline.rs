//! What flows between the agent's stages, and the two rules that keep it
//! lossless and bounded.
//!
//! Sources → transform (enrich, correlate, mask) → batcher → disk queue →
//! exporter. Every hop carries an [`Envelope`]: an OTLP payload, the
//! [`Ack`]s that tell its sources "this is durable now", and the
//! [`MemoryPermit`] that reserved its bytes.
//!
//! 1. **Acknowledge only durable data.** A source learns its data is safe
//!    only when the batch holding it was appended to the disk queue (which
//!    survives `kill -9`: records are in the kernel's page cache, or on disk
//!    under `fsync: always`). The file source moves its checkpoint, and the
//!    OTLP receiver answers `OK`, only then. Data that was read but never
//!    acknowledged is read again after a restart: at-least-once.
//! 2. **One process-wide memory budget.** Sources reserve the bytes of what
//!    they emit from one [`MemoryLimiter`] before emitting it; the batcher
//!    releases them once the batch is in the queue. When the budget is spent,
//!    the file source waits (backpressure reaches the file, which is its own
//!    buffer) and the OTLP receiver refuses with a retryable status, the way
//!    the Collector's `memory_limiter` does, rather than the process growing.
//!
//! # The wiring, and what shares what
//!
//! ```text
//!  file ──ch──┐                    ┌─▶ logs batcher ────┐
//!  otlp ──ch──┤ (one bounded        ├─▶ traces batcher ──┼─▶ disk queue ─▶ drain ─▶ exporter
//!  host ──ch──┤  channel per        └─▶ metrics batcher ─┘   (append)     (read, send the
//!  scrape ─ch─┘  source and signal)     (transform, encode,                record's bytes,
//!                                         concatenate, zstd,               ack)
//!                                         append, acks)
//! ```
//!
//! The file source transforms and encodes its own envelopes
//! ([`Parcel::Encoded`]); the others leave that to the batcher.
//!
//! - Each source has its **own bounded channel** to each signal's batcher
//!   ([`crate::batch::Inputs`]), read round-robin: a source with a backlog
//!   (the file source catching up) fills only its own channel and cannot
//!   push an OTLP client's spans or logs to the back of a shared line.
//! - Each **signal has its own batcher task**: a burst of logs does not
//!   delay metrics, and the transform's CPU work is spread over tasks (and,
//!   for file logs, done by the file source's task).
//! - Shared by everything: the **memory budget** (bounded per source by its
//!   channel: a source can hold at most its channel's envelopes plus one in
//!   hand, so none can take the whole budget), and the **disk queue** —
//!   which is what decouples the sources from the one destination. A slow
//!   or dead endpoint only fills the queue; the sources notice nothing until
//!   it is full, and then (`when_full: block`) all of them are held back
//!   together, losing nothing: the file source stops reading, the OTLP
//!   receiver answers with retryable statuses, host and scrape skip
//!   intervals (counted). With `drop_oldest` the oldest records go instead
//!   and the sources never wait.
//! - The **drain** ([`drain`]) reads the queue independently of the
//!   batchers, with up to `exporter.concurrency` exports in flight.
//!
//! Self-metrics are in [`telemetry`].

pub mod drain;
pub mod telemetry;

pub use telemetry::{DroppedRecords, PipelineTelemetry};

use std::sync::Arc;
use std::time::Duration;

pub use argus_common::otlp::{Payload, PayloadError, Signal};
use argus_common::shutdown::Shutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::transform::Transform;

/// "Your data is durable now": called once, after the batch holding it was
/// appended to the disk queue. Dropping an `Ack` uncalled means "not durable"
/// (the OTLP receiver then answers with a retryable error; the file source
/// keeps its checkpoint where it was).
pub struct Ack(Box<dyn FnOnce() + Send + Sync>);

impl Ack {
    pub fn new(f: impl FnOnce() + Send + Sync + 'static) -> Self {
        Ack(Box::new(f))
    }

    pub fn ack(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

/// A payload on its way through the agent.
#[derive(Debug)]
pub struct Envelope {
    pub payload: Parcel,
    /// Bounded label for self-metrics: `otlp`, `file`, `host`, `scrape`.
    pub source: &'static str,
    pub acks: Vec<Ack>,
    pub permit: MemoryPermit,
}

/// What an envelope carries.
#[derive(Debug)]
pub enum Parcel {
    /// The structs a source built; the batcher transforms and encodes them.
    Payload(Payload),
    /// Already transformed and encoded by the source (the file source,
    /// whose lines are still in its core's cache when it does this; handing
    /// the batcher's thread a compact buffer instead of thousands of small
    /// heap objects spared that thread the cache misses of touching every
    /// string first, and both allocators the cross-thread frees).
    Encoded(Encoded),
}

impl Parcel {
    pub fn signal(&self) -> Signal {
        match self {
            Parcel::Payload(p) => p.signal(),
            Parcel::Encoded(e) => e.signal,
        }
    }

    pub fn item_count(&self) -> usize {
        match self {
            Parcel::Payload(p) => p.item_count(),
            Parcel::Encoded(e) => e.items,
        }
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Parcel::Payload(p) => p.encoded_len(),
            Parcel::Encoded(e) => e.record.len() - 1,
        }
    }

    /// The structs (decoding an encoded parcel): for tests and tools.
    pub fn to_payload(&self) -> Result<Payload, PayloadError> {
        match self {
            Parcel::Payload(p) => Ok(p.clone()),
            Parcel::Encoded(e) => Payload::decode(&e.record),
        }
    }
}

impl From<Payload> for Parcel {
    fn from(p: Payload) -> Self {
        Parcel::Payload(p)
    }
}

/// A transformed payload in the plain queue record format (tag byte +
/// export request, [`Payload::encode`]), with its item count.
#[derive(Debug)]
pub struct Encoded {
    pub signal: Signal,
    pub items: usize,
    pub record: Vec<u8>,
}

impl Encoded {
    /// Applies `transform` and encodes: the batcher's per-item work, done
    /// by the caller.
    pub fn prepare(mut payload: Payload, transform: &Transform) -> Self {
        transform.apply(&mut payload);
        Encoded {
            signal: payload.signal(),
            items: payload.item_count(),
            record: payload.encode(),
        }
    }
}

/// The process-wide memory budget (bytes of payload in flight between the
/// sources and the disk queue).
#[derive(Clone, Debug)]
pub struct MemoryLimiter {
    sem: Arc<Semaphore>,
    limit: usize,
}

/// Bytes reserved from a [`MemoryLimiter`]; released on drop. Permits merge,
/// so a batch holds one permit for all its envelopes.
#[derive(Debug, Default)]
pub struct MemoryPermit {
    permit: Option<OwnedSemaphorePermit>,
}

impl MemoryLimiter {
    /// Granularity of reservations: tokio's semaphore counts in `u32`, so the
    /// limiter counts KiB (a 4 TiB ceiling, far above any node).
    const UNIT: usize = 1024;

    pub fn new(limit_bytes: usize) -> Self {
        let units = (limit_bytes / Self::UNIT).max(1);
        MemoryLimiter {
            sem: Arc::new(Semaphore::new(units)),
            limit: units * Self::UNIT,
        }
    }

    fn units(&self, bytes: usize) -> u32 {
        let total = self.limit / Self::UNIT;
        // A single item larger than the whole budget still gets through, alone.
        bytes.div_ceil(Self::UNIT).clamp(1, total) as u32
    }

    /// Waits until `bytes` fit in the budget (the file source's backpressure).
    pub async fn acquire(&self, bytes: usize) -> MemoryPermit {
        let permit = self
            .sem
            .clone()
            .acquire_many_owned(self.units(bytes))
            .await
            .ok();
        MemoryPermit { permit }
    }

    /// Reserves `bytes` now or refuses (the OTLP receiver's path: the client
    /// retries later instead of us holding its request).
    pub fn try_acquire(&self, bytes: usize) -> Option<MemoryPermit> {
        self.sem
            .clone()
            .try_acquire_many_owned(self.units(bytes))
            .ok()
            .map(|p| MemoryPermit { permit: Some(p) })
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit
    }

    pub fn used_bytes(&self) -> usize {
        self.limit - self.sem.available_permits() * Self::UNIT
    }
}

impl MemoryPermit {
    pub fn merge(&mut self, other: MemoryPermit) {
        match (&mut self.permit, other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (_, None) => {}
        }
    }

    pub fn bytes(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, |p| p.num_permits() * MemoryLimiter::UNIT)
    }
}

/// What became of a periodic source's payload offered with [`offer`].
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// In the batcher's channel.
    Sent,
    /// Not taken in time: `memory` (no budget) or `pipeline_full` (the
    /// batcher's channel stayed full). The caller logs and counts it.
    Dropped(&'static str),
    /// The shutdown fired: stop.
    Shutdown,
    /// The batcher is gone: stop.
    Closed,
}

/// Hands a periodic source's payload (a host-metrics or scrape round) to
/// the pipeline, waiting at most `within` for memory budget and a channel
/// slot together. Periodic sources pass their interval: a round the
/// pipeline cannot take before the next one is due is dropped rather than
/// queued behind it, so a stalled destination never piles up stale rounds.
pub async fn offer(
    out: &mpsc::Sender<Envelope>,
    limiter: &MemoryLimiter,
    payload: Payload,
    source: &'static str,
    within: Duration,
    shutdown: &Shutdown,
) -> Offer {
    let bytes = payload.encoded_len();
    let deadline = tokio::time::sleep(within);
    tokio::pin!(deadline);
    let permit = tokio::select! {
        _ = shutdown.wait() => return Offer::Shutdown,
        _ = &mut deadline => return Offer::Dropped("memory"),
        p = limiter.acquire(bytes) => p,
    };
    let slot = tokio::select! {
        _ = shutdown.wait() => return Offer::Shutdown,
        _ = &mut deadline => return Offer::Dropped("pipeline_full"),
        s = out.reserve() => s,
    };
    match slot {
        Ok(slot) => {
            slot.send(Envelope {
                payload: payload.into(),
                source,
                acks: Vec::new(),
                permit,
            });
            Offer::Sent
        }
        Err(_) => Offer::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limiter_refuses_when_full_and_frees_on_drop() {
        let lim = MemoryLimiter::new(8 * 1024);
        let mut a = lim.acquire(4 * 1024).await;
        let b = lim.try_acquire(4 * 1024).expect("fits");
        assert!(lim.try_acquire(1).is_none(), "budget spent");
        assert_eq!(lim.used_bytes(), 8 * 1024);
        a.merge(b);
        assert_eq!(a.bytes(), 8 * 1024);
        drop(a);
        assert_eq!(lim.used_bytes(), 0);
        // An item bigger than the whole budget passes alone rather than deadlocking.
        let huge = lim.acquire(1 << 20).await;
        assert_eq!(huge.bytes(), 8 * 1024);
    }
}
