//! Log line parsing through the public decoder: named table cases per
//! format, multiline stack traces per language, and golden files for
//! realistic CRI, docker and Java logs (`tests/file_fixtures/`).
//!
//! Regenerate the golden files after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p argus-agent --test file_parse`, and review
//! the diff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use argus_agent::sources::file::{
    Decoder, DecoderSettings, Format, MultilineConfig, MultilineMode, Output,
};
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Value as Json, json};
use tokio::time::Instant;

const PATH: &str = "/var/log/pods/payments_api-1_5e1c2f1a-8c3b-4d2e-9f0a-1b2c3d4e5f60/api/0.log";

fn decode(format: Format, multiline: Option<&MultilineConfig>, input: &str) -> Vec<LogRecord> {
    let s =
        DecoderSettings::new(format, multiline, 256 * 1024, Duration::from_secs(5), true).unwrap();
    let mut d = Decoder::new(Arc::new(s), PATH.into(), 0);
    let mut out = Output::new(42);
    let now = Instant::now();
    d.feed(input.as_bytes(), now, &mut out);
    d.flush_all(now, &mut out);
    out.records
}

fn json_of(v: &AnyValue) -> Json {
    match &v.value {
        None => Json::Null,
        Some(Value::StringValue(s)) => json!(s),
        Some(Value::BoolValue(b)) => json!(b),
        Some(Value::IntValue(i)) => json!({ "int": i }),
        Some(Value::DoubleValue(d)) => json!({ "double": d }),
        Some(Value::ArrayValue(a)) => Json::Array(a.values.iter().map(json_of).collect()),
        Some(Value::KvlistValue(kv)) => Json::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Json::Null, json_of),
                    )
                })
                .collect(),
        ),
        Some(other) => json!(format!("{other:?}")),
    }
}

/// A readable rendering of a record for the golden files.
fn render(r: &LogRecord) -> Json {
    json!({
        "time_unix_nano": r.time_unix_nano,
        "observed_time_unix_nano": r.observed_time_unix_nano,
        "severity_number": r.severity_number,
        "severity_text": r.severity_text,
        "body": r.body.as_ref().map_or(Json::Null, json_of),
        "attributes": Json::Array(
            r.attributes
                .iter()
                .map(|kv| json!([kv.key, kv.value.as_ref().map_or(Json::Null, json_of)]))
                .collect()
        ),
    })
}

fn body(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn attr(r: &LogRecord, key: &str) -> Option<Json> {
    r.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_ref().map_or(Json::Null, json_of))
}

fn golden(name: &str, records: &[LogRecord]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/file_fixtures");
    let path = dir.join(format!("{name}.golden.json"));
    let rendered = serde_json::to_string_pretty(&records.iter().map(render).collect::<Vec<_>>())
        .unwrap()
        + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert!(
        want == rendered,
        "{name}: output differs from {}:\n{rendered}",
        path.display()
    );
}

