//! The log file source: tails container logs on the node and emits OTLP log
//! records, losing nothing across restarts and rotations.
//!
//! # How it reads
//!
//! One task polls every watched file in turn (Vector's model: no inotify, no
//! missed events). Each turn on a file reserves bytes from the process-wide
//! [`MemoryLimiter`] *before* reading (so when the budget is spent the
//! source stops reading and the file itself is the buffer), reads chunks of
//! `read_buffer_bytes` with `pread`, decodes them (`decoder`: lines, CRI /
//! docker / plain formats, partial-line joining and multiline per stream,
//! JSON bodies, severity), and emits at most one [`Envelope`] holding one
//! `ResourceLogs` for that file (up to `batch_max_bytes` /
//! `batch_max_records`), then moves on to the next file. Globs are
//! re-evaluated every `scan_interval`; files at EOF are polled again every
//! `poll_interval`. Reads are synchronous: a local page-cache read of at most
//! `read_buffer_bytes` is cheaper than handing it to a thread pool, and the
//! task yields between files.
//!
//! Each record carries `log.file.path` and, for container logs,
//! `log.iostream`; each envelope's resource carries the Kubernetes metadata
//! of the pod log path (`k8s` module) and the configured static attributes.
//!
//! # Checkpoints: acknowledged means durable
//!
//! A file's committed position moves only when the [`Ack`](crate::pipeline::Ack)
//! of the envelope holding its lines is called, i.e. once the batch is in the
//! disk queue (`checkpoint` module). Committed positions are written to
//! `data_dir/checkpoints.json` atomically as soon as they move (page cache:
//! safe from `kill -9`), fsynced every `checkpoint_interval` and on
//! shutdown (safe from power loss). The committed position never passes the start of a record that
//! is still incomplete (a CRI `P` chunk waiting for its `F`, an open multiline
//! group, an unterminated line), so a restart rebuilds it from the file;
//! records that were already acknowledged are recognised on the way and not
//! sent twice (`decoder` module: delivered offset). An envelope the pipeline
//! drops without acknowledging is read again from the committed position,
//! with backoff.
//!
//! # File identity and rotation
//!
//! A file is its `(device, inode)`, checked against a fingerprint of its
//! first bytes and its birth time (`identity` module). Consequences:
//!
//! - **Rename rotation** (kubelet, docker, logrotate `create`): the renamed
//!   file is read to its end through the open handle, and closed once no
//!   data arrived for `rotate_wait` and everything read from it is
//!   acknowledged; the new file at the path is read from byte 0.
//! - **copytruncate**: a file shorter than our offset, or whose first bytes
//!   changed, was truncated. The copy (a sibling named `<name><suffix>`,
//!   not compressed, starting with the same bytes, at least as long as our
//!   offset) is searched for, the rest is read from it, and the truncated
//!   file is read from 0. Lines the application wrote *between logrotate's
//!   copy and its truncate* are in neither file: copytruncate loses them by
//!   design, whoever reads. If no copy is found, the unread bytes are counted
//!   in `file_lost_bytes_total{reason="truncated"}` and logged.
//! - **Inode reuse** (delete, then a new file gets the inode): the
//!   fingerprint or birth time differs, the new file is read from 0.
//! - **Identical first lines** (two files starting with the same header):
//!   different inodes, two files, both read fully.
//! - **Symlinks** (`/var/log/containers/*.log` → `/var/log/pods/…`): same
//!   inode, read once.
//!
//! `include` must not match the names rotated files get (`*.log` does not
//! match `app.log.1` nor kubelet's `0.log.20240115-103000`): a rotated file
//! matched as a new file would be read again from its start. Rotated files
//! are found by inode or fingerprint in the file's directory without it.
//!
//! # What survives what
//!
//! | event                                   | outcome                                                          |
//! |-----------------------------------------|------------------------------------------------------------------|
//! | agent restart or `kill -9`              | resumes at the committed position; lines acknowledged while the last checkpoint write was being made (about one envelope, ≤ `batch_max_records`) are read again: duplicates, no loss. Lines not acknowledged yet are read again too, but they were never sent |
//! | power loss                              | as above, plus what was acknowledged since the last fsynced write (≤ `checkpoint_interval`) |
//! | pipeline drops a batch                  | the file is rewound to its committed position and read again (duplicates at most what was in flight) |
//! | rename rotation while running           | nothing lost (the old file is drained), nothing duplicated       |
//! | rename to a name `include` also matches | the same file, followed under its new name: nothing read twice   |
//! | rename rotation while stopped           | the renamed file is found in the same directory by inode, drained from its checkpoint; the new file is read from 0 |
//! | copytruncate while running              | nothing lost beyond copytruncate's own copy→truncate window, nothing duplicated (needs the copy uncompressed, in the same directory) |
//! | copytruncate while stopped              | same, found at startup by the copy's fingerprint                 |
//! | two rotations within one `scan_interval`| a file renamed away before any scan saw it is never read: keep `scan_interval` below the fastest rotation |
//! | file deleted before being read to EOF   | read to its end through the open handle (the inode lives while open) |
//! | checkpoint file corrupt                 | moved aside to `checkpoints.json.corrupt`, files read from the start (duplicates rather than loss) |
//! | data_dir shared by two agents           | the second waits for the first's lock (`data_dir/lock`): no interleaved checkpoints during a rolling update |
//!
//! New files found after the first start are read from the beginning;
//! `read_from` only decides for files present at the very first start (no
//! checkpoint file yet). `ignore_older` skips files not modified recently; if
//! such a file is written again, it is read from where it was when skipped.

