//! The exposition parser and its translation to OTLP: a golden test on a
//! node_exporter-like exposition, table-driven line cases, OpenMetrics
//! specifics, and a property that no input panics.

use std::path::Path;

use argus_agent::sources::scrape::exposition::{Format, MetricType, parse};
use argus_agent::sources::scrape::translation::{StartTimes, translate};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000_000_000_000;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/scrape")
        .join(name)
}

fn attrs(a: &[KeyValue]) -> String {
    let parts: Vec<String> = a
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => format!("{s:?}"),
                other => format!("{other:?}"),
            };
            format!("{}={v}", kv.key)
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn ts(start: u64, t: u64) -> String {
    let rel = |x: u64| {
        if x == 0 {
            "0".to_string()
        } else {
            format!("now{:+}ms", (x as i128 - NOW as i128) / 1_000_000)
        }
    };
    format!("start={} t={}", rel(start), rel(t))
}

/// A readable, stable rendering of OTLP metrics for golden files.
fn render(metrics: &[Metric]) -> String {
    let mut out = String::new();
    for m in metrics {
        let kind = match &m.data {
            Some(Data::Sum(s)) => format!(
                "Sum(monotonic={}, temporality={})",
                s.is_monotonic, s.aggregation_temporality
            ),
            Some(Data::Gauge(_)) => "Gauge".into(),
            Some(Data::Histogram(h)) => {
                format!("Histogram(temporality={})", h.aggregation_temporality)
            }
            Some(Data::Summary(_)) => "Summary".into(),
            other => format!("{other:?}"),
        };
        out += &format!(
            "{} {kind} unit={:?} description={:?}\n",
            m.name, m.unit, m.description
        );
        match &m.data {
            Some(Data::Sum(s)) => {
                for p in &s.data_points {
                    out += &format!(
                        "  {} {} {}\n",
                        attrs(&p.attributes),
                        num(&p.value),
                        ts(p.start_time_unix_nano, p.time_unix_nano)
                    );
                }
            }
            Some(Data::Gauge(g)) => {
                for p in &g.data_points {
                    out += &format!(
                        "  {} {} {}\n",
                        attrs(&p.attributes),
                        num(&p.value),
                        ts(p.start_time_unix_nano, p.time_unix_nano)
                    );
                }
            }
            Some(Data::Histogram(h)) => {
                for p in &h.data_points {
                    out += &format!(
                        "  {} count={} sum={:?} bounds={:?} buckets={:?} {}\n",
                        attrs(&p.attributes),
                        p.count,
                        p.sum,
                        p.explicit_bounds,
                        p.bucket_counts,
                        ts(p.start_time_unix_nano, p.time_unix_nano)
                    );
                }
            }
            Some(Data::Summary(s)) => {
                for p in &s.data_points {
                    let q: Vec<String> = p
                        .quantile_values
                        .iter()
                        .map(|q| format!("{}:{}", q.quantile, q.value))
                        .collect();
                    out += &format!(
                        "  {} count={} sum={} quantiles=[{}] {}\n",
                        attrs(&p.attributes),
                        p.count,
                        p.sum,
                        q.join(" "),
                        ts(p.start_time_unix_nano, p.time_unix_nano)
                    );
                }
            }
            _ => {}
        }
    }
    out
}

fn num(v: &Option<number_data_point::Value>) -> String {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => format!("{d}"),
        Some(number_data_point::Value::AsInt(i)) => format!("{i}i"),
        None => "none".into(),
    }
}

/// Golden: a node_exporter-style exposition (summary, counters, gauges with
/// escaped label values, NaN, a histogram, an untyped sample with -Inf and a
/// timestamp) into OTLP. Regenerate with `UPDATE_GOLDEN=1` and review the
/// diff by eye.
#[test]
fn golden_node_exporter_exposition() {
    let text = std::fs::read_to_string(fixture("node_exporter.prom")).unwrap();
    let exp = parse(&text, Format::Prometheus);
    assert_eq!(exp.error_count, 0, "{:?}", exp.errors);
    let target = vec![("env".to_string(), "prod".to_string())];
    let translated = translate(&exp, &target, NOW, &mut StartTimes::default());
    assert_eq!(translated.dropped_samples, 0);
    let got = render(&translated.metrics);
    let golden = fixture("node_exporter.golden");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (UPDATE_GOLDEN=1 to create)");
    assert_eq!(got, want, "translation differs from {}", golden.display());
}