fn fixture(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/file_fixtures");
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn java() -> MultilineConfig {
    MultilineConfig {
        start_pattern: r"^\d{4}-\d{2}-\d{2} ".into(),
        condition_pattern: r"^\d{4}-\d{2}-\d{2} ".into(),
        mode: MultilineMode::HaltBefore,
        timeout: Duration::from_secs(1),
    }
}

#[test]
fn golden_cri_pod_log() {
    let recs = decode(Format::Auto, None, &fixture("cri.log"));
    assert_eq!(recs.len(), 12);
    golden("cri", &recs);
}

#[test]
fn golden_docker_json_file_log() {
    let recs = decode(Format::Docker, None, &fixture("docker.log"));
    assert_eq!(recs.len(), 5);
    golden("docker", &recs);
}

#[test]
fn golden_java_log_with_multiline() {
    let recs = decode(Format::Plain, Some(&java()), &fixture("java.log"));
    assert_eq!(recs.len(), 4);
    golden("java", &recs);
}

/// `(stream, body, severity_number)` per record.
type Want<'a> = &'a [(Option<&'a str>, &'a str, i32)];

#[test]
fn format_table() {
    let cases: &[(&str, Format, &str, Want<'_>)] = &[
        (
            "cri_full_line",
            Format::Cri,
            "2024-01-15T10:30:00Z stdout F hello\n",
            &[(Some("stdout"), "hello", 0)],
        ),
        (
            "cri_partials_join",
            Format::Cri,
            "2024-01-15T10:30:00Z stdout P a\n2024-01-15T10:30:00Z stdout P b\n2024-01-15T10:30:00Z stdout F c\n",
            &[(Some("stdout"), "abc", 0)],
        ),
        (
            "cri_streams_interleave",
            Format::Cri,
            "2024-01-15T10:30:00Z stdout P out-\n2024-01-15T10:30:00Z stderr P err-\n\
             2024-01-15T10:30:00Z stderr F 1\n2024-01-15T10:30:00Z stdout F 1\n",
            &[(Some("stderr"), "err-1", 0), (Some("stdout"), "out-1", 0)],
        ),
        (
            "cri_empty_message",
            Format::Cri,
            "2024-01-15T10:30:00Z stdout F \n",
            &[(Some("stdout"), "", 0)],
        ),
        (
            "docker_full_line",
            Format::Docker,
            "{\"log\":\"hi\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-15T10:30:00Z\"}\n",
            &[(Some("stderr"), "hi", 0)],
        ),
        (
            "docker_partial_joins",
            Format::Docker,
            "{\"log\":\"a\",\"stream\":\"stdout\",\"time\":\"2024-01-15T10:30:00Z\"}\n\
             {\"log\":\"b\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-15T10:30:00Z\"}\n",
            &[(Some("stdout"), "ab", 0)],
        ),
        (
            "plain_lines_and_crlf",
            Format::Plain,
            "one\r\ntwo\n\n",
            &[(None, "one", 0), (None, "two", 0), (None, "", 0)],
        ),
        (
            "auto_mixes_formats",
            Format::Auto,
            "2024-01-15T10:30:00Z stdout F cri\nplain\n{\"log\":\"docker\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-15T10:30:00Z\"}\n",
            &[
                (Some("stdout"), "cri", 0),
                (None, "plain", 0),
                (Some("stdout"), "docker", 0),
            ],
        ),
        (
            "severity_keyword",
            Format::Plain,
            "2024-01-15 10:30:00 ERROR boom\n[warn] careful\nnothing to see\n",
            &[
                (None, "2024-01-15 10:30:00 ERROR boom", 17),
                (None, "[warn] careful", 13),
                (None, "nothing to see", 0),
            ],
        ),
        (
            "severity_klog_and_logfmt",
            Format::Plain,
            "F0115 10:30:00.000000 1 main.go:1] fatal\nts=1 level=debug msg=x\n",
            &[
                (None, "F0115 10:30:00.000000 1 main.go:1] fatal", 21),
                (None, "ts=1 level=debug msg=x", 5),
            ],
        ),
        (
            "json_body_and_level",
            Format::Plain,
            "{\"lvl\":\"warn\",\"message\":\"disk 91%\"}\n{\"level\":60,\"msg\":\"pino fatal\"}\n",
            &[(None, "disk 91%", 13), (None, "pino fatal", 21)],
        ),
    ];
    for (name, format, input, want) in cases {
        let recs = decode(*format, None, input);
        let got: Vec<(Option<String>, String, i32)> = recs
            .iter()
            .map(|r| {
                let stream = attr(r, "log.iostream").map(|v| v.as_str().unwrap().to_string());
                (stream, body(r), r.severity_number)
            })
            .collect();
        let want: Vec<(Option<String>, String, i32)> = want
            .iter()
            .map(|(s, b, n)| (s.map(str::to_string), b.to_string(), *n))
            .collect();
        assert_eq!(got, want, "case {name}");
    }
}

#[test]
fn json_field_types() {
    let recs = decode(
        Format::Plain,
        None,
        r#"{"msg":"m","int":-3,"float":1.5,"bool":true,"null":null,"obj":{"a":[1,"x",{"b":false}]},"trace_id":"abc"}"#,
    );
    let r = &recs[0];
    assert_eq!(body(r), "m");
    assert_eq!(attr(r, "int"), Some(json!({"int": -3})));
    assert_eq!(attr(r, "float"), Some(json!({"double": 1.5})));
    assert_eq!(attr(r, "bool"), Some(json!(true)));
    assert_eq!(attr(r, "null"), Some(Json::Null));
    assert_eq!(
        attr(r, "obj"),
        Some(json!({"a": [{"int": 1}, "x", {"b": false}]}))
    );
    assert_eq!(
        attr(r, "trace_id"),
        Some(json!("abc")),
        "kept for the correlation transform"
    );
    assert_eq!(attr(r, "log.file.path"), Some(json!(PATH)));
}

#[test]
fn multiline_stack_traces() {
    let python = MultilineConfig {
        start_pattern: r"^Traceback".into(),
        condition_pattern: r"^\s".into(),
        mode: MultilineMode::ContinuePast,
        timeout: Duration::from_secs(1),
    };
    let go = MultilineConfig {
        start_pattern: r"^panic: ".into(),
        condition_pattern: r"^(time=|\{)".into(),
        mode: MultilineMode::HaltBefore,
        timeout: Duration::from_secs(1),
    };
    let java_trace = "2024-01-15 10:30:00 ERROR failed\n\
java.lang.RuntimeException: x\n\tat a.B.c(B.java:1)\nCaused by: java.io.IOException\n\t... 3 more\n\
2024-01-15 10:30:01 INFO next\n";
    let python_trace = "starting\nTraceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    main()\n\
ZeroDivisionError: division by zero\nafter\n";
    let go_trace = "time=1 level=info msg=ok\npanic: runtime error: index out of range [3] with length 3\n\n\
goroutine 1 [running]:\nmain.main()\n\t/app/main.go:10 +0x1d\nexit status 2\ntime=2 level=info msg=restarted\n";
    let cases: &[(&str, &MultilineConfig, &str, &[&str])] = &[
        (
            "java",
            &java(),
            java_trace,
            &[
                "2024-01-15 10:30:00 ERROR failed\njava.lang.RuntimeException: x\n\tat a.B.c(B.java:1)\nCaused by: java.io.IOException\n\t... 3 more",
                "2024-01-15 10:30:01 INFO next",
            ],
        ),
        (
            "python",
            &python,
            python_trace,
            &[
                "starting",
                "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    main()\nZeroDivisionError: division by zero",
                "after",
            ],
        ),
        (
            "go_panic",
            &go,
            go_trace,
            &[
                "time=1 level=info msg=ok",
                "panic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:10 +0x1d\nexit status 2",
                "time=2 level=info msg=restarted",
            ],
        ),
    ];
    for (name, cfg, input, want) in cases {
        let got: Vec<String> = decode(Format::Plain, Some(cfg), input)
            .iter()
            .map(body)
            .collect();
        assert_eq!(got, *want, "case {name}");
    }
    // Per stream: a stderr stack trace does not swallow interleaved stdout lines.
    let cri = "2024-01-15T10:30:00Z stderr F 2024-01-15 10:30:00 ERROR failed\n\
2024-01-15T10:30:00Z stdout F 2024-01-15 10:30:00 INFO request\n\
2024-01-15T10:30:00Z stderr F \tat a.B.c(B.java:1)\n\
2024-01-15T10:30:00Z stdout F 2024-01-15 10:30:00 INFO response\n";
    let got: Vec<String> = decode(Format::Cri, Some(&java()), cri)
        .iter()
        .map(body)
        .collect();
    assert_eq!(
        got,
        [
            "2024-01-15 10:30:00 INFO request",
            "2024-01-15 10:30:00 ERROR failed\n\tat a.B.c(B.java:1)",
            "2024-01-15 10:30:00 INFO response",
        ]
    );
}
