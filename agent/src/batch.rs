//! The batcher: one task per signal that turns many small envelopes into
//! few large queue records, and tells each source when its data is durable.
//!
//! # What it does with an envelope
//!
//! 1. Takes it from one of its inputs (one bounded channel per source, read
//!    round-robin, so a source that always has data cannot starve one that
//!    rarely has: the file source catching up on a backlog and an SDK's
//!    spans each get their turn).
//! 2. Applies the [`Transform`] (enrich, correlate, mask) and encodes it:
//!    whatever reaches the disk queue has already lost its card numbers. A
//!    [`Parcel::Encoded`] envelope (the file source's) was transformed and
//!    encoded by its source already, on the core that had its data in
//!    cache, and is taken as it is.
//! 3. Counts it in `records_received_total{source,signal}`.
//! 4. Merges it into the open batch: encoded requests are concatenated
//!    (protobuf's merge of repeated fields: their resources stay separate),
//!    acks collected, memory permits merged.
//! 5. Flushes when the batch reaches `max_bytes` (encoded size; an envelope
//!    that would take it past the limit flushes it first) or `max_items`, or
//!    `timeout` after its first envelope arrived, or when every input closed
//!    (shutdown).
//!
//! A flush encodes the batch as one record (the export request, zstd-
//! compressed by default: `exporter::request` has the format) and appends
//! it to the disk queue. Once the append returned `Ok`, the batch survives `kill -9`:
//! only then are its acks called (the file source moves its checkpoint, the
//! OTLP receiver answers `OK`) and its memory released. The memory is
//! released only then because until then the batch *is* in memory; the
//! queue's write is the point where the budget's bytes leave the process.
//!
//! # When the queue cannot take it
//!
//! - **Full** (`when_full: block`): `append` waits; so does this task, its
//!   input channels fill, and the sources feel it (the file source stops
//!   reading, the OTLP receiver answers `RESOURCE_EXHAUSTED`/429).
//! - **I/O error** (disk full, EIO): retried with backoff, holding the batch
//!   (same backpressure), until shutdown; at shutdown the batch is given up:
//!   its acks are dropped uncalled, which the sources read as "not durable"
//!   (the file is read again after restart, the OTLP client retries).
//! - **Closed**: the same as giving up at shutdown.
//!
//! Host and scrape envelopes have no acks (they are re-read next interval):
//! if their batch is given up, their items are counted as dropped
//! (`reason="queue_error"`), since no one will resend them.
//!
//! # Sizes
//!
//! A batch's record is the concatenation of its envelopes' encodings, so its
//! size is exactly the sum of theirs plus one tag byte. `max_bytes` must
//! therefore be below `queue.max_record_bytes` (checked by the agent's
//! config). An envelope larger than a record (a 20 MiB OTLP/HTTP request)
//! is split along resource/scope/item boundaries first, its acks travelling
//! with its last part, so they fire only once every part is durable. A
//! single item larger than a record cannot be stored: it is logged and
//! counted as dropped (`too_large`); the OTLP source refuses such items up
//! front with a partial success, so this only catches what a transform grew.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use argus_common::backoff::BackoffConfig;
use argus_common::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::exporter::split::split;
use crate::exporter::{RecordCompression, RecordEncoder};
use crate::pipeline::{
    Ack, Encoded, Envelope, MemoryPermit, Parcel, Payload, PipelineTelemetry, Signal,
};
use crate::queue::{QueueError, QueueWriter};
use crate::transform::Transform;

