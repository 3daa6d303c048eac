//! OTLP metrics → per-step series, one table or scenario per conversion.

#[path = "ingest_support/payload.rs"]
mod payload;

use argus_detector::ingest::{Ingest, IngestConfig, Reason};
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality::{
    Cumulative, Delta, Unspecified,
};
use payload::*;

fn ingest() -> Ingest {
    Ingest::new(IngestConfig::default()).unwrap()
}

/// Ingests each payload at its own "arrival" time, then flushes far
/// enough ahead to close every step.
fn run(
    ing: &mut Ingest,
    batches: Vec<(f64, argus_common::otlp::Payload)>,
) -> Vec<argus_detector::ingest::StepPoint> {
    let mut last = T0;
    for (at, p) in batches {
        let now = at.ceil() as i64;
        let st = ing.ingest(&p, now);
        assert_eq!(st.rejected(), 0, "{:?}", st.message());
        last = last.max(now);
    }
    ing.flush(last + 100)
}

#[test]
fn gauge_is_the_mean_of_each_step() {
    let mut ing = ingest();
    let t = T0 as f64;
    let pts = run(
        &mut ing,
        vec![
            (
                t + 1.0,
                metrics(
                    resource("api"),
                    vec![gauge("pool.size", vec![num(t + 1.0, 0.0, 10.0, vec![])])],
                ),
            ),
            (
                t + 5.0,
                metrics(
                    resource("api"),
                    vec![gauge("pool.size", vec![num(t + 5.0, 0.0, 20.0, vec![])])],
                ),
            ),
            (
                t + 12.0,
                metrics(
                    resource("api"),
                    vec![gauge("pool.size", vec![num(t + 12.0, 0.0, 40.0, vec![])])],
                ),
            ),
            // A gap at T0+20: no zero-fill for metrics.
            (
                t + 31.0,
                metrics(
                    resource("api"),
                    vec![gauge("pool.size", vec![num(t + 31.0, 0.0, 7.0, vec![])])],
                ),
            ),
        ],
    );
    assert_eq!(
        values(
            &ing,
            &pts,
            "pool.size",
            &[("service", "api"), ("pod", "api-0"), ("node", "node-a")]
        ),
        vec![(T0, 15.0), (T0 + 10, 40.0), (T0 + 30, 7.0)]
    );
}

