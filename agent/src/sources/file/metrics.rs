//! The file source's self-metrics, and one function per notable occurrence
//! that logs it and counts it together.
//!
//! Registered under the caller's prefix (`argus_agent_`):
//!
//! | metric                                 | type    | labels        |
//! |----------------------------------------|---------|---------------|
//! | `file_watched_files`                   | gauge   |               |
//! | `file_unread_bytes`                    | gauge   |               |
//! | `file_read_lines_total`                | counter |               |
//! | `file_read_bytes_total`                | counter |               |
//! | `file_records_total`                   | counter |               |
//! | `file_rotations_total`                 | counter | `kind`: `rename`, `truncate` |
//! | `file_truncated_lines_total`           | counter |               |
//! | `file_read_errors_total`               | counter | `op`: `glob`, `open`, `stat`, `read` |
//! | `file_lost_bytes_total`                | counter | `reason`: `truncated` |
//! | `file_batch_retries_total`             | counter |               |
//! | `file_checkpoints_written_total`       | counter |               |
//! | `file_checkpoint_errors_total`         | counter |               |
//!
//! Labels are fixed words: never a path (paths go to the log line).

use std::path::Path;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

type Labels = [(&'static str, &'static str); 1];

#[derive(Clone, Debug, Default)]
pub(crate) struct Metrics {
    watched: Gauge,
    unread: Gauge,
    lines: Counter,
    bytes: Counter,
    records: Counter,
    rotations: Family<Labels, Counter>,
    truncated: Counter,
    read_errors: Family<Labels, Counter>,
    lost: Family<Labels, Counter>,
    retries: Counter,
    checkpoints: Counter,
    checkpoint_errors: Counter,
}

/// How a file was rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// Renamed (or deleted) and replaced by a new file at the path.
    Rename,
    /// Truncated in place (copytruncate), with or without its copy found.
    Truncate,
}

/// Which operation failed on a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Glob,
    Open,
    Stat,
    Read,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Glob => "glob",
            Op::Open => "open",
            Op::Stat => "stat",
            Op::Read => "read",
        }
    }
}

impl Metrics {
    pub fn register(reg: &mut Registry) -> Metrics {
        let m = Metrics::default();
        reg.register(
            "file_watched_files",
            "Files the file source has open",
            m.watched.clone(),
        );
        reg.register_with_unit(
            "file_unread",
            "Bytes written to watched files and not read yet (at the last scan)",
            Unit::Bytes,
            m.unread.clone(),
        );
        reg.register(
            "file_read_lines",
            "Lines read from log files",
            m.lines.clone(),
        );
        reg.register_with_unit(
            "file_read",
            "Bytes read from log files",
            Unit::Bytes,
            m.bytes.clone(),
        );
        reg.register(
            "file_records",
            "Log records emitted by the file source",
            m.records.clone(),
        );
        reg.register(
            "file_rotations",
            "File rotations seen, by kind (rename, truncate)",
            m.rotations.clone(),
        );
        reg.register(
            "file_truncated_lines",
            "Lines or records cut at max_line_bytes",
            m.truncated.clone(),
        );
        reg.register(
            "file_read_errors",
            "Failed file operations, by operation",
            m.read_errors.clone(),
        );
        reg.register_with_unit(
            "file_lost",
            "Bytes that could not be read, by reason (truncated: copytruncate without a copy)",
            Unit::Bytes,
            m.lost.clone(),
        );
        reg.register(
            "file_batch_retries",
            "Batches the pipeline dropped before they were durable, read again",
            m.retries.clone(),
        );
        reg.register(
            "file_checkpoints_written",
            "Checkpoint files written",
            m.checkpoints.clone(),
        );
        reg.register(
            "file_checkpoint_errors",
            "Checkpoint files that could not be written or read",
            m.checkpoint_errors.clone(),
        );
        m
    }

    pub fn set_watched(&self, files: usize, unread_bytes: u64) {
        self.watched.set(files as i64);
        self.unread
            .set(i64::try_from(unread_bytes).unwrap_or(i64::MAX));
    }

    pub fn read(&self, lines: u64, bytes: u64, records: u64, truncated: u64) {
        self.lines.inc_by(lines);
        self.bytes.inc_by(bytes);
        self.records.inc_by(records);
        self.truncated.inc_by(truncated);
    }

    pub fn file_opened(&self, path: &Path, offset: u64, why: &str) {
        tracing::info!(path = %path.display(), offset, why, "watching log file");
    }

    pub fn file_closed(&self, path: &Path, offset: u64) {
        tracing::info!(path = %path.display(), offset, "finished rotated log file");
    }

    pub fn rotated(&self, kind: Rotation, path: &Path, detail: &str) {
        let k = match kind {
            Rotation::Rename => "rename",
            Rotation::Truncate => "truncate",
        };
        self.rotations.get_or_create(&[("kind", k)]).inc();
        tracing::info!(path = %path.display(), kind = k, detail, "log file rotated");
    }

    pub fn lost_truncated(&self, path: &Path, from: u64, to: u64) {
        self.lost
            .get_or_create(&[("reason", "truncated")])
            .inc_by(to.saturating_sub(from));
        tracing::warn!(
            path = %path.display(),
            from,
            to,
            "log file truncated before it was read to the end and no copy was found; \
             those bytes are lost"
        );
    }

    /// `first` is false for a repeat of an already logged failure (counted, not logged).
    pub fn read_error(&self, op: Op, path: &Path, err: &dyn std::fmt::Display, first: bool) {
        self.read_errors.get_or_create(&[("op", op.as_str())]).inc();
        if first {
            tracing::warn!(path = %path.display(), op = op.as_str(), error = %err, "log file error");
        }
    }

    pub fn batch_retry(&self, path: &Path, offset: u64, delay: std::time::Duration) {
        self.retries.inc();
        tracing::warn!(
            path = %path.display(),
            offset,
            retry_in = ?delay,
            "pipeline dropped a batch before it was durable; reading it again"
        );
    }

    pub fn checkpoint_written(&self, files: usize) {
        self.checkpoints.inc();
        tracing::debug!(files, "checkpoints written");
    }

    pub fn checkpoint_error(&self, err: &dyn std::fmt::Display) {
        self.checkpoint_errors.inc();
        tracing::error!(error = %err, "file source checkpoints");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_names_match_the_documented_ones() {
        let mut reg = Registry::with_prefix("argus_agent");
        let m = Metrics::register(&mut reg);
        m.rotated(Rotation::Rename, Path::new("/p"), "x");
        m.read_error(Op::Open, Path::new("/p"), &"denied", true);
        m.lost_truncated(Path::new("/p"), 10, 25);
        m.read(3, 100, 2, 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        for line in [
            "argus_agent_file_watched_files 0",
            "argus_agent_file_unread_bytes 0",
            "argus_agent_file_read_lines_total 3",
            "argus_agent_file_read_bytes_total 100",
            "argus_agent_file_records_total 2",
            "argus_agent_file_rotations_total{kind=\"rename\"} 1",
            "argus_agent_file_truncated_lines_total 1",
            "argus_agent_file_read_errors_total{op=\"open\"} 1",
            "argus_agent_file_lost_bytes_total{reason=\"truncated\"} 15",
            "argus_agent_file_batch_retries_total 0",
            "argus_agent_file_checkpoints_written_total 0",
            "argus_agent_file_checkpoint_errors_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
