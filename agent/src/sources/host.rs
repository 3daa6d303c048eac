//! Host metrics: CPU, memory, load, disks, filesystems, network and process
//! counts of the node, read straight from `/proc` and `/sys`.
//!
//! # Design
//!
//! - **No heavy crates.** Each collector is a small parser of one kernel
//!   file into a plain struct (pure functions, tested on fixtures captured
//!   from a real machine) and a function turning that struct into OTLP
//!   metrics that follow the OpenTelemetry semantic conventions for system
//!   metrics (see [`metric_set`] for the type choices). A scrape reads ~7
//!   small files and lists `/proc` once: tens of microseconds of CPU.
//! - **`root`** prefixes every path (`/host` → `/host/proc/stat`), so a
//!   DaemonSet that mounts the node's `/` at `/host` reports the node, not
//!   its container. Files that are per-namespace (`net/dev`, `mounts`) are
//!   read through PID 1 (`proc/1/...`) so they show the host's namespaces.
//! - **Failures stay local.** A collector whose file is missing or garbled is
//!   logged and counted (`host_collector_errors_total{collector}`); the
//!   others still report. The warning is logged when a collector starts
//!   failing, not every interval (a missing file would otherwise log 8640
//!   times a day); later failures log at debug.
//! - **Start times.** Cumulative sums start at boot (`btime` from
//!   `/proc/stat`), read once and then kept: the kernel recomputes `btime`
//!   from the clock and it can wobble by a second under NTP, which a
//!   consumer would take for a counter reset.
//! - **Delivery.** One [`Envelope`] per scrape (`source: "host"`) with an
//!   empty ack list: host metrics are re-read next interval, so nothing waits
//!   on durability. When the pipeline cannot take a scrape (memory budget or
//!   channel full) for a whole interval, that scrape is dropped and counted
//!   (`host_scrapes_dropped_total{reason}`) rather than piling up stale data.
//! - **Blocking.** Reading `/proc` is done on the blocking pool; `statvfs`
//!   per mount has its own timeout (see [`filesystem`]).

pub mod cpu;
pub mod disk;
pub mod filesystem;
pub mod load;
pub mod memory;
pub mod metric_set;
pub mod network;
pub mod processes;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use argus_common::shutdown::Shutdown;

use crate::pipeline::{Envelope, MemoryLimiter, Offer, Payload, offer};
use metric_set::{Stamp, str_attr};

/// Why a host collector could not report.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {file}: {reason}")]
    Parse { file: &'static str, reason: String },
}

/// A configuration that does not validate; lists every problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid host metrics configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

/// The host collectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collector {
    Cpu,
    Memory,
    Load,
    Disk,
    Filesystem,
    Network,
    Processes,
}

impl Collector {
    pub const ALL: [Collector; 7] = [
        Collector::Cpu,
        Collector::Memory,
        Collector::Load,
        Collector::Disk,
        Collector::Filesystem,
        Collector::Network,
        Collector::Processes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Collector::Cpu => "cpu",
            Collector::Memory => "memory",
            Collector::Load => "load",
            Collector::Disk => "disk",
            Collector::Filesystem => "filesystem",
            Collector::Network => "network",
            Collector::Processes => "processes",
        }
    }
}

impl prometheus_client::encoding::EncodeLabelValue for Collector {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.as_str())
    }
}

/// Checks every glob of one include/exclude list.
fn glob_problems(path: &str, list: &[String], paths: bool, out: &mut Vec<String>) {
    for (i, p) in list.iter().enumerate() {
        if let Err(e) = glob(p, paths) {
            out.push(format!("{path}[{i}]: invalid glob {p:?}: {e}"));
        }
    }
}

fn glob_set(list: &[String], paths: bool) -> Result<Option<GlobSet>, globset::Error> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in list {
        b.add(glob(p, paths)?);
    }
    b.build().map(Some)
}

/// For paths, `*` stops at `/` and `**` crosses it; for device names both
/// are the same.
fn glob(p: &str, paths: bool) -> Result<Glob, globset::Error> {
    if paths {
        GlobBuilder::new(p).literal_separator(true).build()
    } else {
        Glob::new(p)
    }
}

fn strings(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|s| s.to_string()).collect()
}

