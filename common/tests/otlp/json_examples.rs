//! The OTLP spec's own JSON examples (opentelemetry-proto `examples/`),
//! posted as a user would (`curl -d @trace.json`), decode to the IDs and
//! values written in them — and so do their variants that SDKs produce:
//! 64-bit integers as numbers, `snake_case` keys.

use argus_common::otlp::Payload;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
};
use reqwest::StatusCode;

use super::support::{local_config, start};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/otlp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn value(kv: &[KeyValue], key: &str) -> V {
    kv.iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone())
        .and_then(|v| v.value)
        .unwrap_or_else(|| panic!("attribute {key} missing in {kv:?}"))
}

fn s(v: &str) -> V {
    V::StringValue(v.into())
}

/// Posts every fixture to the real server and returns what the consumer got.
async fn post_all(bodies: &[(&str, String)]) -> Vec<Payload> {
    let srv = start(local_config()).await;
    let client = reqwest::Client::new();
    for (path, body) in bodies {
        let r = client
            .post(srv.http_url(path))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            r.text().await.unwrap()
        );
    }
    let got = srv.consumer.payloads();
    srv.stop().await;
    got
}

fn check_trace(p: &Payload) {
    let Payload::Traces(r) = p else {
        panic!("{p:?}")
    };
    let rs = &r.resource_spans[0];
    assert_eq!(
        value(&rs.resource.as_ref().unwrap().attributes, "service.name"),
        s("my.service")
    );
    let ss = &rs.scope_spans[0];
    let scope = ss.scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("my.library", "1.0.0")
    );
    assert_eq!(
        value(&scope.attributes, "my.scope.attribute"),
        s("some scope attribute")
    );
    let span = &ss.spans[0];
    assert_eq!(span.trace_id, hex("5B8EFFF798038103D269B633813FC60C"));
    assert_eq!(span.span_id, hex("EEE19B7EC3C1B174"));
    assert_eq!(span.parent_span_id, hex("EEE19B7EC3C1B173"));
    assert_eq!(span.name, "I'm a server span");
    assert_eq!(span.start_time_unix_nano, 1544712660000000000);
    assert_eq!(span.end_time_unix_nano, 1544712661000000000);
    assert_eq!(span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(value(&span.attributes, "my.span.attr"), s("some value"));
}

