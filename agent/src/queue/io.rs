//! The queue's I/O thread: periodic fsyncs and segment deletion, the file
//! work that may take milliseconds and so must not run on the async runtime
//! nor delay an `ack`.
//!
//! A plain OS thread rather than a tokio task: it blocks in `fsync` and
//! `unlink` by design, owns no async state, and must outlive the runtime
//! long enough to flush once more when the queue's last handle is dropped
//! (which joins it). It holds no `Shared`, so it never keeps the queue
//! alive.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::config::FsyncPolicy;
use super::metrics::Metrics;
use super::state::State;
use super::{ack_path, segment_path};

enum Cmd {
    /// Delete a segment's files (segment first, then its acks).
    Delete(u64),
    /// Flush now, then answer.
    Sync(tokio::sync::oneshot::Sender<()>),
    Shutdown,
}

pub(crate) struct IoThread {
    tx: mpsc::Sender<Cmd>,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl IoThread {
    pub fn spawn(
        dir: PathBuf,
        fsync: FsyncPolicy,
        state: Arc<Mutex<State>>,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let join = std::thread::Builder::new()
            .name("argus-queue-io".into())
            .spawn(move || {
                Worker {
                    dir,
                    fsync,
                    state,
                    metrics,
                }
                .run(rx)
            })?;
        Ok(IoThread {
            tx,
            join: Mutex::new(Some(join)),
        })
    }

    pub fn delete(&self, first_seq: u64) {
        let _ = self.tx.send(Cmd::Delete(first_seq));
    }

    /// Flushes what the fsync policy would flush at its next tick, now.
    pub async fn sync(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Cmd::Sync(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Final flush and stop; waits for the thread.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(j) = self.join.lock().take() {
            let _ = j.join();
        }
    }
}

struct Worker {
    dir: PathBuf,
    fsync: FsyncPolicy,
    state: Arc<Mutex<State>>,
    metrics: Metrics,
}

impl Worker {
    fn run(self, rx: mpsc::Receiver<Cmd>) {
        // Under `always` appends are flushed inline; acks still are, here,
        // every second. Under `never` the thread only deletes.
        let tick = match self.fsync {
            FsyncPolicy::Interval(d) => d,
            FsyncPolicy::Always => Duration::from_secs(1),
            FsyncPolicy::Never => Duration::from_secs(3600),
        };
        let mut next_tick = Instant::now() + tick;
        loop {
            match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(Cmd::Delete(first_seq)) => self.delete(first_seq),
                Ok(Cmd::Sync(reply)) => {
                    self.flush();
                    let _ = reply.send(());
                }
                Ok(Cmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    // Deletions queued before shutdown still happen.
                    while let Ok(cmd) = rx.try_recv() {
                        if let Cmd::Delete(s) = cmd {
                            self.delete(s);
                        }
                    }
                    self.flush();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.flush();
                    next_tick = Instant::now() + tick;
                }
            }
        }
    }

    fn delete(&self, first_seq: u64) {
        for path in [
            segment_path(&self.dir, first_seq),
            ack_path(&self.dir, first_seq),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.metrics.io_error("delete", &path, &e),
            }
        }
    }

    fn flush(&self) {
        if matches!(self.fsync, FsyncPolicy::Never) {
            return;
        }
        let set = std::mem::take(&mut self.state.lock().sync);
        for f in &set.files {
            if let Err(e) = f.sync_data() {
                self.metrics.io_error("fsync", &self.dir, &e);
            }
        }
        if set.dir
            && let Err(e) = sync_dir(&self.dir)
        {
            self.metrics.io_error("fsync", &self.dir, &e);
        }
    }
}

/// Makes file creations in `dir` durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
