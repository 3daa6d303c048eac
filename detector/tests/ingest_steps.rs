//! Step windows: when a step closes, late and future data, and order
//! independence within open steps.

#[path = "ingest_support/payload.rs"]
mod payload;

use std::collections::BTreeMap;
use std::time::Duration;

use argus_common::otlp::Payload;
use argus_detector::ingest::{Ingest, IngestConfig, Reason, StepPoint, TraceId};
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality::{Cumulative, Delta};
use payload::*;
use proptest::prelude::*;

fn ingest() -> Ingest {
    Ingest::new(IngestConfig::default()).unwrap()
}

fn g(at: f64, v: f64) -> Payload {
    metrics(
        resource("api"),
        vec![gauge("g", vec![num(at, 0.0, v, vec![])])],
    )
}

#[test]
fn a_step_closes_once_when_the_clock_passes_its_end_plus_grace() {
    let mut ing = ingest(); // step 10 s, grace 10 s
    ing.ingest(&g(T0 as f64 + 5.0, 1.0), T0 + 5);
    assert!(
        ing.flush(T0 + 19).is_empty(),
        "open until end (T0+10) + grace (10 s)"
    );
    let pts = ing.flush(T0 + 20);
    assert_eq!(pts.len(), 1);
    assert_eq!((pts[0].ts, pts[0].value), (T0, 1.0));
    assert!(ing.flush(T0 + 21).is_empty(), "emitted once");
    assert!(ing.flush(T0 + 200).is_empty());

    // No grace: the step closes at its end.
    let cfg = IngestConfig {
        grace: Some(Duration::ZERO),
        ..Default::default()
    };
    let mut ing = Ingest::<()>::new(cfg).unwrap();
    ing.ingest(&g(T0 as f64 + 5.0, 1.0), T0 + 5);
    assert!(ing.flush(T0 + 9).is_empty());
    assert_eq!(ing.flush(T0 + 10).len(), 1);
}

#[test]
fn late_data_is_dropped_and_never_reopens_a_step() {
    let mut ing = ingest();
    ing.ingest(&g(T0 as f64 + 5.0, 1.0), T0 + 5);
    let pts = ing.flush(T0 + 20);
    assert_eq!(pts.len(), 1);
    // Step T0 is closed: a point for it is late, even an in-order one.
    let st = ing.ingest(&g(T0 as f64 + 9.0, 100.0), T0 + 21);
    assert_eq!((st.accepted, st.rejected_for(Reason::Late)), (0, 1));
    assert_eq!(st.message().unwrap(), "1 of 1 data points rejected: late=1");
    // Lateness follows the clock, not flush: T0+10 closes at T0+30 even
    // though nobody flushed in between.
    ing.ingest(&g(T0 as f64 + 15.0, 2.0), T0 + 22);
    let st = ing.ingest(&g(T0 as f64 + 16.0, 3.0), T0 + 30);
    assert_eq!(st.rejected_for(Reason::Late), 1);
    let pts = ing.flush(T0 + 30);
    assert_eq!(values(&ing, &pts, "g", &[]), vec![(T0 + 10, 2.0)]);
    // Within grace, out-of-order data for an open step is fine.
    ing.ingest(&g(T0 as f64 + 35.0, 4.0), T0 + 36);
    let st = ing.ingest(&g(T0 as f64 + 21.0, 6.0), T0 + 37);
    assert_eq!(st.accepted, 1);
    let pts = ing.flush(T0 + 50);
    assert_eq!(
        values(&ing, &pts, "g", &[]),
        vec![(T0 + 20, 6.0), (T0 + 30, 4.0)]
    );
}

#[test]
fn future_data_beyond_max_future_is_dropped() {
    let mut ing = ingest(); // max_future = one step
    let st = ing.ingest(&g(T0 as f64 + 29.9, 1.0), T0 + 20);
    assert_eq!(
        st.accepted, 1,
        "within one step ahead: kept in its own step"
    );
    let st = ing.ingest(&g(T0 as f64 + 30.5, 1.0), T0 + 20);
    assert_eq!(st.rejected_for(Reason::Future), 1);
    let pts = ing.flush(T0 + 40);
    assert_eq!(values(&ing, &pts, "g", &[]), vec![(T0 + 20, 1.0)]);
    // The clock never runs backwards: an old `now` does not re-open steps.
    let st = ing.ingest(&g(T0 as f64 + 25.0, 1.0), T0);
    assert_eq!(st.rejected_for(Reason::Late), 1);
}

/// One item of the order-independence property.
#[derive(Clone, Debug)]
enum Item {
    Gauge {
        at: f64,
        v: f64,
        pod: u8,
    },
    Counter {
        at: f64,
        v: f64,
        pod: u8,
    },
    DeltaHist {
        at: f64,
        counts: [u64; 3],
        ex: Option<(f64, u8)>,
    },
    Span {
        end: f64,
        dur: f64,
        err: bool,
        trace: u8,
    },
}

