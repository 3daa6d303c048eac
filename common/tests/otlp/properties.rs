//! Properties over generated input:
//! - arbitrary bytes, under every content type and coding, never panic the
//!   decoder and never get a 5xx from the server (which keeps serving);
//! - any OTLP request, written as JSON by `opentelemetry-proto`'s serializer
//!   (an independent implementation of OTLP/JSON), decodes with ours to the
//!   very same request — and to the same as its protobuf encoding does.

use argus_common::otlp::Payload;
use argus_common::otlp::Signal;
use argus_common::otlp::http::{BodyEncoding, ContentCoding, decode_body};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric,
    number_data_point, summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;

use super::support::{local_config, start};

const SIGNALS: [Signal; 3] = [Signal::Logs, Signal::Traces, Signal::Metrics];
const ENCODINGS: [BodyEncoding; 2] = [BodyEncoding::Protobuf, BodyEncoding::Json];
const CODINGS: [ContentCoding; 4] = [
    ContentCoding::Identity,
    ContentCoding::Gzip,
    ContentCoding::Deflate,
    ContentCoding::Zstd,
];

/// Bytes that are sometimes almost valid: raw noise, or noise wrapped in a
/// valid gzip stream (so the decoders behind decompression get fuzzed too).
fn noisy_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..512),
        "[{}\\[\\]\":,0-9a-zA-Z ]{0,200}".prop_map(|s| s.into_bytes()),
        "\\{\"resource(Spans|Logs|Metrics)\":\\[\\{\"scope[A-Za-z]+\":[\\[\\]{}\":,0-9a-zA-Z]{0,80}"
            .prop_map(|s| s.into_bytes()),
    ]
}

proptest! {
    #![proptest_config(Config::with_cases(2000))]

    #[test]
    fn the_decoder_never_panics(
        body in noisy_bytes(),
        s in 0..3usize, e in 0..2usize, c in 0..4usize,
    ) {
        let (signal, encoding, coding) = (SIGNALS[s], ENCODINGS[e], CODINGS[c]);
        if let Ok(p) = decode_body(signal, encoding, coding, &body, 1 << 20) {
            prop_assert_eq!(p.signal(), signal);
            prop_assert!(argus_common::otlp::validation::validate(&p).is_ok());
        }
    }
}

#[test]
fn arbitrary_bodies_get_200_or_4xx_never_5xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(start(local_config()));
    let client = reqwest::Client::new();
    let paths = ["/v1/logs", "/v1/traces", "/v1/metrics"];
    let types = ["application/x-protobuf", "application/json", "text/plain"];
    let codings = ["", "gzip", "deflate", "zstd"];
    let mut runner = TestRunner::new(Config::with_cases(300));
    runner
        .run(
            &(noisy_bytes(), 0..3usize, 0..3usize, 0..4usize),
            |(body, p, t, c)| {
                let status = rt.block_on(async {
                    let mut req = client
                        .post(server.http_url(paths[p]))
                        .header("content-type", types[t])
                        .body(body.clone());
                    if !codings[c].is_empty() {
                        req = req.header("content-encoding", codings[c]);
                    }
                    req.send().await.unwrap().status()
                });
                prop_assert!(
                    status == 200 || status.is_client_error(),
                    "{status} for {} {} {} {body:?}",
                    paths[p],
                    types[t],
                    codings[c]
                );
                // Only protobuf (where most byte strings are a valid, if
                // odd, message) may succeed; text/plain never.
                prop_assert!(status != 200 || t != 2);
                Ok(())
            },
        )
        .unwrap();
    let served_before = server.consumer.count();
    let ok = rt.block_on(async {
        client
            .post(server.http_url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(super::support::logs(1).encode_to_vec())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(ok, 200);
    assert_eq!(server.consumer.count(), served_before + 1);
    rt.block_on(server.stop());
}

// --- generated OTLP requests -------------------------------------------------

fn id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), vec(any::<u8>(), len)]
}

fn text() -> impl Strategy<Value = String> {
    // Unicode, quotes, backslashes and control characters included.
    "(\\PC|[\"\\\\\n\t\u{0}]){0,12}"
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite())
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    use any_value::Value as V;
    let leaf = prop_oneof![
        text().prop_map(V::StringValue),
        any::<bool>().prop_map(V::BoolValue),
        any::<i64>().prop_map(V::IntValue),
        finite().prop_map(V::DoubleValue),
        vec(any::<u8>(), 0..16).prop_map(V::BytesValue),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|values| V::ArrayValue(ArrayValue {
                values: values
                    .into_iter()
                    .map(|v| AnyValue { value: Some(v) })
                    .collect()
            })),
            vec((text(), inner), 0..4).prop_map(|kvs| V::KvlistValue(KeyValueList {
                values: kvs
                    .into_iter()
                    .map(|(key, v)| KeyValue {
                        key,
                        value: Some(AnyValue { value: Some(v) }),
                        ..Default::default()
                    })
                    .collect()
            })),
        ]
    })
    .prop_map(|v| AnyValue { value: Some(v) })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(
        (text(), any_value()).prop_map(|(key, value)| KeyValue {
            key,
            value: Some(value),
            ..Default::default()
        }),
        0..3,
    )
}