/// Cumulative monotonic sums: per-second rate, reset-aware, table-driven.
#[test]
fn cumulative_counter_rates() {
    type Case = (&'static str, Vec<(f64, f64, f64)>, Vec<(i64, f64)>);
    let t = T0 as f64;
    // (point time offset, start time offset, value) → (step offset, rate)
    let cases: Vec<Case> = vec![
        (
            "steady, first point is a baseline",
            vec![
                (5.0, -1000.0, 100.0),
                (15.0, -1000.0, 150.0),
                (25.0, -1000.0, 200.0),
            ],
            vec![(10, 5.0), (20, 5.0)],
        ),
        (
            "reset: value drops, the new value counts from 0",
            vec![
                (5.0, -1000.0, 100.0),
                (15.0, -1000.0, 150.0),
                (25.0, -1000.0, 20.0),
                (35.0, -1000.0, 70.0),
            ],
            vec![(10, 5.0), (20, 2.0), (30, 5.0)],
        ),
        (
            "reset: start time changes (restart between points)",
            vec![
                (5.0, -1000.0, 100.0),
                (15.0, -1000.0, 150.0),
                (25.0, 21.0, 400.0),
            ],
            vec![(10, 5.0), (20, 100.0)],
        ),
        (
            "two points in one step",
            vec![
                (5.0, -1000.0, 0.0),
                (11.0, -1000.0, 30.0),
                (19.0, -1000.0, 70.0),
            ],
            vec![(10, 5.0)],
        ),
        (
            "counter created after the detector started counts in full",
            vec![(12.0, 10.0, 60.0), (22.0, 10.0, 80.0)],
            vec![(10, 30.0), (20, 2.0)],
        ),
    ];
    for (name, points, want) in cases {
        let mut ing = ingest();
        // The detector is running before any point arrives.
        ing.flush(T0 + 1);
        let batches = points
            .iter()
            .map(|&(at, start, v)| {
                (
                    t + at + 0.5,
                    metrics(
                        resource("api"),
                        vec![sum(
                            "http.requests",
                            Cumulative,
                            true,
                            vec![num(t + at, t + start, v, vec![])],
                        )],
                    ),
                )
            })
            .collect();
        let pts = run(&mut ing, batches);
        let got = values(&ing, &pts, "http.requests.rate", &[]);
        let want: Vec<(i64, f64)> = want.into_iter().map(|(o, v)| (T0 + o, v)).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn delta_sums_and_updown_counters() {
    let mut ing = ingest();
    let t = T0 as f64;
    let pts = run(
        &mut ing,
        vec![(
            t + 9.0,
            metrics(
                resource("api"),
                vec![
                    sum(
                        "bytes.sent",
                        Delta,
                        true,
                        vec![
                            num(t + 2.0, t, 300.0, vec![]),
                            num(t + 7.0, t + 2.0, 200.0, vec![]),
                        ],
                    ),
                    // Cumulative non-monotonic: a gauge, under its own name.
                    sum(
                        "queue.length",
                        Cumulative,
                        false,
                        vec![
                            num(t + 3.0, t - 100.0, 4.0, vec![]),
                            num(t + 8.0, t - 100.0, 8.0, vec![]),
                        ],
                    ),
                    // A delta non-monotonic sum: net change per second.
                    sum(
                        "pool.delta",
                        Delta,
                        false,
                        vec![num(t + 4.0, t, -30.0, vec![])],
                    ),
                ],
            ),
        )],
    );
    assert_eq!(value_at(&ing, &pts, "bytes.sent.rate", T0), Some(50.0));
    assert_eq!(value_at(&ing, &pts, "queue.length", T0), Some(6.0));
    assert_eq!(value_at(&ing, &pts, "pool.delta.rate", T0), Some(-3.0));
}

/// Cumulative histograms: rate, mean and quantiles from the step's bucket
/// increases, against distributions whose quantiles are known.
#[test]
fn histogram_quantiles_match_known_distributions() {
    let t = T0 as f64;
    // Uniform on [0, 1) with 0.05-wide buckets: linear interpolation is exact.
    let uniform_bounds: Vec<f64> = (1..20).map(|i| i as f64 * 0.05).collect();
    let mut uniform_counts = vec![50u64; 20];
    uniform_counts.push(0);
    let uniform_bounds_full: Vec<f64> = uniform_bounds.iter().copied().chain([1.0]).collect();

    // Exponential(mean 0.1 s) into Prometheus' default buckets: the
    // estimate must fall in the bucket holding the true quantile.
    let prom = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let n = 100_000.0;
    let cdf = |x: f64| 1.0 - (-x / 0.1f64).exp();
    let mut exp_counts = Vec::new();
    let mut prev = 0.0;
    for b in prom {
        let c = (n * cdf(b)).round();
        exp_counts.push((c - prev) as u64);
        prev = c;
    }
    exp_counts.push((n - prev) as u64);

    type Case<'a> = (&'a str, &'a [f64], Vec<u64>, Box<dyn Fn(f64) -> (f64, f64)>);
    let cases: Vec<Case<'_>> = vec![
        (
            "uniform",
            &uniform_bounds_full,
            uniform_counts,
            Box::new(|q| (q - 1e-9, q + 1e-9)),
        ),
        (
            "exponential",
            &prom,
            exp_counts,
            Box::new(move |q: f64| {
                let truth = -0.1 * (1.0 - q).ln();
                let hi = *prom.iter().find(|b| **b >= truth).unwrap();
                let lo = prom
                    .iter()
                    .rev()
                    .find(|b| **b < truth)
                    .copied()
                    .unwrap_or(0.0);
                (lo, hi)
            }),
        ),
    ];
    for (name, bounds, counts, range) in cases {
        let mut ing = ingest();
        let zero = vec![0u64; counts.len()];
        let total: u64 = counts.iter().sum();
        let batches = vec![
            (
                t + 5.5,
                metrics(
                    resource("api"),
                    vec![histogram(
                        "rpc.duration",
                        Cumulative,
                        vec![hist_point(t + 5.0, t - 50.0, bounds, &zero, 0.0)],
                    )],
                ),
            ),
            (
                t + 15.5,
                metrics(
                    resource("api"),
                    vec![histogram(
                        "rpc.duration",
                        Cumulative,
                        vec![hist_point(
                            t + 15.0,
                            t - 50.0,
                            bounds,
                            &counts,
                            total as f64 * 0.25,
                        )],
                    )],
                ),
            ),
        ];
        let pts = run(&mut ing, batches);
        let s = T0 + 10;
        assert_eq!(
            value_at(&ing, &pts, "rpc.duration.rate", s),
            Some(total as f64 / 10.0),
            "{name}"
        );
        assert_eq!(
            value_at(&ing, &pts, "rpc.duration.mean", s),
            Some(0.25),
            "{name}"
        );
        for (q, sfx) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
            let v = value_at(&ing, &pts, &format!("rpc.duration.{sfx}"), s).unwrap();
            let (lo, hi) = range(q);
            assert!(lo <= v && v <= hi, "{name} {sfx}: {v} not in [{lo}, {hi}]");
        }
        // Nothing for the baseline step.
        assert_eq!(
            value_at(&ing, &pts, "rpc.duration.rate", T0),
            None,
            "{name}"
        );
    }
}

#[test]
fn delta_histogram_with_exemplars() {
    let mut ing = ingest();
    let t = T0 as f64;
    let bounds = [0.1, 0.5, 1.0];
    let mut a = hist_point(t + 3.0, t, &bounds, &[10, 5, 5, 0], 6.0);
    a.exemplars = vec![exemplar(0.95, 1), exemplar(0.05, 2)];
    let mut b = hist_point(t + 8.0, t + 3.0, &bounds, &[0, 0, 0, 10], 20.0);
    b.exemplars = vec![
        exemplar(2.0, 3),
        exemplar(0.7, 4),
        exemplar(1.5, 5),
        exemplar(0.01, 6),
        exemplar(0.3, 7),
        exemplar(0.2, 8),
    ];
    b.max = Some(3.0);
    let pts = run(
        &mut ing,
        vec![(
            t + 9.0,
            metrics(
                resource("api"),
                vec![histogram("db.query", Delta, vec![a, b])],
            ),
        )],
    );
    assert_eq!(value_at(&ing, &pts, "db.query.rate", T0), Some(3.0));
    assert_eq!(value_at(&ing, &pts, "db.query.mean", T0), Some(26.0 / 30.0));
    // 30 values: rank 27 of p90 lands in (1.0, max=3.0] holding 10.
    let p90 = value_at(&ing, &pts, "db.query.p90", T0).unwrap();
    assert!(close(p90, 1.0 + 2.0 * 0.7, 1e-9), "{p90}");
    let p = select(&ing, &pts, "db.query.p99", &[]).next().unwrap();
    // The five largest exemplar values, largest first.
    assert_eq!(
        p.exemplars,
        vec![[3; 16], [5; 16], [1; 16], [4; 16], [7; 16]]
    );
}

/// Exponential histograms: quantiles within the bucket's relative width
/// of the exact sample quantiles, cumulative with a scale change.
#[test]
fn exponential_histogram_quantiles() {
    let t = T0 as f64;
    // 2000 latencies spread log-uniformly over 0.02·e^±1.5 s (deterministic).
    let mut xs: Vec<f64> = (0..2000)
        .map(|i| {
            let u = (i as f64 + 0.5) / 2000.0;
            (0.02f64).ln().mul_add(1.0, 1.5 * (u - 0.5) * 2.0).exp()
        })
        .collect();
    xs.sort_by(f64::total_cmp);
    let scale = 3;
    let index = |v: f64| ((v.log2() * (1 << scale) as f64).ceil() as i32) - 1;
    let lo = index(xs[0]);
    let hi = index(xs[xs.len() - 1]);
    let mut counts = vec![0u64; (hi - lo + 1) as usize];
    for &x in &xs {
        counts[(index(x) - lo) as usize] += 1;
    }
    let sum: f64 = xs.iter().sum();
    // The previous cumulative point was at a finer scale (4) with 10 values
    // in one bucket; downscaled, they are subtracted from scale 3.
    let prev_idx4 = 2 * lo; // bucket 2·lo at scale 4 is inside bucket lo at scale 3
    let prev = exp_point(t + 5.0, t - 60.0, 4, prev_idx4, &[10], 0, 0.1);
    let mut cur_counts = counts.clone();
    cur_counts[0] += 10;
    let cur = exp_point(t + 15.0, t - 60.0, scale, lo, &cur_counts, 0, sum + 0.1);
    let mut ing = ingest();
    let pts = run(
        &mut ing,
        vec![
            (
                t + 5.5,
                metrics(
                    resource("api"),
                    vec![exp_histogram("lat", Cumulative, vec![prev])],
                ),
            ),
            (
                t + 15.5,
                metrics(
                    resource("api"),
                    vec![exp_histogram("lat", Cumulative, vec![cur])],
                ),
            ),
        ],
    );
    let s = T0 + 10;
    assert_eq!(value_at(&ing, &pts, "lat.rate", s), Some(200.0));
    assert!(close(
        value_at(&ing, &pts, "lat.mean", s).unwrap(),
        sum / 2000.0,
        1e-9
    ));
    let width = 2f64.powf(1.0 / 8.0) - 1.0; // relative width of a scale-3 bucket
    for (q, sfx) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
        let exact = xs[(q * 2000.0) as usize - 1];
        let v = value_at(&ing, &pts, &format!("lat.{sfx}"), s).unwrap();
        assert!(close(v, exact, width), "{sfx}: {v} vs exact {exact}");
    }

    // Delta exponential histogram with a zero bucket.
    let mut ing = ingest();
    let d = exp_point(t + 4.0, t, 0, 0, &[10, 10], 20, 45.0); // 20 zeros, (1,2]: 10, (2,4]: 10
    let pts = run(
        &mut ing,
        vec![(
            t + 5.0,
            metrics(resource("api"), vec![exp_histogram("lat", Delta, vec![d])]),
        )],
    );
    assert_eq!(value_at(&ing, &pts, "lat.rate", T0), Some(4.0));
    assert_eq!(value_at(&ing, &pts, "lat.p50", T0), Some(0.0));
    assert!(close(
        value_at(&ing, &pts, "lat.p90", T0).unwrap(),
        3.2,
        1e-9
    ));
}

