//! Correlation: W3C traceparent rules, ID fields in attributes, JSON and
//! plain-text bodies, correlation.id normalisation, and what is never
//! overwritten.

use argus_agent::transform::correlate::{CorrelateConfig, parse_traceparent};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prometheus_client::registry::Registry;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn kv(k: &str, v: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    }
}

fn with_attrs(attrs: &[(&str, &str)]) -> LogRecord {
    LogRecord {
        attributes: attrs.iter().map(|(k, v)| kv(k, string(v))).collect(),
        ..Default::default()
    }
}

fn with_body(body: &str) -> LogRecord {
    LogRecord {
        body: string(body),
        ..Default::default()
    }
}

fn corr_id(r: &LogRecord) -> Option<&str> {
    r.attributes
        .iter()
        .find(|a| a.key == "correlation.id")
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn encode(reg: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, reg).unwrap();
    s
}

#[test]
fn traceparent_validation_table() {
    let ok = |s: &str| parse_traceparent(s).is_some();
    let cases: &[(&str, &str, bool)] = &[
        ("spec example", TP, true),
        (
            "not sampled",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            true,
        ),
        (
            "surrounding spaces",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            true,
        ),
        (
            "future version with extra field",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever",
            true,
        ),
        (
            "future version, same shape",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
            true,
        ),
        (
            "version ff is invalid",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            false,
        ),
        (
            "version 00 with extra field",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            false,
        ),
        (
            "future version glued extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            false,
        ),
        (
            "uppercase hex",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            false,
        ),
        (
            "all-zero trace id",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            false,
        ),
        (
            "all-zero span id",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            false,
        ),
        (
            "short trace id",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            false,
        ),
        (
            "non-hex",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            false,
        ),
        (
            "bad version hex",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            false,
        ),
        (
            "wrong separators",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            false,
        ),
        ("empty", "", false),
    ];
    for (name, s, want) in cases {
        assert_eq!(ok(s), *want, "{name}: {s:?}");
    }
    let tp = parse_traceparent(TP).unwrap();
    assert_eq!(hex::encode(tp.trace_id), TRACE);
    assert_eq!(hex::encode(tp.span_id), SPAN);
    assert_eq!(tp.flags, 1);
}