fn resource() -> impl Strategy<Value = Option<Resource>> {
    proptest::option::of((attributes(), any::<u32>()).prop_map(
        |(attributes, dropped_attributes_count)| Resource {
            attributes,
            dropped_attributes_count,
            ..Default::default()
        },
    ))
}

fn scope() -> impl Strategy<Value = Option<InstrumentationScope>> {
    proptest::option::of(
        (text(), text(), attributes()).prop_map(|(name, version, attributes)| {
            InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count: 0,
            }
        }),
    )
}

fn log_record() -> impl Strategy<Value = LogRecord> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            0..25i32,
            text(),
            proptest::option::of(any_value()),
        ),
        (
            attributes(),
            any::<u32>(),
            any::<u32>(),
            id(16),
            id(8),
            text(),
        ),
    )
        .prop_map(
            |(
                (t, ot, sev, st, body),
                (attributes, dropped, flags, trace_id, span_id, event_name),
            )| LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: ot,
                severity_number: sev,
                severity_text: st,
                body,
                attributes,
                dropped_attributes_count: dropped,
                flags,
                trace_id,
                span_id,
                event_name,
            },
        )
}

fn logs_request() -> impl Strategy<Value = ExportLogsServiceRequest> {
    vec(
        (
            resource(),
            vec((scope(), vec(log_record(), 0..4), text()), 0..3),
            text(),
        )
            .prop_map(|(resource, scopes, schema_url)| ResourceLogs {
                resource,
                scope_logs: scopes
                    .into_iter()
                    .map(|(scope, log_records, schema_url)| ScopeLogs {
                        scope,
                        log_records,
                        schema_url,
                    })
                    .collect(),
                schema_url,
            }),
        0..3,
    )
    .prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
}

fn span() -> impl Strategy<Value = Span> {
    let event =
        (any::<u64>(), text(), attributes(), any::<u32>()).prop_map(|(t, name, attributes, d)| {
            span::Event {
                time_unix_nano: t,
                name,
                attributes,
                dropped_attributes_count: d,
            }
        });
    let link = (id(16), id(8), text(), attributes(), any::<u32>()).prop_map(
        |(trace_id, span_id, trace_state, attributes, flags)| span::Link {
            trace_id,
            span_id,
            trace_state,
            attributes,
            dropped_attributes_count: 0,
            flags,
        },
    );
    (
        (
            id(16),
            id(8),
            text(),
            id(8),
            any::<u32>(),
            text(),
            0..6i32,
            any::<u64>(),
            any::<u64>(),
        ),
        (
            attributes(),
            vec(event, 0..2),
            vec(link, 0..2),
            proptest::option::of((text(), 0..3i32)),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (trace_id, span_id, trace_state, parent_span_id, flags, name, kind, start, end),
                (attributes, events, links, status, dropped),
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped,
                events,
                dropped_events_count: dropped / 2,
                links,
                dropped_links_count: dropped / 3,
                status: status.map(|(message, code)| Status { message, code }),
            },
        )
}

fn traces_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    vec(
        (
            resource(),
            vec((scope(), vec(span(), 0..4), text()), 0..3),
            text(),
        )
            .prop_map(|(resource, scopes, schema_url)| ResourceSpans {
                resource,
                scope_spans: scopes
                    .into_iter()
                    .map(|(scope, spans, schema_url)| ScopeSpans {
                        scope,
                        spans,
                        schema_url,
                    })
                    .collect(),
                schema_url,
            }),
        0..3,
    )
    .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    vec(
        (
            attributes(),
            any::<u64>(),
            id(8),
            id(16),
            prop_oneof![
                finite().prop_map(exemplar::Value::AsDouble),
                any::<i64>().prop_map(exemplar::Value::AsInt)
            ],
        )
            .prop_map(|(filtered_attributes, t, span_id, trace_id, v)| Exemplar {
                filtered_attributes,
                time_unix_nano: t,
                span_id,
                trace_id,
                value: Some(v),
            }),
        0..2,
    )
}

