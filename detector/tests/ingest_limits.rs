//! Bounds: series and cardinality caps, idle eviction, the partial-success
//! answer, self-metrics, and series selection.

#[path = "ingest_support/payload.rs"]
mod payload;

use std::time::Duration;

use argus_detector::ingest::{Ingest, IngestConfig, Reason};
use argus_detector::registry::Matcher;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality::Delta;
use payload::*;
use prometheus_client::encoding::text::encode;

fn user_counter(
    service: &str,
    users: std::ops::Range<u32>,
    at: f64,
) -> argus_common::otlp::Payload {
    metrics(
        resource(service),
        vec![sum(
            "logins",
            Delta,
            true,
            users
                .map(|u| num(at, at - 1.0, 1.0, vec![kv("user_id", &u.to_string())]))
                .collect(),
        )],
    )
}

/// One service putting a user id in an attribute exhausts its own budget
/// for that metric, not the others'.
#[test]
fn cardinality_cap_contains_an_exploding_attribute() {
    let mut cfg = IngestConfig::default();
    cfg.series.max_per_name = 100;
    let mut ing = Ingest::<()>::new(cfg).unwrap();
    let t = T0 as f64 + 1.0;
    let st = ing.ingest(&user_counter("auth", 0..250, t), T0 + 2);
    assert_eq!(st.accepted, 100);
    assert_eq!(st.rejected_for(Reason::CardinalityLimit), 150);
    assert_eq!(
        st.message().unwrap(),
        "150 of 250 data points rejected: cardinality_limit=150"
    );
    // Another service's `logins`, and auth's other metrics, still get in.
    assert_eq!(
        ing.ingest(&user_counter("web", 0..10, t), T0 + 2).accepted,
        10
    );
    let other = metrics(
        resource("auth"),
        vec![gauge("sessions", vec![num(t, 0.0, 5.0, vec![])])],
    );
    assert_eq!(ing.ingest(&other, T0 + 2).accepted, 1);
    // The admitted series keep working.
    assert_eq!(
        ing.ingest(&user_counter("auth", 0..100, t + 1.0), T0 + 3)
            .rejected(),
        0
    );
    assert_eq!(ing.registry().telemetry().dropped("cardinality_limit"), 150);
}

#[test]
fn series_cap_refuses_whole_groups() {
    let mut cfg = IngestConfig::default();
    cfg.series.max_series = 10;
    cfg.series.max_per_name = 10;
    let mut ing = Ingest::<()>::new(cfg).unwrap();
    let t = T0 as f64 + 1.0;
    // A RED group is 6 series: the first fits, the second does not — and
    // is not half-registered.
    let st = ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("a", t, 0.1, false, 1), span("b", t, 0.1, false, 2)],
        ),
        T0 + 2,
    );
    assert_eq!((st.accepted, st.rejected_for(Reason::SeriesLimit)), (1, 1));
    assert_eq!(ing.registry().len(), 6);
    assert_eq!(ing.groups(), 1);
}

/// Idle series go after `idle_after` with every sibling of their source,
/// hand back the caller's state, and come back as new series on new data.
#[test]
fn idle_eviction_returns_state_and_frees_the_whole_source() {
    let mut cfg = IngestConfig::default();
    cfg.series.idle_after = Duration::from_secs(600);
    let mut ing = Ingest::<u32>::new(cfg).unwrap();
    let t = T0 as f64;
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", t + 1.0, 0.1, false, 1)],
        ),
        T0 + 2,
    );
    ing.ingest(
        &metrics(
            resource("api"),
            vec![gauge("g", vec![num(t + 1.0, 0.0, 1.0, vec![])])],
        ),
        T0 + 2,
    );
    let pts = ing.flush(T0 + 20);
    // The caller attaches state to what it scores.
    for p in &pts {
        *ing.state_mut(p.series).unwrap() += 1;
    }
    // The gauge keeps reporting; the span operation goes quiet.
    for m in 1..=12 {
        let at = T0 + m * 60;
        ing.ingest(
            &metrics(
                resource("api"),
                vec![gauge("g", vec![num(at as f64, 0.0, 1.0, vec![])])],
            ),
            at + 1,
        );
        ing.flush(at + 20);
    }
    let evicted = ing.evict_idle(T0 + 12 * 60 + 20);
    let mut names: Vec<&str> = evicted.iter().map(|e| e.key.name()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "span.error_ratio",
            "span.errors",
            "span.latency.p50",
            "span.latency.p90",
            "span.latency.p99",
            "span.requests"
        ]
    );
    let requests = evicted
        .iter()
        .find(|e| e.key.name() == "span.requests")
        .unwrap();
    assert_eq!(requests.state, 1, "the caller's state comes back");
    assert_eq!(ing.registry().len(), 1, "the gauge stays");
    assert_eq!(ing.groups(), 1);
    assert_eq!(ing.registry().telemetry().dropped("evicted_idle"), 6);
    assert!(ing.series(requests.id).is_none());

    // New data for the operation makes a new series.
    let at = (T0 + 13 * 60) as f64;
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", at, 0.1, false, 1)],
        ),
        T0 + 13 * 60 + 1,
    );
    let pts = ing.flush(T0 + 13 * 60 + 20);
    let p = select(&ing, &pts, "span.requests", &[]).next().unwrap();
    assert_ne!(p.series, requests.id);
    assert_eq!(ing.registry().state(p.series), Some(&0));
}

