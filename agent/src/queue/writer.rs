//! Appending: the write head and [`QueueWriter`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::config::{FsyncPolicy, WhenFull};
use super::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader};
use super::io::sync_dir;
use super::state::{QueueStats, RecordMeta, Segment, Shared};
use super::{QueueError, segment_path};

/// The segment being appended to. Only the append holding the head lock
/// touches it, from a blocking thread.
#[derive(Debug)]
pub(crate) struct Head {
    pub file: Arc<File>,
    pub first_seq: u64,
    /// Bytes written (the offset of the next record).
    pub size: u64,
    /// Sequence numbers given out in this segment.
    pub records: u64,
    /// A write failed here: the next append starts a fresh segment file
    /// rather than trust this one's tail (after a failed fsync, Linux may
    /// report later fsyncs of the same file as successful).
    pub broken: bool,
    /// The seal is written (found on open, or a rotation failed after
    /// writing it): nothing more may be appended here.
    pub sealed: bool,
}

impl Head {
    fn must_rotate(&self, total: u64, segment_bytes: u64) -> bool {
        self.broken || self.sealed || (self.records > 0 && self.size + total > segment_bytes)
    }

    /// Bytes a rotation adds besides the record: the old head's seal and
    /// the new head's header.
    pub(crate) const ROTATION_BYTES: u64 = (RECORD_HEADER_LEN + SEGMENT_HEADER_LEN) as u64;

    /// Writes one record whose body follows `RECORD_HEADER_LEN` reserved
    /// bytes in `buf`. Blocking.
    fn append(&mut self, sh: &Shared, mut buf: Vec<u8>) -> Result<(), QueueError> {
        let total = buf.len() as u64;
        if self.must_rotate(total, sh.cfg.segment_bytes) {
            self.rotate(sh)?;
        }
        let seq = sh.state.lock().next_seq;
        let ts = (sh.clock)();
        let header = format::encode_record_header(seq, ts, &buf[RECORD_HEADER_LEN..]);
        buf[..RECORD_HEADER_LEN].copy_from_slice(&header);
        if let Err(e) = self.file.write_all_at(&buf, self.size) {
            return Err(self.fail(sh, "write", e));
        }
        if sh.cfg.fsync == FsyncPolicy::Always
            && let Err(e) = self.file.sync_data()
        {
            return Err(self.fail(sh, "fsync", e));
        }
        self.size += total;
        self.records += 1;
        let body_len = buf.len() - RECORD_HEADER_LEN;
        {
            let mut st = sh.state.lock();
            st.next_seq = seq + 1;
            st.pending += 1;
            st.bytes += total;
            let seg = st.segments.back_mut().expect("the head segment exists");
            debug_assert_eq!(seg.first_seq, self.first_seq);
            seg.records.push(RecordMeta {
                appended_unix_ms: ts,
                len: body_len as u32,
                pending: true,
            });
            seg.pending += 1;
            seg.file_len = self.size;
            seg.readable_end = self.size;
            if matches!(sh.cfg.fsync, FsyncPolicy::Interval(_)) {
                st.sync.add(&self.file);
            }
        }
        sh.metrics.appended(body_len);
        sh.data_ready.notify_one();
        Ok(())
    }

    /// A write or fsync failed: undo the partial record (the sequence number
    /// is not used) and retire this file.
    fn fail(&mut self, sh: &Shared, op: &'static str, e: std::io::Error) -> QueueError {
        let path = segment_path(&sh.cfg.dir, self.first_seq);
        sh.metrics.io_error(op, &path, &e);
        // If this fails too, the garbage stays past `readable_end`, and on
        // open it is refused: its sequence number belongs to the next segment.
        if let Err(te) = self.file.set_len(self.size) {
            sh.metrics.io_error("truncate", &path, &te);
        }
        self.broken = true;
        QueueError::io(op, &path, e)
    }