fn number_points() -> impl Strategy<Value = Vec<NumberDataPoint>> {
    vec(
        (
            attributes(),
            any::<u64>(),
            any::<u64>(),
            exemplars(),
            any::<u32>(),
            prop_oneof![
                finite().prop_map(number_data_point::Value::AsDouble),
                any::<i64>().prop_map(number_data_point::Value::AsInt)
            ],
        )
            .prop_map(|(attributes, s, t, exemplars, flags, v)| NumberDataPoint {
                attributes,
                start_time_unix_nano: s,
                time_unix_nano: t,
                exemplars,
                flags,
                value: Some(v),
            }),
        0..3,
    )
}

fn metric_data() -> impl Strategy<Value = metric::Data> {
    let hist_point = (
        attributes(),
        any::<u64>(),
        proptest::option::of(finite()),
        vec(any::<u64>(), 0..4),
        vec(finite(), 0..3),
        exemplars(),
        proptest::option::of(finite()),
    )
        .prop_map(
            |(attributes, count, sum, bucket_counts, explicit_bounds, exemplars, min)| {
                HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    exemplars,
                    flags: 0,
                    min,
                    max: min.map(|m| m + 1.0),
                }
            },
        );
    let buckets =
        (any::<i32>(), vec(any::<u64>(), 0..4)).prop_map(|(offset, bucket_counts)| Buckets {
            offset,
            bucket_counts,
        });
    let exp_point = (
        any::<u64>(),
        proptest::option::of(finite()),
        any::<i32>(),
        any::<u64>(),
        proptest::option::of(buckets.clone()),
        proptest::option::of(buckets),
        finite(),
    )
        .prop_map(
            |(count, sum, scale, zero_count, positive, negative, zero_threshold)| {
                ExponentialHistogramDataPoint {
                    count,
                    sum,
                    scale,
                    zero_count,
                    positive,
                    negative,
                    zero_threshold,
                    ..Default::default()
                }
            },
        );
    let summary_point =
        (any::<u64>(), finite(), vec((finite(), finite()), 0..3)).prop_map(|(count, sum, q)| {
            SummaryDataPoint {
                count,
                sum,
                quantile_values: q
                    .into_iter()
                    .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                    .collect(),
                ..Default::default()
            }
        });
    prop_oneof![
        number_points().prop_map(|data_points| metric::Data::Gauge(Gauge { data_points })),
        (number_points(), 0..3i32, any::<bool>()).prop_map(
            |(data_points, t, m)| metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: t,
                is_monotonic: m
            })
        ),
        (vec(hist_point, 0..3), 0..3i32).prop_map(|(data_points, t)| metric::Data::Histogram(
            Histogram {
                data_points,
                aggregation_temporality: t
            }
        )),
        (vec(exp_point, 0..3), 0..3i32).prop_map(|(data_points, t)| {
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points,
                aggregation_temporality: t,
            })
        }),
        vec(summary_point, 0..3)
            .prop_map(|data_points| metric::Data::Summary(Summary { data_points })),
    ]
}

fn metrics_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let m = (
        text(),
        text(),
        text(),
        attributes(),
        proptest::option::of(metric_data()),
    )
        .prop_map(|(name, description, unit, metadata, data)| Metric {
            name,
            description,
            unit,
            metadata,
            data,
        });
    vec(
        (
            resource(),
            vec((scope(), vec(m, 0..3), text()), 0..3),
            text(),
        )
            .prop_map(|(resource, scopes, schema_url)| ResourceMetrics {
                resource,
                scope_metrics: scopes
                    .into_iter()
                    .map(|(scope, metrics, schema_url)| ScopeMetrics {
                        scope,
                        metrics,
                        schema_url,
                    })
                    .collect(),
                schema_url,
            }),
        0..3,
    )
    .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        logs_request().prop_map(Payload::Logs),
        traces_request().prop_map(Payload::Traces),
        metrics_request().prop_map(Payload::Metrics),
    ]
}

proptest! {
    #![proptest_config(Config::with_cases(512))]

    #[test]
    fn json_from_another_implementation_and_protobuf_decode_alike(p in payload()) {
        let (json, pb) = match &p {
            Payload::Logs(r) => (serde_json::to_vec(r).unwrap(), r.encode_to_vec()),
            Payload::Traces(r) => (serde_json::to_vec(r).unwrap(), r.encode_to_vec()),
            Payload::Metrics(r) => (serde_json::to_vec(r).unwrap(), r.encode_to_vec()),
        };
        let signal = p.signal();
        let from_pb = decode_body(signal, BodyEncoding::Protobuf, ContentCoding::Identity, &pb, usize::MAX);
        let from_json = decode_body(signal, BodyEncoding::Json, ContentCoding::Identity, &json, usize::MAX);
        prop_assert_eq!(&from_pb, &Ok(p.clone()));
        prop_assert_eq!(&from_json, &Ok(p), "JSON: {}", String::from_utf8_lossy(&json));
    }
}
