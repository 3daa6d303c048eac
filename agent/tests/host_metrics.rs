//! Host metrics: fixtures captured from a real VM parse into the OTLP a
//! semconv-aware backend expects; edge cases from other kernels; one broken
//! file does not stop the other collectors; the live /proc of this machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use argus_agent::pipeline::{MemoryLimiter, Payload};
use argus_agent::sources::host::{
    Collector, HostMetricsConfig, cpu, disk, filesystem, load, memory, network,
};
use argus_common::shutdown::Shutdown;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, metric::Data, number_data_point,
};
use prometheus_client::registry::Registry;

const NOW: u64 = 1_800_000_000_000_000_000;
/// `btime` in the captured `proc/stat`.
const BOOT: u64 = 1_795_236_745_000_000_000;

fn vm_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host/vm")
}

fn config(root: &Path) -> HostMetricsConfig {
    HostMetricsConfig {
        root: root.to_path_buf(),
        ..Default::default()
    }
}

fn metrics(req: &ExportMetricsServiceRequest) -> Vec<&Metric> {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect()
}

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
    metrics(req)
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn has_metric(req: &ExportMetricsServiceRequest, name: &str) -> bool {
    metrics(req).iter().any(|m| m.name == name)
}

fn points(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(Data::Sum(s)) => &s.data_points,
        Some(Data::Gauge(g)) => &g.data_points,
        other => panic!("{} is not a number metric: {other:?}", m.name),
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// The point whose string attributes include all of `want`.
fn point<'a>(m: &'a Metric, want: &[(&str, &str)]) -> &'a NumberDataPoint {
    points(m)
        .iter()
        .find(|p| {
            want.iter()
                .all(|(k, v)| attr_str(&p.attributes, k) == Some(v))
        })
        .unwrap_or_else(|| panic!("{}: no point with {want:?}", m.name))
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => panic!("point without value"),
    }
}

fn assert_counter(m: &Metric, unit: &str) {
    assert_eq!(m.unit, unit, "{}", m.name);
    match &m.data {
        Some(Data::Sum(s)) => {
            assert!(s.is_monotonic, "{} must be monotonic", m.name);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            for p in &s.data_points {
                assert_eq!(p.start_time_unix_nano, BOOT, "{} starts at boot", m.name);
                assert_eq!(p.time_unix_nano, NOW);
            }
        }
        other => panic!("{} is not a Sum: {other:?}", m.name),
    }
}

fn encode(registry: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, registry).unwrap();
    s
}