    /// Writes the seal after the last record. Best effort: without it, a
    /// later open bounds this segment by the next one's first number.
    fn seal(&mut self, sh: &Shared, next: u64) {
        let path = segment_path(&sh.cfg.dir, self.first_seq);
        let seal = format::encode_seal(next, (sh.clock)());
        let res = self.file.write_all_at(&seal, self.size).and_then(|()| {
            if sh.cfg.fsync == FsyncPolicy::Always {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match res {
            Ok(()) => {
                self.size += seal.len() as u64;
                self.sealed = true;
                let mut st = sh.state.lock();
                st.bytes += seal.len() as u64;
                let seg = st.segments.back_mut().expect("the head segment exists");
                seg.file_len = self.size;
            }
            Err(e) => sh.metrics.io_error("write", &path, &e),
        }
    }

    /// Starts a new segment named after the next sequence number; the old
    /// head is sealed (and deleted at once if everything in it is settled).
    fn rotate(&mut self, sh: &Shared) -> Result<(), QueueError> {
        let next = sh.state.lock().next_seq;
        if self.first_seq != next && !self.sealed {
            self.seal(sh, next);
        }
        let next = sh.state.lock().next_seq;
        let path = segment_path(&sh.cfg.dir, next);
        let fail = |op: &'static str, path: &std::path::Path, e: std::io::Error| {
            sh.metrics.io_error(op, path, &e);
            QueueError::io(op, path, e)
        };
        // Truncating is safe: a file with this name holds no record (its
        // first sequence number was never given out): an empty broken head
        // or a rotation that failed half-way.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| fail("create", &path, e))?;
        let header = SegmentHeader {
            first_seq: next,
            created_unix_ms: (sh.clock)(),
        };
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| fail("write", &path, e))?;
        if sh.cfg.fsync == FsyncPolicy::Always {
            file.sync_data().map_err(|e| fail("fsync", &path, e))?;
            sync_dir(&sh.cfg.dir).map_err(|e| fail("fsync", &sh.cfg.dir, e))?;
        }
        let old = std::mem::replace(
            self,
            Head {
                file: Arc::new(file),
                first_seq: next,
                size: SEGMENT_HEADER_LEN as u64,
                records: 0,
                broken: false,
                sealed: false,
            },
        );
        let mut deleted = None;
        {
            let mut st = sh.state.lock();
            let last = st.segments.len() - 1;
            if old.first_seq == next {
                // The old head held no record and is replaced in place.
                let seg = st.segments.pop_back().expect("head");
                st.bytes -= seg.file_len;
            } else if st.segments[last].pending == 0 {
                sh.remove_segment(&mut st, last);
                deleted = Some(old.first_seq);
            } else if matches!(sh.cfg.fsync, FsyncPolicy::Interval(_)) {
                st.sync.add(&old.file);
            }
            st.bytes += SEGMENT_HEADER_LEN as u64;
            st.segments
                .push_back(Segment::new(next, SEGMENT_HEADER_LEN as u64));
            if matches!(sh.cfg.fsync, FsyncPolicy::Interval(_)) {
                st.sync.dir = true;
            }
        }
        if let Some(s) = deleted {
            sh.io.delete(s);
        }
        Ok(())
    }
}

/// Appends records. Cloneable: every clone appends to the same queue, in
/// the order their `append` calls take the head. The queue closes for the
/// reader (its `next` returns `None` once drained) when the last clone is
/// dropped.
pub struct QueueWriter {
    shared: Arc<Shared>,
}

impl QueueWriter {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.state.lock().writers += 1;
        QueueWriter { shared }
    }

    /// Appends one record. When this returns `Ok`, the record survives
    /// `kill -9` (and, per the fsync policy, a power loss).
    ///
    /// When the queue is full, `when_full: block` waits here until acks
    /// free a segment (the backpressure the sources feel);
    /// `drop_oldest` deletes the oldest segment instead, counting it.
    ///
    /// Cancel-safe: dropped while waiting, nothing was written; dropped
    /// while writing, the write completes (and the record will be
    /// delivered, perhaps as a duplicate of a retry).
    pub async fn append(&self, record: &[u8]) -> Result<(), QueueError> {
        let sh = &self.shared;
        if record.len() as u64 > sh.cfg.max_record_bytes {
            return Err(QueueError::RecordTooLarge {
                len: record.len(),
                max: sh.cfg.max_record_bytes,
            });
        }
        let mut buf = Vec::with_capacity(RECORD_HEADER_LEN + record.len());
        buf.resize(RECORD_HEADER_LEN, 0);
        buf.extend_from_slice(record);
        let head = sh.head.clone().lock_owned().await;
        self.make_room(&head, buf.len() as u64).await;
        let shared = sh.clone();
        // The guard moves into the blocking closure: even if this future
        // is dropped, no other append can touch the file until the write
        // is done.
        let task = tokio::task::spawn_blocking(move || {
            let mut head = head;
            head.append(&shared, buf)
        });
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(QueueError::Closed),
        }
    }

    /// Waits (`block`) or drops (`drop_oldest`) until `total` more bytes fit.
    async fn make_room(&self, head: &Head, total: u64) {
        let sh = &self.shared;
        loop {
            let freed = sh.space_freed.notified();
            {
                let mut st = sh.state.lock();
                let need = total
                    + if head.must_rotate(total, sh.cfg.segment_bytes) {
                        Head::ROTATION_BYTES
                    } else {
                        0
                    };
                // With only the head left, nothing could ever free space:
                // go ahead (possible only after max_bytes was lowered).
                if st.bytes + need <= sh.cfg.max_bytes || st.segments.len() < 2 {
                    return;
                }
                if sh.cfg.when_full == WhenFull::DropOldest {
                    sh.drop_oldest(&mut st);
                    continue;
                }
            }
            freed.await;
        }
    }

    /// Flushes now what the fsync policy would flush at its next tick.
    pub async fn sync(&self) {
        self.shared.io.sync().await
    }

    pub fn stats(&self) -> QueueStats {
        self.shared.stats()
    }
}

impl Clone for QueueWriter {
    fn clone(&self) -> Self {
        QueueWriter::new(self.shared.clone())
    }
}

impl Drop for QueueWriter {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.writers -= 1;
        if st.writers == 0 {
            st.closed = true;
            drop(st);
            self.shared.data_ready.notify_one();
        }
    }
}

impl std::fmt::Debug for QueueWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueWriter")
            .field("dir", &self.shared.cfg.dir)
            .finish_non_exhaustive()
    }
}
