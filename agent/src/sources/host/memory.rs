//! `/proc/meminfo`: memory and swap usage.
//!
//! States partition `MemTotal` exactly the way `free(1)` does, so the states
//! of `system.memory.usage` always add up to `system.memory.limit`:
//! `free = MemFree`, `buffers = Buffers`, `cached = Cached + SReclaimable`
//! (reclaimable slab is cache the kernel drops under pressure, as `free`'s
//! "buff/cache" column counts it) and `used` is the rest. `MemAvailable` (the
//! kernel's own estimate of what a new workload can get without swapping, the
//! number an SRE actually wants) is reported as
//! `system.linux.memory.available` when the kernel (≥ 3.14) prints it.

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::HostError;
use super::metric_set::{Kind, MetricBuilder, Stamp, str_attr};

/// The `/proc/meminfo` fields used, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: Option<u64>,
    pub buffers: u64,
    pub cached: u64,
    pub s_reclaimable: u64,
    pub swap_total: Option<u64>,
    pub swap_free: Option<u64>,
}

/// Parses `/proc/meminfo`. `MemTotal` and `MemFree` are required; the other
/// fields count as 0 / absent when a kernel does not print them.
pub fn parse(text: &str) -> Result<MemInfo, HostError> {
    let mut m = MemInfo::default();
    let (mut total, mut free) = (None, None);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemFree" => &mut free,
            "MemAvailable" => &mut m.available,
            "SwapTotal" => &mut m.swap_total,
            "SwapFree" => &mut m.swap_free,
            "Buffers" | "Cached" | "SReclaimable" => {
                let v = bytes(key, rest)?;
                match key {
                    "Buffers" => m.buffers = v,
                    "Cached" => m.cached = v,
                    _ => m.s_reclaimable = v,
                }
                continue;
            }
            _ => continue,
        };
        *slot = Some(bytes(key, rest)?);
    }
    let missing = |field: &str| HostError::Parse {
        file: "proc/meminfo",
        reason: format!("no {field} line"),
    };
    m.total = total.ok_or_else(|| missing("MemTotal"))?;
    m.free = free.ok_or_else(|| missing("MemFree"))?;
    Ok(m)
}

fn bytes(key: &str, rest: &str) -> Result<u64, HostError> {
    let rest = rest.trim();
    let (number, factor) = match rest.strip_suffix("kB") {
        Some(n) => (n.trim_end(), 1024),
        None => (rest, 1),
    };
    number
        .parse::<u64>()
        .map(|n| n.saturating_mul(factor))
        .map_err(|_| HostError::Parse {
            file: "proc/meminfo",
            reason: format!("{key}: not a number: {rest:?}"),
        })
}

/// `system.memory.usage`, `system.memory.limit`, `system.memory.utilization`,
/// `system.linux.memory.available`, and `system.paging.usage` (swap).
pub fn metrics(m: &MemInfo, stamp: Stamp, out: &mut Vec<Metric>) {
    let cached = m.cached.saturating_add(m.s_reclaimable);
    let used = m
        .total
        .saturating_sub(m.free)
        .saturating_sub(m.buffers)
        .saturating_sub(cached);
    let states = [
        ("used", used),
        ("free", m.free),
        ("buffers", m.buffers),
        ("cached", cached),
    ];

    let mut usage = MetricBuilder::new(
        Kind::UpDownCounter,
        "system.memory.usage",
        "Memory in use by state; states add up to system.memory.limit",
        "By",
        stamp,
    );
    for (state, v) in states {
        usage.point(vec![str_attr("system.memory.state", state)], v);
    }
    usage.finish(out);

    let mut limit = MetricBuilder::new(
        Kind::UpDownCounter,
        "system.memory.limit",
        "Total memory usable by the kernel (MemTotal)",
        "By",
        stamp,
    );
    limit.point(Vec::new(), m.total);
    limit.finish(out);

    if m.total > 0 {
        let mut util = MetricBuilder::new(
            Kind::Gauge,
            "system.memory.utilization",
            "Fraction of system.memory.limit in each state",
            "1",
            stamp,
        );
        for (state, v) in states {
            util.point(
                vec![str_attr("system.memory.state", state)],
                v as f64 / m.total as f64,
            );
        }
        util.finish(out);
    }

    if let Some(available) = m.available {
        let mut avail = MetricBuilder::new(
            Kind::UpDownCounter,
            "system.linux.memory.available",
            "Memory a new workload can use without swapping (MemAvailable)",
            "By",
            stamp,
        );
        avail.point(Vec::new(), available);
        avail.finish(out);
    }

    if let (Some(total), Some(free)) = (m.swap_total, m.swap_free) {
        let mut paging = MetricBuilder::new(
            Kind::UpDownCounter,
            "system.paging.usage",
            "Swap space by state",
            "By",
            stamp,
        );
        paging.point(
            vec![str_attr("system.paging.state", "used")],
            total.saturating_sub(free),
        );
        paging.point(vec![str_attr("system.paging.state", "free")], free);
        paging.finish(out);
    }
}
