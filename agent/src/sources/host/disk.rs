//! `/proc/diskstats`: block device I/O.
//!
//! Each line is `major minor name` and then at least 11 counters (kernel
//! 2.6+); 4.18 added 4 discard columns, 5.5 two flush columns, and later
//! kernels may add more — anything past the 11th counter is ignored. A line
//! with fewer columns is skipped and reported as a parse problem, while the
//! other devices are still reported. Sector counts are always in 512-byte
//! units, whatever the device's real sector size.
//!
//! Partitions double-count their disk, so by default only whole disks are
//! reported: a device is a partition when `/sys/class/block/<name>/partition`
//! exists.

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::HostError;
use super::cpu::truncate;
use super::metric_set::{Kind, MetricBuilder, Stamp, str_attr};

/// One device's counters (the first 11 of `/proc/diskstats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskStat {
    pub name: String,
    pub reads: u64,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_ms: u64,
    pub writes: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_ms: u64,
    pub in_progress: u64,
    pub io_ms: u64,
    pub weighted_io_ms: u64,
}

/// The devices of well-formed lines, and a description of the first
/// malformed line, if any.
pub fn parse(text: &str) -> (Vec<DiskStat>, Option<HostError>) {
    let mut disks = Vec::new();
    let mut problem = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(d) => disks.push(d),
            Err(reason) => {
                problem.get_or_insert_with(|| HostError::Parse {
                    file: "proc/diskstats",
                    reason: format!("{reason} in line {:?}", truncate(line)),
                });
            }
        }
    }
    (disks, problem)
}

fn parse_line(line: &str) -> Result<DiskStat, String> {
    let mut f = line.split_ascii_whitespace();
    let (_major, _minor) = (f.next(), f.next());
    let name = f.next().ok_or("no device name")?.to_string();
    let mut c = [0u64; 11];
    for (i, slot) in c.iter_mut().enumerate() {
        let v = f.next().ok_or_else(|| format!("only {i} of 11 counters"))?;
        *slot = v
            .parse()
            .map_err(|_| format!("counter {} is not a number: {v:?}", i + 1))?;
    }
    Ok(DiskStat {
        name,
        reads: c[0],
        reads_merged: c[1],
        sectors_read: c[2],
        read_ms: c[3],
        writes: c[4],
        writes_merged: c[5],
        sectors_written: c[6],
        write_ms: c[7],
        in_progress: c[8],
        io_ms: c[9],
        weighted_io_ms: c[10],
    })
}

/// `system.disk.{io,operations,operation_time,merged,io_time,weighted_io_time,pending_operations}`
/// for the disks `keep` accepts.
pub fn metrics(
    disks: &[DiskStat],
    keep: impl Fn(&str) -> bool,
    stamp: Stamp,
    out: &mut Vec<Metric>,
) {
    let disks: Vec<&DiskStat> = disks.iter().filter(|d| keep(&d.name)).collect();
    if disks.is_empty() {
        return;
    }
    let dir = |d: &DiskStat, direction: &str| {
        vec![
            str_attr("system.device", d.name.as_str()),
            str_attr("disk.io.direction", direction),
        ]
    };
    let dev = |d: &DiskStat| vec![str_attr("system.device", d.name.as_str())];
    let secs = |ms: u64| ms as f64 / 1000.0;

    let mut io = MetricBuilder::new(
        Kind::Counter,
        "system.disk.io",
        "Bytes read from and written to disk",
        "By",
        stamp,
    );
    let mut ops = MetricBuilder::new(
        Kind::Counter,
        "system.disk.operations",
        "Completed disk reads and writes",
        "{operation}",
        stamp,
    );
    let mut op_time = MetricBuilder::new(
        Kind::Counter,
        "system.disk.operation_time",
        "Seconds spent by reads and writes (sum over concurrent operations)",
        "s",
        stamp,
    );
    let mut merged = MetricBuilder::new(
        Kind::Counter,
        "system.disk.merged",
        "Adjacent reads and writes merged by the I/O scheduler",
        "{operation}",
        stamp,
    );
    let mut io_time = MetricBuilder::new(
        Kind::Counter,
        "system.disk.io_time",
        "Seconds the disk had at least one operation in flight (its busy time)",
        "s",
        stamp,
    );
    let mut weighted = MetricBuilder::new(
        Kind::Counter,
        "system.disk.weighted_io_time",
        "Seconds of I/O time weighted by operations in flight",
        "s",
        stamp,
    );
    let mut pending = MetricBuilder::new(
        Kind::UpDownCounter,
        "system.disk.pending_operations",
        "Operations in flight now",
        "{operation}",
        stamp,
    );
    for d in disks {
        io.point(dir(d, "read"), d.sectors_read.saturating_mul(512));
        io.point(dir(d, "write"), d.sectors_written.saturating_mul(512));
        ops.point(dir(d, "read"), d.reads);
        ops.point(dir(d, "write"), d.writes);
        op_time.point(dir(d, "read"), secs(d.read_ms));
        op_time.point(dir(d, "write"), secs(d.write_ms));
        merged.point(dir(d, "read"), d.reads_merged);
        merged.point(dir(d, "write"), d.writes_merged);
        io_time.point(dev(d), secs(d.io_ms));
        weighted.point(dev(d), secs(d.weighted_io_ms));
        pending.point(dev(d), d.in_progress);
    }
    for m in [io, ops, op_time, merged, io_time, weighted, pending] {
        m.finish(out);
    }
}
