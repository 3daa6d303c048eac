//! Cumulative streams: turning running totals into per-step increases.
//!
//! A cumulative counter, histogram or summary reports totals since its
//! `start_time`. One **stream** is one producer's totals — identified by
//! every resource attribute, the scope, and the point's attributes — and
//! keeps the last point of the steps already closed (`prev`) plus the points
//! of the open steps (`pending`).
//!
//! Points are **not** differenced on arrival: that would make the result
//! depend on arrival order. When a step closes, its points are sorted by
//! time and differenced in order, starting from `prev`; each consecutive
//! pair `(a, b)` yields an increase and an interval:
//!
//! - normally `b − a` over `b.t − a.t` (bucket by bucket for histograms);
//! - on a **reset** — `b` below `a`, a bucket below its previous count,
//!   changed explicit bounds or zero threshold, or a different non-zero
//!   `start_time` — the new total counts from 0: the increase is all of
//!   `b`, over `b.t − b.start` when the restart lies between the points,
//!   else over `b.t − a.t`;
//! - a point not after `prev` (a duplicate delivered twice by an
//!   at-least-once exporter) adds nothing.
//!
//! The step's rate for the stream is `Σ increase / Σ interval`: the mean
//! rate over the intervals that end in the step, correct whatever the
//! producer's export interval. A step in which a stream reported nothing
//! gets nothing from it (a gap, not a zero: with a 60 s export interval and
//! a 10 s step, five steps in six have no value — choose the step
//! accordingly).
//!
//! The **first** point of a stream is only a baseline, unless its counter
//! started after the ingest did (`start_time` ≥ the ingest's first clock):
//! then the whole total is new, and a freshly started pod's first minute is
//! not lost. A counter that has been running for days is not mistaken for a
//! spike.

use super::histogram::{Buckets, ExpBuckets, add_explicit, explicit_delta};

/// Pending points one stream may hold across the open steps.
pub(crate) const MAX_PENDING: usize = 1024;

/// A cumulative point, kept until its step closes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CumPoint {
    /// Unix nanoseconds.
    pub t: i64,
    /// Unix nanoseconds; 0 when unknown.
    pub start: i64,
    /// Counter value, or the histogram/summary count.
    pub count: f64,
    pub sum: Option<f64>,
    pub buckets: CumBuckets,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CumBuckets {
    None,
    Explicit {
        bounds: Box<[f64]>,
        counts: Box<[u64]>,
    },
    Exp(Box<ExpBuckets>),
}

/// What one stream adds to a step.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Increase {
    /// Per-second rate over the covered intervals.
    pub rate: Option<f64>,
    /// Σ increase of the sum, and the count increase it belongs to.
    pub sum: f64,
    pub sum_count: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Stream {
    pub id: u64,
    prev: Option<CumPoint>,
    pending: Vec<(i64, CumPoint)>,
    /// Ingest clock (unix s) of the last point.
    pub last_seen: i64,
}

impl Stream {
    pub fn new(id: u64) -> Self {
        Stream {
            id,
            prev: None,
            pending: Vec::new(),
            last_seen: i64::MIN,
        }
    }

    /// Buffers a point of open step `step`; false when the stream already
    /// holds [`MAX_PENDING`] points.
    pub fn push(&mut self, step: i64, p: CumPoint, now: i64) -> bool {
        if self.pending.len() >= MAX_PENDING {
            return false;
        }
        self.pending.push((step, p));
        self.last_seen = self.last_seen.max(now);
        true
    }

    /// Steps below `below` with pending points.
    pub fn pending_steps(&self, below: i64, out: &mut Vec<i64>) {
        out.extend(self.pending.iter().map(|(k, _)| *k).filter(|k| *k < below));
    }

