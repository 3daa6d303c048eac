//! The queue's in-memory picture (which segments exist, which of their
//! records are still to be delivered) and the operations that change it
//! together with the files: settling a record, removing a segment.
//!
//! One `parking_lot` mutex guards [`State`]; it is held for bookkeeping
//! only, never across file I/O except the rare lazy open of an ack file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::config::{DiskQueueConfig, FsyncPolicy};
use super::format;
use super::io::IoThread;
use super::metrics::Metrics;
use super::recovery::Recovered;
use super::writer::Head;
use super::{QueueError, WallClock, ack_path};

/// What the queue knows about one record: 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    pub appended_unix_ms: i64,
    /// Body length.
    pub len: u32,
    /// Not yet acked, dropped or written off.
    pub pending: bool,
}

impl RecordMeta {
    /// A sequence number with nothing left to deliver.
    pub const SETTLED: RecordMeta = RecordMeta {
        appended_unix_ms: 0,
        len: 0,
        pending: false,
    };
}

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    pub first_seq: u64,
    /// Indexed by `seq - first_seq`; covers every sequence number the
    /// segment was given, including ones lost to damage (settled).
    pub records: Vec<RecordMeta>,
    /// Size of the file, counted against `max_bytes`.
    pub file_len: u64,
    /// The reader reads up to here: the end of the last whole record (the
    /// head's tail is appended only under the head lock, and this moves
    /// after the write completed).
    pub readable_end: u64,
    /// Records still pending.
    pub pending: u64,
    /// Index of the first record that may be pending (a hint that only
    /// moves forward, for the oldest-record age).
    pub first_pending_hint: usize,
    /// Open append handle to the ack file, once this process acked here.
    pub ack_file: Option<Arc<File>>,
}

impl Segment {
    pub fn new(first_seq: u64, file_len: u64) -> Self {
        Segment {
            first_seq,
            records: Vec::new(),
            file_len,
            readable_end: file_len,
            pending: 0,
            first_pending_hint: 0,
            ack_file: None,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.records.len() as u64
    }

    /// The ack file's append handle, creating the file (with its header) on
    /// first use.
    fn ack_file(&mut self, dir: &Path) -> std::io::Result<Arc<File>> {
        if let Some(f) = &self.ack_file {
            return Ok(f.clone());
        }
        let f = open_ack_file(dir, self.first_seq)?;
        let f = Arc::new(f);
        self.ack_file = Some(f.clone());
        Ok(f)
    }
}

/// Opens an ack file for appending, writing its header if it is new.
pub(crate) fn open_ack_file(dir: &Path, first_seq: u64) -> std::io::Result<File> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ack_path(dir, first_seq))?;
    if f.metadata()?.len() == 0 {
        f.write_all(&format::encode_ack_header(first_seq))?;
    }
    Ok(f)
}

/// Files the I/O thread must flush at its next tick.
#[derive(Debug, Default)]
pub(crate) struct SyncSet {
    pub files: Vec<Arc<File>>,
    pub dir: bool,
}

impl SyncSet {
    pub fn add(&mut self, f: &Arc<File>) {
        if !self.files.iter().any(|x| Arc::ptr_eq(x, f)) {
            self.files.push(f.clone());
        }
    }
}

/// A snapshot for metrics, tests and the exporter's logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Bytes of all segment files.
    pub bytes: u64,
    /// Records not yet settled (unread, or delivered but not acked).
    pub records: u64,
    /// Records not yet handed to the reader.
    pub unread: u64,
    /// Segment files.
    pub segments: usize,
    /// Append time of the oldest record not yet settled.
    pub oldest_appended_unix_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Ascending by `first_seq`; never empty; the last one is the write head.
    pub segments: VecDeque<Segment>,
    pub next_seq: u64,
    /// The reader has taken (or skipped) every record below this.
    pub read_seq: u64,
    pub bytes: u64,
    pub pending: u64,
    /// Live `QueueWriter` handles; the queue closes when it drops to 0.
    pub writers: usize,
    pub closed: bool,
    pub sync: SyncSet,
}

impl State {
    /// Index of the segment whose first sequence number is `first_seq`.
    pub fn segment_index(&self, first_seq: u64) -> Option<usize> {
        self.segments
            .binary_search_by_key(&first_seq, |s| s.first_seq)
            .ok()
    }

    /// Index of the segment holding `seq`.
    pub fn index_of(&self, seq: u64) -> Option<usize> {
        let i = self
            .segments
            .partition_point(|s| s.first_seq <= seq)
            .checked_sub(1)?;
        (seq < self.segments[i].next_seq()).then_some(i)
    }

    pub fn is_pending(&self, seq: u64) -> bool {
        self.index_of(seq).is_some_and(|i| {
            let s = &self.segments[i];
            s.records[(seq - s.first_seq) as usize].pending
        })
    }

    pub fn stats(&mut self) -> QueueStats {
        let mut oldest = None;
        let mut unread = 0;
        let read_seq = self.read_seq;
        for seg in self.segments.iter_mut() {
            if seg.pending == 0 {
                continue;
            }
            if oldest.is_none() {
                while seg.first_pending_hint < seg.records.len()
                    && !seg.records[seg.first_pending_hint].pending
                {
                    seg.first_pending_hint += 1;
                }
                oldest = seg
                    .records
                    .get(seg.first_pending_hint)
                    .map(|r| r.appended_unix_ms);
            }
            if seg.next_seq() > read_seq {
                let from = read_seq.saturating_sub(seg.first_seq) as usize;
                unread += seg.records[from..].iter().filter(|r| r.pending).count() as u64;
            }
        }
        QueueStats {
            bytes: self.bytes,
            records: self.pending,
            unread,
            segments: self.segments.len(),
            oldest_appended_unix_ms: oldest,
        }
    }
}

