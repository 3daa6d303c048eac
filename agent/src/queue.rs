//! The durable disk queue between the batcher and the OTLP exporter.
//!
//! The batcher [`QueueWriter::append`]s each batch (an encoded
//! [`crate::pipeline::Payload`], opaque bytes here) as one record; once
//! `append` returns `Ok`, the sources may acknowledge their data. The
//! exporter takes records with [`QueueReader::next`], sends them, and
//! [`QueueAcker::ack`]s each after the endpoint accepted it. A record leaves
//! the disk only after its ack: delivery is at-least-once across `kill -9`,
//! OOM kills, restarts and endpoint outages.
//!
//! # Guarantees, and their exact bounds
//!
//! - **Appended means durable against process death.** `append` returns
//!   after the record is in the file (the kernel's page cache), so `kill -9`
//!   never loses it, whatever the fsync policy. The policy decides only what
//!   a *power loss* can take: nothing (`always`: `fdatasync` before
//!   returning), the last interval's appends (`interval`, default 1 s), or
//!   what the kernel had not written back (`never`).
//! - **Acked means gone, exactly.** An ack is written to the segment's ack
//!   file (one 8-byte `write(2)` to the page cache, typically 1–2 µs, made
//!   on the caller's thread so that it is durable against `kill -9` the
//!   moment `ack` returns). A restart after `kill -9` therefore re-delivers
//!   exactly the records that were not acked: no duplicates beyond the
//!   batches that were in flight (sent but not yet acked), which
//!   at-least-once has to resend anyway. After a power loss, acks not yet
//!   flushed are lost too, and those batches are delivered twice: at most
//!   the last interval's (acks are flushed with the interval, or every
//!   second under `always`); under `never`, what the kernel had not yet
//!   written back.
//! - **Nothing is skipped silently.** A record lost to on-disk damage is
//!   counted in `queue_corrupt_records_total` and logged with its segment;
//!   a torn tail (the half-written record of an `append` that never returned)
//!   is cut off and counted in `queue_truncated_bytes_total`; records removed
//!   by `when_full: drop_oldest` are counted in
//!   `queue_dropped_records_total{reason="queue_full"}` and logged. One loss
//!   cannot be seen: a power loss (under `fsync` other than `always`) that
//!   reverts the write head to an earlier size *exactly* at a record
//!   boundary leaves no trace of the records after it. That is the fsync
//!   policy's documented window, not a process crash: `kill -9` cannot cut
//!   a file.
//! - **Bounded.** Segment files together stay below `max_bytes` (plus, for a
//!   moment, segments whose deletion the I/O thread has not yet carried out).
//!   Memory: 16 bytes per live record (its timestamp, length and state), so
//!   a full 256 MiB queue of 64 KiB batches costs 64 KiB.
//!
//! # Layout on disk
//!
//! One directory per queue, holding:
//!
//! - `lock`: empty; held with `flock(LOCK_EX)` while the queue is open, so a
//!   second agent on the same directory fails at startup instead of
//!   interleaving writes. The kernel releases it when the process dies.
//! - `NNNNNNNNNNNNNNNNNNNN.seg`: a segment. The name is the sequence number
//!   of its first record, 20 decimal digits, so names sort in queue order.
//! - `NNNNNNNNNNNNNNNNNNNN.ack`: the ack file of the segment of the same name.
//!
//! Sequence numbers are global, start at 0, and grow by one per record
//! across segments, never reused (the write-head segment is never deleted,
//! so the next number is always recoverable). [`EntryId`] is the sequence
//! number. All integers are little-endian; every checksum is CRC-32
//! (IEEE, as zlib computes it).
//!
//! ## Segment file
//!
//! ```text
//! segment header, 32 bytes
//!   off len  field
//!     0   6  magic            "ARGUSQ" (41 52 47 55 53 51)
//!     6   2  version          u16 = 1
//!     8   8  first_seq        u64, sequence number of the first record
//!    16   8  created          i64, Unix milliseconds
//!    24   4  reserved         zero
//!    28   4  header_crc       CRC-32 of bytes 0..28
//! then records back to back, each:
//!   record header, 32 bytes
//!     0   4  sync marker      C1 5E A7 FE
//!     4   4  body_len         u32, at most 2^30
//!     8   8  seq              u64, sequence number
//!    16   8  appended         i64, Unix milliseconds (for the age metric)
//!    24   4  body_crc         CRC-32 of the body
//!    28   4  header_crc       CRC-32 of bytes 0..28 of this header
//!   body, body_len bytes      the record, opaque (an encoded Payload)
//! and, once the segment is closed, its seal, 32 bytes:
//!     0   4  sync marker      C1 5E A7 FE
//!     4   4  0x80000000       bit 31 of body_len set = seal; no body
//!     8   8  next_seq         u64, first sequence number of the next segment
//!    16   8  sealed           i64, Unix milliseconds
//!    24   4  body_crc         0 (CRC-32 of nothing)
//!    28   4  header_crc       CRC-32 of bytes 0..28
//! ```
//!
//! The seal makes a closed segment state exactly which sequence numbers it
//! held, so a segment whose end is lost (a file cut short by a power loss,
//! even exactly at a record boundary) is recognised and its lost records
//! are counted, never silently missing.
//!
//! Overhead is 32 bytes per record (0.05 % of a 64 KiB batch). The header
//! has its own checksum so that a damaged length is never trusted: recovery
//! either skips exactly one record whose header is intact but body is not,
//! or, when the header itself is damaged, resyncs by searching for the next
//! sync marker whose header checksum matches and whose sequence number is
//! greater than the last good one (refusing stale data and records that
//! happen to be embedded in a body). The marker contains bytes that never
//! occur in UTF-8 and is not zero, so neither log text nor a zero-filled
//! block left by a power loss resembles one.
//!
//! ## Ack file
//!
//! ```text
//! ack header, 32 bytes
//!     0   6  magic            "ARGUSA" (41 52 47 55 53 41)
//!     6   2  version          u16 = 1
//!     8   8  first_seq        u64, the segment's first sequence number
//!    16  12  reserved         zero
//!    28   4  header_crc       CRC-32 of bytes 0..28
//! then 8-byte entries, appended as records settle:
//!     0   4  index            u32, seq − first_seq of a settled record
//!     4   4  entry_crc        CRC-32 of first_seq (u64 LE) ‖ index (u32 LE)
//! ```
//!
//! "Settled" means acked by the exporter, or written off as corrupt (so a
//! corrupt record is counted once, not on every restart). Entries may come
//! in any order (acks arrive out of order from concurrent requests) and may
//! repeat. A torn last entry is cut off on open; an entry failing its
//! checksum is ignored, which re-delivers that record rather than losing it.
//!
//! # Life of a segment
//!
//! The last segment is the *write head*; records are appended to it until
//! the next one would take it past `segment_bytes`, then it is sealed and a
//! new head is created, named after the next sequence number. A segment that is not the
//! head is deleted (segment file first, then its ack file: a crash in
//! between leaves an orphan ack file, removed on open, never a segment that
//! lost its acks) once every record in it is settled. `drop_oldest` deletes
//! the oldest non-head segment whole: disk space comes back a segment at a
//! time.
//!
//! # Recovery on open
//!
//! Every segment is read and every checksum verified ([`format::scan_segment`]).
//! Records are taken only with both checksums matching, sequence numbers
//! increasing and consistent with their offset (record *k* of a segment
//! cannot start before byte 32 + 32·*k*). Sequence numbers missing between
//! good records are the corrupt ones: counted, logged and settled (unless
//! already acked). A closed segment's seal says where its numbers end; if
//! the seal is missing, its end was damaged and the next segment's first
//! sequence number bounds the loss. The head's damaged end is a torn write:
//! truncated. A head found sealed (the process died while starting the next
//! segment) takes no more appends. Ack files are applied, the reader starts
//! at the first unsettled record, and fully settled segments are deleted.
//!
//! # Threads and async
//!
//! Appends and reads run their file I/O in `spawn_blocking`; an append holds
//! the head (a `tokio` mutex, so concurrent appenders queue fairly) across
//! that call and hands the guard into the blocking closure, so cancelling an
//! `append` can never interleave two writes. Periodic fsyncs and segment
//! deletion (an `unlink` of megabytes can take milliseconds) run on one
//! dedicated I/O thread, which flushes once more and exits when the last
//! handle is dropped (the drop joins it: that is the queue's shutdown story,
//! bounded by one flush). `next` is cancel-safe (nothing advances until it
//! returns an entry), so the exporter can `select!` it against shutdown.
//! Two small file operations do run on the caller's thread, by design: the
//! 8-byte ack write (see above), and once per segment the creation of its
//! ack file on the first ack.
//!
//! Metrics are registered by [`DiskQueueConfig::build`]: call it once per
//! registry.
//!
//! # No nack
//!
//! There is no negative ack: the exporter keeps an entry and retries it in
//! place with backoff (endpoint outages then fill the queue and, with
//! `block`, push back on the sources). A record it must give up on
//! (permanent rejection) is acked and counted as dropped by the exporter.
//! An entry that was taken but never acked is delivered again after the
//! next restart.