    /// Differences the points of step `k` (see the module doc), adding
    /// the bucket increases to `buckets`. `born_after` (unix ns): a first
    /// point whose counter started at or after it counts in full.
    pub fn close(&mut self, k: i64, born_after: i64, buckets: &mut Buckets) -> Increase {
        let mut pts: Vec<CumPoint> = Vec::new();
        self.pending.retain_mut(|(s, p)| {
            if *s == k {
                pts.push(std::mem::replace(
                    p,
                    CumPoint {
                        t: 0,
                        start: 0,
                        count: 0.0,
                        sum: None,
                        buckets: CumBuckets::None,
                        min: None,
                        max: None,
                    },
                ));
                false
            } else {
                true
            }
        });
        pts.sort_by(|a, b| a.t.cmp(&b.t).then(a.count.total_cmp(&b.count)));
        let mut inc = Increase::default();
        let (mut dv, mut dt) = (0.0f64, 0i64);
        for b in pts {
            let (piece_v, piece_t) = match &self.prev {
                None => {
                    if b.start > 0 && b.start >= born_after && b.start < b.t {
                        whole(&b, b.t - b.start, &mut inc, buckets)
                    } else {
                        (0.0, 0)
                    }
                }
                Some(a) if b.t <= a.t => continue,
                Some(a) => {
                    let restarted = a.start > 0 && b.start > 0 && b.start != a.start;
                    match (!restarted && b.count >= a.count)
                        .then(|| delta(a, &b))
                        .flatten()
                    {
                        Some(d) => {
                            if let (Some(sa), Some(sb)) = (a.sum, b.sum) {
                                inc.sum += sb - sa;
                                inc.sum_count += b.count - a.count;
                            }
                            d.add_to(&b, buckets);
                            (b.count - a.count, b.t - a.t)
                        }
                        None => {
                            let from = if b.start > a.t && b.start < b.t {
                                b.start
                            } else {
                                a.t
                            };
                            whole(&b, b.t - from, &mut inc, buckets)
                        }
                    }
                }
            };
            dv += piece_v;
            dt += piece_t;
            self.prev = Some(b);
        }
        if dt > 0 {
            inc.rate = Some(dv / (dt as f64 / 1e9));
        }
        inc
    }
}

/// All of `b` as the increase (a reset or a counter born after the ingest).
fn whole(b: &CumPoint, dt: i64, inc: &mut Increase, buckets: &mut Buckets) -> (f64, i64) {
    if let Some(s) = b.sum {
        inc.sum += s;
        inc.sum_count += b.count;
    }
    match &b.buckets {
        CumBuckets::None => {}
        CumBuckets::Explicit { bounds, counts } => {
            add_explicit(bounds, counts, b.min, b.max, buckets)
        }
        CumBuckets::Exp(e) => e.add_to(b.min, b.max, buckets),
    }
    (b.count, dt)
}

enum BucketDelta {
    None,
    Explicit(Vec<u64>),
    Exp(ExpBuckets),
}

impl BucketDelta {
    fn add_to(&self, b: &CumPoint, out: &mut Buckets) {
        match (self, &b.buckets) {
            (BucketDelta::Explicit(d), CumBuckets::Explicit { bounds, .. }) => {
                add_explicit(bounds, d, b.min, b.max, out)
            }
            (BucketDelta::Exp(e), _) => e.add_to(b.min, b.max, out),
            _ => {}
        }
    }
}

