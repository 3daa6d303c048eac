//! Spans → RED series.

#[path = "ingest_support/payload.rs"]
mod payload;

use argus_detector::ingest::sketch::RELATIVE_ACCURACY;
use argus_detector::ingest::{GroupBy, Ingest, IngestConfig, SpanKindName, StepPoint};
use payload::*;

fn ingest() -> Ingest {
    Ingest::new(IngestConfig::default()).unwrap()
}

fn red(ing: &Ingest, pts: &[StepPoint], name: &str, ts: i64) -> Option<f64> {
    value_at(ing, pts, name, ts)
}

/// Rates, error ratio and latency quantiles of one step, table-driven.
#[test]
fn red_values_per_step() {
    type Case = (&'static str, usize, usize, Box<dyn Fn(usize) -> f64>);
    let cases: Vec<Case> = vec![
        ("all fine", 200, 0, Box::new(|i| 0.010 + 0.0001 * i as f64)),
        (
            "7 % errors",
            100,
            7,
            Box::new(|i| 0.002 * (1 + i % 50) as f64),
        ),
        ("one request", 1, 1, Box::new(|_| 1.25)),
        (
            "heavy tail",
            1000,
            30,
            Box::new(|i| {
                if i % 100 == 0 {
                    4.0 + i as f64 * 1e-3
                } else {
                    0.02 + (i % 7) as f64 * 1e-3
                }
            }),
        ),
    ];
    for (name, n, errors, dur) in cases {
        let mut ing = ingest();
        let t = T0 as f64;
        let mut durs: Vec<f64> = (0..n).map(&dur).collect();
        let spans_: Vec<_> = (0..n)
            .map(|i| {
                span(
                    "GET /pay",
                    t + 9.0 * i as f64 / n as f64,
                    durs[i],
                    i < errors,
                    (i % 250) as u8 + 1,
                )
            })
            .collect();
        let st = ing.ingest(&spans(resource("checkout"), spans_), T0 + 9);
        assert_eq!(st.accepted, n as u64, "{name}");
        let pts = ing.flush(T0 + 30);
        assert_eq!(
            red(&ing, &pts, "span.requests", T0),
            Some(n as f64 / 10.0),
            "{name}"
        );
        assert_eq!(
            red(&ing, &pts, "span.errors", T0),
            Some(errors as f64 / 10.0),
            "{name}"
        );
        assert_eq!(
            red(&ing, &pts, "span.error_ratio", T0),
            Some(errors as f64 / n as f64),
            "{name}"
        );
        durs.sort_by(f64::total_cmp);
        for (q, sfx) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
            let exact = durs[(q * (n - 1) as f64).floor() as usize];
            let got = red(&ing, &pts, &format!("span.latency.{sfx}"), T0).unwrap();
            assert!(
                close(got, exact, RELATIVE_ACCURACY + 1e-9),
                "{name} {sfx}: {got} vs exact {exact}"
            );
        }
        // The series carries the RED identity.
        let p = select(&ing, &pts, "span.requests", &[]).next().unwrap();
        assert_eq!(
            ing.key(p.series).unwrap().to_string(),
            r#"span.requests{namespace="prod",operation="GET /pay",service="checkout",span_kind="server"}"#
        );
    }
}

#[test]
fn exemplars_name_the_slowest_and_the_failing_traces() {
    let mut ing = ingest();
    let t = T0 as f64;
    // trace 1..=20, duration grows with the id; errors on 3, 4 and 5.
    let s: Vec<_> = (1..=20u8)
        .map(|i| {
            span(
                "POST /charge",
                t + 1.0,
                i as f64 * 0.01,
                (3..=5).contains(&i),
                i,
            )
        })
        .collect();
    ing.ingest(&spans(resource("payments"), s), T0 + 2);
    let pts = ing.flush(T0 + 30);
    let ex = |name: &str| {
        select(&ing, &pts, name, &[])
            .next()
            .unwrap()
            .exemplars
            .clone()
    };
    let ids = |v: &[u8]| v.iter().map(|b| [*b; 16]).collect::<Vec<_>>();
    assert_eq!(ex("span.latency.p99"), ids(&[20, 19, 18]));
    assert_eq!(ex("span.errors"), ids(&[5, 4, 3]));
    assert_eq!(ex("span.error_ratio"), ids(&[5, 4, 3]));
    assert_eq!(ex("span.requests"), ids(&[20, 19, 18, 5, 4, 3]));
}