/// `batch:` — how envelopes are grouped into queue records (the same for
/// each signal; every signal has its own batcher).
///
/// ```yaml
/// batch:
///   max_bytes: 1MiB     # encoded size of one batch
///   max_items: 8192     # log records, spans or metric data points
///   timeout: 200ms      # longest a first item waits for company
/// ```
///
/// Larger batches cost fewer queue records and export requests per item;
/// `timeout` bounds the latency they add (and how long an OTLP client waits
/// for its `OK`, which is only sent once its batch is durable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Flush once the batch's encoded size reaches this. Bytes, or with a
    /// unit (`512KiB`, `1MiB`).
    #[serde(with = "crate::queue::byte_size")]
    pub max_bytes: u64,
    /// Flush once the batch holds this many items.
    pub max_items: usize,
    /// Flush this long after the batch's first envelope arrived.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_bytes: 1024 * 1024,
            max_items: 8192,
            timeout: Duration::from_millis(200),
        }
    }
}

impl BatchConfig {
    /// Every problem, each naming its field under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_bytes < 1024 {
            out.push(format!(
                "{path}.max_bytes: must be at least 1KiB (got {})",
                self.max_bytes
            ));
        }
        if self.max_items == 0 {
            out.push(format!("{path}.max_items: must be greater than 0"));
        }
        if self.timeout.is_zero() {
            out.push(format!("{path}.timeout: must be greater than 0"));
        } else if self.timeout > Duration::from_secs(60) {
            out.push(format!(
                "{path}.timeout: at most 1m (OTLP clients wait for their batch to be durable; got {:?})",
                self.timeout
            ));
        }
        out
    }
}

/// The envelopes one batcher reads: one channel per source, taken in turn.
pub struct Inputs {
    channels: Vec<(&'static str, mpsc::Receiver<Envelope>)>,
    open: Vec<bool>,
    next: usize,
}

impl Inputs {
    pub fn new() -> Self {
        Inputs {
            channels: Vec::new(),
            open: Vec::new(),
            next: 0,
        }
    }

    /// Adds the channel `source` sends on.
    pub fn add(&mut self, source: &'static str, rx: mpsc::Receiver<Envelope>) {
        self.channels.push((source, rx));
        self.open.push(true);
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The next envelope, from the channel after the one that gave the
    /// last (round-robin); `None` once every channel is closed and empty.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Envelope> {
        std::future::poll_fn(|cx| {
            let n = self.channels.len();
            for k in 0..n {
                let i = (self.next + k) % n;
                if !self.open[i] {
                    continue;
                }
                match self.channels[i].1.poll_recv(cx) {
                    Poll::Ready(Some(e)) => {
                        self.next = i + 1;
                        return Poll::Ready(Some(e));
                    }
                    Poll::Ready(None) => self.open[i] = false,
                    Poll::Pending => {}
                }
            }
            if self.open.iter().any(|o| *o) {
                Poll::Pending
            } else {
                Poll::Ready(None)
            }
        })
        .await
    }
}

impl Default for Inputs {
    fn default() -> Self {
        Self::new()
    }
}

/// What closed a batch (`batch_flushes_total{trigger}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Bytes,
    Items,
    Timeout,
    Shutdown,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Bytes => "bytes",
            Trigger::Items => "items",
            Trigger::Timeout => "timeout",
            Trigger::Shutdown => "shutdown",
        }
    }
}

/// The open batch.
#[derive(Default)]
struct Batch {
    /// Plain record format: tag byte + the export request; empty when no
    /// batch is open. Protobuf concatenation of requests is their merge.
    record: Vec<u8>,
    items: usize,
    acks: Vec<Ack>,
    permit: MemoryPermit,
    deadline: Option<Instant>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.record.is_empty()
    }

    /// Bytes of the export request.
    fn bytes(&self) -> usize {
        self.record.len().saturating_sub(1)
    }

    fn push(&mut self, record: Vec<u8>, items: usize, timeout: Duration) {
        if self.record.is_empty() {
            self.record = record;
            self.deadline = Some(Instant::now() + timeout);
        } else {
            self.record.extend_from_slice(&record[1..]);
        }
        self.items += items;
    }
}

