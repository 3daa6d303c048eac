//! Process counts.
//!
//! `procs_running` / `procs_blocked` / `processes` come from `/proc/stat`
//! (already read for CPU time), like the Collector's `hostmetrics`. The
//! kernel counts *tasks* (threads) there. The number of processes is the
//! number of `/proc/<pid>` directories: one `getdents` walk, no per-process
//! file reads (reading every `/proc/<pid>/stat` to split sleeping from
//! stopped would cost milliseconds on a busy node, every scrape).

use std::path::Path;

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::HostError;
use super::cpu::ProcStat;
use super::metric_set::{Kind, MetricBuilder, Stamp, str_attr};

/// Entries of `proc` named only by digits.
pub fn count_pids(proc_dir: &Path) -> Result<u64, HostError> {
    let dir = std::fs::read_dir(proc_dir).map_err(|source| HostError::Read {
        file: proc_dir.display().to_string(),
        source,
    })?;
    let mut n = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
            n += 1;
        }
    }
    Ok(n)
}

/// `system.processes.count` (`process.status` running / blocked),
/// `system.processes.created`, and `system.process.count` (all processes,
/// no status: semconv's newer name, whose points without `process.status`
/// are totals).
pub fn metrics(stat: &ProcStat, pids: Option<u64>, stamp: Stamp, out: &mut Vec<Metric>) {
    let mut count = MetricBuilder::new(
        Kind::UpDownCounter,
        "system.processes.count",
        "Runnable and I/O-blocked tasks (kernel procs_running / procs_blocked)",
        "{process}",
        stamp,
    );
    if let Some(v) = stat.procs_running {
        count.point(vec![str_attr("process.status", "running")], v);
    }
    if let Some(v) = stat.procs_blocked {
        count.point(vec![str_attr("process.status", "blocked")], v);
    }
    count.finish(out);

    if let Some(v) = stat.processes_created {
        let mut created = MetricBuilder::new(
            Kind::Counter,
            "system.processes.created",
            "Processes and threads created since boot",
            "{process}",
            stamp,
        );
        created.point(Vec::new(), v);
        created.finish(out);
    }
    if let Some(v) = pids {
        let mut total = MetricBuilder::new(
            Kind::UpDownCounter,
            "system.process.count",
            "Processes on the host (all states)",
            "{process}",
            stamp,
        );
        total.point(Vec::new(), v);
        total.finish(out);
    }
}
