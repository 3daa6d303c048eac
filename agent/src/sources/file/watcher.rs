//! The file source's task: finds files, follows them through rotations,
//! reads them under the memory budget, emits envelopes and keeps the
//! checkpoints (the design is in the parent module's doc).
//!
//! Every watched file is a [`Tail`]: an open handle, its identity, a
//! decoder, and a ledger of its envelopes in flight. A tail is *active*
//! while its path still names its file and *draining* once the file was
//! renamed, deleted, or is the copy left by copytruncate: a draining tail
//! is read to its end, and closed once nothing new arrived for
//! `rotate_wait` and everything read from it is acknowledged (until then a
//! dropped batch can still be re-read from the open handle).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argus_common::backoff::{Backoff, BackoffConfig};
use argus_common::shutdown::Shutdown;
use futures::FutureExt;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::checkpoint::{CheckpointError, Durability, Entry, Ledger, Mark, Store};
use super::decoder::{Decoder, Output};
use super::identity::{self, Check, FileId, Fingerprint};
use super::k8s::PodLog;
use super::metrics::{Metrics, Op, Rotation};
use super::record::{kv, string_value};
use super::{FileSource, FileSourceError, ReadFrom, SOURCE_NAME};
use crate::pipeline::{Encoded, Envelope, MemoryPermit, Parcel, Payload};

/// Instrumentation scope of every record this source emits.
const SCOPE_NAME: &str = "argus.file";
/// How far back `read_from: end` looks for the last line boundary.
const TAIL_ALIGN_BYTES: u64 = 64 * 1024;

pub(super) async fn run(src: FileSource, shutdown: Shutdown) -> Result<(), FileSourceError> {
    let Some(lock) = lock_data_dir(&src.config.data_dir, &shutdown).await? else {
        return Ok(());
    };
    let mut w = Watcher::new(src);
    w.start(Instant::now())?;
    w.tail_until(&shutdown).await;
    w.finish().await;
    drop(lock);
    Ok(())
}

/// Takes `data_dir/lock` (flock), waiting while another agent holds it.
async fn lock_data_dir(dir: &Path, shutdown: &Shutdown) -> Result<Option<File>, FileSourceError> {
    let path = dir.join("lock");
    let err = |source| FileSourceError::DataDir {
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(err)?;
    let mut warned = false;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(file));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err(e));
        }
        if !warned {
            tracing::warn!(path = %path.display(), "another process holds the file source's data_dir; waiting");
            warned = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait() => return Ok(None),
        }
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Active,
    Draining { since: Instant },
}

struct Tail {
    file: File,
    id: FileId,
    birth: Option<u64>,
    fp: Fingerprint,
    /// Where the file was found: what its records say, and whose directory
    /// holds its rotations.
    path: PathBuf,
    resource: Resource,
    decoder: Decoder,
    ledger: Arc<Ledger>,
    state: State,
    size: u64,
    last_data: Instant,
    last_mark: Mark,
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Everything was read and flushed; waiting for acknowledgements.
    closing: bool,
}

impl Tail {
    fn mark(&self) -> Mark {
        self.decoder.mark()
    }

    fn entry(&self) -> Entry {
        let c = self.ledger.committed();
        Entry {
            path: self.path.clone(),
            dev: self.id.dev,
            inode: self.id.ino,
            birth_ns: self.birth,
            fingerprint_len: self.fp.len,
            fingerprint_crc32: self.fp.crc,
            offset: c.offset,
            delivered: c.delivered,
            pending: c.pending,
        }
    }
}

/// A file found but not yet watched.
struct Found {
    path: PathBuf,
    file: File,
    meta: Metadata,
}

enum Pumped {
    Idle,
    Data,
    Shutdown,
}

