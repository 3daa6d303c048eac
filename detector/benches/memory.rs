//! Memory per active series at 100 000 series: the process' RSS before
//! and after the service core holds them, each series past its warm-up
//! (every ring of its detector full), divided by the series count. Also
//! prints the core's own estimate (detector `state_bytes` + registry key
//! bytes) and what a snapshot of all of it costs (bytes, seconds).
//!
//! ```text
//! cargo bench -p argus-detector --bench memory
//! ARGUS_BENCH_SERIES=100000 ARGUS_BENCH_POINTS=260 cargo bench -p argus-detector --bench memory
//! ```
//!
//! RSS includes allocator overhead and freed-but-kept memory, which is what
//! a container limit sees. Payloads are built and dropped per chunk so they
//! do not count.

#[path = "scoring.rs"]
#[allow(dead_code)]
mod scoring;

use std::time::Instant;

use argus_detector::service::Scored;
use argus_detector::snapshot::{Encoder, Meta, SeriesOut, Writer};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let series = env("ARGUS_BENCH_SERIES", 100_000);
    let points = env("ARGUS_BENCH_POINTS", 260) as i64;
    let before = rss_bytes();
    let mut c = scoring::core(series);
    let mut scored = Scored::default();
    let started = Instant::now();
    for k in 0..points {
        let now = 1_700_000_000 + k * 10 + 5;
        for lo in (0..series).step_by(10_000) {
            let p = scoring::payload(lo..(lo + 10_000).min(series), k, i64::MAX);
            c.ingest(&p, now);
        }
        for p in c.ingest.flush(now) {
            c.score(&p, &mut scored);
        }
        c.housekeeping(now);
    }
    let after = rss_bytes();
    let live = c.ingest.registry().len();
    assert_eq!(live, series, "every series registered");
    let state: usize = c
        .ingest
        .registry()
        .iter()
        .map(|s| s.state.state_bytes())
        .sum();
    let keys = c.ingest.registry().key_bytes();
    println!(
        "memory: {live} series, {points} points each ({} scored) in {:.1} s",
        scored.points,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  RSS delta: {:.1} MiB = {:.0} bytes per series",
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / live as f64
    );
    println!(
        "  estimate:  {:.0} bytes per series (state {:.0} + key/index {:.0})",
        (state + keys) as f64 / live as f64,
        state as f64 / live as f64,
        keys as f64 / live as f64
    );

    let dir = std::env::temp_dir().join(format!("argus-bench-snapshot-{}", std::process::id()));
    let t = Instant::now();
    let mut w = Writer::create(&dir).unwrap();
    let mut enc = Encoder::default();
    enc.meta(&Meta {
        taken_at: 0,
        clock: 0,
        step_secs: 10,
        engine: 0,
        next_incident: 0,
        version: "bench".into(),
    });
    for s in c.ingest.registry().iter() {
        let Some(out) = SeriesOut::live(&s) else {
            continue;
        };
        enc.series(&out);
        if enc.len() > 8 << 20 {
            w.take(&mut enc).unwrap();
        }
    }
    w.take(&mut enc).unwrap();
    let bytes = w.finish().unwrap();
    let write = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let snap = argus_detector::snapshot::read(&dir).unwrap().unwrap();
    let read = t.elapsed().as_secs_f64();
    assert_eq!(snap.series.len(), live);
    println!(
        "  snapshot:  {:.1} MiB ({:.0} bytes per series), written in {write:.2} s, read back in {read:.2} s",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / live as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