#[test]
fn summaries_give_rate_mean_and_their_own_quantiles() {
    let mut ing = ingest();
    let t = T0 as f64;
    let pts = run(
        &mut ing,
        vec![
            (
                t + 5.5,
                metrics(
                    resource("api"),
                    vec![summary(
                        "gc.pause",
                        vec![summary_point(
                            t + 5.0,
                            t - 100.0,
                            100,
                            5.0,
                            &[(0.5, 0.04), (0.99, 0.2)],
                        )],
                    )],
                ),
            ),
            (
                t + 15.5,
                metrics(
                    resource("api"),
                    vec![summary(
                        "gc.pause",
                        vec![summary_point(
                            t + 15.0,
                            t - 100.0,
                            150,
                            7.5,
                            &[(0.5, 0.06), (0.99, 0.3), (0.999, 0.5)],
                        )],
                    )],
                ),
            ),
        ],
    );
    assert_eq!(value_at(&ing, &pts, "gc.pause.rate", T0 + 10), Some(5.0));
    assert_eq!(value_at(&ing, &pts, "gc.pause.mean", T0 + 10), Some(0.05));
    assert_eq!(value_at(&ing, &pts, "gc.pause.p50", T0), Some(0.04));
    assert_eq!(value_at(&ing, &pts, "gc.pause.p50", T0 + 10), Some(0.06));
    assert_eq!(value_at(&ing, &pts, "gc.pause.p99", T0 + 10), Some(0.3));
    assert_eq!(value_at(&ing, &pts, "gc.pause.p99.9", T0 + 10), Some(0.5));
    assert_eq!(value_at(&ing, &pts, "gc.pause.p99.9", T0), None);
}