/// A source that comes back just before the idle deadline is not evicted
/// with its data still unflushed.
#[test]
fn eviction_before_flush_keeps_fresh_data() {
    let cfg = IngestConfig {
        series: argus_detector::ingest::SeriesConfig {
            idle_after: Duration::from_secs(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut ing = Ingest::<()>::new(cfg).unwrap();
    let t = T0 as f64;
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", t + 1.0, 0.1, false, 1)],
        ),
        T0 + 2,
    );
    ing.flush(T0 + 20);
    // Quiet for almost ten minutes, then one request, then an eviction
    // pass before the step holding it has closed.
    let back = T0 + 599;
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", back as f64, 0.1, true, 2)],
        ),
        back,
    );
    assert!(ing.evict_idle(back + 5).is_empty());
    let pts = ing.flush(back + 30);
    assert_eq!(value_at(&ing, &pts, "span.errors", T0 + 590), Some(0.1));
}

#[test]
fn self_metrics_are_exported_with_bounded_labels() {
    let mut prom = prometheus_client::registry::Registry::default();
    let cfg = IngestConfig::default();
    let mut ing: Ingest = cfg
        .build(prom.sub_registry_with_prefix("argus_detector"))
        .unwrap();
    let t = T0 as f64;
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", t + 1.0, 0.1, false, 1)],
        ),
        T0 + 2,
    );
    ing.ingest(
        &logs(
            resource("checkout"),
            vec![record(t + 1.0, 17, "payment declined", None)],
        ),
        T0 + 2,
    );
    ing.flush(T0 + 20);
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", t + 1.0, 0.1, false, 1)],
        ),
        T0 + 21,
    );
    let mut text = String::new();
    encode(&mut text, &prom).unwrap();
    for line in [
        "argus_detector_ingest_items_total{signal=\"traces\"} 2",
        "argus_detector_ingest_items_total{signal=\"logs\"} 1",
        "argus_detector_ingest_items_total{signal=\"metrics\"} 0",
        "argus_detector_ingest_rejected_items_total{reason=\"late\"} 1",
        "argus_detector_ingest_rejected_items_total{reason=\"series_limit\"} 0",
        "argus_detector_late_points_total 1",
        "argus_detector_templates_active 1",
        "argus_detector_templates_evicted_total 0",
        // 6 RED + log.records + log.template (error) + new_error_templates
        "argus_detector_series_active 9",
        "argus_detector_series_dropped_total{reason=\"evicted_idle\"} 0",
        "argus_detector_series_dropped_total{reason=\"cardinality_limit\"} 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // The per-service latency histogram (exemplars for Grafana) is an
    // output, capped by `spans.latency_histogram_services`; no other family
    // may carry a series' labels.
    assert!(
        text.lines()
            .filter(|l| !l.contains("span_latency_seconds"))
            .all(|l| !l.contains("checkout")),
        "no series label leaks into self-metrics"
    );

    let bad = IngestConfig {
        step: Duration::from_millis(100),
        ..Default::default()
    };
    let err = bad
        .build::<()>(&mut prometheus_client::registry::Registry::default())
        .unwrap_err();
    assert!(err.to_string().contains("ingest.step"), "{err}");
}

#[test]
fn series_are_selectable_for_the_api() {
    let mut ing = Ingest::<()>::new(IngestConfig::default()).unwrap();
    let t = T0 as f64;
    ing.ingest(
        &spans(
            resource("checkout"),
            vec![span("GET /pay", t + 1.0, 0.1, false, 1)],
        ),
        T0 + 2,
    );
    ing.ingest(
        &spans(
            resource("cart"),
            vec![span("GET /cart", t + 1.0, 0.1, false, 1)],
        ),
        T0 + 2,
    );
    let sel = |s: &str| {
        let m = Matcher::parse(s).unwrap();
        let mut v: Vec<String> = ing
            .registry()
            .select(&m)
            .map(|s| s.key.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(sel("span.latency.*{service=\"cart\"}").len(), 3);
    assert_eq!(
        sel("span.requests{signal=\"traces\",service!=\"cart\"}"),
        [
            r#"span.requests{namespace="prod",operation="GET /pay",service="checkout",span_kind="server"}"#
        ]
    );
    assert!(sel("{signal=\"logs\"}").is_empty());
}