fn payload(i: &Item) -> Payload {
    let pod_res = |pod: u8| {
        let mut r = resource("api");
        r.attributes
            .push(kv("service.instance.id", &pod.to_string()));
        r
    };
    match *i {
        Item::Gauge { at, v, pod } => metrics(
            resource("api"),
            vec![gauge(
                "g",
                vec![num(at, 0.0, v, vec![kv("pod_attr", &pod.to_string())])],
            )],
        ),
        Item::Counter { at, v, pod } => metrics(
            pod_res(pod),
            vec![sum(
                "c",
                Cumulative,
                true,
                vec![num(at, T0 as f64 - 100.0, v, vec![])],
            )],
        ),
        Item::DeltaHist { at, counts, ex } => {
            let mut p = hist_point(at, at - 1.0, &[0.1, 1.0], &counts, counts[1] as f64 * 0.5);
            if let Some((v, t)) = ex {
                p.exemplars = vec![exemplar(v, t)];
            }
            metrics(resource("api"), vec![histogram("h", Delta, vec![p])])
        }
        Item::Span {
            end,
            dur,
            err,
            trace,
        } => spans(resource("api"), vec![span("op", end, dur, err, trace)]),
    }
}

/// Step points by series key (ids depend on registration order).
fn by_key(ing: &Ingest, pts: &[StepPoint]) -> BTreeMap<(String, i64), (f64, Vec<TraceId>)> {
    pts.iter()
        .map(|p| {
            (
                (ing.key(p.series).unwrap().to_string(), p.ts),
                (p.value, p.exemplars.clone()),
            )
        })
        .collect()
}

fn run(items: &[Item], batch: usize, flush_every: Option<i64>) -> (Ingest, Vec<StepPoint>) {
    let mut ing = ingest();
    // The clock sits at T0+25: steps from T0+10 on are open, up to T0+35.
    ing.flush(T0 + 25);
    let mut out = Vec::new();
    for chunk in items.chunks(batch.max(1)) {
        for it in chunk {
            let st = ing.ingest(&payload(it), T0 + 25);
            assert_eq!(st.rejected(), 0, "{it:?}: {:?}", st.message());
        }
        if let Some(_every) = flush_every {
            out.extend(ing.flush(T0 + 25));
        }
    }
    out.extend(ing.flush(T0 + 100));
    (ing, out)
}

fn item() -> impl Strategy<Value = Item> {
    let at = (T0 as f64 + 10.0)..(T0 as f64 + 34.9);
    prop_oneof![
        (at.clone(), -1e3..1e3f64, 0u8..3).prop_map(|(at, v, pod)| Item::Gauge { at, v, pod }),
        (at.clone(), 0.0..1e4f64, 0u8..3).prop_map(|(at, v, pod)| Item::Counter { at, v, pod }),
        (
            at.clone(),
            prop::array::uniform3(0u64..50),
            prop::option::of((0.0..5.0f64, 1u8..20))
        )
            .prop_map(|(at, counts, ex)| Item::DeltaHist { at, counts, ex }),
        (at, 0.0..3.0f64, any::<bool>(), 1u8..40).prop_map(|(end, dur, err, trace)| Item::Span {
            end,
            dur,
            err,
            trace
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any permutation of the items within open steps, in any batching,
    /// flushed at any time, gives the same step values and exemplars (up
    /// to floating-point rounding of sums).
    #[test]
    fn any_order_within_open_steps_gives_the_same_values(
        items in prop::collection::vec(item(), 1..60),
        seed in any::<u64>(),
        batch in 1usize..8,
    ) {
        let (ing_a, a) = run(&items, 1, None);
        let mut shuffled = items.clone();
        // Fisher–Yates with a small LCG: proptest shrinks `seed` for us.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (s >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }
        let (ing_b, b) = run(&shuffled, batch, Some(1));
        let (ka, kb) = (by_key(&ing_a, &a), by_key(&ing_b, &b));
        prop_assert_eq!(ka.keys().collect::<Vec<_>>(), kb.keys().collect::<Vec<_>>());
        for (k, (va, ea)) in &ka {
            let (vb, eb) = &kb[k];
            prop_assert!((va - vb).abs() <= 1e-9 * va.abs().max(1.0), "{:?}: {} vs {}", k, va, vb);
            prop_assert_eq!(ea, eb, "{:?}", k);
        }
    }
}

/// Log record counts are order-independent too (the templates Drain
/// mines are not, by nature: the first line of a template shapes it).
#[test]
fn log_counts_do_not_depend_on_order() {
    let t = T0 as f64;
    let recs: Vec<_> = (0..30)
        .map(|i| {
            record(
                t + 10.0 + i as f64 * 0.8,
                [9, 13, 17][i % 3],
                &format!("event {i} happened"),
                Some(i as u8 + 1),
            )
        })
        .collect();
    let run = |recs: Vec<_>| {
        let mut ing = ingest();
        ing.flush(T0 + 25);
        for r in recs {
            ing.ingest(&logs(resource("api"), vec![r]), T0 + 25);
        }
        let pts = ing.flush(T0 + 100);
        let mut v: Vec<(String, i64, f64, Vec<TraceId>)> = select(&ing, &pts, "log.records", &[])
            .map(|p| {
                (
                    ing.key(p.series).unwrap().to_string(),
                    p.ts,
                    p.value,
                    p.exemplars.clone(),
                )
            })
            .collect();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    };
    let mut rev = recs.clone();
    rev.reverse();
    assert_eq!(run(recs), run(rev));
}
