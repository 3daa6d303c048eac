//! The append-only audit log: one JSON line per decision.
//!
//! ```json
//! {"ts":"2025-03-01T12:00:00.000Z","incident_id":"inc-42","rule":"restart-checkout","target":"service=checkout,pod=checkout-7d9f","decision":"sent","reason":null,"webhook_id":"msg_0195…","http_status":200,"attempt":1,"dry_run":false,"error":null}
//! ```
//!
//! `decision` ∈ `matched`, `skipped` (with `reason` ∈ `cooldown`,
//! `breaker_open`, `incident_closed`, `shutdown`, `audit_unavailable`),
//! `dry_run`, `sent`, `retried`, `failed`, `verified`, `escalated` (with
//! `reason` ∈ `still_open`, `action_failed`), `unverified` (shutdown came
//! before `verify_after`). Secrets and signatures never appear; errors are
//! stripped of URLs.
//!
//! # Durability
//! Lines go through one writer task that **group-commits**: it writes every
//! line waiting, then `fdatasync`s once, so an alert storm costs one sync per
//! burst rather than one per line, and a quiet system still syncs every line
//! promptly. Before a webhook is sent the sender waits until the action's
//! `matched` line is on disk (write-ahead): an action that happened is
//! always in the log even if the detector dies right after sending. If the log cannot be written the
//! action is not sent (fail closed) and the failure is counted.
//!
//! The file is opened in append mode and never truncated or rewritten, so
//! it survives restarts and is safe to ship with a log agent. A line torn by
//! a crash mid-write is left as it is and terminated, so the next line
//! starts clean; readers skip lines that do not parse.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::telemetry::Telemetry;

/// One audit line.
#[derive(Debug, Serialize)]
pub(crate) struct Record<'a> {
    #[serde(serialize_with = "rfc3339")]
    pub(crate) ts: SystemTime,
    pub(crate) incident_id: &'a str,
    pub(crate) rule: &'a str,
    pub(crate) target: &'a str,
    pub(crate) decision: &'static str,
    pub(crate) reason: Option<&'static str>,
    pub(crate) webhook_id: Option<&'a str>,
    pub(crate) http_status: Option<u16>,
    pub(crate) attempt: Option<u32>,
    pub(crate) dry_run: bool,
    pub(crate) error: Option<&'a str>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

enum Msg {
    /// A line, and who wants to know whether it reached the disk.
    Line(Vec<u8>, Option<oneshot::Sender<bool>>),
    /// Write what came before, then stop.
    Close,
}

/// The audit log's handle. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Audit {
    tx: mpsc::UnboundedSender<Msg>,
}

/// The writer task; [`AuditWriter::run`] returns after [`Audit::close`] (or
/// when every handle is gone).
pub(crate) struct AuditWriter {
    rx: mpsc::UnboundedReceiver<Msg>,
    file: Option<File>,
    path: PathBuf,
    /// A failed write may have left a partial line.
    torn: bool,
    telemetry: Telemetry,
}

impl Audit {
    /// Opens (creating it and its directory if needed) the log for appending.
    pub(crate) fn open(path: &Path, telemetry: Telemetry) -> Result<(Audit, AuditWriter), String> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("cannot open {} for appending: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
            .len();
        let mut torn = false;
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::End(-1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            torn = last[0] != b'\n';
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((
            Audit { tx },
            AuditWriter {
                rx,
                file: Some(file),
                path: path.to_owned(),
                torn,
                telemetry,
            },
        ))
    }

    /// Queues one line. Never blocks; the writer task writes it.
    pub(crate) fn record(&self, r: &Record<'_>) {
        self.send(r, None);
    }

    /// Queues one line; the answer says whether it is on disk (true) or
    /// could not be written (false).
    pub(crate) fn record_durable(&self, r: &Record<'_>) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        self.send(r, Some(tx));
        rx
    }

    fn send(&self, r: &Record<'_>, ack: Option<oneshot::Sender<bool>>) {
        let mut line = serde_json::to_vec(r).expect("audit records serialise");
        line.push(b'\n');
        // A closed channel means the writer is gone (after shutdown): the
        // line is lost, and a waiting sender hears `false`.
        if self.tx.send(Msg::Line(line, ack)).is_err() {
            tracing::debug!("audit line after the audit log was closed; dropped");
        }
    }

    /// Asks the writer to finish what was recorded so far and stop.
    pub(crate) fn close(&self) {
        let _ = self.tx.send(Msg::Close);
    }
}

impl AuditWriter {
    pub(crate) async fn run(mut self) {
        let mut closing = false;
        while !closing {
            let Some(first) = self.rx.recv().await else {
                break;
            };
            let mut lines = Vec::new();
            let mut waiters = Vec::new();
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Line(l, ack) => {
                        lines.push(l);
                        waiters.extend(ack);
                    }
                    Msg::Close => {
                        closing = true;
                        break;
                    }
                }
                next = self.rx.try_recv().ok();
            }
            let ok = if lines.is_empty() {
                true
            } else {
                self.write(lines).await
            };
            for w in waiters {
                let _ = w.send(ok);
            }
        }
        self.rx.close();
    }

    /// Appends and syncs on the blocking pool (which also keeps tokio's
    /// paused test clock from jumping while the disk works).
    async fn write(&mut self, lines: Vec<Vec<u8>>) -> bool {
        let n = lines.len();
        let mut file = self.file.take().expect("file is put back after each write");
        let torn = self.torn;
        let (file, result) = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(lines.iter().map(Vec::len).sum::<usize>() + 1);
            if torn {
                buf.push(b'\n');
            }
            for l in &lines {
                buf.extend_from_slice(l);
            }
            let r = file.write_all(&buf).and_then(|_| file.sync_data());
            (file, r)
        })
        .await
        .expect("audit write does not panic");
        self.file = Some(file);
        match result {
            Ok(()) => {
                self.torn = false;
                true
            }
            Err(e) => {
                self.torn = true;
                self.telemetry.audit_write_failed(&self.path, n, &e);
                false
            }
        }
    }
}