/// A compiled include/exclude pair. An empty include list means
/// "everything"; a name matching an exclude glob is dropped even when
/// included.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Matcher {
    pub fn new(
        include: &[String],
        exclude: &[String],
        paths: bool,
    ) -> Result<Self, globset::Error> {
        Ok(Matcher {
            include: glob_set(include, paths)?,
            exclude: glob_set(exclude, paths)?,
        })
    }

    pub fn accepts(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(name))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(name))
    }
}

// The include/exclude lists are flat fields (as in the Collector's
// `hostmetrics`), so that setting `include_*` keeps the default `exclude_*`:
// serde fills a missing field from the struct's `Default`.

/// Which block devices the disk collector reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// Device name globs (`sda`, `nvme*`, `dm-*`). Default: all.
    pub include_devices: Vec<String>,
    /// Default: loop, RAM and floppy devices.
    pub exclude_devices: Vec<String>,
    /// Report partitions too (they double-count their disk). Default false.
    pub include_partitions: bool,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            include_devices: Vec::new(),
            exclude_devices: strings(&["loop*", "ram*", "zram*", "fd*"]),
            include_partitions: false,
        }
    }
}

/// Which filesystems the filesystem collector reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    /// Device globs as the mount table names them (`/dev/sda1`, `tmpfs`).
    pub include_devices: Vec<String>,
    pub exclude_devices: Vec<String>,
    /// Mount point globs (host paths; `*` stops at `/`, `**` crosses it).
    pub include_mount_points: Vec<String>,
    /// Default: `/proc`, `/sys`, `/dev` and the container runtimes' and
    /// kubelet's per-pod mounts.
    pub exclude_mount_points: Vec<String>,
    pub include_fs_types: Vec<String>,
    /// Default: pseudo filesystems and `overlay`.
    pub exclude_fs_types: Vec<String>,
    /// How long one `statvfs` may take before its mount counts as stuck.
    #[serde(with = "humantime_serde")]
    pub stat_timeout: Duration,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        FilesystemConfig {
            include_devices: Vec::new(),
            exclude_devices: Vec::new(),
            include_mount_points: Vec::new(),
            exclude_mount_points: strings(&[
                "/dev",
                "/dev/**",
                "/proc",
                "/proc/**",
                "/sys",
                "/sys/**",
                "/run/credentials/**",
                "/run/containerd/**",
                "/run/netns/**",
                "/run/k3s/**",
                "/var/run/netns/**",
                "/var/lib/docker/**",
                "/var/lib/containers/**",
                "/var/lib/containerd/**",
                "/var/lib/kubelet/pods/**",
                "/var/lib/kubelet/plugins/**",
            ]),
            include_fs_types: Vec::new(),
            exclude_fs_types: strings(&[
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "fusectl",
                "hugetlbfs",
                "iso9660",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "procfs",
                "pstore",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "sysfs",
                "tracefs",
            ]),
            stat_timeout: Duration::from_secs(2),
        }
    }
}

/// Which interfaces the network collector reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub include_interfaces: Vec<String>,
    /// Default: loopback and the per-pod virtual interfaces of common CNIs
    /// (`veth*`, Calico `cali*`, Cilium `lxc*`), which come and go with pods
    /// and would make series per pod.
    pub exclude_interfaces: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            include_interfaces: Vec::new(),
            exclude_interfaces: strings(&["lo", "veth*", "cali*", "lxc*"]),
        }
    }
}

/// `sources.host_metrics` in the agent's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetricsConfig {
    /// Time between scrapes. Default 10s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Where the host's `/` is mounted (`/host` in the DaemonSet). Default `/`.
    pub root: PathBuf,
    /// Enabled collectors. Default: all.
    pub collectors: Vec<Collector>,
    /// Report `system.cpu.time` per logical CPU (`cpu.logical_number`)
    /// instead of summed over CPUs. Default false (a 96-core node would
    /// otherwise send 768 CPU points per scrape).
    pub per_cpu: bool,
    pub disk: DiskConfig,
    pub filesystem: FilesystemConfig,
    pub network: NetworkConfig,
}

impl Default for HostMetricsConfig {
    fn default() -> Self {
        HostMetricsConfig {
            interval: Duration::from_secs(10),
            root: PathBuf::from("/"),
            collectors: Collector::ALL.to_vec(),
            per_cpu: false,
            disk: DiskConfig::default(),
            filesystem: FilesystemConfig::default(),
            network: NetworkConfig::default(),
        }
    }
}