/// Two producers whose labels coincide (two containers of one pod) share
/// a series; their counters stay separate streams and their rates add up.
#[test]
fn producer_streams_merge_into_one_series_without_fake_resets() {
    let mut ing = ingest();
    let t = T0 as f64;
    let res = |instance: &str| {
        let mut r = resource("api");
        r.attributes.push(kv("service.instance.id", instance));
        r
    };
    let batch = |at: f64, a: f64, b: f64| {
        let mut p = metrics(
            res("a"),
            vec![sum(
                "jobs",
                Cumulative,
                true,
                vec![num(t + at, t - 500.0, a, vec![])],
            )],
        );
        let q = metrics(
            res("b"),
            vec![sum(
                "jobs",
                Cumulative,
                true,
                vec![num(t + at, t - 500.0, b, vec![])],
            )],
        );
        if let (argus_common::otlp::Payload::Metrics(p), argus_common::otlp::Payload::Metrics(q)) =
            (&mut p, q)
        {
            p.resource_metrics.extend(q.resource_metrics);
        }
        (t + at + 0.5, p)
    };
    // a counts 1/s, b counts 1000/s: interleaved they would look like
    // resets every point.
    let pts = run(
        &mut ing,
        vec![
            batch(5.0, 10.0, 90_000.0),
            batch(15.0, 20.0, 100_000.0),
            batch(25.0, 30.0, 110_000.0),
        ],
    );
    assert_eq!(
        values(&ing, &pts, "jobs.rate", &[]),
        vec![(T0 + 10, 1001.0), (T0 + 20, 1001.0)]
    );
    assert_eq!(ing.registry().len(), 1);
}

