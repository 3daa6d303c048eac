//! Where each file is read up to, moved only by acknowledgements, and kept
//! on disk.
//!
//! # In memory: the ledger
//!
//! Every envelope a file emits is registered in that file's [`Ledger`] with
//! its [`Mark`]: the resume offset and the delivered offset at the time the
//! batch was cut (see the `decoder` module). The envelope carries an [`Ack`]
//! whose closure marks that entry acknowledged; the ledger's committed mark
//! then advances over the acknowledged *prefix* of entries, so an
//! acknowledgement arriving out of order never moves the checkpoint past an
//! older batch that is still in flight.
//!
//! An `Ack` dropped without being called (the pipeline could not make the
//! batch durable) marks its entry abandoned. The source then rewinds that
//! file to the committed mark and reads it again (with backoff): the batch
//! is retried the way an OTLP client would retry, rather than lost or left
//! to a restart. Entries in flight at the time of a rewind belong to an
//! older epoch and no longer move the checkpoint; their lines are re-read,
//! so a rewind duplicates at most what was in flight.
//!
//! # On disk: `checkpoints.json`
//!
//! ```json
//! {"version":1,"files":[{"path":"/var/log/pods/…/0.log","dev":2049,"inode":1234,
//!   "birth_ns":1705314600123456789,"fingerprint_len":256,"fingerprint_crc32":305419896,
//!   "offset":1000,"delivered":1200,"pending":[1000,null,null]}]}
//! ```
//!
//! Written as soon as an acknowledgement moved a committed mark, in two
//! strengths, because the two crashes it must survive cost very different
//! amounts:
//!
//! - **against process death** (`kill -9`, OOM kill): on every move, to
//!   `checkpoints.json.tmp` then renamed over `checkpoints.json` — page
//!   cache only, tens of microseconds. What a `kill -9` re-reads is then
//!   only what was acknowledged while that write was being made: about one
//!   envelope, however fast the file is being read. (A timer alone made it
//!   "one interval of reading", which grows with the read rate exactly when
//!   the agent is catching up.)
//! - **against power loss**: every `checkpoint_interval` when anything was
//!   written since, and at shutdown, the same with `fsync` of the file
//!   before the rename and of the directory after it.
//!
//! Either way a crash leaves the old or the new file, never a torn one;
//! what was acknowledged after the last write that survived is read again
//! (duplicates, never loss). JSON, because an operator debugging "why did
//! it re-read that file" can read it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use super::decoder::Mark;
use super::identity::{FileId, Fingerprint};
use crate::pipeline::Ack;

/// One file in `checkpoints.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path the file was found at (its records carry this path).
    pub path: PathBuf,
    pub dev: u64,
    pub inode: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_ns: Option<u64>,
    pub fingerprint_len: u32,
    pub fingerprint_crc32: u32,
    pub offset: u64,
    pub delivered: u64,
    /// Per stream (stdout, stderr, no stream): where its incomplete record starts.
    #[serde(default, skip_serializing_if = "nothing_pending")]
    pub pending: [Option<u64>; 3],
}

fn nothing_pending(p: &[Option<u64>; 3]) -> bool {
    p.iter().all(Option::is_none)
}

impl Entry {
    pub fn id(&self) -> FileId {
        FileId {
            dev: self.dev,
            ino: self.inode,
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            len: self.fingerprint_len,
            crc: self.fingerprint_crc32,
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            offset: self.offset,
            delivered: self.delivered.max(self.offset),
            pending: self.pending,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<Entry>,
}

const VERSION: u32 = 1;

/// Why checkpoints could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a checkpoint file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// `data_dir/checkpoints.json`.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    last: Vec<u8>,
    /// Whether `last` reached the disk with fsync.
    synced: bool,
}

/// How far a checkpoint write must reach before it counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The page cache: survives the process, not the machine.
    Process,
    /// The disk (fsync of file and directory): survives a power loss.
    Power,
}

impl Store {
    pub const FILE: &'static str = "checkpoints.json";

    pub fn new(data_dir: &Path) -> Store {
        Store {
            path: data_dir.join(Self::FILE),
            tmp: data_dir.join(format!("{}.tmp", Self::FILE)),
            dir: data_dir.to_path_buf(),
            last: Vec::new(),
            synced: true,
        }
    }