/// Why a record is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settle {
    /// The exporter acked it.
    Acked,
    /// It was found damaged and cannot be delivered.
    Corrupt,
}

/// Everything the queue's handles share.
pub(crate) struct Shared {
    pub cfg: DiskQueueConfig,
    pub state: Arc<Mutex<State>>,
    /// The write head; held by one append at a time, across its file I/O.
    pub head: Arc<tokio::sync::Mutex<Head>>,
    /// An append completed or the queue closed (the reader waits on it).
    pub data_ready: Notify,
    /// A segment was removed (a blocked append waits on it).
    pub space_freed: Notify,
    pub metrics: Metrics,
    pub clock: WallClock,
    pub io: IoThread,
    _lock: File,
}

impl Shared {
    pub fn start(
        cfg: DiskQueueConfig,
        recovered: Recovered,
        metrics: Metrics,
        clock: WallClock,
        lock: File,
    ) -> Result<Arc<Shared>, QueueError> {
        let state = Arc::new(Mutex::new(recovered.state));
        let io = IoThread::spawn(cfg.dir.clone(), cfg.fsync, state.clone(), metrics.clone())
            .map_err(|e| QueueError::io("spawn I/O thread for", &cfg.dir, e))?;
        Ok(Arc::new(Shared {
            cfg,
            state,
            head: Arc::new(tokio::sync::Mutex::new(recovered.head)),
            data_ready: Notify::new(),
            space_freed: Notify::new(),
            metrics,
            clock,
            io,
            _lock: lock,
        }))
    }

    pub fn tracks_sync(&self) -> bool {
        !matches!(self.cfg.fsync, FsyncPolicy::Never)
    }

    /// Marks `seq` settled and records that in its segment's ack file;
    /// deletes the segment once nothing in it is pending (unless it is the
    /// head). Returns false when `seq` was not pending (acked twice, dropped
    /// with its segment, or unknown), which is harmless.
    pub fn settle(&self, seq: u64, why: Settle) -> bool {
        let (file, first_seq, index, delete) = {
            let mut st = self.state.lock();
            let Some(i) = st.index_of(seq) else {
                return false;
            };
            let last = st.segments.len() - 1;
            let seg = &mut st.segments[i];
            let index = (seq - seg.first_seq) as usize;
            if !seg.records[index].pending {
                return false;
            }
            seg.records[index].pending = false;
            seg.pending -= 1;
            let first_seq = seg.first_seq;
            let file = match seg.ack_file(&self.cfg.dir) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.metrics
                        .io_error("ack", &ack_path(&self.cfg.dir, first_seq), &e);
                    None
                }
            };
            let delete = i != last && seg.pending == 0;
            st.pending -= 1;
            if why == Settle::Acked {
                self.metrics.acked();
            }
            if delete {
                self.remove_segment(&mut st, i);
            } else if let Some(f) = &file
                && self.tracks_sync()
            {
                st.sync.add(f);
            }
            (file, first_seq, index as u32, delete)
        };
        // One 8-byte O_APPEND write: atomic among concurrent ackers, and in
        // the page cache (durable against kill -9) before `ack` returns.
        if let Some(f) = file
            && let Err(e) = (&*f).write_all(&format::encode_ack_entry(first_seq, index))
        {
            self.metrics
                .io_error("ack", &ack_path(&self.cfg.dir, first_seq), &e);
        }
        if delete {
            self.io.delete(first_seq);
        }
        true
    }

    /// Takes segment `i` out of the queue's accounting; the caller has the
    /// I/O thread delete its files.
    pub fn remove_segment(&self, st: &mut State, i: usize) -> Segment {
        let seg = st.segments.remove(i).expect("segment index in range");
        st.bytes -= seg.file_len;
        st.pending -= seg.pending;
        self.space_freed.notify_one();
        seg
    }

    /// `drop_oldest`: removes the oldest segment that is not the head,
    /// counting its undelivered records. False when there is none.
    pub fn drop_oldest(&self, st: &mut State) -> bool {
        if st.segments.len() < 2 {
            return false;
        }
        let read_seq = st.read_seq;
        let seg = self.remove_segment(st, 0);
        // Records already handed to the exporter stay its business (it may
        // still deliver them; their acks become no-ops). Only those never
        // read are dropped.
        let (records, bytes) = seg
            .records
            .iter()
            .enumerate()
            .filter(|(i, r)| r.pending && seg.first_seq + *i as u64 >= read_seq)
            .fold((0u64, 0u64), |(n, b), (_, r)| (n + 1, b + r.len as u64));
        self.metrics
            .dropped_queue_full(seg.first_seq, records, bytes);
        self.io.delete(seg.first_seq);
        true
    }

    pub fn stats(&self) -> QueueStats {
        self.state.lock().stats()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Last handle gone: flush per policy and stop the I/O thread.
        self.io.shutdown();
    }
}
