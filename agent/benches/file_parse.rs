//! Log line decoding throughput in lines per CPU-second: CRI framing + JSON
//! bodies, the file source's hot path, with the file I/O taken out. Records
//! are cut into batches of 4096 and dropped, as the source's envelopes are.
//!
//! Measured in thread CPU time, not wall time, so that a busy machine does
//! not skew the result (the agent's budget is stated per CPU-second).
//!
//! `cargo bench -p argus-agent --bench file_parse`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use argus_agent::sources::file::{Decoder, DecoderSettings, Format, Output};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::time::Instant;

const LINES: usize = 10_000;
const PATH: &str =
    "/var/log/pods/payments_api-7d9f8-x2x_5e1c2f1a-8c3b-4d2e-9f0a-1b2c3d4e5f60/api/0.log";

fn cri_json() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..LINES {
        s.push_str(&format!(
            "2024-01-15T10:30:{:02}.{:09}Z stdout F {{\"level\":\"info\",\"ts\":1705314600.{i},\
             \"caller\":\"server/handler.go:118\",\"msg\":\"request served\",\"method\":\"POST\",\
             \"path\":\"/v1/payments\",\"status\":200,\"duration_ms\":12.5,\
             \"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"}}\n",
            i % 60,
            i
        ));
    }
    s.into_bytes()
}

fn cri_plain() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..LINES {
        let stream = if i % 7 == 0 { "stderr" } else { "stdout" };
        let tag = if i % 50 == 0 { "P" } else { "F" };
        s.push_str(&format!(
            "2024-01-15T10:30:{:02}.{:09}Z {stream} {tag} 2024-01-15 10:30:00.123 INFO  \
             [http-nio-8080-exec-{}] c.e.PaymentController - payment {i} accepted\n",
            i % 60,
            i,
            i % 16
        ));
    }
    s.into_bytes()
}

/// Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
struct CpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms (CPU)"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let Throughput::Elements(n) = t else {
            return "?";
        };
        // ns of CPU per iteration -> lines per CPU-second.
        values.iter_mut().for_each(|v| *v = *n as f64 * 1e9 / *v);
        "lines/CPU-s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns (CPU)"
    }
}

fn bench(c: &mut Criterion<CpuTime>) {
    let settings = Arc::new(
        DecoderSettings::new(Format::Auto, None, 256 * 1024, Duration::from_secs(5), true).unwrap(),
    );
    let mut g = c.benchmark_group("file_parse");
    g.throughput(Throughput::Elements(LINES as u64));
    for (name, input) in [("cri_json", cri_json()), ("cri_plain", cri_plain())] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut d = Decoder::new(Arc::clone(&settings), PATH.into(), 0);
                let now = Instant::now();
                let mut records = 0;
                // Reads of 128 KiB, as the source does, cut into envelopes.
                let mut at = 0;
                while at < input.len() {
                    let mut out = Output::capped(1, 4096, 1 << 20);
                    let end = (at + 128 * 1024).min(input.len());
                    at += d.feed(&input[at..end], now, &mut out);
                    records += black_box(out.records).len();
                }
                records
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench
}
criterion_main!(benches);
