//! The standard `process_*` metrics of the Prometheus client libraries, for
//! both binaries: what dashboards and the `ArgusAgent…` rules read to show
//! an agent's CPU and memory next to its throughput.
//!
//! | metric | type | source |
//! |---|---|---|
//! | `process_cpu_seconds_total` | counter | `/proc/self/stat` utime + stime ÷ `CLK_TCK` |
//! | `process_resident_memory_bytes` | gauge | `/proc/self/status` `VmRSS` |
//! | `process_virtual_memory_bytes` | gauge | `/proc/self/status` `VmSize` |
//! | `process_threads` | gauge | `/proc/self/status` `Threads` |
//! | `process_open_fds` | gauge | entries of `/proc/self/fd` |
//! | `process_max_fds` | gauge | `/proc/self/limits` "Max open files" (soft) |
//! | `process_start_time_seconds` | gauge | `/proc/stat` `btime` + starttime ÷ `CLK_TCK` |
//!
//! The names are those of the Go and Java clients' process collectors,
//! unprefixed, so existing dashboards and recording rules work unchanged;
//! `job` / `pod` labels added by Prometheus tell the two binaries apart.
//! They are read at scrape time (a few small `/proc` reads, ~50 µs), never
//! in the background. Off Linux, or when `/proc` is unreadable, a metric is
//! simply absent from the scrape rather than reported as zero.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads `/proc/self` at every scrape. Register it in an unprefixed
/// registry (the ops server does).
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process' `/proc` files.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub threads: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current process.
    pub fn read() -> Self {
        let tick = clock_ticks_per_second();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| status_value(&status, key).map(|v| v * 1024.0);
        let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        });
        ProcessStats {
            cpu_seconds: fields
                .as_ref()
                .zip(tick)
                .map(|(f, t)| (f.utime + f.stime) / t),
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            threads: status_value(&status, "Threads:"),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_open_files(&s)),
            start_time_seconds: match (fields, tick, btime) {
                (Some(f), Some(t), Some(b)) => Some(b + f.starttime / t),
                _ => None,
            },
        }
    }
}

struct StatFields {
    utime: f64,
    stime: f64,
    starttime: f64,
}

/// Fields 14, 15 and 22 of `/proc/self/stat`. The command name (field 2)
/// is in parentheses and may contain spaces or parentheses itself, so the
/// count starts after the last `)`.
fn stat_fields(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
    Some(StatFields {
        utime: at(14)?,
        stime: at(15)?,
        starttime: at(22)?,
    })
}

/// `Key:   123 kB` → 123.
fn status_value(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn clock_ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as f64)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        if let Some(v) = s.cpu_seconds {
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(v).encode(m)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            ("process_threads", "Number of OS threads", s.threads),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit)",
                s.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(v).encode(m)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let stat = "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 7 0 1234 100000 2000 18446744073709551615";
        let f = stat_fields(stat).unwrap();
        assert_eq!((f.utime, f.stime, f.starttime), (250.0, 50.0, 1234.0));
        assert!(stat_fields("garbage").is_none());
    }

    #[test]
    fn limits_and_status_parsing() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        let status = "Name:\targus\nVmSize:\t  20000 kB\nVmRSS:\t   5120 kB\nThreads:\t9\n";
        assert_eq!(status_value(status, "VmRSS:"), Some(5120.0));
        assert_eq!(status_value(status, "Threads:"), Some(9.0));
        assert_eq!(status_value(status, "VmSwap:"), None);
    }

    #[test]
    fn exposes_this_process_cpu_and_memory() {
        // Burn a little CPU so the counter is visibly non-zero.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let mut reg = Registry::default();
        reg.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
                .parse()
                .unwrap()
        };
        assert!(
            text.contains("# TYPE process_cpu_seconds counter"),
            "{text}"
        );
        assert!(value("process_cpu_seconds_total") > 0.0);
        // A test binary holds at least a few MiB resident.
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
    }
}