impl HostMetricsConfig {
    /// Every problem, each naming its field under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.interval < Duration::from_secs(1) {
            out.push(format!(
                "{path}.interval: must be at least 1s (got {:?})",
                self.interval
            ));
        }
        if !self.root.is_absolute() {
            out.push(format!(
                "{path}.root: must be an absolute path (got {:?})",
                self.root
            ));
        }
        if self.collectors.is_empty() {
            out.push(format!(
                "{path}.collectors: no collector enabled (remove the source instead)"
            ));
        }
        let mut seen = HashSet::new();
        for c in &self.collectors {
            if !seen.insert(c) {
                out.push(format!("{path}.collectors: {} listed twice", c.as_str()));
            }
        }
        let lists: [(&str, &Vec<String>, bool); 10] = [
            ("disk.include_devices", &self.disk.include_devices, false),
            ("disk.exclude_devices", &self.disk.exclude_devices, false),
            (
                "filesystem.include_devices",
                &self.filesystem.include_devices,
                false,
            ),
            (
                "filesystem.exclude_devices",
                &self.filesystem.exclude_devices,
                false,
            ),
            (
                "filesystem.include_mount_points",
                &self.filesystem.include_mount_points,
                true,
            ),
            (
                "filesystem.exclude_mount_points",
                &self.filesystem.exclude_mount_points,
                true,
            ),
            (
                "filesystem.include_fs_types",
                &self.filesystem.include_fs_types,
                false,
            ),
            (
                "filesystem.exclude_fs_types",
                &self.filesystem.exclude_fs_types,
                false,
            ),
            (
                "network.include_interfaces",
                &self.network.include_interfaces,
                false,
            ),
            (
                "network.exclude_interfaces",
                &self.network.exclude_interfaces,
                false,
            ),
        ];
        for (field, list, paths) in lists {
            glob_problems(&format!("{path}.{field}"), list, paths, &mut out);
        }
        let fs = &self.filesystem;
        if fs.stat_timeout.is_zero() || fs.stat_timeout > self.interval {
            out.push(format!(
                "{path}.filesystem.stat_timeout: must be greater than 0 and at most the interval ({:?})",
                self.interval
            ));
        }
        out
    }

    /// Validates, checks that `root` holds a `proc` directory, and registers
    /// the source's self-metrics in `registry`.
    pub fn build(&self, path: &str, registry: &mut Registry) -> Result<HostMetrics, ConfigError> {
        let mut problems = self.problems(path);
        let proc_dir = self.root.join("proc");
        if self.root.is_absolute() && !proc_dir.is_dir() {
            problems.push(format!(
                "{path}.root: {} is not a directory (mount the host's /proc there)",
                proc_dir.display()
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        let compile = |include: &[String], exclude: &[String], paths| {
            Matcher::new(include, exclude, paths).expect("validated by problems()")
        };
        let (d, f, n) = (&self.disk, &self.filesystem, &self.network);
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Ok(HostMetrics {
            inner: Arc::new(Inner {
                interval: self.interval,
                root: self.root.clone(),
                enabled: self.collectors.iter().copied().collect(),
                per_cpu: self.per_cpu,
                ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
                disks: compile(&d.include_devices, &d.exclude_devices, false),
                include_partitions: d.include_partitions,
                fs_devices: compile(&f.include_devices, &f.exclude_devices, false),
                fs_mount_points: compile(&f.include_mount_points, &f.exclude_mount_points, true),
                fs_types: compile(&f.include_fs_types, &f.exclude_fs_types, false),
                stat_timeout: f.stat_timeout,
                interfaces: compile(&n.include_interfaces, &n.exclude_interfaces, false),
                boot_time: Mutex::new(None),
                stuck: Arc::new(Mutex::new(HashSet::new())),
                statvfs: Arc::new(filesystem::statvfs),
                failing: Collector::ALL.map(|_| AtomicBool::new(false)),
                telemetry: Telemetry::register(registry),
            }),
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectorLabel {
    collector: Collector,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The source's self-metrics.
#[derive(Debug)]
struct Telemetry {
    collector_errors: Family<CollectorLabel, Counter>,
    scrapes_dropped: Family<ReasonLabel, Counter>,
    scrape_duration: Histogram,
    stuck_mounts: Gauge,
}

impl Telemetry {
    fn register(registry: &mut Registry) -> Self {
        let t = Telemetry {
            collector_errors: Family::default(),
            scrapes_dropped: Family::default(),
            scrape_duration: Histogram::new([
                0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0,
            ]),
            stuck_mounts: Gauge::default(),
        };
        registry.register(
            "host_collector_errors",
            "Host metric collections that failed (file missing or unparsable), by collector",
            t.collector_errors.clone(),
        );
        registry.register(
            "host_scrapes_dropped",
            "Host metric scrapes dropped because the pipeline could not take them for a whole interval",
            t.scrapes_dropped.clone(),
        );
        registry.register_with_unit(
            "host_scrape_duration",
            "Wall time of one host metrics scrape",
            Unit::Seconds,
            t.scrape_duration.clone(),
        );
        registry.register(
            "host_stuck_mounts",
            "Mounts skipped because an earlier statvfs on them has not returned (dead network filesystem)",
            t.stuck_mounts.clone(),
        );
        t
    }
}

type StatFn = dyn Fn(&Path) -> std::io::Result<filesystem::Usage> + Send + Sync;

struct Inner {
    interval: Duration,
    root: PathBuf,
    enabled: HashSet<Collector>,
    per_cpu: bool,
    ticks_per_second: f64,
    disks: Matcher,
    include_partitions: bool,
    fs_devices: Matcher,
    fs_mount_points: Matcher,
    fs_types: Matcher,
    stat_timeout: Duration,
    interfaces: Matcher,
    boot_time: Mutex<Option<u64>>,
    /// Mount points whose `statvfs` has not returned yet.
    stuck: Arc<Mutex<HashSet<String>>>,
    /// `statvfs(3)`, replaceable in tests to play a dead NFS server.
    statvfs: Arc<StatFn>,
    /// Per collector (index in [`Collector::ALL`]): failed last time.
    failing: [AtomicBool; 7],
    telemetry: Telemetry,
}

/// The built host metrics source.
#[derive(Clone)]
pub struct HostMetrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HostMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMetrics")
            .field("root", &self.inner.root)
            .field("interval", &self.inner.interval)
            .finish_non_exhaustive()
    }
}

/// Wall-clock now, the one place host metric timestamps come from.
fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Inner {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> Result<String, HostError> {
        let p = self.path(rel);
        std::fs::read_to_string(&p).map_err(|source| HostError::Read {
            file: p.display().to_string(),
            source,
        })
    }

    /// The first of `rels` that can be read.
    fn read_first(&self, rels: &[&str]) -> Result<String, HostError> {
        let mut last = None;
        for rel in rels {
            match self.read(rel) {
                Ok(t) => return Ok(t),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one path"))
    }

    fn on(&self, c: Collector) -> bool {
        self.enabled.contains(&c)
    }

    /// One collector could not report: log on the transition to failing,
    /// count every time.
    fn collector_failed(&self, c: Collector, err: &HostError) {
        self.telemetry
            .collector_errors
            .get_or_create(&CollectorLabel { collector: c })
            .inc();
        let idx = Collector::ALL.iter().position(|x| *x == c).unwrap_or(0);
        if !self.failing[idx].swap(true, Ordering::Relaxed) {
            tracing::warn!(collector = c.as_str(), error = %err, "host metrics collector failed; the others still report");
        } else {
            tracing::debug!(collector = c.as_str(), error = %err, "host metrics collector still failing");
        }
    }

    fn collector_ok(&self, c: Collector) {
        let idx = Collector::ALL.iter().position(|x| *x == c).unwrap_or(0);
        if self.failing[idx].swap(false, Ordering::Relaxed) {
            tracing::info!(collector = c.as_str(), "host metrics collector recovered");
        }
    }

    fn outcome(&self, c: Collector, r: Result<(), HostError>) {
        match r {
            Ok(()) => self.collector_ok(c),
            Err(e) => self.collector_failed(c, &e),
        }
    }

    /// Boot time in ns, read once (see module docs). 0 when unknown: OTLP's
    /// "start time unknown".
    fn boot_time(&self, stat: Option<&cpu::ProcStat>) -> u64 {
        let mut bt = self.boot_time.lock();
        if bt.is_none() {
            *bt = stat
                .and_then(|s| s.boot_time)
                .map(|s| s.saturating_mul(1_000_000_000));
        }
        bt.unwrap_or(0)
    }

    /// Everything but filesystem usage; returns the filesystems to stat.
    fn collect_sync(&self, now: u64, out: &mut Vec<Metric>) -> Vec<filesystem::Mount> {
        let stat = if self.on(Collector::Cpu)
            || self.on(Collector::Processes)
            || self.boot_time.lock().is_none()
        {
            self.read("proc/stat").and_then(|t| cpu::parse(&t))
        } else {
            Err(HostError::Parse {
                file: "proc/stat",
                reason: "not read".into(),
            })
        };
        let stamp = Stamp {
            start_unix_nano: self.boot_time(stat.as_ref().ok()),
            now_unix_nano: now,
        };

        if self.on(Collector::Cpu) {
            let r = match &stat {
                Ok(s) => cpu::metrics(s, self.ticks_per_second, self.per_cpu, stamp, out),
                Err(e) => Err(clone_err(e)),
            };
            self.outcome(Collector::Cpu, r);
        }
        if self.on(Collector::Memory) {
            let r = self
                .read("proc/meminfo")
                .and_then(|t| memory::parse(&t))
                .map(|m| memory::metrics(&m, stamp, out));
            self.outcome(Collector::Memory, r);
        }
        if self.on(Collector::Load) {
            let r = self
                .read("proc/loadavg")
                .and_then(|t| load::parse(&t))
                .map(|l| load::metrics(&l, stamp, out));
            self.outcome(Collector::Load, r);
        }
        if self.on(Collector::Disk) {
            let r = self.read("proc/diskstats").and_then(|t| {
                let (disks, problem) = disk::parse(&t);
                disk::metrics(&disks, |name| self.keep_disk(name), stamp, out);
                problem.map_or(Ok(()), Err)
            });
            self.outcome(Collector::Disk, r);
        }
        if self.on(Collector::Network) {
            let r = self
                .read_first(&["proc/1/net/dev", "proc/net/dev"])
                .and_then(|t| {
                    let (ifaces, problem) = network::parse(&t);
                    network::metrics(&ifaces, |n| self.interfaces.accepts(n), stamp, out);
                    problem.map_or(Ok(()), Err)
                });
            self.outcome(Collector::Network, r);
        }
        if self.on(Collector::Processes) {
            let r = match &stat {
                Ok(s) => {
                    let pids = processes::count_pids(&self.path("proc"));
                    processes::metrics(s, pids.as_ref().ok().copied(), stamp, out);
                    pids.map(|_| ())
                }
                Err(e) => Err(clone_err(e)),
            };
            self.outcome(Collector::Processes, r);
        }
        if self.on(Collector::Filesystem) {
            match self.read_first(&["proc/1/mounts", "proc/self/mounts"]) {
                Ok(t) => {
                    return filesystem::parse_mounts(&t)
                        .into_iter()
                        .filter(|m| {
                            self.fs_types.accepts(&m.fs_type)
                                && self.fs_devices.accepts(&m.device)
                                && self.fs_mount_points.accepts(&m.mount_point)
                        })
                        .collect();
                }
                Err(e) => self.collector_failed(Collector::Filesystem, &e),
            }
        }
        Vec::new()
    }

    fn keep_disk(&self, name: &str) -> bool {
        self.disks.accepts(name)
            && (self.include_partitions
                || !self
                    .path("sys/class/block")
                    .join(name)
                    .join("partition")
                    .exists())
    }

    /// Where the host's mount point is visible to us.
    fn host_path(&self, mount_point: &str) -> PathBuf {
        self.root.join(mount_point.trim_start_matches('/'))
    }
}

/// `HostError` holds an `io::Error`, which is not `Clone`; the collectors
/// sharing `/proc/stat` each need their own copy of its failure.
fn clone_err(e: &HostError) -> HostError {
    match e {
        HostError::Read { file, source } => HostError::Read {
            file: file.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        HostError::Parse { file, reason } => HostError::Parse {
            file,
            reason: reason.clone(),
        },
    }
}

impl HostMetrics {
    /// Replaces `statvfs(3)` (tests: a filesystem whose stat hangs). Call
    /// before the source is cloned or run.
    #[doc(hidden)]
    pub fn with_statvfs(
        mut self,
        f: impl Fn(&Path) -> std::io::Result<filesystem::Usage> + Send + Sync + 'static,
    ) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_statvfs before the source is shared")
            .statvfs = Arc::new(f);
        self
    }

    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// One scrape, stamped `now_unix_nano`: every enabled collector that can
    /// read its files contributes; failures are logged and counted.
    pub async fn scrape_at(&self, now_unix_nano: u64) -> ExportMetricsServiceRequest {
        let started = tokio::time::Instant::now();
        let inner = self.inner.clone();
        let (mut metrics, mounts) = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(32);
            let mounts = inner.collect_sync(now_unix_nano, &mut out);
            (out, mounts)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "host metrics scrape panicked");
            (Vec::new(), Vec::new())
        });

        if self.inner.on(Collector::Filesystem) && !mounts.is_empty() {
            let stamp = Stamp {
                start_unix_nano: self.inner.boot_time(None),
                now_unix_nano,
            };
            let usages = self.stat_all(mounts).await;
            filesystem::metrics(&usages, stamp, &mut metrics);
        }
        self.inner
            .telemetry
            .scrape_duration
            .observe(started.elapsed().as_secs_f64());

        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![str_attr("os.type", "linux")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "argus.hostmetrics".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// One scrape, now.
    pub async fn scrape(&self) -> ExportMetricsServiceRequest {
        self.scrape_at(now_unix_nano()).await
    }

    /// `statvfs` of each mount, skipping stuck ones (see [`filesystem`]).
    async fn stat_all(
        &self,
        mounts: Vec<filesystem::Mount>,
    ) -> Vec<(filesystem::Mount, filesystem::Usage)> {
        let inner = &self.inner;
        let mut out = Vec::with_capacity(mounts.len());
        let mut first_error = None;
        for m in mounts {
            if inner.stuck.lock().contains(&m.mount_point) {
                continue;
            }
            let path = inner.host_path(&m.mount_point);
            let stuck = inner.stuck.clone();
            let mp = m.mount_point.clone();
            inner.stuck.lock().insert(mp.clone());
            let statvfs = inner.statvfs.clone();
            let call = tokio::task::spawn_blocking(move || {
                let r = statvfs(&path);
                stuck.lock().remove(&mp);
                r
            });
            match tokio::time::timeout(inner.stat_timeout, call).await {
                Ok(Ok(Ok(usage))) => out.push((m, usage)),
                Ok(Ok(Err(e))) => {
                    // Unmounted between reading the table and statting it, or
                    // not visible under `root`: report the others.
                    first_error.get_or_insert(HostError::Read {
                        file: inner.host_path(&m.mount_point).display().to_string(),
                        source: e,
                    });
                }
                Ok(Err(join)) => {
                    inner.stuck.lock().remove(&m.mount_point);
                    tracing::error!(error = %join, "statvfs task panicked");
                }
                Err(_elapsed) => {
                    tracing::warn!(
                        mount_point = %m.mount_point,
                        timeout = ?inner.stat_timeout,
                        "statvfs did not return; skipping this mount until it does"
                    );
                }
            }
        }
        inner
            .telemetry
            .stuck_mounts
            .set(inner.stuck.lock().len() as i64);
        match first_error {
            Some(e) => inner.collector_failed(Collector::Filesystem, &e),
            None => inner.collector_ok(Collector::Filesystem),
        }
        out
    }

    /// Scrapes every interval until `shutdown`, one [`Envelope`] per scrape.
    pub async fn run(
        self,
        out: mpsc::Sender<Envelope>,
        limiter: MemoryLimiter,
        shutdown: Shutdown,
    ) {
        let interval = self.inner.interval;
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = ticks.tick() => {}
            }
            let request = tokio::select! {
                _ = shutdown.wait() => return,
                r = self.scrape() => r,
            };
            let payload = Payload::Metrics(request);
            if payload.item_count() == 0 {
                continue; // every collector failed: already logged and counted
            }
            match offer(&out, &limiter, payload, "host", interval, &shutdown).await {
                Offer::Sent => {}
                Offer::Dropped(reason) => self.dropped(reason),
                Offer::Shutdown => return,
                Offer::Closed => {
                    tracing::info!("host metrics: pipeline closed, stopping");
                    return;
                }
            }
        }
    }

    /// A scrape the pipeline could not take within one interval.
    fn dropped(&self, reason: &'static str) {
        self.inner
            .telemetry
            .scrapes_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
        tracing::warn!(
            reason,
            "host metrics scrape dropped: the pipeline could not take it within one interval"
        );
    }

    /// Root this source reads under.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }
}