#[test]
fn malformed_and_flagged_points() {
    let mut ing = ingest();
    let t = T0 as f64;
    let mut stale = num(t + 1.0, 0.0, 0.0, vec![]);
    stale.flags = 1;
    stale.value = None;
    let p = metrics(
        resource("api"),
        vec![
            gauge(
                "ok",
                vec![
                    num(t + 1.0, 0.0, 1.0, vec![]),
                    num(t + 2.0, 0.0, f64::NAN, vec![]),
                    stale,
                ],
            ),
            sum(
                "bad.temporality",
                Unspecified,
                true,
                vec![num(t + 1.0, 0.0, 1.0, vec![])],
            ),
            histogram(
                "bad.buckets",
                Delta,
                vec![hist_point(t + 1.0, t, &[1.0, 2.0], &[1, 1], 1.0)],
            ),
            // Shape clash: `clash` as a counter owns `clash.rate`.
            sum("clash", Delta, true, vec![num(t + 1.0, t, 1.0, vec![])]),
            gauge("clash.rate", vec![num(t + 1.0, 0.0, 1.0, vec![])]),
            // A histogram whose `.p50` output would be an existing gauge.
            gauge("h.p50", vec![num(t + 1.0, 0.0, 1.0, vec![])]),
            histogram(
                "h",
                Delta,
                vec![hist_point(t + 1.0, t, &[1.0], &[1, 0], 0.5)],
            ),
        ],
    );
    let st = ing.ingest(&p, T0 + 2);
    assert_eq!(st.received, 9);
    assert_eq!(st.ignored, 1, "the staleness marker");
    assert_eq!(st.rejected_for(Reason::Invalid), 5, "{:?}", st.message());
    assert_eq!(st.accepted, 4);
    let pts = ing.flush(T0 + 30);
    assert_eq!(value_at(&ing, &pts, "ok", T0), Some(1.0));
    assert_eq!(value_at(&ing, &pts, "clash.rate", T0), Some(0.1));
}

/// Point attributes are labels; one clashing with a resource label is
/// renamed; a point without a timestamp is stamped with the clock.
#[test]
fn attributes_become_labels() {
    let mut ing = ingest();
    let mut p = num(
        0.0,
        0.0,
        3.0,
        vec![
            kv("route", "/pay"),
            kv_int("code", 503),
            kv("service", "shadow"),
        ],
    );
    p.time_unix_nano = 0;
    let st = ing.ingest(&metrics(resource("api"), vec![gauge("g", vec![p])]), T0 + 4);
    assert_eq!(st.accepted, 1);
    let pts = ing.flush(T0 + 30);
    let k = ing.key(pts[0].series).unwrap();
    assert_eq!(
        k.to_string(),
        r#"g{code="503",exported_service="shadow",namespace="prod",node="node-a",pod="api-0",route="/pay",service="api"}"#
    );
    assert_eq!(pts[0].ts, T0);
}