struct Watcher {
    src: FileSource,
    out: Option<mpsc::Sender<Envelope>>,
    tails: BTreeMap<u64, Tail>,
    by_id: HashMap<FileId, u64>,
    next_tail: u64,
    /// Files skipped by `ignore_older`, with their size then.
    ignored: HashMap<FileId, u64>,
    /// Failures already logged (repeats are only counted).
    failing: HashSet<(PathBuf, &'static str)>,
    store: Store,
    wake: Arc<Notify>,
    buf: Vec<u8>,
    read_chunk: usize,
    batch_bytes: usize,
    static_attrs: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    first_start: bool,
}

impl Watcher {
    fn new(src: FileSource) -> Watcher {
        let cfg = &src.config;
        // Never let one read or one batch take a large share of a small budget.
        let limit = src.limiter.limit_bytes();
        let read_chunk = cfg.read_buffer_bytes.min(limit / 8).max(4096);
        let batch_bytes = cfg.batch_max_bytes.min(limit / 4).max(read_chunk);
        let static_attrs = cfg
            .attributes
            .iter()
            .map(|(k, v)| kv(k, string_value(v.clone())))
            .collect();
        Watcher {
            out: Some(src.out.clone()),
            store: Store::new(&cfg.data_dir),
            buf: vec![0; read_chunk],
            read_chunk,
            batch_bytes,
            static_attrs,
            tails: BTreeMap::new(),
            by_id: HashMap::new(),
            next_tail: 0,
            ignored: HashMap::new(),
            failing: HashSet::new(),
            wake: Arc::new(Notify::new()),
            first_start: false,
            src,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.src.metrics
    }

    /// Loads checkpoints and matches them with the files on disk.
    fn start(&mut self, now: Instant) -> Result<(), FileSourceError> {
        let entries = match self.store.load() {
            Ok(Some(entries)) => entries,
            Ok(None) => {
                self.first_start = true;
                Vec::new()
            }
            Err(e @ CheckpointError::Corrupt { .. }) => {
                self.metrics().checkpoint_error(&e);
                match self.store.quarantine() {
                    Ok(aside) => tracing::error!(
                        moved_to = %aside.display(),
                        "unreadable checkpoints moved aside; files are read from the start"
                    ),
                    Err(qe) => self.metrics().checkpoint_error(&qe),
                }
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        let mut restore: HashMap<FileId, Entry> =
            entries.into_iter().map(|e| (e.id(), e)).collect();
        self.scan(now, Some(&mut restore));
        for entry in restore.into_values() {
            self.restore_moved(entry, now);
        }
        self.first_start = false;
        self.write_checkpoint(Durability::Power);
        Ok(())
    }

    /// A checkpointed file no glob matched: renamed (or copied) while we were stopped?
    fn restore_moved(&mut self, entry: Entry, now: Instant) {
        let dir = entry.path.parent().unwrap_or(Path::new("/"));
        let found = identity::find_inode(dir, entry.id()).and_then(|path| {
            let file = File::open(&path).ok()?;
            let meta = file.metadata().ok()?;
            let same = same_content(&entry, &file, &meta);
            same.then_some(Found { path, file, meta })
        });
        let found = found.or_else(|| self.find_copy_of(&entry, None));
        match found {
            Some(f) if !self.by_id.contains_key(&FileId::of(&f.meta)) => {
                tracing::info!(
                    path = %entry.path.display(),
                    now_at = %f.path.display(),
                    "checkpointed log file was rotated while stopped; reading the rest"
                );
                self.add_tail(
                    f,
                    Some(entry.path.clone()),
                    entry.mark(),
                    State::Draining { since: now },
                    now,
                    "rotated while stopped",
                );
            }
            _ => tracing::info!(
                path = %entry.path.display(),
                offset = entry.offset,
                "checkpointed log file no longer exists"
            ),
        }
    }

    fn find_copy_of(&self, entry: &Entry, not: Option<FileId>) -> Option<Found> {
        let dir = entry.path.parent()?;
        let base = entry.path.file_name()?.to_str()?;
        let not = not.unwrap_or(FileId {
            dev: u64::MAX,
            ino: u64::MAX,
        });
        let (path, file, meta) =
            identity::find_copy(dir, base, entry.fingerprint(), entry.offset, not)?;
        Some(Found { path, file, meta })
    }

    /// Rotation checks on active tails, then discovery of new files.
    /// At startup, `restore` holds the checkpoints still to be matched.
    fn scan(&mut self, now: Instant, mut restore: Option<&mut HashMap<FileId, Entry>>) {
        self.check_paths(now);
        let mut seen_ignored = HashSet::new();
        for pattern in self.src.config.include.clone() {
            let paths = match glob::glob(&pattern) {
                Ok(p) => p,
                Err(e) => {
                    self.fail(Op::Glob, Path::new(&pattern), &e);
                    continue;
                }
            };
            for entry in paths {
                let path = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        let p = e.path().to_path_buf();
                        self.fail(Op::Glob, &p, &e);
                        continue;
                    }
                };
                if self.src.exclude.is_match(&path) {
                    continue;
                }
                let meta = match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        self.fail(Op::Stat, &path, &e);
                        continue;
                    }
                };
                let id = FileId::of(&meta);
                if self.by_id.contains_key(&id) {
                    continue;
                }
                // A checkpointed file is resumed however old it is.
                let checkpointed = restore.as_ref().is_some_and(|r| r.contains_key(&id));
                let skip_to = match (!checkpointed).then(|| self.ignore(id, &meta)) {
                    None => None,
                    Some(Ignore::Skip) => {
                        seen_ignored.insert(id);
                        continue;
                    }
                    Some(Ignore::From(at)) => Some(at),
                    Some(Ignore::No) => None,
                };
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        self.fail(Op::Open, &path, &e);
                        continue;
                    }
                };
                self.failing.remove(&(path.clone(), Op::Open.as_str()));
                // Between the stat and the open the path may have been rotated.
                let meta = match file.metadata() {
                    Ok(m) => m,
                    Err(e) => {
                        self.fail(Op::Stat, &path, &e);
                        continue;
                    }
                };
                let id = FileId::of(&meta);
                if self.by_id.contains_key(&id) {
                    continue;
                }
                let found = Found { path, file, meta };
                match restore.as_deref_mut() {
                    Some(r) => self.restore_found(found, r, now),
                    None => {
                        let (start, why) = match skip_to {
                            Some(at) => (at, "modified again after ignore_older skipped it"),
                            None => (0, "new file"),
                        };
                        self.add_tail(found, None, Mark::at(start), State::Active, now, why);
                    }
                }
            }
        }
        self.ignored.retain(|id, _| seen_ignored.contains(id));
        let unread = self
            .tails
            .values()
            .map(|t| t.size.saturating_sub(t.decoder.position()))
            .sum();
        self.metrics().set_watched(self.tails.len(), unread);
    }

    /// A file found at startup: resume it from its checkpoint, or decide
    /// where to start.
    fn restore_found(&mut self, found: Found, restore: &mut HashMap<FileId, Entry>, now: Instant) {
        let id = FileId::of(&found.meta);
        // By inode; or by path and inode, should the device number have changed.
        let entry = restore.remove(&id).or_else(|| {
            let key = restore
                .iter()
                .find(|(k, e)| k.ino == id.ino && e.path == found.path)
                .map(|(k, _)| *k)?;
            restore.remove(&key)
        });
        let Some(entry) = entry else {
            let start = if self.first_start && self.src.config.read_from == ReadFrom::End {
                last_line_end(&found.file, found.meta.len())
            } else {
                0
            };
            let why = if self.first_start {
                "present at first start"
            } else {
                "new file"
            };
            self.add_tail(found, None, Mark::at(start), State::Active, now, why);
            return;
        };
        if same_content(&entry, &found.file, &found.meta) {
            self.add_tail(
                found,
                None,
                entry.mark(),
                State::Active,
                now,
                "resumed from checkpoint",
            );
            return;
        }
        // Truncated (copytruncate) or the inode reused while we were stopped.
        if let Some(copy) = self.find_copy_of(&entry, Some(id)) {
            self.metrics().rotated(
                Rotation::Truncate,
                &entry.path,
                "while stopped; reading the rest from the copy",
            );
            self.add_tail(
                copy,
                Some(entry.path.clone()),
                entry.mark(),
                State::Draining { since: now },
                now,
                "copy of a truncated file",
            );
        } else {
            tracing::info!(path = %found.path.display(), "file changed while stopped (truncated or replaced); reading from the start");
        }
        self.add_tail(
            found,
            None,
            Mark::at(0),
            State::Active,
            now,
            "replaced while stopped",
        );
    }

    fn ignore(&mut self, id: FileId, meta: &Metadata) -> Ignore {
        let Some(max_age) = self.src.config.ignore_older else {
            return Ignore::No;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        match (old, self.ignored.get(&id)) {
            (true, None) => {
                tracing::debug!(?id, "skipping file older than ignore_older");
                self.ignored.insert(id, meta.len());
                Ignore::Skip
            }
            (true, Some(_)) => Ignore::Skip,
            (false, Some(&at)) => {
                self.ignored.remove(&id);
                Ignore::From(at.min(meta.len()))
            }
            (false, None) => Ignore::No,
        }
    }

    fn add_tail(
        &mut self,
        found: Found,
        path: Option<PathBuf>,
        mark: Mark,
        state: State,
        now: Instant,
        why: &str,
    ) {
        let Found {
            path: at,
            file,
            meta,
        } = found;
        let path = path.unwrap_or(at);
        let id = FileId::of(&meta);
        let fp = match Fingerprint::of(&file, self.src.config.fingerprint.bytes) {
            Ok(fp) => fp,
            Err(e) => {
                self.fail(Op::Read, &path, &e);
                return;
            }
        };
        let mut attributes = PodLog::from_path_resolving(&path)
            .map(|p| p.attributes())
            .unwrap_or_default();
        attributes.extend(self.static_attrs.iter().cloned());
        let path_str: Arc<str> = path.to_string_lossy().into();
        self.src.metrics.file_opened(&path, mark.offset, why);
        let tail = Tail {
            decoder: Decoder::resume(Arc::clone(&self.src.decoder), path_str, mark),
            ledger: Ledger::new(mark, Arc::clone(&self.wake)),
            file,
            id,
            birth: identity::birth_ns(&meta),
            fp,
            path,
            resource: Resource {
                attributes,
                ..Default::default()
            },
            state,
            size: meta.len(),
            last_data: now,
            last_mark: mark,
            retry_at: None,
            backoff: retry_backoff().build(),
            closing: false,
        };
        let n = self.next_tail;
        self.next_tail += 1;
        self.by_id.insert(id, n);
        self.tails.insert(n, tail);
    }

    /// Active tails whose path now names another file (or nothing) start draining.
    fn check_paths(&mut self, now: Instant) {
        for tail in self.tails.values_mut() {
            if tail.state != State::Active {
                continue;
            }
            let current = match std::fs::metadata(&tail.path) {
                Ok(m) => Some(FileId::of(&m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => {
                    let first = self.failing.insert((tail.path.clone(), Op::Stat.as_str()));
                    self.src.metrics.read_error(Op::Stat, &tail.path, &e, first);
                    continue;
                }
            };
            if current == Some(tail.id) {
                continue;
            }
            let dir = tail.path.parent().unwrap_or(Path::new("/"));
            let moved_to = identity::find_inode(dir, tail.id);
            if let Some(p) = moved_to.as_ref().filter(|p| self.src.watches(p)) {
                // Renamed to a name `include` matches too: still watched, same
                // file, same offsets (rediscovering it would read it again).
                tracing::info!(path = %tail.path.display(), now_at = %p.display(), "watched log file renamed");
                tail.path = p.clone();
                continue;
            }
            tail.state = State::Draining { since: now };
            match (current, moved_to) {
                (Some(_), renamed) | (None, renamed @ Some(_)) => {
                    let detail = renamed.map_or_else(
                        || "renamed out of its directory".to_string(),
                        |p| format!("now {}", p.display()),
                    );
                    self.src
                        .metrics
                        .rotated(Rotation::Rename, &tail.path, &detail);
                }
                (None, None) => {
                    tracing::debug!(path = %tail.path.display(), "log file deleted; reading what is left");
                }
            }
        }
    }

    fn fail(&mut self, op: Op, path: &Path, err: &dyn std::fmt::Display) {
        let first = self.failing.insert((path.to_path_buf(), op.as_str()));
        self.src.metrics.read_error(op, path, err, first);
    }

    /// Tails until shutdown.
    async fn tail_until(&mut self, shutdown: &Shutdown) {
        let cfg = self.src.config.clone();
        let mut next_scan = Instant::now() + cfg.scan_interval;
        let mut next_checkpoint = Instant::now() + cfg.checkpoint_interval;
        // An acknowledgement (or an abandonment) arrived since the last look.
        let mut acked = false;
        'outer: loop {
            if shutdown.is_triggered() {
                break;
            }
            let now = Instant::now();
            self.rewind_dropped(now);
            if now >= next_scan {
                self.scan(now, None);
                next_scan = now + cfg.scan_interval;
            }
            let mut progressed = false;
            let ids: Vec<u64> = self.tails.keys().copied().collect();
            for id in ids {
                if shutdown.is_triggered() {
                    break 'outer;
                }
                match self.pump(id, shutdown).await {
                    Pumped::Data => progressed = true,
                    Pumped::Idle => {}
                    Pumped::Shutdown => break 'outer,
                }
            }
            self.close_finished();
            // A committed mark moved: out of reach of a kill -9 at once, so
            // a restart re-reads about one envelope, not one interval of
            // reading (see the checkpoint module).
            acked |= self.wake.notified().now_or_never().is_some();
            if std::mem::take(&mut acked) {
                self.write_checkpoint(Durability::Process);
            }
            let now = Instant::now();
            if now >= next_checkpoint {
                self.write_checkpoint(Durability::Power);
                next_checkpoint = now + cfg.checkpoint_interval;
            }
            if progressed {
                tokio::task::yield_now().await;
                continue;
            }
            let mut wake_at = (now + cfg.poll_interval)
                .min(next_scan)
                .min(next_checkpoint);
            for t in self.tails.values() {
                if let Some(d) = t.decoder.deadline() {
                    wake_at = wake_at.min(d);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = self.wake.notified() => acked = true,
                _ = shutdown.wait() => break,
            }
        }
    }

    /// One turn on one file: read up to a batch, emit it.
    async fn pump(&mut self, id: u64, shutdown: &Shutdown) -> Pumped {
        let now = Instant::now();
        let cfg = &self.src.config;
        let Some(tail) = self.tails.get_mut(&id) else {
            return Pumped::Idle;
        };
        if tail.retry_at.is_some_and(|t| now < t) {
            return Pumped::Idle;
        }
        tail.retry_at = None;
        let mut out = Output::capped(unix_nanos(), cfg.batch_max_records, self.batch_bytes);
        let mut permit = MemoryPermit::default();
        let mut read = 0u64;
        let mut truncated = false;
        let mut at_eof = false;
        loop {
            let size = match tail.file.metadata() {
                Ok(m) => m.len(),
                Err(e) => {
                    let first = self.failing.insert((tail.path.clone(), Op::Stat.as_str()));
                    self.src.metrics.read_error(Op::Stat, &tail.path, &e, first);
                    break;
                }
            };
            let pos = tail.decoder.position();
            if size < pos {
                truncated = true;
                break;
            }
            tail.size = size;
            if size == pos {
                at_eof = true;
                break;
            }
            let want = (size - pos).min(self.read_chunk as u64) as usize;
            tokio::select! {
                p = self.src.limiter.acquire(want) => permit.merge(p),
                _ = shutdown.wait() => return Pumped::Shutdown,
            }
            let n = match tail.file.read_at(&mut self.buf[..want], pos) {
                Ok(0) => {
                    at_eof = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let first = self.failing.insert((tail.path.clone(), Op::Read.as_str()));
                    self.src.metrics.read_error(Op::Read, &tail.path, &e, first);
                    tail.retry_at = Some(now + cfg.poll_interval);
                    break;
                }
            };
            // Bytes at an old offset are ours only if the head is unchanged:
            // catches copytruncate even when the file already grew back.
            match tail.fp.check(&tail.file, cfg.fingerprint.bytes) {
                Ok(Check::Same(grown)) => {
                    if let Some(fp) = grown {
                        tail.fp = fp;
                    }
                }
                Ok(Check::Changed) => {
                    truncated = true;
                    break;
                }
                Err(e) => {
                    let first = self.failing.insert((tail.path.clone(), Op::Read.as_str()));
                    self.src.metrics.read_error(Op::Read, &tail.path, &e, first);
                    break;
                }
            }
            let used = tail.decoder.feed(&self.buf[..n], now, &mut out);
            read += used as u64;
            tail.last_data = now;
            if used < n || out.is_full() || read >= self.batch_bytes as u64 {
                break;
            }
        }
        if read > 0 {
            // A rotated file still being written to is not finished yet.
            tail.closing = false;
        }
        tail.decoder.flush_expired(now, &mut out);
        if truncated {
            self.truncated(id, now, &mut out);
        } else if at_eof
            && !tail.closing
            && let State::Draining { since } = tail.state
            && now.saturating_duration_since(since.max(tail.last_data)) >= cfg.rotate_wait
        {
            tail.decoder.flush_all(now, &mut out);
            tail.closing = true;
        }
        self.src
            .metrics
            .read(out.lines, read, out.records.len() as u64, out.truncated);
        let Some(tail) = self.tails.get_mut(&id) else {
            return Pumped::Idle;
        };
        let mark = tail.mark();
        if out.records.is_empty() {
            if mark != tail.last_mark {
                tail.ledger.advance(mark);
                tail.last_mark = mark;
            }
            return if read > 0 || truncated {
                Pumped::Data
            } else {
                Pumped::Idle
            };
        }
        let payload = Payload::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(tail.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records: std::mem::take(&mut out.records),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        });
        // Transform and encode here, while the records are in this core's
        // cache (see `Parcel::Encoded`).
        let encoded = Encoded::prepare(payload, &self.src.transform);
        // The reservation covered the bytes read; top it up to the encoded
        // size if the budget allows (never wait while holding a reservation:
        // two sources doing so could deadlock a small budget).
        let size = encoded.record.len();
        if size > permit.bytes()
            && let Some(extra) = self.src.limiter.try_acquire(size - permit.bytes())
        {
            permit.merge(extra);
        }
        let ack = tail.ledger.dispatch(mark);
        tail.last_mark = mark;
        let envelope = Envelope {
            payload: Parcel::Encoded(encoded),
            source: SOURCE_NAME,
            acks: vec![ack],
            permit,
        };
        let Some(tx) = self.out.clone() else {
            return Pumped::Shutdown;
        };
        loop {
            tokio::select! {
                slot = tx.reserve() => return match slot {
                    Ok(slot) => {
                        slot.send(envelope);
                        Pumped::Data
                    }
                    Err(_) => {
                        tracing::warn!("pipeline closed; file source stops reading");
                        Pumped::Shutdown
                    }
                },
                // Waiting on a full pipeline is when acknowledgements pile up
                // (the batches ahead of ours are being made durable): write
                // them down rather than leave them to a kill -9.
                _ = self.wake.notified() => self.write_checkpoint(Durability::Process),
                // The envelope is dropped unsent: its ack resolves as abandoned
                // and the checkpoint stays before it.
                _ = shutdown.wait() => return Pumped::Shutdown,
            }
        }
    }

    /// The file is shorter than our offset, or its head changed: copytruncate.
    fn truncated(&mut self, id: u64, now: Instant, out: &mut Output) {
        let fp_bytes = self.src.config.fingerprint.bytes;
        let Some(tail) = self.tails.get_mut(&id) else {
            return;
        };
        let pos = tail.decoder.position();
        let dir = tail.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let base = tail
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let copy = identity::find_copy(&dir, &base, tail.fp, pos, tail.id);
        match copy {
            Some((copy_path, copy_file, copy_meta)) => {
                self.src.metrics.rotated(
                    Rotation::Truncate,
                    &tail.path,
                    &format!("reading the rest from {}", copy_path.display()),
                );
                // This tail (decoder state, ledger, offsets) continues in the
                // copy; the truncated file starts over as a new tail.
                let original = std::mem::replace(&mut tail.file, copy_file);
                let original_id = tail.id;
                tail.id = FileId::of(&copy_meta);
                tail.birth = identity::birth_ns(&copy_meta);
                tail.size = copy_meta.len();
                tail.state = State::Draining { since: now };
                let path = tail.path.clone();
                let copy_id = tail.id;
                self.by_id.remove(&original_id);
                self.by_id.insert(copy_id, id);
                match original.metadata() {
                    Ok(meta) => {
                        let found = Found {
                            path: path.clone(),
                            file: original,
                            meta,
                        };
                        self.add_tail(
                            found,
                            None,
                            Mark::at(0),
                            State::Active,
                            now,
                            "truncated, reading from the start",
                        );
                    }
                    Err(e) => self.fail(Op::Stat, &path, &e),
                }
            }
            None => {
                self.src
                    .metrics
                    .rotated(Rotation::Truncate, &tail.path, "no copy found");
                self.src
                    .metrics
                    .lost_truncated(&tail.path, pos, tail.size.max(pos));
                // What was pending belongs to content that is gone: ship it as is.
                tail.decoder.flush_all(now, out);
                tail.decoder.reset(Mark::at(0));
                tail.ledger.reset(Mark::at(0));
                tail.last_mark = Mark::at(0);
                tail.size = 0;
                tail.closing = false;
                tail.fp = Fingerprint::of(&tail.file, fp_bytes).unwrap_or(Fingerprint::EMPTY);
            }
        }
    }

    /// Files whose batch the pipeline dropped are read again from their
    /// committed mark, after a backoff.
    fn rewind_dropped(&mut self, now: Instant) {
        for tail in self.tails.values_mut() {
            match tail.ledger.take_rewind() {
                Some(mark) => {
                    let delay = tail.backoff.next_delay();
                    self.src.metrics.batch_retry(&tail.path, mark.offset, delay);
                    tail.decoder.reset(mark);
                    tail.last_mark = mark;
                    tail.closing = false;
                    tail.retry_at = Some(now + delay);
                }
                None if tail.backoff.attempt() > 0 && tail.ledger.uncommitted() == 0 => {
                    tail.backoff.reset();
                }
                None => {}
            }
        }
    }

    /// Drops draining tails that are read, flushed and fully acknowledged.
    fn close_finished(&mut self) {
        let done: Vec<u64> = self
            .tails
            .iter()
            .filter(|(_, t)| t.closing && t.ledger.uncommitted() == 0 && !t.decoder.has_pending())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(t) = self.tails.remove(&id) {
                self.by_id.remove(&t.id);
                self.src.metrics.file_closed(&t.path, t.decoder.position());
            }
        }
    }

    fn write_checkpoint(&mut self, durability: Durability) {
        let entries: Vec<Entry> = self.tails.values().map(Tail::entry).collect();
        let n = entries.len();
        match self.store.write(entries, durability) {
            Ok(true) => self.src.metrics.checkpoint_written(n),
            Ok(false) => {}
            Err(e) => self.src.metrics.checkpoint_error(&e),
        }
    }

    /// Stops emitting, waits for what is in flight, writes the last checkpoint.
    async fn finish(&mut self) {
        // Closing our sender lets the pipeline drain and acknowledge.
        self.out = None;
        let deadline = Instant::now() + self.src.config.shutdown_timeout;
        loop {
            let in_flight: usize = self.tails.values().map(|t| t.ledger.in_flight()).sum();
            if in_flight == 0 {
                break;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight, "file source stopped before all its batches were acknowledged; they will be read again");
                    break;
                }
            }
        }
        self.write_checkpoint(Durability::Power);
    }
}

enum Ignore {
    No,
    Skip,
    From(u64),
}

fn retry_backoff() -> BackoffConfig {
    BackoffConfig {
        initial_interval: Duration::from_millis(250),
        max_interval: Duration::from_secs(30),
        multiplier: 2.0,
    }
}

/// Whether `file` is still the content `entry` checkpointed.
fn same_content(entry: &Entry, file: &File, meta: &Metadata) -> bool {
    let birth_ok = match (entry.birth_ns, identity::birth_ns(meta)) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    birth_ok && meta.len() >= entry.offset && entry.fingerprint().matches(file).unwrap_or(false)
}

/// The end of the last complete line within the last 64 KiB before `size`.
fn last_line_end(file: &File, size: u64) -> u64 {
    let from = size.saturating_sub(TAIL_ALIGN_BYTES);
    let mut buf = vec![0u8; (size - from) as usize];
    match file.read_exact_at(&mut buf, from) {
        Ok(()) => memchr::memrchr(b'\n', &buf).map_or(size, |i| from + i as u64 + 1),
        Err(_) => size,
    }
}