#[test]
fn sources_of_ids_table() {
    let json_tp = format!(r#"{{"level":"info","traceparent":"{TP}","msg":"paid"}}"#);
    let json_ids = format!(r#"{{"msg":"paid","traceId":"{TRACE}","spanId":"{SPAN}"}}"#);
    let json_nested =
        format!(r#"{{"msg":"paid","ctx":{{"trace_id": "{TRACE}", "span_id":"{SPAN}"}}}}"#);
    let prefixed_json =
        format!(r#"2024-05-01T10:00:00Z INFO {{"trace.id":"{TRACE}","span.id":"{SPAN}"}}"#);
    let text_tp = format!("2024-05-01 INFO payment accepted traceparent={TP} amount=12");
    let logfmt = format!(r#"level=info msg="paid" trace_id="{TRACE}" span_id={SPAN}"#);
    let cases: Vec<(&str, LogRecord, bool)> = vec![
        (
            "traceparent attribute",
            with_attrs(&[("traceparent", TP)]),
            true,
        ),
        (
            "Traceparent attribute, other case",
            with_attrs(&[("Traceparent", TP)]),
            true,
        ),
        (
            "trace_id/span_id attributes",
            with_attrs(&[("trace_id", TRACE), ("span_id", SPAN)]),
            true,
        ),
        (
            "traceId/spanId attributes",
            with_attrs(&[("traceId", TRACE), ("spanId", SPAN)]),
            true,
        ),
        (
            "trace.id/span.id uppercase hex",
            with_attrs(&[("trace.id", &TRACE.to_uppercase()), ("span.id", SPAN)]),
            true,
        ),
        ("traceparent in JSON body", with_body(&json_tp), true),
        ("camelCase in JSON body", with_body(&json_ids), true),
        ("nested JSON object", with_body(&json_nested), true),
        ("JSON after a text prefix", with_body(&prefixed_json), true),
        ("traceparent= in plain text", with_body(&text_tp), true),
        ("logfmt with quotes", with_body(&logfmt), true),
        (
            "key inside a JSON string value is not a key",
            with_body(&format!(
                r#"{{"msg":"copy \"trace_id\": \"{TRACE}\" here","n":1}}"#
            )),
            false,
        ),
        (
            "wrong length",
            with_attrs(&[("trace_id", "4bf92f3577b34da6")]),
            false,
        ),
        (
            "all zeros",
            with_attrs(&[("trace_id", "00000000000000000000000000000000")]),
            false,
        ),
        (
            "not hex",
            with_attrs(&[("trace_id", "zzf92f3577b34da6a3ce929d0e0e4736")]),
            false,
        ),
        ("unrelated key", with_attrs(&[("my_trace", TRACE)]), false),
        (
            "structured (map) body",
            LogRecord {
                body: Some(AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: vec![kv("trace_id", string(TRACE)), kv("span_id", string(SPAN))],
                    })),
                }),
                ..Default::default()
            },
            true,
        ),
    ];
    let c = CorrelateConfig::default().build(&mut Registry::default());
    for (name, mut record, want) in cases {
        let before = record.attributes.clone();
        c.apply(&mut record);
        if want {
            assert_eq!(hex::encode(&record.trace_id), TRACE, "{name}");
            assert_eq!(hex::encode(&record.span_id), SPAN, "{name}");
        } else {
            assert!(record.trace_id.is_empty(), "{name}");
            assert!(record.span_id.is_empty(), "{name}");
        }
        assert_eq!(
            record.attributes, before,
            "{name}: attributes are kept as they were"
        );
    }
}

#[test]
fn traceparent_sets_the_sampled_flag_and_wins_over_separate_fields() {
    let c = CorrelateConfig::default().build(&mut Registry::default());
    let other_trace = "11111111111111111111111111111111";
    let mut r = with_attrs(&[("trace_id", other_trace), ("traceparent", TP)]);
    c.apply(&mut r);
    assert_eq!(hex::encode(&r.trace_id), TRACE);
    assert_eq!(r.flags, 1, "sampled flag from the traceparent");
}

#[test]
fn ids_a_record_already_has_are_never_replaced() {
    let c = CorrelateConfig::default().build(&mut Registry::default());
    let own = vec![7u8; 16];
    let mut r = with_attrs(&[("traceparent", TP)]);
    r.trace_id = own.clone();
    c.apply(&mut r);
    assert_eq!(r.trace_id, own, "the SDK's own trace ID stays");
    assert!(
        r.span_id.is_empty(),
        "a span of another trace is not attached"
    );

    let mut r = with_attrs(&[("traceparent", TP)]);
    r.trace_id = hex::decode(TRACE).unwrap();
    c.apply(&mut r);
    assert_eq!(
        hex::encode(&r.span_id),
        SPAN,
        "a missing span of the same trace is filled"
    );

    let mut r = with_attrs(&[("span_id", SPAN)]);
    r.trace_id = own.clone();
    c.apply(&mut r);
    assert_eq!(
        hex::encode(&r.span_id),
        SPAN,
        "a lone span ID joins the record's own trace"
    );

    // A span ID without any trace ID joins nothing: not set.
    let mut r = with_attrs(&[("span_id", SPAN)]);
    c.apply(&mut r);
    assert!(r.span_id.is_empty());
}

#[test]
fn correlation_id_takes_the_strongest_key_and_is_never_overwritten() {
    let c = CorrelateConfig::default().build(&mut Registry::default());
    let mut r = with_attrs(&[
        ("X-Request-ID", "edge-1"),
        ("correlation_id", "corr-9"),
        ("request_id", "req-3"),
    ]);
    c.apply(&mut r);
    assert_eq!(corr_id(&r), Some("corr-9"));
    assert_eq!(r.attributes.len(), 4, "originals kept, one attribute added");

    let mut r = with_attrs(&[("x-request-id", "edge-1")]);
    c.apply(&mut r);
    assert_eq!(corr_id(&r), Some("edge-1"));

    let mut r = with_attrs(&[("correlation.id", "mine"), ("request_id", "req-3")]);
    c.apply(&mut r);
    assert_eq!(corr_id(&r), Some("mine"));
    assert_eq!(r.attributes.len(), 2);

    // From bodies: JSON (an integer request ID becomes a string) and text.
    let mut r = with_body(r#"{"msg":"paid","requestId":12345}"#);
    c.apply(&mut r);
    assert_eq!(corr_id(&r), Some("12345"));
    let mut r = with_body("GET /pay 200 request_id=abc-42 took=3ms");
    c.apply(&mut r);
    assert_eq!(corr_id(&r), Some("abc-42"));
    let mut r = with_body(r#"{"msg":"esc","correlation_id":"a\"b"}"#);
    c.apply(&mut r);
    assert_eq!(corr_id(&r), Some("a\"b"), "JSON escapes are decoded");

    // An attribute beats the body.
    let mut r = with_attrs(&[("request_id", "from-attr")]);
    r.body = string("request_id=from-body");
    c.apply(&mut r);
    assert_eq!(corr_id(&r), Some("from-attr"));
}

#[test]
fn invalid_ids_are_counted_by_field_and_correlations_by_source() {
    let mut reg = Registry::default();
    let c = CorrelateConfig::default().build(&mut reg);
    for mut r in [
        with_attrs(&[("trace_id", "nope")]),
        with_attrs(&[(
            "traceparent",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]),
        with_attrs(&[("trace_id", TRACE), ("span_id", "0000000000000000")]),
        with_body(&format!("traceparent={TP}")),
    ] {
        c.apply(&mut r);
    }
    let text = encode(&reg);
    for want in [
        r#"correlation_invalid_ids_total{field="trace_id"} 1"#,
        r#"correlation_invalid_ids_total{field="traceparent"} 1"#,
        r#"correlation_invalid_ids_total{field="span_id"} 1"#,
        r#"log_records_correlated_total{via="attribute"} 1"#,
        r#"log_records_correlated_total{via="body"} 1"#,
    ] {
        assert!(text.contains(want), "{want} in\n{text}");
    }
}

#[test]
fn custom_keys_and_body_scanning_off() {
    let cfg: CorrelateConfig =
        serde_yaml::from_str("trace_id_keys: [dd.trace_id_hex]\nbody: false\n").unwrap();
    let c = cfg.build(&mut Registry::default());
    let mut r = with_attrs(&[("dd.trace_id_hex", TRACE)]);
    c.apply(&mut r);
    assert_eq!(hex::encode(&r.trace_id), TRACE);
    let mut r = with_body(&format!("traceparent={TP}"));
    c.apply(&mut r);
    assert!(r.trace_id.is_empty(), "body scanning is off");

    let bad = CorrelateConfig {
        trace_id_keys: vec!["trace id".into(), "traceparent".into()],
        ..Default::default()
    };
    let p = bad.problems("transform.correlate");
    assert!(
        p.iter()
            .any(|m| m.starts_with("transform.correlate.trace_id_keys[0]:")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("transform.correlate.trace_id_keys[1]:")
                && m.contains("traceparent_keys")),
        "{p:?}"
    );
}