pub struct Batcher {
    signal: Signal,
    config: BatchConfig,
    inputs: Inputs,
    transform: Arc<Transform>,
    queue: QueueWriter,
    telemetry: PipelineTelemetry,
    /// Largest payload encoding a queue record can hold (its body minus the
    /// signal tag byte).
    max_payload_bytes: usize,
    batch: Batch,
    records: RecordEncoder,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

/// How long an append that failed with an I/O error waits before the next
/// try (grows to 30 s).
fn retry_backoff() -> BackoffConfig {
    BackoffConfig {
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_secs(30),
        multiplier: 2.0,
    }
}

impl Batcher {
    /// `max_record_bytes` is the queue's (`queue.max_record_bytes`);
    /// `config.max_bytes` must be below it (see [`BatchConfig`] and the
    /// agent config's cross-checks). `queue` is this batcher's own writer
    /// handle: the queue closes for the exporter when every batcher's is
    /// dropped.
    pub fn new(
        signal: Signal,
        config: BatchConfig,
        inputs: Inputs,
        transform: Arc<Transform>,
        queue: QueueWriter,
        telemetry: PipelineTelemetry,
        max_record_bytes: u64,
        compression: RecordCompression,
    ) -> Self {
        let max_payload_bytes = (max_record_bytes.saturating_sub(1) as usize).max(1);
        let mut config = config;
        config.max_bytes = config.max_bytes.min(max_payload_bytes as u64);
        Batcher {
            signal,
            config,
            inputs,
            transform,
            queue,
            telemetry,
            max_payload_bytes,
            batch: Batch::default(),
            records: RecordEncoder::new(compression),
        }
    }

    /// Batches until every input is closed, then flushes what is left and
    /// returns. `shutdown` only ends waits between retries of a failing
    /// append (the batch is then given up: not acknowledged); a healthy
    /// batcher stops when its sources stop.
    pub async fn run(mut self, shutdown: Shutdown) {
        loop {
            let deadline = self.batch.deadline;
            tokio::select! {
                envelope = self.inputs.recv() => match envelope {
                    Some(e) => self.take(e, &shutdown).await,
                    None => break,
                },
                _ = sleep_until_opt(deadline) => self.flush(Trigger::Timeout, &shutdown).await,
            }
        }
        self.flush(Trigger::Shutdown, &shutdown).await;
        tracing::debug!(signal = self.signal.as_str(), "batcher stopped");
    }

    async fn take(&mut self, envelope: Envelope, shutdown: &Shutdown) {
        let Envelope {
            payload,
            source,
            acks,
            permit,
        } = envelope;
        let encoded = match payload {
            Parcel::Payload(p) => Encoded::prepare(p, &self.transform),
            Parcel::Encoded(e) => e,
        };
        let items = encoded.items;
        self.telemetry.received(source, self.signal, items);
        if encoded.record.len() - 1 <= self.max_payload_bytes {
            self.add(encoded.record, items, acks, permit, shutdown)
                .await;
            return;
        }
        let payload = match Payload::decode(&encoded.record) {
            Ok(p) => p,
            Err(e) => {
                // Our own encoding: cannot happen; never lose the acks silently.
                tracing::error!(signal = self.signal.as_str(), source, error = %e, "an oversized envelope does not decode; dropped");
                self.too_large(source, items, encoded.record.len() - 1);
                return;
            }
        };
        drop(encoded);
        let parts = split(payload, self.max_payload_bytes);
        let last = parts.len() - 1;
        let mut acks = Some(acks);
        let mut permit = Some(permit);
        for (i, part) in parts.into_iter().enumerate() {
            let (part_acks, part_permit) = if i == last {
                (
                    acks.take().unwrap_or_default(),
                    permit.take().unwrap_or_default(),
                )
            } else {
                (Vec::new(), MemoryPermit::default())
            };
            let items = part.item_count();
            let record = part.encode();
            if record.len() - 1 > self.max_payload_bytes {
                self.too_large(source, items, record.len() - 1);
                part_acks.into_iter().for_each(Ack::ack);
                continue;
            }
            self.add(record, items, part_acks, part_permit, shutdown)
                .await;
        }
    }