#[test]
fn which_spans_count() {
    let mut ing = ingest();
    let t = T0 as f64;
    let mut client = span("GET /upstream", t + 1.0, 0.1, false, 1);
    client.kind = 3;
    let mut internal_root = span("nightly-reconcile", t + 1.0, 3.0, false, 2);
    internal_root.kind = 1;
    internal_root.parent_span_id.clear();
    let mut internal_child = span("serialize", t + 1.0, 0.001, false, 3);
    internal_child.kind = 1;
    let mut consumer = span("orders process", t + 1.0, 0.2, false, 4);
    consumer.kind = 5;
    let server = span("GET /pay", t + 1.0, 0.05, false, 5);
    let mut broken = span("GET /pay", t + 1.0, 0.05, false, 6);
    broken.start_time_unix_nano = broken.end_time_unix_nano + 1;
    let st = ing.ingest(
        &spans(
            resource("checkout"),
            vec![
                client,
                internal_root,
                internal_child,
                consumer,
                server,
                broken,
            ],
        ),
        T0 + 2,
    );
    assert_eq!(
        (st.received, st.accepted, st.ignored, st.rejected()),
        (6, 5, 2, 1)
    );
    let pts = ing.flush(T0 + 30);
    let mut ops: Vec<String> = select(&ing, &pts, "span.requests", &[])
        .filter(|p| p.ts == T0)
        .map(|p| {
            let k = ing.key(p.series).unwrap();
            format!(
                "{}/{}",
                k.label("operation").unwrap(),
                k.label("span_kind").unwrap()
            )
        })
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            "GET /pay/server",
            "nightly-reconcile/internal",
            "orders process/consumer"
        ]
    );

    // Configurable: client spans only, no roots, grouped by pod too.
    let mut cfg = IngestConfig::default();
    cfg.spans.kinds = vec![SpanKindName::Client];
    cfg.spans.root_spans = false;
    cfg.spans.group_by = vec![GroupBy::Namespace, GroupBy::Pod];
    let mut ing = Ingest::<()>::new(cfg).unwrap();
    let mut client = span("GET /upstream", t + 1.0, 0.1, false, 1);
    client.kind = 3;
    let st = ing.ingest(
        &spans(
            resource("checkout"),
            vec![client, span("GET /pay", t + 1.0, 0.05, false, 5)],
        ),
        T0 + 2,
    );
    assert_eq!(st.ignored, 1);
    let pts = ing.flush(T0 + 30);
    let p = select(&ing, &pts, "span.requests", &[]).next().unwrap();
    assert_eq!(ing.key(p.series).unwrap().label("pod"), Some("checkout-0"));
}

/// Request and error rates are zero-filled while the operation is known;
/// ratio and latency have no value without requests.
#[test]
fn quiet_steps_are_zeros() {
    let mut ing = ingest();
    let t = T0 as f64;
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", t + 1.0, 0.05, true, 1)],
        ),
        T0 + 2,
    );
    let pts = ing.flush(T0 + 50);
    assert_eq!(
        values(&ing, &pts, "span.requests", &[]),
        vec![(T0, 0.1), (T0 + 10, 0.0), (T0 + 20, 0.0), (T0 + 30, 0.0)]
    );
    assert_eq!(
        values(&ing, &pts, "span.errors", &[]),
        vec![(T0, 0.1), (T0 + 10, 0.0), (T0 + 20, 0.0), (T0 + 30, 0.0)]
    );
    assert_eq!(values(&ing, &pts, "span.error_ratio", &[]), vec![(T0, 1.0)]);
    assert_eq!(values(&ing, &pts, "span.latency.p50", &[]).len(), 1);
    // Zero-fill stops idle_after (1 h) after the last data.
    let pts = ing.flush(T0 + 2 * 3600);
    let zeros = values(&ing, &pts, "span.requests", &[]);
    assert_eq!(
        zeros.last().unwrap().0,
        T0 + 3600,
        "last zero is idle_after past the data"
    );
    assert!(zeros.iter().all(|(_, v)| *v == 0.0));
    assert_eq!(zeros.len(), 357, "T0+40 … T0+3600");
}

