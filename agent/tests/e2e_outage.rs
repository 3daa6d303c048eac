//! An endpoint outage of 30 s under load: the real `argus-agent` tails a
//! file written at ≥ 10,000 lines/s; the endpoint this test runs goes away
//! for 30 s (its port closed: connections refused) and comes back on the
//! same port. Every line must arrive, masked, and the agent must have held
//! the backlog in its disk queue meanwhile (visible on `/metrics`), not in
//! memory.
//!
//! The exporter does not compress here (loopback): what is under test is
//! the backlog, and uncompressed it drains faster on a debug build (about
//! 12 s instead of 16 s for ~340,000 lines on a loaded 2-core machine),
//! which keeps the whole test under a minute.

#[path = "support/logfile.rs"]
mod logfile;
#[path = "support/process.rs"]
mod process;
#[path = "support/sink.rs"]
mod sink;

use std::time::{Duration, Instant};

use logfile::{Plan, Rotation, Writer, wait_all};
use process::AgentProcess;
use sink::Sink;

const RATE: u64 = 11_000;
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_endpoint_outage_under_load_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let sink = Sink::start(false).await;
    let yaml = format!(
        r#"
receiver: null
host: null
file:
  include: ["{d}/logs/*.log"]
  data_dir: "{d}/file"
  poll_interval: 50ms
batch: {{ timeout: 200ms }}
queue: {{ dir: "{d}/queue" }}
exporter:
  endpoint: "{e}"
  compression: none
  timeout: 2s
  retry: {{ initial_interval: 200ms, max_interval: 2s }}
ops: {{ listen: "127.0.0.1:0" }}
logging: {{ format: json }}
"#,
        d = dir.path().display(),
        e = sink.endpoint()
    );
    let mut agent = AgentProcess::start(dir.path(), &yaml, &[]);
    // Write for the outage plus a few seconds on either side.
    let total = RATE * (OUTAGE.as_secs() + 4);
    let writer = Writer::start(Plan {
        path: dir.path().join("logs/app.log"),
        lines_per_sec: RATE,
        total,
        rotation: Rotation::None,
        rotate_every: 0,
    });
    sink.wait_for(Duration::from_secs(60), "lines before the outage", |r| {
        r.body_count() >= 5_000
    })
    .await;

    let (addr, received) = sink.stop().await;
    let before = received.body_count();
    let down_at = Instant::now();
    tokio::time::sleep(OUTAGE / 2).await;
    // Mid-outage: the backlog is on disk, and the agent says it is retrying.
    let queued = agent.metric("argus_agent_queue_records");
    let retries: f64 = ["logs"]
        .iter()
        .map(|s| {
            agent.metric(&format!(
                "argus_agent_export_retries_total{{signal=\"{s}\"}}"
            ))
        })
        .sum();
    assert!(queued > 0.0, "the backlog must be in the disk queue");
    assert!(retries > 0.0, "the exporter must be retrying");
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    assert!(
        received.body_count() == before,
        "nothing can arrive while the endpoint is down"
    );
    let sink = Sink::start_at(addr, received).await;

    let (written, rate) = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .unwrap();
    assert_eq!(written, total);
    assert!(
        rate >= 10_000.0,
        "the writer managed only {rate:.0} lines/s"
    );
    let received = sink.received.clone();
    let waited = tokio::task::spawn_blocking(move || {
        wait_all(
            written,
            Duration::from_secs(120),
            || received.body_count(),
            || received.bodies(),
        )
    })
    .await
    .unwrap();
    let t = match waited {
        Ok(t) => t,
        Err(t) => panic!(
            "{} of {written} lines missing after the outage (first {:?})",
            t.missing.len(),
            &t.missing[..t.missing.len().min(10)]
        ),
    };
    eprintln!(
        "outage of {OUTAGE:?}: {written} lines at {rate:.0}/s, all delivered {:.1}s after the endpoint came back, {} duplicates",
        down_at.elapsed().as_secs_f64() - OUTAGE.as_secs_f64(),
        t.duplicates
    );
    assert!(t.unmasked.is_empty(), "{:?}", &t.unmasked[..1]);
    assert!(t.unparsable.is_empty(), "{:?}", &t.unparsable[..1]);
    assert_eq!(
        agent.metric("argus_agent_records_dropped_total{reason=\"retries_exhausted\"}"),
        0.0
    );
    assert!(agent.terminate(Duration::from_secs(30)).success());
}
