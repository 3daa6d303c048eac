//! Cost of the transform chain (enrich + correlate + mask) on typical JSON
//! log lines of ~200 bytes: the per-record price every log pays on the node.
//!
//! `cargo bench -p argus-agent --bench transform`

use argus_agent::pipeline::Payload;
use argus_agent::transform::TransformConfig;
use argus_agent::transform::mask::mask_cards;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prometheus_client::registry::Registry;

const RECORDS: usize = 1000;

/// ~200-byte JSON lines; every 10th carries a card number, every line a
/// trace ID and a request ID.
fn line(i: usize) -> String {
    let card = if i.is_multiple_of(10) {
        "4111 1111 1111 1111"
    } else {
        "order 1234567"
    };
    format!(
        r#"{{"ts":"2026-11-21T06:00:00.{i:03}Z","level":"info","msg":"payment captured {card}","amount":1299,"trace_id":"4bf92f3577b34da6a3ce929d0e0e{i:04x}","span_id":"00f067aa0ba902b7","request_id":"req-{i}"}}"#
    )
}

fn payload() -> Payload {
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..RECORDS)
                    .map(|i| LogRecord {
                        body: Some(AnyValue {
                            value: Some(Value::StringValue(line(i))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn bench(c: &mut Criterion) {
    let avg = (0..RECORDS).map(|i| line(i).len()).sum::<usize>() / RECORDS;
    eprintln!("average line: {avg} bytes");

    let mut g = c.benchmark_group("transform");
    g.throughput(Throughput::Elements(RECORDS as u64));
    let default = TransformConfig::default()
        .build("t", &mut Registry::default())
        .unwrap();
    g.bench_function("chain_default_1000_records", |b| {
        b.iter_batched(
            payload,
            |mut p| default.apply(&mut p),
            BatchSize::LargeInput,
        )
    });
    let with_rules: TransformConfig = serde_yaml::from_str(
        r#"
mask:
  rules:
    - {name: email, pattern: '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}', replacement: '<email>'}
    - {name: bearer, pattern: '(?i)(bearer\s+)[A-Za-z0-9._~+/-]+=*', replacement: '${1}****'}
"#,
    )
    .unwrap();
    let with_rules = with_rules.build("t", &mut Registry::default()).unwrap();
    g.bench_function("chain_with_2_regex_rules_1000_records", |b| {
        b.iter_batched(
            payload,
            |mut p| with_rules.apply(&mut p),
            BatchSize::LargeInput,
        )
    });
    for (name, yaml) in [
        (
            "correlate_only_1000_records",
            "enrich: {enabled: false}\nmask: {enabled: false}\n",
        ),
        (
            "mask_only_1000_records",
            "enrich: {enabled: false}\ncorrelate: {enabled: false}\n",
        ),
    ] {
        let cfg: TransformConfig = serde_yaml::from_str(yaml).unwrap();
        let t = cfg.build("t", &mut Registry::default()).unwrap();
        g.bench_function(name, |b| {
            b.iter_batched(payload, |mut p| t.apply(&mut p), BatchSize::LargeInput)
        });
    }
    g.finish();

    let first = [
        false, false, true, true, true, true, true, false, false, false,
    ];
    let clean = line(1);
    c.bench_function("mask_cards_line_without_card", |b| {
        b.iter_batched(
            || clean.clone(),
            |mut s| mask_cards(&mut s, &first),
            BatchSize::SmallInput,
        )
    });
    let dirty = line(0);
    c.bench_function("mask_cards_line_with_card", |b| {
        b.iter_batched(
            || dirty.clone(),
            |mut s| mask_cards(&mut s, &first),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