/// Bucket increases from `a` to `b`; `None` when they show a reset.
fn delta(a: &CumPoint, b: &CumPoint) -> Option<BucketDelta> {
    match (&a.buckets, &b.buckets) {
        (CumBuckets::None, CumBuckets::None) => Some(BucketDelta::None),
        (
            CumBuckets::Explicit {
                bounds: ab,
                counts: ac,
            },
            CumBuckets::Explicit {
                bounds: bb,
                counts: bc,
            },
        ) => explicit_delta(ab, ac, bb, bc).map(BucketDelta::Explicit),
        (CumBuckets::Exp(ae), CumBuckets::Exp(be)) => be.delta_since(ae).map(BucketDelta::Exp),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn pt(t_s: i64, start_s: i64, v: f64) -> CumPoint {
        CumPoint {
            t: t_s * S,
            start: start_s * S,
            count: v,
            sum: None,
            buckets: CumBuckets::None,
            min: None,
            max: None,
        }
    }

    /// `(points per step, expected rate per step)` for one stream, closing
    /// steps 0, 1, 2, … in order (step = 10 s). The counter started at
    /// t = 1 before the ingest (born_after = 1000 s), so its first point is
    /// a baseline.
    #[test]
    fn cumulative_counter_table() {
        type Case = (&'static str, Vec<Vec<CumPoint>>, Vec<Option<f64>>);
        let cases: Vec<Case> = vec![
            (
                "steady 5/s, one point per step",
                vec![
                    vec![pt(5, 1, 100.0)],
                    vec![pt(15, 1, 150.0)],
                    vec![pt(25, 1, 200.0)],
                ],
                vec![None, Some(5.0), Some(5.0)],
            ),
            (
                "two points in a step, out of order",
                vec![vec![pt(5, 1, 0.0)], vec![pt(18, 1, 130.0), pt(12, 1, 70.0)]],
                vec![None, Some(10.0)],
            ),
            (
                "reset by a lower value: counts from 0",
                vec![
                    vec![pt(5, 1, 1000.0)],
                    vec![pt(15, 1, 30.0)],
                    vec![pt(25, 1, 80.0)],
                ],
                vec![None, Some(3.0), Some(5.0)],
            ),
            (
                "reset by start time, restart between the points",
                vec![vec![pt(5, 1, 1000.0)], vec![pt(15, 11, 2000.0)]],
                // Would look like +1000, but the process restarted at 11:
                // 2000 new over 4 s.
                vec![None, Some(500.0)],
            ),
            (
                "duplicate point (at-least-once delivery) adds nothing",
                vec![
                    vec![pt(5, 1, 100.0)],
                    vec![pt(15, 1, 150.0), pt(15, 1, 150.0)],
                    vec![pt(15, 1, 150.0), pt(25, 1, 170.0)],
                ],
                vec![None, Some(5.0), Some(2.0)],
            ),
            (
                "export interval longer than the step: a gap, then the mean rate",
                vec![vec![pt(5, 1, 0.0)], vec![], vec![pt(25, 1, 40.0)]],
                vec![None, None, Some(2.0)],
            ),
        ];
        for (name, steps, want) in cases {
            let mut s = Stream::new(1);
            for (k, pts) in steps.iter().enumerate() {
                for p in pts {
                    assert!(s.push(k as i64, p.clone(), 0));
                }
            }
            let got: Vec<Option<f64>> = (0..steps.len())
                .map(|k| s.close(k as i64, 1000 * S, &mut Buckets::default()).rate)
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_counter_born_after_the_ingest_counts_in_full() {
        let mut s = Stream::new(1);
        s.push(0, pt(8, 3, 50.0), 0);
        assert_eq!(s.close(0, 2 * S, &mut Buckets::default()).rate, Some(10.0));
        let mut old = Stream::new(1);
        old.push(0, pt(8, 1, 50.0), 0);
        assert_eq!(old.close(0, 2 * S, &mut Buckets::default()).rate, None);
    }

    #[test]
    fn histogram_bucket_deltas_and_sum() {
        let h = |t: i64, counts: [u64; 3], sum: f64| CumPoint {
            t: t * S,
            start: S,
            count: counts.iter().sum::<u64>() as f64,
            sum: Some(sum),
            buckets: CumBuckets::Explicit {
                bounds: vec![0.1, 1.0].into(),
                counts: counts.to_vec().into(),
            },
            min: None,
            max: None,
        };
        let mut s = Stream::new(1);
        s.push(0, h(5, [10, 0, 0], 0.5), 0);
        s.push(1, h(15, [10, 20, 0], 10.5), 0);
        // Bounds changed: a reset; all of the new point counts.
        let mut changed = h(25, [1, 1, 0], 0.6);
        changed.buckets = CumBuckets::Explicit {
            bounds: vec![0.2, 2.0].into(),
            counts: vec![1, 1, 0].into(),
        };
        s.push(2, changed, 0);
        let mut b0 = Buckets::default();
        assert_eq!(s.close(0, i64::MAX, &mut b0).rate, None);
        assert!(b0.is_empty());
        let mut b1 = Buckets::default();
        let inc = s.close(1, i64::MAX, &mut b1);
        assert_eq!(inc.rate, Some(2.0));
        assert_eq!((inc.sum, inc.sum_count), (10.0, 20.0));
        assert_eq!(b1.total(), 20.0);
        assert_eq!(b1.quantile(0.5), Some(0.1 + 0.9 * 0.5));
        let mut b2 = Buckets::default();
        let inc = s.close(2, i64::MAX, &mut b2);
        assert_eq!(inc.rate, Some(0.2));
        assert_eq!(b2.total(), 2.0);
        assert_eq!(b2.items()[1].hi, 2.0);
    }
}