mod checkpoint;
mod decoder;
mod format;
mod identity;
mod k8s;
mod metrics;
mod multiline;
mod record;
mod severity;
mod watcher;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::pipeline::{Envelope, MemoryLimiter};
use crate::transform::Transform;
use argus_common::shutdown::Shutdown;

pub use checkpoint::{CheckpointError, Entry as CheckpointEntry, Mark};
pub use decoder::{Decoder, DecoderSettings, Output};
pub use format::{Format, IoStream, Parsed, parse as parse_line, parse_rfc3339_nanos};
pub use identity::{FileId, Fingerprint};
pub use k8s::PodLog;
pub use multiline::{MultilineConfig, MultilineMode};
pub use record::{ATTR_FILE_PATH, ATTR_IOSTREAM, ATTR_TRUNCATED};

/// `source` label of the envelopes this source emits.
pub const SOURCE_NAME: &str = "file";

/// Where to start in files found at the very first start (no checkpoints).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Ship what the files already hold.
    #[default]
    Beginning,
    /// Only lines written from now on (starts after the last complete line).
    End,
}

/// `fingerprint:` settings (see the `identity` module).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintConfig {
    /// How many leading bytes identify a file's content (with its inode).
    pub bytes: usize,
}

impl Default for FingerprintConfig {
    fn default() -> Self {
        FingerprintConfig { bytes: 256 }
    }
}

/// `sources.file:` — the log file source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSourceConfig {
    /// Globs of files to tail (`*` within a path component).
    pub include: Vec<String>,
    /// Globs of files never to tail (`*` within a component, `**` across).
    pub exclude: Vec<String>,
    /// Line format: `auto` (per line, trying the file's last format first),
    /// `cri`, `docker` or `plain`.
    pub format: Format,
    /// Join multiline records (stack traces); off when absent.
    pub multiline: Option<MultilineConfig>,
    /// Take JSON object messages apart into body, severity and attributes.
    pub parse_json: bool,
    /// Longer lines (and joined partial or multiline records) keep their
    /// first `max_line_bytes` bytes; cut records are marked and counted.
    pub max_line_bytes: usize,
    /// How often the globs are re-evaluated (new files, rotations).
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// How often files at their end are checked for new data.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Where to start in files present at the very first start.
    pub read_from: ReadFrom,
    pub fingerprint: FingerprintConfig,
    /// Directory for `checkpoints.json` (a hostPath on Kubernetes, so that
    /// checkpoints outlive the pod).
    pub data_dir: PathBuf,
    /// Skip files not modified for this long when they are found.
    #[serde(with = "humantime_serde")]
    pub ignore_older: Option<Duration>,
    /// How long a rotated-away file is kept open after its last new data.
    #[serde(with = "humantime_serde")]
    pub rotate_wait: Duration,
    /// A CRI/docker partial line waiting longer than this for its end is
    /// emitted as it is.
    #[serde(with = "humantime_serde")]
    pub partial_timeout: Duration,
    /// How often committed positions are fsynced (when they moved): what a
    /// power loss can make the agent read again. Against `kill -9` they are
    /// written (without fsync) the moment an acknowledgement moves them, so
    /// this interval does not bound what a process crash re-reads.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// At shutdown, how long to wait for in-flight batches to be
    /// acknowledged before writing the last checkpoint.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Bytes per read.
    pub read_buffer_bytes: usize,
    /// Envelope size cap (estimated encoded bytes).
    pub batch_max_bytes: usize,
    /// Envelope record count cap.
    pub batch_max_records: usize,
    /// Static resource attributes added to every envelope (`k8s.node.name`, …).
    pub attributes: BTreeMap<String, String>,
}