/// Spans are bucketed by their end time, not by arrival, and the RED of
/// two services stays apart.
#[test]
fn bucketed_by_end_time_per_service() {
    let mut ing = ingest();
    let t = T0 as f64;
    // Started in step T0, ended in step T0+10.
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", t + 12.0, 5.0, false, 1)],
        ),
        T0 + 13,
    );
    ing.ingest(
        &spans(
            resource("cart"),
            vec![span("GET /pay", t + 3.0, 0.5, false, 2)],
        ),
        T0 + 14,
    );
    let pts = ing.flush(T0 + 40);
    assert_eq!(
        values(&ing, &pts, "span.requests", &[("service", "checkout")])[0],
        (T0 + 10, 0.1)
    );
    assert_eq!(
        values(&ing, &pts, "span.requests", &[("service", "cart")])[0],
        (T0, 0.1)
    );
    assert!(close(
        values(&ing, &pts, "span.latency.p50", &[("service", "checkout")])[0].1,
        5.0,
        RELATIVE_ACCURACY
    ));
}

/// `argus_detector_span_latency_seconds`: the spans RED counts land in
/// their service's buckets, a bucket's exemplar is the trace id of a span
/// in it, and services beyond the cap share `service="_other"`.
#[test]
fn latency_histogram_with_exemplars_per_service_capped() {
    let mut cfg = IngestConfig::default();
    cfg.spans.latency_histogram_services = 2;
    let mut reg = prometheus_client::registry::Registry::with_prefix("argus_detector");
    let mut ing: Ingest = cfg.build(&mut reg).unwrap();
    let t = T0 as f64;
    // checkout: 3 fast spans (7 ms) and one slow (1.5 s) in trace 0x2a.
    let mut s: Vec<_> = (0..3)
        .map(|i| span("GET /pay", t + 1.0, 0.007, false, i + 1))
        .collect();
    s.push(span("GET /pay", t + 2.0, 1.5, true, 0x2a));
    // A CLIENT span is not counted for RED, nor in the histogram.
    let mut client = span("call bank", t + 2.0, 3.0, false, 9);
    client.kind = 3;
    s.push(client);
    ing.ingest(&spans(resource("checkout"), s), T0 + 3);
    ing.ingest(
        &spans(
            resource("ledger"),
            vec![span("post", t + 1.0, 0.2, false, 7)],
        ),
        T0 + 3,
    );
    for svc in ["fraud", "mailer"] {
        ing.ingest(
            &spans(resource(svc), vec![span("x", t + 1.0, 0.02, false, 8)]),
            T0 + 3,
        );
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    let line = |prefix: &str| -> &str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix}:\n{text}"))
    };
    assert!(
        text.contains("# TYPE argus_detector_span_latency_seconds histogram"),
        "{text}"
    );
    let co = r#"service="checkout",namespace="prod""#;
    assert!(
        line(&format!(
            "argus_detector_span_latency_seconds_count{{{co}}}"
        ))
        .ends_with(" 4")
    );
    assert!(
        line(&format!(
            "argus_detector_span_latency_seconds_bucket{{le=\"0.01\",{co}}}"
        ))
        .starts_with(&format!(
            "argus_detector_span_latency_seconds_bucket{{le=\"0.01\",{co}}} 3 # {{trace_id=\"0"
        )),
        "fast bucket: 3 spans, exemplar one of the fast traces\n{text}"
    );
    let slow = line(&format!(
        "argus_detector_span_latency_seconds_bucket{{le=\"2.5\",{co}}}"
    ));
    assert!(
        slow.starts_with(&format!(
            "argus_detector_span_latency_seconds_bucket{{le=\"2.5\",{co}}} 4 # {{trace_id=\"{}\"}} 1.5",
            "2a".repeat(16)
        )),
        "slow bucket names the slow trace: {slow}"
    );
    // Cap 2: checkout and ledger get their own; fraud and mailer share _other.
    assert!(line(r#"argus_detector_span_latency_seconds_count{service="ledger""#).ends_with(" 1"));
    assert!(
        line(r#"argus_detector_span_latency_seconds_count{service="_other",namespace=""}"#)
            .ends_with(" 2")
    );
    assert!(
        !text.contains(r#"service="fraud""#) && !text.contains(r#"service="mailer""#),
        "{text}"
    );

    // Off: no family at all.
    let mut cfg = IngestConfig::default();
    cfg.spans.latency_histogram_services = 0;
    let mut reg = prometheus_client::registry::Registry::with_prefix("argus_detector");
    let _ing: Ingest = cfg.build(&mut reg).unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(!text.contains("span_latency"), "{text}");
}
