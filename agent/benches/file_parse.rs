//! Log line decoding throughput (lines/s): CRI framing + JSON bodies, the
//! file source's hot path, with the file I/O taken out.
//!
//! `cargo bench -p argus-agent --bench file_parse`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use argus_agent::sources::file::{Decoder, DecoderSettings, Format, Output};
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

fn bench(c: &mut Criterion) {
    let settings = Arc::new(
        DecoderSettings::new(Format::Auto, None, 256 * 1024, Duration::from_secs(5), true).unwrap(),
    );
    let mut g = c.benchmark_group("file_parse");
    g.throughput(Throughput::Elements(LINES as u64));
    for (name, input) in [("cri_json", cri_json()), ("cri_plain", cri_plain())] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut d = Decoder::new(Arc::clone(&settings), PATH.into(), 0);
                let mut out = Output::new(1);
                let now = Instant::now();
                // Reads of 128 KiB, as the source does.
                for chunk in input.chunks(128 * 1024) {
                    d.feed(chunk, now, &mut out);
                }
                black_box(out.records.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
