//! Reading and acking: [`QueueReader`], [`QueueAcker`], [`Entry`].
//!
//! The reader reads records back from the files (from the page cache, in
//! 1 MiB chunks) rather than being handed them in memory: one path for
//! fresh records and for those left from before a restart, and the queue
//! holds no payload in memory. Entries are zero-copy slices of the chunk.
//! Every record is checksummed again on the way out.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::format::{self, RecordDecode, SEGMENT_HEADER_LEN};
use super::segment_path;
use super::state::{QueueStats, Settle, Shared};

const READ_CHUNK: usize = 1 << 20;
/// Pause before retrying a read that failed with an I/O error.
const READ_RETRY: Duration = Duration::from_secs(1);

/// Identifies a record for [`QueueAcker::ack`]: its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(u64);

impl EntryId {
    pub fn seq(self) -> u64 {
        self.0
    }
}

/// One record handed to the exporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: EntryId,
    pub data: Bytes,
    /// When it was appended, Unix milliseconds (for end-to-end latency).
    pub appended_unix_ms: i64,
}

/// Acks records; cheap to clone and call from concurrent export requests.
#[derive(Clone)]
pub struct QueueAcker {
    shared: Arc<Shared>,
}

impl QueueAcker {
    /// The endpoint accepted record `id`: it will not be delivered again,
    /// even after `kill -9` (the ack is in the ack file when this returns).
    /// Acks may come in any order; acking twice, or acking a record that
    /// `drop_oldest` removed meanwhile, does nothing.
    pub fn ack(&self, id: EntryId) {
        self.shared.settle(id.0, Settle::Acked);
    }
}

impl std::fmt::Debug for QueueAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueAcker")
    }
}

/// Where the reader is: a position in one segment file.
struct Cursor {
    first_seq: u64,
    file: Arc<File>,
    /// Offset of the next record header.
    pos: u64,
    /// Sequence number the next record should carry; a larger one means the
    /// ones between were lost to damage.
    expected: u64,
    /// Bytes of the file from `buf_off`, read ahead.
    buf: Bytes,
    buf_off: u64,
}

impl Cursor {
    fn buffered(&self) -> &[u8] {
        if self.pos >= self.buf_off && self.pos < self.buf_off + self.buf.len() as u64 {
            &self.buf[(self.pos - self.buf_off) as usize..]
        } else {
            &[]
        }
    }
}

enum Step {
    /// Move to the segment starting at this sequence number.
    Open(u64),
    /// Caught up with the writer.
    Wait,
    /// Caught up and the writers are gone.
    Closed,
    /// Read from the cursor up to `end`, where the segment's records end at
    /// sequence number `next_seq`.
    Read { end: u64, next_seq: u64 },
}

/// Takes records in order. One per queue.
pub struct QueueReader {
    shared: Arc<Shared>,
    cur: Option<Cursor>,
}