impl Default for FileSourceConfig {
    fn default() -> Self {
        FileSourceConfig {
            include: vec!["/var/log/pods/*/*/*.log".into()],
            exclude: Vec::new(),
            format: Format::Auto,
            multiline: None,
            parse_json: true,
            max_line_bytes: 256 * 1024,
            scan_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            read_from: ReadFrom::Beginning,
            fingerprint: FingerprintConfig::default(),
            data_dir: PathBuf::from("/var/lib/argus-agent/file"),
            ignore_older: None,
            rotate_wait: Duration::from_secs(5),
            partial_timeout: Duration::from_secs(5),
            checkpoint_interval: Duration::from_millis(200),
            shutdown_timeout: Duration::from_secs(10),
            read_buffer_bytes: 128 * 1024,
            batch_max_bytes: 1024 * 1024,
            batch_max_records: 4096,
            attributes: BTreeMap::new(),
        }
    }
}

/// What `build` needs from the agent.
pub struct FileSourceContext<'a> {
    /// Sub-registry already prefixed `argus_agent`.
    pub registry: &'a mut Registry,
    pub limiter: MemoryLimiter,
    pub out: mpsc::Sender<Envelope>,
    /// Applied by the source itself (see `pipeline::Parcel::Encoded`).
    pub transform: Arc<Transform>,
}

/// Why the file source could not be built or could not run.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("invalid file source config: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("data_dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoints: {0}")]
    Checkpoint(#[from] CheckpointError),
}

impl FileSourceError {
    /// Whether running again later may succeed (an I/O error on the data
    /// directory may clear; a bad config will not).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, FileSourceError::Config(_))
    }
}

impl FileSourceConfig {
    /// Every problem in the config, each naming its field under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.include.is_empty() {
            out.push(format!("{path}.include: at least one glob is needed"));
        }
        for (i, g) in self.include.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(g) {
                out.push(format!("{path}.include[{i}]: invalid glob {g:?}: {e}"));
            }
        }
        for (i, g) in self.exclude.iter().enumerate() {
            if let Err(e) = exclude_glob(g) {
                out.push(format!("{path}.exclude[{i}]: invalid glob {g:?}: {e}"));
            }
        }
        if let Some(m) = &self.multiline {
            out.extend(m.problems(&format!("{path}.multiline")));
        }
        let mut range = |field: &str, v: usize, lo: usize, hi: usize| {
            if !(lo..=hi).contains(&v) {
                out.push(format!(
                    "{path}.{field}: must be between {lo} and {hi} (got {v})"
                ));
            }
        };
        range("max_line_bytes", self.max_line_bytes, 1024, 64 << 20);
        range("fingerprint.bytes", self.fingerprint.bytes, 16, 64 * 1024);
        range("read_buffer_bytes", self.read_buffer_bytes, 4096, 16 << 20);
        range("batch_max_bytes", self.batch_max_bytes, 4096, 64 << 20);
        range("batch_max_records", self.batch_max_records, 1, 1 << 20);
        for (field, d) in [
            ("scan_interval", self.scan_interval),
            ("poll_interval", self.poll_interval),
            ("partial_timeout", self.partial_timeout),
            ("checkpoint_interval", self.checkpoint_interval),
        ] {
            if d.is_zero() {
                out.push(format!("{path}.{field}: must be greater than 0"));
            }
        }
        if self.ignore_older.is_some_and(|d| d.is_zero()) {
            out.push(format!(
                "{path}.ignore_older: must be greater than 0 (or absent)"
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            out.push(format!("{path}.data_dir: must not be empty"));
        }
        for key in self.attributes.keys() {
            if key.is_empty() {
                out.push(format!("{path}.attributes: keys must not be empty"));
            }
        }
        out
    }

    /// Validates the config, creates `data_dir`, registers the metrics.
    pub fn build(&self, ctx: FileSourceContext<'_>) -> Result<FileSource, FileSourceError> {
        let problems = self.problems("file");
        if !problems.is_empty() {
            return Err(FileSourceError::Config(problems));
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|source| FileSourceError::DataDir {
            path: self.data_dir.clone(),
            source,
        })?;
        let decoder = DecoderSettings::new(
            self.format,
            self.multiline.as_ref(),
            self.max_line_bytes,
            self.partial_timeout,
            self.parse_json,
        )
        .map_err(|e| FileSourceError::Config(vec![format!("file.multiline: {e}")]))?;
        let mut exclude = globset::GlobSetBuilder::new();
        for g in &self.exclude {
            exclude.add(exclude_glob(g).expect("validated"));
        }
        let exclude = exclude
            .build()
            .map_err(|e| FileSourceError::Config(vec![format!("file.exclude: {e}")]))?;
        let include = self
            .include
            .iter()
            .map(|g| glob::Pattern::new(g).expect("validated"))
            .collect();
        Ok(FileSource {
            config: self.clone(),
            include,
            exclude,
            decoder: Arc::new(decoder),
            metrics: metrics::Metrics::register(ctx.registry),
            limiter: ctx.limiter,
            out: ctx.out,
            transform: ctx.transform,
        })
    }
}