fn check_logs(p: &Payload) {
    let Payload::Logs(r) = p else { panic!("{p:?}") };
    let rec = &r.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(rec.time_unix_nano, 1544712660300000000);
    assert_eq!(rec.observed_time_unix_nano, 1544712660300000000);
    assert_eq!(rec.severity_number, 10, "SEVERITY_NUMBER_INFO2");
    assert_eq!(rec.severity_text, "Information");
    assert_eq!(rec.trace_id, hex("5B8EFFF798038103D269B633813FC60C"));
    assert_eq!(rec.span_id, hex("EEE19B7EC3C1B174"));
    assert_eq!(
        rec.body.as_ref().unwrap().value,
        Some(s("Example log record"))
    );
    assert_eq!(value(&rec.attributes, "string.attribute"), s("some string"));
    assert_eq!(
        value(&rec.attributes, "boolean.attribute"),
        V::BoolValue(true)
    );
    assert_eq!(value(&rec.attributes, "int.attribute"), V::IntValue(10));
    assert_eq!(
        value(&rec.attributes, "double.attribute"),
        V::DoubleValue(637.704)
    );
    let V::ArrayValue(a) = value(&rec.attributes, "array.attribute") else {
        panic!()
    };
    assert_eq!(
        a.values
            .iter()
            .map(|v| v.value.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![s("many"), s("values")]
    );
    let V::KvlistValue(m) = value(&rec.attributes, "map.attribute") else {
        panic!()
    };
    assert_eq!(value(&m.values, "some.map.key"), s("some value"));
}

fn check_metrics(p: &Payload) {
    let Payload::Metrics(r) = p else {
        panic!("{p:?}")
    };
    let metrics = &r.resource_metrics[0].scope_metrics[0].metrics;
    let by_name = |n: &str| {
        metrics
            .iter()
            .find(|m| m.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };

    let counter = by_name("my.counter");
    assert_eq!(
        (counter.unit.as_str(), counter.description.as_str()),
        ("1", "I am a Counter")
    );
    let Some(Data::Sum(sum)) = &counter.data else {
        panic!("{counter:?}")
    };
    assert_eq!(sum.aggregation_temporality, 1, "DELTA");
    assert!(sum.is_monotonic);
    let pt = &sum.data_points[0];
    assert_eq!(pt.value, Some(number_data_point::Value::AsDouble(5.0)));
    assert_eq!(
        (pt.start_time_unix_nano, pt.time_unix_nano),
        (1544712660300000000, 1544712660300000000)
    );
    assert_eq!(value(&pt.attributes, "my.counter.attr"), s("some value"));

    let Some(Data::Gauge(g)) = &by_name("my.gauge").data else {
        panic!()
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsDouble(10.0))
    );

    let Some(Data::Histogram(h)) = &by_name("my.histogram").data else {
        panic!()
    };
    let hp = &h.data_points[0];
    assert_eq!(
        (hp.count, hp.sum, hp.min, hp.max),
        (2, Some(2.0), Some(0.0), Some(2.0))
    );
    assert_eq!(
        (hp.bucket_counts.clone(), hp.explicit_bounds.clone()),
        (vec![1, 1], vec![1.0])
    );

    let Some(Data::ExponentialHistogram(e)) = &by_name("my.exponential.histogram").data else {
        panic!()
    };
    let ep = &e.data_points[0];
    assert_eq!(
        (ep.count, ep.sum, ep.scale, ep.zero_count),
        (3, Some(10.0), 0, 1)
    );
    assert_eq!(
        ep.positive,
        Some(Buckets {
            offset: 1,
            bucket_counts: vec![0, 2]
        })
    );
    assert_eq!((ep.min, ep.max), (Some(0.0), Some(5.0)));
}

fn check_events(p: &Payload) {
    let Payload::Logs(r) = p else { panic!("{p:?}") };
    let rec = &r.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(rec.event_name, "browser.page_view");
    assert_eq!(rec.severity_number, 9);
    let Some(AnyValue {
        value: Some(V::KvlistValue(body)),
    }) = &rec.body
    else {
        panic!("{rec:?}")
    };
    assert_eq!(value(&body.values, "type"), V::IntValue(0));
}

fn examples() -> Vec<(&'static str, String)> {
    vec![
        ("/v1/traces", fixture("trace.json")),
        ("/v1/logs", fixture("logs.json")),
        ("/v1/metrics", fixture("metrics.json")),
        ("/v1/logs", fixture("events.json")),
    ]
}

fn check_all(got: &[Payload]) {
    assert_eq!(got.len(), 4);
    check_trace(&got[0]);
    check_logs(&got[1]);
    check_metrics(&got[2]);
    check_events(&got[3]);
}

#[tokio::test]
async fn spec_examples_decode_to_what_they_say() {
    check_all(&post_all(&examples()).await);
}

/// Rewrites every JSON value with `f`, keys with `k`.
fn rewrite(
    v: serde_json::Value,
    k: &dyn Fn(&str) -> String,
    f: &dyn Fn(&str, serde_json::Value) -> serde_json::Value,
) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(key, v)| {
                    let v = rewrite(v, k, f);
                    (k(&key), f(&key, v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| rewrite(v, k, f)).collect()),
        other => other,
    }
}

#[tokio::test]
async fn sixty_four_bit_numbers_and_snake_case_keys_decode_the_same() {
    // What e.g. older SDKs and hand-written clients send: "timeUnixNano":
    // 1544712660300000000 instead of "1544712660300000000".
    let to_number = |v: serde_json::Value| match v {
        serde_json::Value::String(s) => serde_json::Value::Number(s.parse::<u64>().unwrap().into()),
        v => v,
    };
    let numeric = |key: &str, v: serde_json::Value| {
        let sixty_four_bit = key.ends_with("UnixNano")
            || matches!(
                key,
                "count" | "zeroCount" | "asInt" | "intValue" | "bucketCounts"
            );
        match v {
            serde_json::Value::Array(a) if sixty_four_bit => {
                serde_json::Value::Array(a.into_iter().map(to_number).collect())
            }
            v if sixty_four_bit => to_number(v),
            v => v,
        }
    };
    let snake = |k: &str| {
        let mut out = String::new();
        for c in k.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    };
    let keep = |k: &str| k.to_string();
    let variants: Vec<(&str, String)> = examples()
        .into_iter()
        .flat_map(|(path, body)| {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let n = rewrite(v.clone(), &keep, &numeric);
            assert_ne!(n, v, "the rewrite changed something");
            let sn = rewrite(v, &snake, &|_, v| v);
            assert!(sn.to_string().contains("resource_"), "{sn}");
            [(path, n.to_string()), (path, sn.to_string())]
        })
        .collect();
    let got = post_all(&variants).await;
    let numeric: Vec<Payload> = got.iter().step_by(2).cloned().collect();
    let snake: Vec<Payload> = got.iter().skip(1).step_by(2).cloned().collect();
    check_all(&numeric);
    check_all(&snake);
    assert_eq!(numeric, snake);
}