impl QueueReader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        QueueReader { shared, cur: None }
    }

    /// A handle for acking from other tasks.
    pub fn acker(&self) -> QueueAcker {
        QueueAcker {
            shared: self.shared.clone(),
        }
    }

    /// Same as [`QueueAcker::ack`].
    pub fn ack(&self, id: EntryId) {
        self.shared.settle(id.0, Settle::Acked);
    }

    /// Flushes now what the fsync policy would flush at its next tick
    /// (acks included).
    pub async fn sync(&self) {
        self.shared.io.sync().await
    }

    pub fn stats(&self) -> QueueStats {
        self.shared.stats()
    }

    /// The next record not yet taken, waiting for one if needed. `None`
    /// only once every writer is gone and everything was taken.
    ///
    /// Cancel-safe: nothing advances until an entry is returned, so it can
    /// be raced against shutdown in `select!`.
    pub async fn next(&mut self) -> Option<Entry> {
        loop {
            match self.step() {
                Step::Closed => return None,
                Step::Wait => self.shared.data_ready.notified().await,
                Step::Open(first_seq) => self.open(first_seq).await,
                Step::Read { end, next_seq } => {
                    if let Some(e) = self.read(end, next_seq).await {
                        return Some(e);
                    }
                }
            }
        }
    }

    /// Decides what to do next from the queue's state.
    fn step(&mut self) -> Step {
        let mut st = self.shared.state.lock();
        let Some(c) = &mut self.cur else {
            return Step::Open(st.segments.front().expect("never empty").first_seq);
        };
        let Some(i) = st.segment_index(c.first_seq) else {
            // Deleted under us (dropped, or settled meanwhile): go on with
            // the next one still there.
            let next = st.segments.iter().find(|s| s.first_seq > c.first_seq);
            return next.map_or(Step::Wait, |s| Step::Open(s.first_seq));
        };
        let is_head = i + 1 == st.segments.len();
        let seg = &st.segments[i];
        if seg.pending == 0 && c.pos < seg.readable_end {
            // Everything written here is settled already (acked before a
            // restart): skip without reading.
            c.pos = seg.readable_end;
            c.expected = seg.next_seq();
            c.buf = Bytes::new();
            st.read_seq = st.read_seq.max(c.expected);
        }
        let seg = &st.segments[i];
        if c.pos < seg.readable_end {
            Step::Read {
                end: seg.readable_end,
                next_seq: seg.next_seq(),
            }
        } else if !is_head {
            Step::Open(st.segments[i + 1].first_seq)
        } else if st.closed {
            Step::Closed
        } else {
            Step::Wait
        }
    }

    async fn open(&mut self, first_seq: u64) {
        let path = segment_path(&self.shared.cfg.dir, first_seq);
        let p = path.clone();
        match tokio::task::spawn_blocking(move || File::open(p)).await {
            Ok(Ok(file)) => {
                self.cur = Some(Cursor {
                    first_seq,
                    file: Arc::new(file),
                    pos: SEGMENT_HEADER_LEN as u64,
                    expected: first_seq,
                    buf: Bytes::new(),
                    buf_off: 0,
                });
                let mut st = self.shared.state.lock();
                st.read_seq = st.read_seq.max(first_seq);
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let listed = {
                    let st = self.shared.state.lock();
                    st.segment_index(first_seq).map(|i| {
                        let s = &st.segments[i];
                        (i + 1 == st.segments.len(), s.next_seq())
                    })
                };
                match listed {
                    // Deleted between the state check and the open (dropped,
                    // or settled meanwhile): `step` moves on.
                    None => {}
                    // Removed behind the queue's back: its records are lost.
                    Some((false, next_seq)) => {
                        self.shared.metrics.io_error("read", &path, &e);
                        self.write_off(first_seq, first_seq..next_seq, 0);
                    }
                    Some((true, _)) => {
                        self.shared.metrics.io_error("read", &path, &e);
                        tokio::time::sleep(READ_RETRY).await;
                    }
                }
            }
            Ok(Err(e)) => {
                self.shared.metrics.io_error("read", &path, &e);
                tokio::time::sleep(READ_RETRY).await;
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// Decodes the record at the cursor (reading more of the file when
    /// needed). `Some` when it is one to deliver.
    async fn read(&mut self, end: u64, next_seq: u64) -> Option<Entry> {
        let c = self.cur.as_mut().expect("cursor set by step");
        match format::decode_record(c.buffered()) {
            RecordDecode::Record {
                seq,
                appended_unix_ms,
                body,
                total_len,
            } if seq >= c.expected => {
                let start = (c.pos - c.buf_off) as usize + (total_len - body.len());
                let data = c.buf.slice(start..start + body.len());
                let lost = c.expected..seq;
                c.pos += total_len as u64;
                c.expected = seq + 1;
                let first_seq = c.first_seq;
                self.write_off(first_seq, lost, 0);
                let mut st = self.shared.state.lock();
                st.read_seq = st.read_seq.max(seq + 1);
                st.is_pending(seq).then_some(Entry {
                    id: EntryId(seq),
                    data,
                    appended_unix_ms,
                })
            }
            RecordDecode::BadBody { seq, total_len } if seq >= c.expected => {
                let lost = c.expected..seq + 1;
                c.pos += total_len as u64;
                c.expected = seq + 1;
                let first_seq = c.first_seq;
                self.write_off(first_seq, lost, total_len as u64);
                None
            }
            RecordDecode::Incomplete { needed } if c.pos + needed as u64 <= end => {
                let len = needed.max(READ_CHUNK).min((end - c.pos) as usize);
                let pos = c.pos;
                if let Some(buf) = self.read_at(pos, len, end, next_seq).await {
                    let c = self.cur.as_mut().expect("cursor");
                    c.buf = buf;
                    c.buf_off = pos;
                }
                None
            }
            // Damage inside what was written whole: resync on the next
            // intact record header, or give up on the rest of the segment.
            _ => {
                let pos = c.pos;
                let after = c.expected.checked_sub(1);
                let buf = self
                    .read_at(pos, (end - pos) as usize, end, next_seq)
                    .await?;
                let c = self.cur.as_mut().expect("cursor");
                match format::find_next_header(&buf, 1, after) {
                    Some(q) => {
                        // The gap in sequence numbers is counted when the
                        // record found there is decoded.
                        c.buf = buf;
                        c.buf_off = pos;
                        c.pos = pos + q as u64;
                        None
                    }
                    None => {
                        let lost = c.expected..next_seq;
                        let first_seq = c.first_seq;
                        self.skip_to_end(end, next_seq);
                        self.write_off(first_seq, lost, end - pos);
                        None
                    }
                }
            }
        }
    }

    fn skip_to_end(&mut self, end: u64, next_seq: u64) {
        let c = self.cur.as_mut().expect("cursor");
        c.pos = end;
        c.expected = next_seq;
        c.buf = Bytes::new();
        let mut st = self.shared.state.lock();
        st.read_seq = st.read_seq.max(next_seq);
    }

    /// Reads `len` bytes at `pos`. A file shorter than the queue wrote it
    /// (truncated behind our back) is damage: the rest of the segment is
    /// written off. Other errors are retried after a pause.
    async fn read_at(&mut self, pos: u64, len: usize, end: u64, next_seq: u64) -> Option<Bytes> {
        let c = self.cur.as_ref().expect("cursor");
        let file = c.file.clone();
        let first_seq = c.first_seq;
        let res = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, pos).map(|()| Bytes::from(buf))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        match res {
            Ok(b) => Some(b),
            Err(e) => {
                let path = segment_path(&self.shared.cfg.dir, first_seq);
                self.shared.metrics.io_error("read", &path, &e);
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    let lost = self.cur.as_ref().expect("cursor").expected..next_seq;
                    self.skip_to_end(end, next_seq);
                    self.write_off(first_seq, lost, end - pos);
                } else {
                    tokio::time::sleep(READ_RETRY).await;
                }
                None
            }
        }
    }

    /// Settles the still-pending records among `lost` as corrupt and counts
    /// them (records settled before, e.g. on open, are not counted again).
    fn write_off(&self, segment: u64, lost: std::ops::Range<u64>, damaged_bytes: u64) {
        let mut n = 0;
        for seq in lost {
            if self.shared.settle(seq, Settle::Corrupt) {
                n += 1;
            }
        }
        self.shared
            .metrics
            .corrupt(segment, n, damaged_bytes, "read");
    }
}

impl std::fmt::Debug for QueueReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueReader")
            .field("dir", &self.shared.cfg.dir)
            .finish_non_exhaustive()
    }
}