    /// Adds one plain record's request to the open batch.
    async fn add(
        &mut self,
        record: Vec<u8>,
        items: usize,
        acks: Vec<Ack>,
        permit: MemoryPermit,
        shutdown: &Shutdown,
    ) {
        let bytes = record.len() - 1;
        if !self.batch.is_empty() && self.batch.bytes() + bytes > self.config.max_bytes as usize {
            self.flush(Trigger::Bytes, shutdown).await;
        }
        self.batch.push(record, items, self.config.timeout);
        self.batch.acks.extend(acks);
        self.batch.permit.merge(permit);
        if self.batch.bytes() >= self.config.max_bytes as usize {
            self.flush(Trigger::Bytes, shutdown).await;
        } else if self.batch.items >= self.config.max_items {
            self.flush(Trigger::Items, shutdown).await;
        }
    }

    /// Appends the open batch to the queue; on success calls its acks.
    async fn flush(&mut self, trigger: Trigger, shutdown: &Shutdown) {
        let mut batch = std::mem::take(&mut self.batch);
        if batch.is_empty() {
            return;
        }
        let record = self
            .records
            .pack(std::mem::take(&mut batch.record), batch.items);
        let mut backoff = retry_backoff().build();
        loop {
            match self.queue.append(&record).await {
                Ok(()) => {
                    self.telemetry.flushed(self.signal, trigger.as_str());
                    batch.acks.into_iter().for_each(Ack::ack);
                    drop(batch.permit);
                    return;
                }
                Err(e) if e.is_retryable() && !shutdown.is_triggered() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        signal = self.signal.as_str(),
                        items = batch.items,
                        error = %e,
                        retry_in = ?delay,
                        "cannot append a batch to the disk queue; holding it and retrying (sources are held back meanwhile)"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => {}
                    }
                }
                Err(e) => {
                    self.given_up(batch.items, batch.acks.is_empty(), &e);
                    return;
                }
            }
        }
    }

    /// A batch that could not be made durable. Its acks are dropped uncalled
    /// with it (the file source reads the lines again, OTLP clients retry).
    fn given_up(&self, items: usize, unacked_source: bool, e: &QueueError) {
        if unacked_source {
            self.telemetry.dropped.add("queue_error", items as u64);
        }
        tracing::error!(
            signal = self.signal.as_str(),
            items,
            error = %e,
            resent_by_sources = !unacked_source,
            "batch not appended to the disk queue; given up"
        );
    }

    fn too_large(&self, source: &'static str, items: usize, bytes: usize) {
        self.telemetry.dropped.add("too_large", items as u64);
        tracing::error!(
            signal = self.signal.as_str(),
            source,
            items,
            bytes,
            max = self.max_payload_bytes,
            "an item is larger than a disk queue record (queue.max_record_bytes); dropped"
        );
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_bad_field_is_named() {
        assert!(BatchConfig::default().problems("batch").is_empty());
        let bad = BatchConfig {
            max_bytes: 10,
            max_items: 0,
            timeout: Duration::ZERO,
        };
        let p = bad.problems("batch");
        assert_eq!(p.len(), 3, "{p:?}");
        for f in ["batch.max_bytes:", "batch.max_items:", "batch.timeout:"] {
            assert!(p.iter().any(|m| m.starts_with(f)), "{f} in {p:?}");
        }
        let cfg: BatchConfig = serde_yaml::from_str("max_bytes: 512KiB\ntimeout: 1s").unwrap();
        assert_eq!(cfg.max_bytes, 512 * 1024);
        assert_eq!(cfg.timeout, Duration::from_secs(1));
        assert_eq!(cfg.max_items, 8192);
        assert!(serde_yaml::from_str::<BatchConfig>("max_item: 1").is_err());
    }
}
