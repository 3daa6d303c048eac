//! `/proc/stat`: CPU time by mode, boot time, and the kernel's process
//! counters (which the [`super::processes`] collector reports).
//!
//! The `cpu` lines count clock ticks (`USER_HZ`, almost always 100) spent per
//! mode since boot: `user nice system idle iowait irq softirq steal guest
//! guest_nice`. Old kernels print fewer columns and new kernels may print
//! more; a missing column is simply not reported and an extra one ignored.
//! `guest`/`guest_nice` are *already included* in `user`/`nice`, so they are
//! not reported (the Collector's `hostmetrics` makes the same choice), which
//! keeps the sum over modes equal to the CPU's wall time.

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::HostError;
use super::metric_set::{Kind, MetricBuilder, Stamp, int_attr, str_attr};

/// The `cpu.mode` value of each `/proc/stat` column, in column order.
/// `softirq` is kept apart from `interrupt` (semconv's enum is open) because
/// network-heavy nodes live or die by it.
pub const MODES: [&str; 8] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "interrupt",
    "softirq",
    "steal",
];

/// Ticks per mode, `None` for a column this kernel does not print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes(pub [Option<u64>; 8]);

/// What the host collectors need from `/proc/stat`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// The aggregate `cpu` line.
    pub total: Option<CpuTimes>,
    /// `cpuN` lines, by logical CPU number (online CPUs only).
    pub per_cpu: Vec<(u32, CpuTimes)>,
    /// `btime`: boot time, seconds since the epoch.
    pub boot_time: Option<u64>,
    /// `processes`: forks since boot.
    pub processes_created: Option<u64>,
    /// `procs_running`: runnable tasks now.
    pub procs_running: Option<u64>,
    /// `procs_blocked`: tasks blocked on I/O now.
    pub procs_blocked: Option<u64>,
}

fn parse_times(rest: &str) -> Result<CpuTimes, String> {
    let mut times = CpuTimes::default();
    for (i, field) in rest.split_ascii_whitespace().enumerate() {
        if i >= MODES.len() {
            break; // guest, guest_nice, or columns from a future kernel
        }
        times.0[i] = Some(
            field
                .parse()
                .map_err(|_| format!("column {} is not a number: {field:?}", i + 1))?,
        );
    }
    if times.0[0].is_none() {
        return Err("no columns".into());
    }
    Ok(times)
}

/// Parses `/proc/stat`. Lines this collector does not know are skipped;
/// a malformed line of interest is an error (the file is then untrustworthy).
pub fn parse(text: &str) -> Result<ProcStat, HostError> {
    let mut out = ProcStat::default();
    let bad = |line: &str, reason: String| HostError::Parse {
        file: "proc/stat",
        reason: format!("{reason} in line {:?}", truncate(line)),
    };
    let number = |line: &str, value: &str| {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| bad(line, "value is not a number".into()))
    };
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(|c: char| c.is_ascii_whitespace()) else {
            continue;
        };
        match key {
            "cpu" => out.total = Some(parse_times(rest).map_err(|r| bad(line, r))?),
            "btime" => out.boot_time = Some(number(line, rest)?),
            "processes" => out.processes_created = Some(number(line, rest)?),
            "procs_running" => out.procs_running = Some(number(line, rest)?),
            "procs_blocked" => out.procs_blocked = Some(number(line, rest)?),
            _ => {
                if let Some(n) = key.strip_prefix("cpu") {
                    let n: u32 = n.parse().map_err(|_| bad(line, "bad CPU number".into()))?;
                    out.per_cpu
                        .push((n, parse_times(rest).map_err(|r| bad(line, r))?));
                }
            }
        }
    }
    Ok(out)
}

pub(super) fn truncate(line: &str) -> &str {
    match line.char_indices().nth(80) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// `system.cpu.time` (per mode, or per CPU and mode) and
/// `system.cpu.logical.count`.
pub fn metrics(
    stat: &ProcStat,
    ticks_per_second: f64,
    per_cpu: bool,
    stamp: Stamp,
    out: &mut Vec<Metric>,
) -> Result<(), HostError> {
    let Some(total) = &stat.total else {
        return Err(HostError::Parse {
            file: "proc/stat",
            reason: "no aggregate `cpu` line".into(),
        });
    };
    let mut time = MetricBuilder::new(
        Kind::Counter,
        "system.cpu.time",
        "Seconds each logical CPU spent on each mode",
        "s",
        stamp,
    );
    let mut add = |times: &CpuTimes, cpu: Option<u32>| {
        for (mode, ticks) in MODES.iter().zip(times.0) {
            let Some(ticks) = ticks else { continue };
            let mut attrs = Vec::with_capacity(2);
            if let Some(cpu) = cpu {
                attrs.push(int_attr("cpu.logical_number", i64::from(cpu)));
            }
            attrs.push(str_attr("cpu.mode", *mode));
            time.point(attrs, ticks as f64 / ticks_per_second);
        }
    };
    if per_cpu && !stat.per_cpu.is_empty() {
        for (cpu, times) in &stat.per_cpu {
            add(times, Some(*cpu));
        }
    } else {
        add(total, None);
    }
    time.finish(out);

    if !stat.per_cpu.is_empty() {
        let mut count = MetricBuilder::new(
            Kind::UpDownCounter,
            "system.cpu.logical.count",
            "Online logical CPUs",
            "{cpu}",
            stamp,
        );
        count.point(Vec::new(), stat.per_cpu.len() as u64);
        count.finish(out);
    }
    Ok(())
}