mod config;
pub mod format;
mod io;
mod metrics;
mod reader;
mod recovery;
mod state;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prometheus_client::registry::Registry;

pub(crate) use config::byte_size;
pub use config::{DiskQueueConfig, FsyncPolicy, WhenFull};
pub use reader::{Entry, EntryId, QueueAcker, QueueReader};
pub use state::QueueStats;
pub use writer::QueueWriter;

/// Where record timestamps come from: Unix milliseconds. Injectable so tests
/// can age records without sleeping.
pub type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> WallClock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

/// Why the queue refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The configuration is invalid; every problem is listed.
    #[error("invalid disk queue config: {}", .0.join("; "))]
    Config(Vec<String>),
    /// Another process has the queue directory open.
    #[error("queue directory {} is in use by another process (lock held on {}/lock)", .0.display(), .0.display())]
    Locked(PathBuf),
    /// The record is larger than `max_record_bytes`: permanent, the batcher
    /// must split it.
    #[error("record of {len} bytes exceeds max_record_bytes ({max})")]
    RecordTooLarge { len: usize, max: u64 },
    /// The queue is shutting down.
    #[error("queue closed")]
    Closed,
    /// A file operation failed (disk full, I/O error, permissions).
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl QueueError {
    /// True when trying the same call again later may succeed (a full disk
    /// empties as acks delete segments; a transient I/O error passes). The
    /// caller keeps the data unacknowledged and backs off.
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Io { .. })
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        QueueError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl DiskQueueConfig {
    /// Validates the config, opens (creating if needed) and recovers the
    /// queue, registers its metrics in `registry`, and returns its two ends.
    ///
    /// Recovery reads and verifies every segment, so this does blocking
    /// file I/O proportional to the queue's size (a full 256 MiB queue reads
    /// in well under a second from page cache): call it at startup, or from
    /// `spawn_blocking`.
    pub fn build(&self, registry: &mut Registry) -> Result<(QueueWriter, QueueReader), QueueError> {
        self.build_with_clock(registry, system_clock())
    }

    /// [`DiskQueueConfig::build`] with an injected wall clock.
    pub fn build_with_clock(
        &self,
        registry: &mut Registry,
        clock: WallClock,
    ) -> Result<(QueueWriter, QueueReader), QueueError> {
        let problems = self.problems("queue");
        if !problems.is_empty() {
            return Err(QueueError::Config(problems));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| QueueError::io("create directory", &self.dir, e))?;
        let lock = lock_dir(&self.dir)?;
        let metrics = metrics::Metrics::register(registry);
        let recovered = recovery::recover(self, &metrics, &clock)?;
        let shared = state::Shared::start(self.clone(), recovered, metrics, clock, lock)?;
        registry.register_collector(Box::new(metrics::Gauges::new(&shared, self.max_bytes)));
        Ok((QueueWriter::new(shared.clone()), QueueReader::new(shared)))
    }
}

pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

pub(crate) fn ack_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.ack"))
}

/// Takes the directory's advisory lock, held for as long as the file is open.
fn lock_dir(dir: &Path) -> Result<File, QueueError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| QueueError::io("open", &path, e))?;
    // SAFETY: flock on a file descriptor we own and keep open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            return Err(QueueError::Locked(dir.to_path_buf()));
        }
        return Err(QueueError::io("lock", &path, err));
    }
    Ok(file)
}