#[test]
fn sample_lines_table() {
    // (line, Some((name, labels, value, timestamp_ms))) or None for an error.
    type Want = Option<(
        &'static str,
        Vec<(&'static str, &'static str)>,
        f64,
        Option<i64>,
    )>;
    let cases: Vec<(&str, Want)> = vec![
        ("a 1", Some(("a", vec![], 1.0, None))),
        ("a_b:c 1.5e3", Some(("a_b:c", vec![], 1500.0, None))),
        (
            r#"a{b="c"} 1 1712345678901"#,
            Some(("a", vec![("b", "c")], 1.0, Some(1712345678901))),
        ),
        (r#"a{b="c",} 1"#, Some(("a", vec![("b", "c")], 1.0, None))),
        (
            r#"a{ b = "c" , d="e" } 2"#,
            Some(("a", vec![("b", "c"), ("d", "e")], 2.0, None)),
        ),
        (
            r#"a{b="x\"y\\z\nw"} 1"#,
            Some(("a", vec![("b", "x\"y\\z\nw")], 1.0, None)),
        ),
        (
            r#"a{b="unknown \q escape"} 1"#,
            Some(("a", vec![("b", "unknown \\q escape")], 1.0, None)),
        ),
        (
            r#"a{b="ünïcødé ✓"} 1"#,
            Some(("a", vec![("b", "ünïcødé ✓")], 1.0, None)),
        ),
        ("a{} 3", Some(("a", vec![], 3.0, None))),
        ("a +Inf", Some(("a", vec![], f64::INFINITY, None))),
        ("a -Inf", Some(("a", vec![], f64::NEG_INFINITY, None))),
        ("a inf", Some(("a", vec![], f64::INFINITY, None))),
        ("a\t7", Some(("a", vec![], 7.0, None))),
        ("a 1\r", Some(("a", vec![], 1.0, None))),
        (
            r#"{"my.metric", "my.label"="v"} 1"#,
            Some(("my.metric", vec![("my.label", "v")], 1.0, None)),
        ),
        ("a", None),
        ("a ", None),
        (r#"a{b="c" 1"#, None),
        ("a{b=c} 1", None),
        (r#"a{b="c} 1"#, None),
        ("a 1 2 3", None),
        (r#"a{b="1",b="2"} 1"#, None),
        ("1a 1", None),
        ("a 1 notatime", None),
        ("a 1_000", None),
        ("a one", None),
        (r#"a{1b="x"} 1"#, None),
        (r#"{"x"} 1 # {"y"} 2"#, None),
    ];
    for (line, want) in cases {
        let exp = parse(line, Format::Prometheus);
        match want {
            Some((name, labels, value, ts)) => {
                assert_eq!(exp.error_count, 0, "{line:?}: {:?}", exp.errors);
                let s = &exp.families[0].samples[0];
                assert_eq!(s.name, name, "{line:?}");
                let got: Vec<(&str, &str)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_eq!(got, labels, "{line:?}");
                assert_eq!(s.value, value, "{line:?}");
                assert_eq!(s.timestamp_ms, ts, "{line:?}");
            }
            None => {
                assert_eq!(exp.error_count, 1, "{line:?} should be rejected");
                assert_eq!(exp.sample_count(), 0, "{line:?}");
                assert_eq!(exp.errors[0].line, 1);
            }
        }
    }
    let nan = parse("a NaN", Format::Prometheus);
    assert!(nan.families[0].samples[0].value.is_nan());
}

#[test]
fn bad_lines_are_skipped_not_fatal() {
    let text = "# TYPE a counter\na_total 1\nthis is not a sample\nb 2\n# TYPE c nonsense\nc 3\n";
    let exp = parse(text, Format::Prometheus);
    assert_eq!(exp.error_count, 2);
    assert_eq!(exp.errors[0].line, 3);
    assert_eq!(exp.errors[1].line, 5);
    assert_eq!(exp.sample_count(), 3, "a, b and c still parsed");
}

#[test]
fn help_and_type_metadata() {
    let text = "# HELP x Line one\\nline two with \\\\ backslash\n# TYPE x gauge\nx 1\n# TYPE y untyped\ny 2\n";
    let exp = parse(text, Format::Prometheus);
    assert_eq!(
        exp.families[0].help.as_deref(),
        Some("Line one\nline two with \\ backslash")
    );
    assert_eq!(exp.families[0].kind, MetricType::Gauge);
    assert_eq!(exp.families[1].kind, MetricType::Unknown);
}

#[test]
fn openmetrics_counters_created_exemplars_unit_and_eof() {
    let text = r#"# TYPE rpc_seconds histogram
# UNIT rpc_seconds seconds
# HELP rpc_seconds RPC latency.
rpc_seconds_bucket{le="0.5"} 3 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 0.42 1799999999.5
rpc_seconds_bucket{le="+Inf"} 5
rpc_seconds_sum 2.5
rpc_seconds_count 5
rpc_seconds_created 1799990000.0
# TYPE jobs counter
jobs_total{queue="a"} 17 1800000000.250
jobs_created{queue="a"} 1799000000
# TYPE build info
build_info{version="1.2.3"} 1
# EOF
garbage after EOF is never read
"#;
    let exp = parse(text, Format::OpenMetrics);
    assert_eq!(exp.error_count, 0, "{:?}", exp.errors);
    let hist = &exp.families[0];
    assert_eq!(hist.unit.as_deref(), Some("seconds"));
    assert_eq!(hist.samples.len(), 5);
    assert_eq!(
        exp.families[1].samples[0].timestamp_ms,
        Some(1_800_000_000_250)
    );

    let t = translate(&exp, &[], NOW, &mut StartTimes::default());
    let by_name = |n: &str| {
        t.metrics
            .iter()
            .find(|m| m.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    let Some(Data::Histogram(h)) = &by_name("rpc_seconds").data else {
        panic!()
    };
    let p = &h.data_points[0];
    assert_eq!(
        p.start_time_unix_nano, 1_799_990_000_000_000_000,
        "from _created"
    );
    assert_eq!(p.explicit_bounds, vec![0.5]);
    assert_eq!(p.bucket_counts, vec![3, 2]);
    assert_eq!(
        hex::encode(&p.exemplars[0].trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(hex::encode(&p.exemplars[0].span_id), "00f067aa0ba902b7");
    assert_eq!(p.exemplars[0].time_unix_nano, 1_799_999_999_500_000_000);
    assert_eq!(by_name("rpc_seconds").unit, "seconds");

    // The counter keeps its exposed sample name, `_total` included.
    let Some(Data::Sum(s)) = &by_name("jobs_total").data else {
        panic!()
    };
    assert!(s.is_monotonic);
    assert_eq!(
        s.data_points[0].start_time_unix_nano,
        1_799_000_000_000_000_000
    );
    assert_eq!(s.data_points[0].time_unix_nano, 1_800_000_000_250_000_000);
    assert!(
        t.metrics.iter().all(|m| !m.name.ends_with("_created")),
        "_created is a start time, not a metric"
    );
    assert!(matches!(by_name("build_info").data, Some(Data::Gauge(_))));
}

#[test]
fn histograms_from_messy_exporters() {
    // Buckets out of order, no +Inf bucket, one non-monotonic bucket.
    let text = "# TYPE h histogram\nh_bucket{le=\"1\"} 5\nh_bucket{le=\"0.1\"} 2\nh_bucket{le=\"10\"} 4\nh_sum 9\nh_count 8\n";
    let t = translate(
        &parse(text, Format::Prometheus),
        &[],
        NOW,
        &mut StartTimes::default(),
    );
    let Some(Data::Histogram(h)) = &t.metrics[0].data else {
        panic!()
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds, vec![0.1, 1.0, 10.0]);
    assert_eq!(
        p.bucket_counts,
        vec![2, 3, 0, 3],
        "negative bucket clamped; overflow = count - last"
    );
    assert_eq!(p.count, 8);
    assert_eq!(p.sum, Some(9.0));

    // Two label sets make two points; `le` is not an attribute.
    let text = "# TYPE h histogram\nh_bucket{m=\"a\",le=\"+Inf\"} 1\nh_bucket{m=\"b\",le=\"+Inf\"} 2\nh_count{m=\"a\"} 1\nh_count{m=\"b\"} 2\n";
    let t = translate(
        &parse(text, Format::Prometheus),
        &[],
        NOW,
        &mut StartTimes::default(),
    );
    let Some(Data::Histogram(h)) = &t.metrics[0].data else {
        panic!()
    };
    assert_eq!(h.data_points.len(), 2);
    assert!(
        h.data_points
            .iter()
            .all(|p| p.attributes.len() == 1 && p.attributes[0].key == "m")
    );
    assert_eq!(h.data_points[1].bucket_counts, vec![2]);

    // A gauge histogram has no OTLP equivalent: counted as dropped.
    let text = "# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 1\ng_gcount 1\n";
    let t = translate(
        &parse(text, Format::OpenMetrics),
        &[],
        NOW,
        &mut StartTimes::default(),
    );
    assert!(t.metrics.is_empty());
    assert_eq!(t.dropped_samples, 2);
}

#[test]
fn counter_start_times_survive_scrapes_and_restart_on_reset() {
    let mut starts = StartTimes::default();
    let scrape = |v: u64, now: u64, starts: &mut StartTimes| {
        let text = format!("# TYPE c counter\nc_total{{k=\"v\"}} {v}\n");
        let t = translate(&parse(&text, Format::Prometheus), &[], now, starts);
        let Some(Data::Sum(s)) = &t.metrics[0].data else {
            panic!()
        };
        s.data_points[0].start_time_unix_nano
    };
    let s1 = scrape(10, NOW, &mut starts);
    assert_eq!(s1, NOW, "first sight starts the series");
    assert_eq!(
        scrape(15, NOW + 30, &mut starts),
        NOW,
        "same series keeps its start"
    );
    assert_eq!(
        scrape(3, NOW + 60, &mut starts),
        NOW + 60,
        "a decrease is a reset"
    );
    assert_eq!(starts.len(), 1);
    // A series that disappears is forgotten (bounded cache).
    translate(
        &parse("other 1\n", Format::Prometheus),
        &[],
        NOW + 90,
        &mut starts,
    );
    assert!(starts.is_empty());
}

#[test]
fn target_labels_win_and_clashing_labels_are_exported() {
    let text = "up_like{instance=\"inner\",env=\"dev\",x=\"1\"} 1\n";
    let target = vec![("env".to_string(), "prod".to_string())];
    let t = translate(
        &parse(text, Format::Prometheus),
        &target,
        NOW,
        &mut StartTimes::default(),
    );
    let Some(Data::Gauge(g)) = &t.metrics[0].data else {
        panic!()
    };
    let a = attrs(&g.data_points[0].attributes);
    assert_eq!(
        a,
        r#"{instance="inner",exported_env="dev",x="1",env="prod"}"#
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        for f in [Format::Prometheus, Format::OpenMetrics] {
            let exp = parse(&s, f);
            let _ = translate(&exp, &[], NOW, &mut StartTimes::default());
        }
    }

    /// Near-valid lines built from the grammar's own pieces reach the deep
    /// branches (escapes, exemplars, suffix matching) that random text
    /// rarely does.
    #[test]
    fn grammar_shaped_text_never_panics(parts in prop::collection::vec(prop_oneof![
        Just("# TYPE h histogram\n".to_string()),
        Just("# TYPE c counter\n".to_string()),
        Just("# TYPE s summary\n".to_string()),
        Just("# HELP h x\\ny\\\\\n".to_string()),
        Just("# EOF\n".to_string()),
        "[a-z_]{1,3}(_bucket|_sum|_count|_total|_created)?",
        Just("{".to_string()), Just("}".to_string()), Just("le=".to_string()),
        Just("quantile=".to_string()), Just("\"".to_string()), Just("\\".to_string()),
        Just(",".to_string()), Just(" ".to_string()), Just("\n".to_string()),
        Just(" # {trace_id=\"ab\"} 1 ".to_string()),
        "(\\+|-)?(Inf|NaN|[0-9]{1,4}(\\.[0-9]{1,3})?(e[0-9])?)",
        "\"[a-z0-9+.\\\\\"]{0,5}\"",
    ], 0..40)) {
        let text = parts.concat();
        for f in [Format::Prometheus, Format::OpenMetrics] {
            let exp = parse(&text, f);
            let mut starts = StartTimes::default();
            let _ = translate(&exp, &[("job".into(), "j".into())], NOW, &mut starts);
            let _ = translate(&exp, &[], NOW + 1, &mut starts);
        }
    }
}