#[tokio::test]
async fn captured_vm_files_become_semconv_otlp() {
    let mut reg = Registry::default();
    let host = config(&vm_root()).build("host", &mut reg).unwrap();
    let req = host.scrape_at(NOW).await;

    // proc/stat cpu line: 389783 0 32263 35224 531 0 125 568 0 0 (USER_HZ 100).
    let cpu = metric(&req, "system.cpu.time");
    assert_counter(cpu, "s");
    assert_eq!(value(point(cpu, &[("cpu.mode", "user")])), 3897.83);
    assert_eq!(value(point(cpu, &[("cpu.mode", "system")])), 322.63);
    assert_eq!(value(point(cpu, &[("cpu.mode", "idle")])), 352.24);
    assert_eq!(value(point(cpu, &[("cpu.mode", "softirq")])), 1.25);
    assert_eq!(value(point(cpu, &[("cpu.mode", "steal")])), 5.68);
    assert_eq!(
        points(cpu).len(),
        8,
        "aggregated by mode: one point per mode"
    );
    assert!(
        points(cpu)
            .iter()
            .all(|p| attr(&p.attributes, "cpu.logical_number").is_none())
    );
    assert_eq!(
        value(&points(metric(&req, "system.cpu.logical.count"))[0]),
        2.0
    );

    // Memory states partition MemTotal (24684092 kB).
    let usage = metric(&req, "system.memory.usage");
    assert_eq!(usage.unit, "By");
    let total: f64 = points(usage).iter().map(value).sum();
    assert_eq!(total, 24_684_092.0 * 1024.0);
    assert_eq!(
        value(point(usage, &[("system.memory.state", "free")])),
        14_984_976.0 * 1024.0
    );
    // cached = Cached + SReclaimable, as free(1) shows buff/cache.
    assert_eq!(
        value(point(usage, &[("system.memory.state", "cached")])),
        (7_994_400.0 + 275_068.0) * 1024.0
    );
    match &usage.data {
        Some(Data::Sum(s)) => assert!(!s.is_monotonic, "memory usage goes up and down"),
        _ => panic!("system.memory.usage must be an UpDownCounter (Sum)"),
    }
    assert_eq!(
        value(&points(metric(&req, "system.memory.limit"))[0]),
        24_684_092.0 * 1024.0
    );
    assert_eq!(
        value(&points(metric(&req, "system.linux.memory.available"))[0]),
        22_933_336.0 * 1024.0
    );

    // Load: 7.65 8.04 5.00, as gauges.
    let l1 = metric(&req, "system.cpu.load_average.1m");
    assert!(matches!(l1.data, Some(Data::Gauge(_))));
    assert_eq!(value(&points(l1)[0]), 7.65);
    assert_eq!(
        value(&points(metric(&req, "system.cpu.load_average.15m"))[0]),
        5.0
    );

    // Disks: vda only (loop*, zram* excluded by default); sectors × 512.
    let io = metric(&req, "system.disk.io");
    assert_counter(io, "By");
    assert!(
        points(io)
            .iter()
            .all(|p| attr_str(&p.attributes, "system.device") == Some("vda")),
        "loop and zram devices are excluded by default"
    );
    assert_eq!(
        value(point(
            io,
            &[("system.device", "vda"), ("disk.io.direction", "read")]
        )),
        13_813_810.0 * 512.0
    );
    let ops = metric(&req, "system.disk.operations");
    assert_counter(ops, "{operation}");
    assert_eq!(
        value(point(ops, &[("disk.io.direction", "write")])),
        19715.0
    );
    assert_eq!(
        value(&points(metric(&req, "system.disk.io_time"))[0]),
        22.340
    );

    // Network: the host namespace (proc/1/net/dev), not the pod's
    // (proc/net/dev says eth0 received 999 bytes); lo excluded.
    let net = metric(&req, "system.network.io");
    assert_counter(net, "By");
    assert_eq!(
        value(point(
            net,
            &[
                ("network.interface.name", "eth0"),
                ("network.io.direction", "receive")
            ]
        )),
        208_247_338.0
    );
    assert!(
        points(net)
            .iter()
            .all(|p| attr_str(&p.attributes, "network.interface.name") != Some("lo"))
    );
    for name in [
        "system.network.packets",
        "system.network.errors",
        "system.network.dropped",
    ] {
        assert!(has_metric(&req, name), "{name}");
    }
    assert_eq!(
        value(point(
            metric(&req, "system.network.packets"),
            &[
                ("network.interface.name", "eth0"),
                ("network.io.direction", "transmit")
            ]
        )),
        6033.0
    );

    // Processes: procs_running 7, procs_blocked 0, and three /proc/<pid> dirs.
    let procs = metric(&req, "system.processes.count");
    assert_eq!(value(point(procs, &[("process.status", "running")])), 7.0);
    assert_eq!(value(point(procs, &[("process.status", "blocked")])), 0.0);
    assert_eq!(value(&points(metric(&req, "system.process.count"))[0]), 3.0);
    assert_counter(metric(&req, "system.processes.created"), "{process}");

    // Filesystems: "/" is statted under the root (here, the fixture dir) and
    // reported with host attributes; /proc, /sys, /dev, cgroups excluded.
    let fs = metric(&req, "system.filesystem.usage");
    let root = point(
        fs,
        &[
            ("system.filesystem.mountpoint", "/"),
            ("system.filesystem.state", "used"),
        ],
    );
    assert_eq!(
        attr_str(&root.attributes, "system.device"),
        Some("/dev/vda")
    );
    assert_eq!(
        attr_str(&root.attributes, "system.filesystem.type"),
        Some("ext4")
    );
    assert_eq!(
        attr_str(&root.attributes, "system.filesystem.mode"),
        Some("rw")
    );
    for p in points(fs) {
        let mp = attr_str(&p.attributes, "system.filesystem.mountpoint").unwrap();
        assert!(
            !mp.starts_with("/proc") && !mp.starts_with("/sys") && !mp.starts_with("/dev"),
            "{mp} should be excluded by default"
        );
    }
    let util = value(point(
        metric(&req, "system.filesystem.utilization"),
        &[("system.filesystem.mountpoint", "/")],
    ));
    assert!((0.0..=1.0).contains(&util), "{util}");
    // The tmpfs mount in the captured table does not exist under the fixture
    // root: counted as a filesystem error, while "/" is still reported.
    let text = encode(&reg);
    assert!(
        text.contains(r#"host_collector_errors_total{collector="filesystem"} 1"#),
        "{text}"
    );
    assert!(!text.contains(r#"collector="cpu""#), "{text}");
}

#[tokio::test]
async fn per_cpu_reports_each_logical_cpu() {
    let mut cfg = config(&vm_root());
    cfg.per_cpu = true;
    cfg.collectors = vec![Collector::Cpu];
    let host = cfg.build("host", &mut Registry::default()).unwrap();
    let req = host.scrape_at(NOW).await;
    let cpu = metric(&req, "system.cpu.time");
    assert_eq!(points(cpu).len(), 16, "2 CPUs × 8 modes");
    let cpu1_user = points(cpu)
        .iter()
        .find(|p| {
            attr(&p.attributes, "cpu.logical_number") == Some(&any_value::Value::IntValue(1))
                && attr_str(&p.attributes, "cpu.mode") == Some("user")
        })
        .unwrap();
    assert_eq!(value(cpu1_user), 1950.09);
    // Only the enabled collector reports.
    assert!(!has_metric(&req, "system.memory.usage"));
    assert!(!has_metric(&req, "system.network.io"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[tokio::test]
async fn one_broken_file_does_not_stop_the_other_collectors() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&vm_root(), dir.path());
    std::fs::write(dir.path().join("proc/meminfo"), "MemTotal: lots\n").unwrap();
    std::fs::remove_file(dir.path().join("proc/diskstats")).unwrap();
    std::fs::write(dir.path().join("proc/loadavg"), "").unwrap();
    let mut reg = Registry::default();
    let host = config(dir.path()).build("host", &mut reg).unwrap();
    let req = host.scrape_at(NOW).await;

    assert!(!has_metric(&req, "system.memory.usage"));
    assert!(!has_metric(&req, "system.disk.io"));
    assert!(!has_metric(&req, "system.cpu.load_average.1m"));
    for name in [
        "system.cpu.time",
        "system.network.io",
        "system.processes.count",
        "system.filesystem.usage",
    ] {
        assert!(has_metric(&req, name), "{name} still reported");
    }
    let text = encode(&reg);
    for c in ["memory", "disk", "load"] {
        assert!(
            text.contains(&format!(
                r#"host_collector_errors_total{{collector="{c}"}} 1"#
            )),
            "{c}: {text}"
        );
    }
    // A second scrape counts again (every failure counts; only logs are
    // throttled).
    host.scrape_at(NOW).await;
    assert!(encode(&reg).contains(r#"host_collector_errors_total{collector="memory"} 2"#));
}

#[tokio::test]
async fn partitions_are_excluded_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&vm_root(), dir.path());
    std::fs::write(
        dir.path().join("proc/diskstats"),
        " 254 0 vda 10 0 80 5 20 0 160 9 0 12 14 0 0 0 0\n 254 1 vda1 7 0 56 4 20 0 160 9 0 11 13 0 0 0 0\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("sys/class/block/vda1")).unwrap();
    std::fs::write(dir.path().join("sys/class/block/vda1/partition"), "1\n").unwrap();

    let mut cfg = config(dir.path());
    cfg.collectors = vec![Collector::Disk];
    let req = cfg
        .build("host", &mut Registry::default())
        .unwrap()
        .scrape_at(NOW)
        .await;
    let devices: Vec<_> = points(metric(&req, "system.disk.operations"))
        .iter()
        .map(|p| {
            attr_str(&p.attributes, "system.device")
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(devices.iter().all(|d| d == "vda"), "{devices:?}");

    cfg.disk.include_partitions = true;
    let req = cfg
        .build("host", &mut Registry::default())
        .unwrap()
        .scrape_at(NOW)
        .await;
    let ops = metric(&req, "system.disk.operations");
    assert_eq!(
        value(point(
            ops,
            &[("system.device", "vda1"), ("disk.io.direction", "read")]
        )),
        7.0
    );
}

#[tokio::test]
async fn live_proc_of_this_machine() {
    let host = HostMetricsConfig::default()
        .build("host", &mut Registry::default())
        .unwrap();
    let req = host.scrape().await;
    let cpu = metric(&req, "system.cpu.time");
    let busy: f64 = points(cpu).iter().map(value).sum();
    assert!(busy > 0.0, "CPU time since boot is positive");
    let boot = points(cpu)[0].start_time_unix_nano;
    let now = points(cpu)[0].time_unix_nano;
    assert!(
        boot > 0 && boot < now,
        "start time is boot time, before now"
    );
    let limit = value(&points(metric(&req, "system.memory.limit"))[0]);
    let states: f64 = points(metric(&req, "system.memory.usage"))
        .iter()
        .map(value)
        .sum();
    assert_eq!(states, limit, "states partition total memory");
    assert!(value(&points(metric(&req, "system.process.count"))[0]) >= 1.0);
    assert!(has_metric(&req, "system.cpu.load_average.5m"));
    assert!(has_metric(&req, "system.network.io"));
    assert!(has_metric(&req, "system.filesystem.usage"));
    let fs = metric(&req, "system.filesystem.usage");
    assert!(
        points(fs)
            .iter()
            .any(|p| attr_str(&p.attributes, "system.filesystem.mountpoint") == Some("/")),
        "the root filesystem is reported"
    );
}

#[tokio::test(start_paused = true)]
async fn run_emits_one_envelope_per_interval_and_drops_when_the_pipeline_is_stuck() {
    let mut reg = Registry::default();
    let mut cfg = config(&vm_root());
    cfg.collectors = vec![Collector::Cpu, Collector::Load];
    let host = cfg.build("host", &mut reg).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let limiter = MemoryLimiter::new(1 << 20);
    let shutdown = Shutdown::new();
    let task = tokio::spawn(host.run(tx, limiter.clone(), shutdown.clone()));

    // First scrape right away.
    let env = rx.recv().await.unwrap();
    assert_eq!(env.source, "host");
    assert!(env.acks.is_empty());
    assert!(env.permit.bytes() > 0, "bytes reserved from the limiter");
    match &env.payload.to_payload().unwrap() {
        Payload::Metrics(r) => assert!(has_metric(r, "system.cpu.time")),
        other => panic!("not metrics: {other:?}"),
    }
    assert_eq!(env.payload.item_count(), 8 + 1 + 3);
    drop(env);
    assert_eq!(limiter.used_bytes(), 0, "permit released with the envelope");

    // Nothing before the interval has passed.
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(rx.try_recv().is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    let second = rx.recv().await.unwrap();

    // Nobody reads: the next scrape fills the channel, the one after cannot
    // be placed within an interval and is dropped, counted.
    tokio::time::advance(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let text = encode(&reg);
    assert!(
        text.contains(r#"host_scrapes_dropped_total{reason="pipeline_full"}"#),
        "{text}"
    );
    drop(second);

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("stops promptly on shutdown")
        .unwrap();
}

#[test]
fn config_problems_name_every_bad_field() {
    let mut cfg = HostMetricsConfig {
        interval: Duration::from_millis(100),
        root: PathBuf::from("host"),
        collectors: vec![Collector::Cpu, Collector::Cpu],
        ..Default::default()
    };
    cfg.filesystem.include_mount_points = vec!["/var/[".into()];
    cfg.network.exclude_interfaces = vec!["eth{0".into()];
    let p = cfg.problems("sources.host_metrics");
    let has = |prefix: &str| p.iter().any(|m| m.starts_with(prefix));
    assert!(has("sources.host_metrics.interval:"), "{p:?}");
    assert!(has("sources.host_metrics.root:"), "{p:?}");
    assert!(
        has("sources.host_metrics.collectors: cpu listed twice"),
        "{p:?}"
    );
    assert!(
        has("sources.host_metrics.filesystem.include_mount_points[0]: invalid glob"),
        "{p:?}"
    );
    assert!(
        has("sources.host_metrics.network.exclude_interfaces[0]: invalid glob"),
        "{p:?}"
    );
    assert!(
        has("sources.host_metrics.filesystem.stat_timeout:"),
        "stat timeout 2s exceeds the 100ms interval: {p:?}"
    );
    assert!(HostMetricsConfig::default().problems("h").is_empty());

    // A root without proc/ is caught at build time, naming the fix.
    let dir = tempfile::tempdir().unwrap();
    let err = config(dir.path())
        .build("sources.host_metrics", &mut Registry::default())
        .unwrap_err();
    assert!(err.0[0].starts_with("sources.host_metrics.root:"), "{err}");
    assert!(err.to_string().contains("mount the host's /proc"), "{err}");
}

#[test]
fn yaml_config_rejects_unknown_fields_and_keeps_default_excludes() {
    let cfg: HostMetricsConfig = serde_yaml::from_str(
        "interval: 30s\nroot: /host\ncollectors: [cpu, memory]\nfilesystem:\n  include_mount_points: ['/data/**']\n",
    )
    .unwrap();
    assert_eq!(cfg.interval, Duration::from_secs(30));
    assert_eq!(cfg.collectors, vec![Collector::Cpu, Collector::Memory]);
    assert_eq!(cfg.filesystem.include_mount_points, vec!["/data/**"]);
    assert!(
        cfg.filesystem
            .exclude_mount_points
            .contains(&"/var/lib/kubelet/pods/**".to_string()),
        "setting include keeps the default excludes"
    );
    let err = serde_yaml::from_str::<HostMetricsConfig>("intervall: 10s\n").unwrap_err();
    assert!(err.to_string().contains("intervall"), "{err}");
    assert!(serde_yaml::from_str::<HostMetricsConfig>("collectors: [gpu]\n").is_err());
}

// ---- edge cases of other kernels, table-driven ----

#[test]
fn proc_stat_columns_old_and_new_kernels() {
    let cases: &[(&str, &str, Option<usize>)] = &[
        (
            "2.6.10: no steal column",
            "cpu  10 0 5 100 1 0 0\nbtime 5\n",
            Some(7),
        ),
        ("2.4: four columns", "cpu 10 0 5 100\n", Some(4)),
        (
            "current: ten columns, guest ignored",
            "cpu 1 2 3 4 5 6 7 8 9 10\n",
            Some(8),
        ),
        (
            "future: twelve columns",
            "cpu 1 2 3 4 5 6 7 8 9 10 11 12\n",
            Some(8),
        ),
        ("garbled number", "cpu 1 2 x 4\n", None),
        ("bad cpu number", "cpu 1 2 3 4\ncpuX 1 2 3 4\n", None),
    ];
    for (name, text, modes) in cases {
        match (cpu::parse(text), modes) {
            (Ok(s), Some(n)) => {
                let got = s.total.unwrap().0.iter().filter(|v| v.is_some()).count();
                assert_eq!(got, *n, "{name}");
            }
            (Err(_), None) => {}
            (r, want) => panic!("{name}: got {r:?}, wanted {want:?} modes"),
        }
    }
    let s = cpu::parse("cpu 1 2 3 4\nbtime 1700000000\nprocs_running 3\nintr 1 2 3\n").unwrap();
    assert_eq!(s.boot_time, Some(1_700_000_000));
    assert_eq!(s.procs_running, Some(3));
    assert_eq!(s.procs_blocked, None);

    // No aggregate line: the cpu collector fails, nothing is made up.
    let s = cpu::parse("procs_running 3\n").unwrap();
    let stamp = argus_agent::sources::host::metric_set::Stamp {
        start_unix_nano: 0,
        now_unix_nano: NOW,
    };
    assert!(cpu::metrics(&s, 100.0, false, stamp, &mut Vec::new()).is_err());
}

#[test]
fn meminfo_edge_cases() {
    // Kernel < 3.14: no MemAvailable; no swap lines at all.
    let m = memory::parse("MemTotal: 1000 kB\nMemFree: 400 kB\nBuffers: 100 kB\nCached: 200 kB\n")
        .unwrap();
    assert_eq!(m.total, 1_024_000);
    assert_eq!(m.available, None);
    assert_eq!(m.swap_total, None);
    let mut out = Vec::new();
    let stamp = argus_agent::sources::host::metric_set::Stamp {
        start_unix_nano: 0,
        now_unix_nano: NOW,
    };
    memory::metrics(&m, stamp, &mut out);
    let names: Vec<_> = out.iter().map(|m| m.name.as_str()).collect();
    assert!(
        !names.contains(&"system.linux.memory.available"),
        "{names:?}"
    );
    assert!(!names.contains(&"system.paging.usage"), "{names:?}");
    let used = points(&out[0])
        .iter()
        .find(|p| attr_str(&p.attributes, "system.memory.state") == Some("used"))
        .map(value)
        .unwrap();
    assert_eq!(used, 300.0 * 1024.0);

    assert!(
        memory::parse("MemFree: 1 kB\n").is_err(),
        "MemTotal required"
    );
    assert!(memory::parse("MemTotal: 1 kB\nMemFree: x kB\n").is_err());
    // Fields without a unit are counts, not kB.
    let m = memory::parse(
        "MemTotal: 10 kB\nMemFree: 1 kB\nHugePages_Total: 7\nSwapTotal: 8 kB\nSwapFree: 2 kB\n",
    )
    .unwrap();
    assert_eq!(m.swap_total, Some(8192));
}

#[test]
fn diskstats_kernels_with_14_to_22_columns_and_a_short_line() {
    let text = "\
   8       0 sda 1 2 3 4 5 6 7 8 9 10 11
   8      16 sdb 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
 259       0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17
 259       1 nvme1n1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19
   8      32 sdc 1 2 3 4
";
    let (disks, problem) = disk::parse(text);
    let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["sda", "sdb", "nvme0n1", "nvme1n1"]);
    assert_eq!(disks[3].sectors_written, 7);
    assert_eq!(disks[3].weighted_io_ms, 11);
    let problem = problem.expect("the short sdc line is reported").to_string();
    assert!(
        problem.contains("sdc") && problem.contains("4 of 11"),
        "{problem}"
    );
}

#[test]
fn net_dev_glued_counters_and_short_lines() {
    let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
  eth0:4294967296 7 1 2 0 0 0 0 99 8 3 4 0 0 0 0
  eth1: 1 2 3
";
    let (ifaces, problem) = network::parse(text);
    assert_eq!(ifaces.len(), 1);
    assert_eq!(ifaces[0].name, "eth0");
    assert_eq!(ifaces[0].rx_bytes, 4_294_967_296);
    assert_eq!(ifaces[0].rx_dropped, 2);
    assert_eq!(ifaces[0].tx_bytes, 99);
    assert_eq!(ifaces[0].tx_errors, 3);
    assert!(problem.unwrap().to_string().contains("eth1"));
}

#[test]
fn mount_table_escapes_duplicates_and_read_only() {
    let text = "\
/dev/sda1 /mnt/my\\040disk ext4 rw,relatime 0 0
/dev/sdb1 /data xfs rw 0 0
/dev/sdc1 /data xfs ro,noatime 0 0
short line
";
    let mounts = filesystem::parse_mounts(text);
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(mounts[0].mount_point, "/mnt/my disk");
    assert_eq!(
        mounts[1].device, "/dev/sdc1",
        "a later mount hides the earlier"
    );
    assert!(mounts[1].read_only);
    assert_eq!(filesystem::unescape(r"a\134b\011c\0"), "a\\b\tc\\0");

    let u = filesystem::Usage::from_statvfs(4096, 100, 30, 20, 50, 10);
    assert_eq!(u.used_bytes, 70 * 4096);
    assert_eq!(u.free_bytes, 20 * 4096);
    assert_eq!(u.reserved_bytes, 10 * 4096);
    assert_eq!(u.used_inodes, 40);
}

#[test]
fn loadavg_rejects_garbage() {
    assert_eq!(load::parse("0.50 1.00 2.00 1/100 42\n").unwrap().five, 1.0);
    for bad in ["", "0.5 1.0", "a b c", "-1 0 0", "NaN 0 0"] {
        assert!(load::parse(bad).is_err(), "{bad:?}");
    }
}

/// A dead network filesystem: its statvfs hangs. The scrape still finishes
/// (the mount times out and is left out), the next scrapes skip it without
/// parking another thread, and it comes back once the hung call returns.
#[tokio::test]
async fn a_hanging_statvfs_is_skipped_until_it_returns() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let mut cfg = config(&vm_root());
    cfg.collectors = vec![Collector::Filesystem];
    cfg.filesystem.stat_timeout = Duration::from_millis(100);
    let mut reg = Registry::default();
    let (release, hang) = std::sync::mpsc::channel::<()>();
    let hang = Mutex::new(Some(hang));
    let root_calls = Arc::new(AtomicUsize::new(0));
    let calls = root_calls.clone();
    let host = cfg
        .build("host", &mut reg)
        .unwrap()
        .with_statvfs(move |path: &Path| {
            if path == vm_root().as_path() || path.ends_with("vm/") {
                calls.fetch_add(1, Ordering::SeqCst);
                // The first call hangs until the test releases it.
                if let Some(rx) = hang.lock().unwrap().take() {
                    let _ = rx.recv();
                }
            }
            filesystem::statvfs(path)
        });
    let reports_root = |req: &ExportMetricsServiceRequest| {
        metrics(req)
            .iter()
            .filter(|m| m.name == "system.filesystem.usage")
            .flat_map(|m| points(m))
            .any(|p| attr_str(&p.attributes, "system.filesystem.mountpoint") == Some("/"))
    };

    let first = host.scrape_at(NOW).await;
    assert!(!reports_root(&first), "the hanging mount is left out");
    assert!(
        encode(&reg).contains("host_stuck_mounts 1"),
        "{}",
        encode(&reg)
    );

    let second = host.scrape_at(NOW).await;
    assert!(!reports_root(&second));
    assert_eq!(
        root_calls.load(Ordering::SeqCst),
        1,
        "a stuck mount is not statted again"
    );

    release.send(()).unwrap();
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if reports_root(&host.scrape_at(NOW).await) {
            back = true;
            break;
        }
    }
    assert!(back, "reported again once the hung call returned");
    assert!(encode(&reg).contains("host_stuck_mounts 0"));
}