fn exclude_glob(g: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(g).literal_separator(true).build()
}

/// A built file source; [`FileSource::run`] tails until shutdown.
pub struct FileSource {
    config: FileSourceConfig,
    include: Vec<glob::Pattern>,
    exclude: globset::GlobSet,
    decoder: Arc<DecoderSettings>,
    metrics: metrics::Metrics,
    limiter: MemoryLimiter,
    out: mpsc::Sender<Envelope>,
    transform: Arc<Transform>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("include", &self.config.include)
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl FileSource {
    /// Tails until `shutdown` fires, then stops reading, closes its sender,
    /// waits up to `shutdown_timeout` for acknowledgements and writes the
    /// final checkpoint. Errors only if the checkpoints cannot be read at
    /// start; per-file errors are logged, counted and retried.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), FileSourceError> {
        watcher::run(self, shutdown).await
    }

    /// `data_dir/checkpoints.json`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.config.data_dir.join(checkpoint::Store::FILE)
    }

    /// Whether `path` is one this source tails (matches `include`, not `exclude`).
    fn watches(&self, path: &std::path::Path) -> bool {
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        self.include.iter().any(|p| p.matches_path_with(path, opts)) && !self.exclude.is_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_yaml_round_trips() {
        let cfg = FileSourceConfig::default();
        assert!(
            cfg.problems("file").is_empty(),
            "{:?}",
            cfg.problems("file")
        );
        let yaml = r#"
include: ["/var/log/pods/*/*/*.log"]
exclude: ["/var/log/pods/kube-system_*/**"]
format: cri
multiline:
  start_pattern: '^[^\s]'
  condition_pattern: '^\s+at '
  mode: continue_through
  timeout: 2s
max_line_bytes: 65536
scan_interval: 500ms
read_from: end
fingerprint: { bytes: 512 }
data_dir: /var/lib/argus
ignore_older: 1d
attributes: { k8s.node.name: node-1 }
"#;
        let cfg: FileSourceConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(cfg.format, Format::Cri);
        assert_eq!(cfg.read_from, ReadFrom::End);
        assert_eq!(cfg.ignore_older, Some(Duration::from_secs(86_400)));
        assert_eq!(
            cfg.multiline.as_ref().unwrap().mode,
            MultilineMode::ContinueThrough
        );
        assert_eq!(cfg.poll_interval, Duration::from_millis(250), "defaulted");
        assert!(
            cfg.problems("file").is_empty(),
            "{:?}",
            cfg.problems("file")
        );
        assert!(serde_yaml::from_str::<FileSourceConfig>("includes: []").is_err());
    }

    #[test]
    fn problems_name_every_bad_field() {
        let cfg = FileSourceConfig {
            include: vec!["/var/log/[".into()],
            exclude: vec!["a{".into()],
            multiline: Some(MultilineConfig {
                start_pattern: "(".into(),
                condition_pattern: "x".into(),
                mode: MultilineMode::HaltBefore,
                timeout: Duration::from_secs(1),
            }),
            max_line_bytes: 1,
            scan_interval: Duration::ZERO,
            fingerprint: FingerprintConfig { bytes: 1 },
            batch_max_records: 0,
            data_dir: PathBuf::new(),
            ..Default::default()
        };
        let p = cfg.problems("sources.file");
        for field in [
            "sources.file.include[0]: invalid glob",
            "sources.file.exclude[0]: invalid glob",
            "sources.file.multiline.start_pattern: invalid regex",
            "sources.file.max_line_bytes: must be between",
            "sources.file.scan_interval: must be greater than 0",
            "sources.file.fingerprint.bytes: must be between",
            "sources.file.batch_max_records: must be between",
            "sources.file.data_dir: must not be empty",
        ] {
            assert!(
                p.iter().any(|m| m.starts_with(field)),
                "{field} missing from {p:?}"
            );
        }
        assert_eq!(p.len(), 8, "{p:?}");
        let mut reg = Registry::default();
        let (tx, _rx) = mpsc::channel(1);
        let err = cfg
            .build(FileSourceContext {
                registry: &mut reg,
                limiter: MemoryLimiter::new(1 << 20),
                out: tx,
                transform: Arc::new(Transform::none()),
            })
            .unwrap_err();
        assert!(!err.is_retryable());
    }
}