    /// `Ok(None)` when there is no checkpoint file (the agent's first start).
    pub fn load(&mut self) -> Result<Option<Vec<Entry>>, CheckpointError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if disk.version != VERSION {
            return Err(corrupt(format!("unsupported version {}", disk.version)));
        }
        self.last = bytes;
        Ok(Some(disk.files))
    }

    /// Moves an unreadable checkpoint file aside (kept for a post-mortem).
    pub fn quarantine(&self) -> io::Result<PathBuf> {
        let aside = self.path.with_extension("json.corrupt");
        std::fs::rename(&self.path, &aside)?;
        Ok(aside)
    }

    /// Writes `entries` atomically, as durable as `durability` asks;
    /// `Ok(false)` when that was already done.
    pub fn write(
        &mut self,
        mut entries: Vec<Entry>,
        durability: Durability,
    ) -> Result<bool, CheckpointError> {
        entries.sort_by(|a, b| (&a.path, a.dev, a.inode).cmp(&(&b.path, b.dev, b.inode)));
        let disk = OnDisk {
            version: VERSION,
            files: entries,
        };
        let bytes = serde_json::to_vec(&disk).expect("checkpoint entries always serialize");
        let sync = durability == Durability::Power;
        if bytes == self.last && (self.synced || !sync) {
            return Ok(false);
        }
        self.write_bytes(&bytes, sync)
            .map_err(|source| CheckpointError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.last = bytes;
        self.synced = sync;
        Ok(true)
    }

    fn write_bytes(&self, bytes: &[u8], sync: bool) -> io::Result<()> {
        let mut f = File::create(&self.tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&self.tmp, &self.path)?;
        if sync {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    InFlight,
    Acked,
    Abandoned,
}

#[derive(Debug)]
struct Flight {
    seq: u64,
    mark: Mark,
    fate: Fate,
}

#[derive(Debug)]
struct Book {
    epoch: u64,
    next_seq: u64,
    flights: VecDeque<Flight>,
    committed: Mark,
    abandoned: bool,
}

/// One file's envelopes in flight and its committed mark.
#[derive(Debug)]
pub struct Ledger {
    book: Mutex<Book>,
    wake: Arc<Notify>,
}

impl Ledger {
    /// `wake` is notified whenever an envelope is acknowledged or abandoned.
    pub fn new(committed: Mark, wake: Arc<Notify>) -> Arc<Ledger> {
        Arc::new(Ledger {
            book: Mutex::new(Book {
                epoch: 0,
                next_seq: 0,
                flights: VecDeque::new(),
                committed,
                abandoned: false,
            }),
            wake,
        })
    }

    /// Registers an envelope that, once acknowledged, commits `mark`.
    pub fn dispatch(self: &Arc<Self>, mark: Mark) -> Ack {
        let mut book = self.book.lock();
        let seq = book.next_seq;
        book.next_seq += 1;
        book.flights.push_back(Flight {
            seq,
            mark,
            fate: Fate::InFlight,
        });
        let guard = AckGuard {
            ledger: Arc::clone(self),
            epoch: book.epoch,
            seq,
            done: false,
        };
        Ack::new(move || {
            let mut guard = guard;
            guard.done = true;
            guard.ledger.resolve(guard.epoch, guard.seq, Fate::Acked);
        })
    }

    /// Records progress that needed no envelope (lines that only fed a
    /// pending record, or records suppressed after a restart).
    pub fn advance(&self, mark: Mark) {
        let mut book = self.book.lock();
        if book.flights.is_empty() {
            book.committed = mark;
        } else if let Some(last) = book.flights.back_mut().filter(|f| f.fate == Fate::Acked) {
            // Coalesce: an idle file behind a slow batch must not grow the queue.
            last.mark = mark;
        } else {
            let seq = book.next_seq;
            book.next_seq += 1;
            book.flights.push_back(Flight {
                seq,
                mark,
                fate: Fate::Acked,
            });
        }
    }

    fn resolve(&self, epoch: u64, seq: u64, fate: Fate) {
        {
            let mut book = self.book.lock();
            if book.epoch != epoch {
                return;
            }
            let Ok(i) = book.flights.binary_search_by_key(&seq, |f| f.seq) else {
                return;
            };
            book.flights[i].fate = fate;
            if fate == Fate::Abandoned {
                book.abandoned = true;
            }
            while book.flights.front().is_some_and(|f| f.fate == Fate::Acked) {
                let f = book.flights.pop_front().expect("front exists");
                book.committed = f.mark;
            }
        }
        self.wake.notify_one();
    }

    pub fn committed(&self) -> Mark {
        self.book.lock().committed
    }

    /// Envelopes neither acknowledged nor abandoned yet.
    pub fn in_flight(&self) -> usize {
        self.book
            .lock()
            .flights
            .iter()
            .filter(|f| f.fate == Fate::InFlight)
            .count()
    }

    /// Entries not yet committed (in flight, or acked behind one that is not).
    pub fn uncommitted(&self) -> usize {
        self.book.lock().flights.len()
    }

    /// If an envelope was abandoned: starts a new epoch (older envelopes no
    /// longer count) and returns the committed mark to rewind to.
    pub fn take_rewind(&self) -> Option<Mark> {
        let mut book = self.book.lock();
        if !book.abandoned {
            return None;
        }
        book.abandoned = false;
        book.epoch += 1;
        book.flights.clear();
        Some(book.committed)
    }

    /// Starts over at `mark` (the file was truncated and is read from 0).
    pub fn reset(&self, mark: Mark) {
        let mut book = self.book.lock();
        book.epoch += 1;
        book.flights.clear();
        book.abandoned = false;
        book.committed = mark;
    }
}

/// Resolves its envelope as abandoned if dropped before being acknowledged.
struct AckGuard {
    ledger: Arc<Ledger>,
    epoch: u64,
    seq: u64,
    done: bool,
}

impl Drop for AckGuard {
    fn drop(&mut self) {
        if !self.done {
            self.ledger.resolve(self.epoch, self.seq, Fate::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Arc<Ledger> {
        Ledger::new(Mark::at(0), Arc::new(Notify::new()))
    }

    #[test]
    fn commits_only_the_acknowledged_prefix() {
        let l = ledger();
        let a = l.dispatch(Mark::at(10));
        let b = l.dispatch(Mark::at(20));
        l.advance(Mark::at(25));
        let c = l.dispatch(Mark::at(30));
        b.ack();
        assert_eq!(l.committed(), Mark::at(0), "a is still in flight");
        a.ack();
        assert_eq!(l.committed(), Mark::at(25), "a, b and the idle advance");
        assert_eq!(l.in_flight(), 1);
        c.ack();
        assert_eq!(l.committed(), Mark::at(30));
        l.advance(Mark::at(40));
        assert_eq!(l.committed(), Mark::at(40));
        assert!(l.take_rewind().is_none());
    }

    #[test]
    fn dropped_acks_rewind_and_old_epochs_are_ignored() {
        let l = ledger();
        let a = l.dispatch(Mark::at(10));
        let b = l.dispatch(Mark::at(20));
        let c = l.dispatch(Mark::at(30));
        a.ack();
        drop(b);
        assert_eq!(l.take_rewind(), Some(Mark::at(10)));
        assert!(l.take_rewind().is_none(), "once");
        // c belongs to the old epoch: its ack does not move the checkpoint.
        c.ack();
        assert_eq!(l.committed(), Mark::at(10));
        assert_eq!(l.uncommitted(), 0);
        let d = l.dispatch(Mark::at(20));
        d.ack();
        assert_eq!(l.committed(), Mark::at(20));
    }

    #[test]
    fn store_round_trips_and_writes_only_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::new(dir.path());
        assert!(s.load().unwrap().is_none());
        let e = Entry {
            path: "/var/log/pods/a/b/0.log".into(),
            dev: 1,
            inode: 2,
            birth_ns: Some(3),
            fingerprint_len: 4,
            fingerprint_crc32: 5,
            offset: 6,
            delivered: 7,
            pending: [Some(6), None, None],
        };
        use Durability::{Power, Process};
        assert!(s.write(vec![e.clone()], Process).unwrap());
        assert!(!s.write(vec![e.clone()], Process).unwrap(), "unchanged");
        // The same content, now to be made power-safe: written once more.
        assert!(s.write(vec![e.clone()], Power).unwrap());
        assert!(!s.write(vec![e.clone()], Power).unwrap(), "already synced");
        assert!(
            !s.write(vec![e.clone()], Process).unwrap(),
            "synced covers it"
        );
        let mut moved = e.clone();
        moved.offset = 60;
        assert!(s.write(vec![moved.clone()], Process).unwrap());
        // What a kill -9 right now leaves: the page cache's newest version.
        assert_eq!(Store::new(dir.path()).load().unwrap(), Some(vec![moved]));
        assert!(s.write(vec![e.clone()], Power).unwrap());
        let mut again = Store::new(dir.path());
        assert_eq!(again.load().unwrap(), Some(vec![e.clone()]));
        assert!(!dir.path().join("checkpoints.json.tmp").exists());

        std::fs::write(dir.path().join(Store::FILE), b"{\"version\":1,\"files\":[{").unwrap();
        let err = again.load().unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
        let aside = again.quarantine().unwrap();
        assert!(aside.exists());
        assert!(again.load().unwrap().is_none());
    }
}
