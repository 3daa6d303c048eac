//! The full default ensemble, per point and per series.
//!
//! `cargo bench -p argus-detector --bench engine` prints, besides
//! criterion's timings:
//! - points per second on one core (a single series streamed point by
//!   point, and 1,000 series interleaved as a detector sees them — the
//!   second includes cache misses between series);
//! - bytes of state per series (heap included, measured by the engine's
//!   own accounting and cross-checked by the snapshot size).
//!
//! Baseline in the same run: the cost of merely reading the value and
//! pushing it into the history ring, so the ratio shows what the models
//! cost on top of touching the data.

use std::hint::black_box;
use std::time::Instant;

use argus_detector::engine::{EngineConfig, SeriesDetector};
use argus_detector::model::History;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const T0: i64 = 1_700_438_400;

/// A realistic series: a daily cycle, noise, and a spike now and then.
fn series(n: usize, seed: u64) -> Vec<(i64, f64)> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let t = T0 + i as i64 * 10;
            let day = (t % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
            let spike = if x.is_multiple_of(997) { 40.0 } else { 0.0 };
            (t, 100.0 + 20.0 * day.sin() + 4.0 * (u - 0.5) + spike)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let cfg = EngineConfig::default();
    let points = series(200_000, 1);

    // Headline numbers, printed once.
    let baseline = {
        let mut h = History::new();
        let t = Instant::now();
        for &(_, v) in &points {
            h.push(black_box(v));
        }
        black_box(&h);
        t.elapsed()
    };
    let mut d = SeriesDetector::new(&cfg);
    let t = Instant::now();
    for &(ts, v) in &points {
        black_box(d.update(&cfg, ts, v));
    }
    let one = t.elapsed();
    let per_sec = points.len() as f64 / one.as_secs_f64();

    let fleet: Vec<Vec<(i64, f64)>> = (0..1000).map(|s| series(400, s + 2)).collect();
    let mut dets: Vec<SeriesDetector> = (0..1000).map(|_| SeriesDetector::new(&cfg)).collect();
    let t = Instant::now();
    for step in 0..400 {
        for (series, d) in fleet.iter().zip(dets.iter_mut()) {
            let (ts, v) = series[step];
            black_box(d.update(&cfg, ts, v));
        }
    }
    let many = t.elapsed();
    let fleet_per_sec = 400_000.0 / many.as_secs_f64();

    let bytes = d.state_bytes();
    let snapshot = serde_json::to_vec(&d).expect("serialisable").len();
    println!(
        "\nengine: {per_sec:.0} points/s on one core (one series), \
         {fleet_per_sec:.0} points/s (1000 series interleaved); \
         baseline history-push {:.0} points/s → models cost {:.1}× the baseline",
        points.len() as f64 / baseline.as_secs_f64(),
        one.as_secs_f64() / baseline.as_secs_f64().max(1e-12),
    );
    println!(
        "engine: {bytes} bytes of state per series ({:.2} KiB); JSON snapshot {snapshot} bytes\n",
        bytes as f64 / 1024.0
    );

    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(10_000));
    let warm = &points[..50_000];
    let tail = &points[50_000..60_000];
    g.bench_function("update_10k_warm_points", |b| {
        let mut d = SeriesDetector::new(&cfg);
        for &(ts, v) in warm {
            d.update(&cfg, ts, v);
        }
        b.iter_batched(
            || d.clone(),
            |mut d| {
                for &(ts, v) in tail {
                    black_box(d.update(&cfg, ts, v));
                }
                d
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
