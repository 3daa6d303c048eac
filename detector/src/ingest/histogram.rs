//! Histogram buckets as a distribution, and quantiles from them.
//!
//! Every histogram the ingest sees — explicit-bounds and exponential, delta
//! and cumulative (as bucket deltas), from one producer or merged from
//! several — becomes a [`Buckets`]: a list of `(lo, hi, count)` intervals,
//! each assumed to hold its count **uniformly** (linear interpolation within
//! a bucket, as Prometheus' `histogram_quantile` does). Intervals may
//! overlap (two producers with different bounds merged into one series):
//! the distribution is then the sum of the uniform pieces, and
//! [`Buckets::quantile`] sweeps it exactly — so "linear interpolation" and
//! "merging" never disagree.
//!
//! Open-ended buckets get finite edges the way users expect from
//! Prometheus, tightened by the point's `min`/`max` when the producer sends
//! them (a cumulative point's lifetime min/max still bound every delta, so
//! they are used for both temporalities):
//!
//! - the first explicit bucket `(−∞, b₀]` starts at `min`, else at 0 when
//!   `b₀ > 0` (latencies and sizes are not negative), else it is a point at
//!   `b₀`;
//! - the last bucket `(bₙ, +∞)` ends at `max`, else it is a point at `bₙ`
//!   (a quantile that falls there reports the highest finite bound);
//! - the zero bucket of an exponential histogram is a point at 0.

/// One interval holding `n` values, spread uniformly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub lo: f64,
    pub hi: f64,
    pub n: f64,
}

/// A distribution as uniform pieces, sorted by `(lo, hi)`; identical
/// intervals are merged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    items: Vec<Bucket>,
}

/// Why a histogram point's buckets cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BadBuckets {
    #[error("{counts} bucket counts for {bounds} explicit bounds (want bounds + 1)")]
    CountMismatch { counts: usize, bounds: usize },
    #[error("explicit bounds are not finite and strictly increasing")]
    Bounds,
    #[error("exponential histogram scale {0} out of range [-10, 20]")]
    Scale(i32),
    #[error("exponential histogram buckets out of range")]
    Range,
    #[error("{0} buckets (at most {MAX_BUCKETS})")]
    TooMany(usize),
}

impl Buckets {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> &[Bucket] {
        &self.items
    }

    pub fn total(&self) -> f64 {
        self.items.iter().map(|b| b.n).sum()
    }

    pub fn add(&mut self, lo: f64, hi: f64, n: f64) {
        if n <= 0.0 || !n.is_finite() || lo.is_nan() || hi.is_nan() || lo > hi {
            return;
        }
        let key = |b: &Bucket| (b.lo, b.hi);
        match self.items.binary_search_by(|b| {
            key(b)
                .0
                .total_cmp(&lo)
                .then_with(|| key(b).1.total_cmp(&hi))
        }) {
            Ok(i) => self.items[i].n += n,
            Err(i) => self.items.insert(i, Bucket { lo, hi, n }),
        }
    }

    pub fn merge(&mut self, other: &Buckets) {
        for b in &other.items {
            self.add(b.lo, b.hi, b.n);
        }
    }

    /// The `q`-quantile of the piecewise-uniform distribution (rank
    /// `q · total`); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        // Fast path: disjoint, sorted intervals (one producer, or several
        // with the same bounds): a single linear scan.
        if self.items.windows(2).all(|w| w[0].hi <= w[1].lo) {
            let mut cum = 0.0;
            for b in &self.items {
                if cum + b.n >= rank {
                    if b.hi == b.lo {
                        return Some(b.lo);
                    }
                    let f = ((rank - cum) / b.n).clamp(0.0, 1.0);
                    return Some(b.lo + f * (b.hi - b.lo));
                }
                cum += b.n;
            }
            return self.items.last().map(|b| b.hi);
        }
        Some(self.sweep(rank))
    }

    /// Overlapping intervals: sweep the edges, accumulating density.
    fn sweep(&self, rank: f64) -> f64 {
        // (x, density change, point mass)
        let mut ev: Vec<(f64, f64, f64)> = Vec::with_capacity(self.items.len() * 2);
        for b in &self.items {
            if b.hi > b.lo {
                let d = b.n / (b.hi - b.lo);
                ev.push((b.lo, d, 0.0));
                ev.push((b.hi, -d, 0.0));
            } else {
                ev.push((b.lo, 0.0, b.n));
            }
        }
        ev.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut cum = 0.0;
        let mut density = 0.0f64;
        let mut prev_x = ev[0].0;
        let mut i = 0;
        while i < ev.len() {
            let x = ev[i].0;
            let seg = density.max(0.0) * (x - prev_x);
            if seg > 0.0 && cum + seg >= rank {
                return prev_x + (rank - cum) / density;
            }
            cum += seg;
            // Everything at x: point masses first, then density changes.
            let mut mass = 0.0;
            let mut dd = 0.0;
            while i < ev.len() && ev[i].0 == x {
                mass += ev[i].2;
                dd += ev[i].1;
                i += 1;
            }
            if mass > 0.0 && cum + mass >= rank {
                return x;
            }
            cum += mass;
            density += dd;
            prev_x = x;
        }
        prev_x
    }
}

fn clamp_interval(lo: f64, hi: f64, min: Option<f64>, max: Option<f64>) -> (f64, f64) {
    let (mut l, mut h) = (lo, hi);
    if let Some(m) = min.filter(|m| m.is_finite()) {
        l = l.max(m);
        h = h.max(m);
    }
    if let Some(m) = max.filter(|m| m.is_finite()) {
        h = h.min(m);
        l = l.min(m);
    }
    if l > h { (lo, hi) } else { (l, h) }
}

/// Most buckets one histogram point may have. OpenTelemetry SDKs default
/// to 160 for exponential histograms and a few dozen explicit bounds; the
/// cap keeps a hostile point from costing megabytes per step.
pub const MAX_BUCKETS: usize = 4096;

/// Checks explicit bounds and counts the way OTLP defines them.
pub fn check_explicit(bounds: &[f64], counts: usize) -> Result<(), BadBuckets> {
    if counts == 0 {
        return Ok(()); // count/sum only
    }
    if counts > MAX_BUCKETS {
        return Err(BadBuckets::TooMany(counts));
    }
    if counts != bounds.len() + 1 {
        return Err(BadBuckets::CountMismatch {
            counts,
            bounds: bounds.len(),
        });
    }
    if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(BadBuckets::Bounds);
    }
    Ok(())
}

/// Adds explicit-bounds bucket counts (already checked) to `out`.
pub fn add_explicit(
    bounds: &[f64],
    counts: &[u64],
    min: Option<f64>,
    max: Option<f64>,
    out: &mut Buckets,
) {
    let m = bounds.len();
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let lo = if i == 0 {
            f64::NEG_INFINITY
        } else {
            bounds[i - 1]
        };
        let hi = if i == m { f64::INFINITY } else { bounds[i] };
        let (mut lo, mut hi) = clamp_interval(lo, hi, min, max);
        if lo == f64::NEG_INFINITY {
            lo = if hi > 0.0 { 0.0 } else { hi };
        }
        if hi == f64::INFINITY {
            hi = lo;
        }
        out.add(lo, hi, c as f64);
    }
}

/// Exponential-histogram buckets: counts by index at one scale.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpBuckets {
    pub scale: i32,
    pub zero_count: u64,
    pub zero_threshold: f64,
    pub pos_offset: i32,
    pub pos: Vec<u64>,
    pub neg_offset: i32,
    pub neg: Vec<u64>,
}

/// The OTLP spec's scale range.
const MIN_SCALE: i32 = -10;
const MAX_SCALE: i32 = 20;

impl ExpBuckets {
    pub fn check(&self) -> Result<(), BadBuckets> {
        if !(MIN_SCALE..=MAX_SCALE).contains(&self.scale) {
            return Err(BadBuckets::Scale(self.scale));
        }
        let fits = |off: i32, len: usize| (off as i64 + len as i64) < i32::MAX as i64;
        if !fits(self.pos_offset, self.pos.len()) || !fits(self.neg_offset, self.neg.len()) {
            return Err(BadBuckets::Range);
        }
        if self.pos.len() + self.neg.len() > MAX_BUCKETS {
            return Err(BadBuckets::TooMany(self.pos.len() + self.neg.len()));
        }
        Ok(())
    }

    /// Lower edge of bucket `i`: `base^i` with `base = 2^(2^−scale)`.
    fn edge(scale: i32, i: i64) -> f64 {
        (i as f64 * (-scale as f64).exp2()).exp2()
    }

    /// Adds the distribution to `out`.
    pub fn add_to(&self, min: Option<f64>, max: Option<f64>, out: &mut Buckets) {
        if self.zero_count > 0 {
            out.add(0.0, 0.0, self.zero_count as f64);
        }
        for (j, &c) in self.pos.iter().enumerate() {
            if c > 0 {
                let i = self.pos_offset as i64 + j as i64;
                let (lo, hi) = clamp_interval(
                    Self::edge(self.scale, i),
                    Self::edge(self.scale, i + 1),
                    min,
                    max,
                );
                out.add(lo, hi, c as f64);
            }
        }
        for (j, &c) in self.neg.iter().enumerate() {
            if c > 0 {
                let i = self.neg_offset as i64 + j as i64;
                let (lo, hi) = clamp_interval(
                    -Self::edge(self.scale, i + 1),
                    -Self::edge(self.scale, i),
                    min,
                    max,
                );
                out.add(lo, hi, c as f64);
            }
        }
    }

    /// The same counts at a coarser scale (`scale ≤ self.scale`): index `i`
    /// becomes `i >> (self.scale − scale)`, as the spec defines.
    fn downscale(&self, scale: i32) -> ExpBuckets {
        let shift = (self.scale - scale) as u32;
        let down = |off: i32, counts: &[u64]| -> (i32, Vec<u64>) {
            if counts.is_empty() || shift == 0 {
                return (off, counts.to_vec());
            }
            let new_off = off >> shift;
            let last = (off + counts.len() as i32 - 1) >> shift;
            let mut v = vec![0u64; (last - new_off + 1) as usize];
            for (j, &c) in counts.iter().enumerate() {
                let i = (off + j as i32) >> shift;
                v[(i - new_off) as usize] += c;
            }
            (new_off, v)
        };
        let (pos_offset, pos) = down(self.pos_offset, &self.pos);
        let (neg_offset, neg) = down(self.neg_offset, &self.neg);
        ExpBuckets {
            scale,
            zero_count: self.zero_count,
            zero_threshold: self.zero_threshold,
            pos_offset,
            pos,
            neg_offset,
            neg,
        }
    }

    /// `self − prev` bucket by bucket at the coarser of the two scales;
    /// `None` when any bucket decreased or the zero threshold changed (the
    /// stream reset).
    pub fn delta_since(&self, prev: &ExpBuckets) -> Option<ExpBuckets> {
        if self.zero_threshold != prev.zero_threshold {
            return None;
        }
        let scale = self.scale.min(prev.scale);
        let (a, b) = (self.downscale(scale), prev.downscale(scale));
        let sub = |ao: i32, av: &[u64], bo: i32, bv: &[u64]| -> Option<(i32, Vec<u64>)> {
            if av.is_empty() && bv.is_empty() {
                return Some((ao, Vec::new()));
            }
            let lo = if bv.is_empty() { ao } else { ao.min(bo) };
            let hi = (ao + av.len() as i32).max(if bv.is_empty() {
                ao
            } else {
                bo + bv.len() as i32
            });
            // Offsets far apart are not a plausible increase of one stream
            // (and would be a huge allocation): treat them as a reset.
            if (hi as i64 - lo as i64) as usize > MAX_BUCKETS {
                return None;
            }
            let mut out = vec![0u64; (hi - lo) as usize];
            for i in lo..hi {
                let get = |o: i32, v: &[u64]| {
                    let k = i - o;
                    if k >= 0 && (k as usize) < v.len() {
                        v[k as usize]
                    } else {
                        0
                    }
                };
                out[(i - lo) as usize] = get(ao, av).checked_sub(get(bo, bv))?;
            }
            Some((lo, out))
        };
        let (pos_offset, pos) = sub(a.pos_offset, &a.pos, b.pos_offset, &b.pos)?;
        let (neg_offset, neg) = sub(a.neg_offset, &a.neg, b.neg_offset, &b.neg)?;
        Some(ExpBuckets {
            scale,
            zero_count: a.zero_count.checked_sub(b.zero_count)?,
            zero_threshold: self.zero_threshold,
            pos_offset,
            pos,
            neg_offset,
            neg,
        })
    }
}

/// `cur − prev` for explicit buckets with identical bounds; `None` when
/// the bounds changed or a bucket decreased (a reset).
pub fn explicit_delta(
    prev_bounds: &[f64],
    prev: &[u64],
    bounds: &[f64],
    cur: &[u64],
) -> Option<Vec<u64>> {
    if prev_bounds != bounds || prev.len() != cur.len() {
        return None;
    }
    cur.iter()
        .zip(prev)
        .map(|(c, p)| c.checked_sub(*p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-12)
    }

    /// Linear interpolation inside explicit buckets, against hand-computed
    /// answers (the Prometheus `histogram_quantile` convention).
    #[test]
    fn explicit_bucket_quantiles_interpolate_linearly() {
        let bounds = [0.1, 0.2, 0.5, 1.0];
        // 10 in (0,0.1], 30 in (0.1,0.2], 40 in (0.2,0.5], 20 in (0.5,1], 0 above.
        let mut b = Buckets::default();
        add_explicit(&bounds, &[10, 30, 40, 20, 0], None, None, &mut b);
        let cases = [
            (0.05, 0.05),                   // rank 5 of 10 in [0, 0.1]
            (0.1, 0.1),                     // exactly the first bucket's count
            (0.5, 0.2 + 0.3 * 10.0 / 40.0), // rank 50: 10 into the third bucket
            (0.9, 0.5 + 0.5 * 10.0 / 20.0),
            (1.0, 1.0),
        ];
        for (q, want) in cases {
            assert!(
                close(b.quantile(q).unwrap(), want, 1e-12),
                "q={q}: {:?}",
                b.quantile(q)
            );
        }
        // Overflow bucket: reports the highest finite bound unless max is known.
        let mut o = Buckets::default();
        add_explicit(&bounds, &[0, 0, 0, 0, 10], None, None, &mut o);
        assert_eq!(o.quantile(0.99), Some(1.0));
        let mut o = Buckets::default();
        add_explicit(&bounds, &[0, 0, 0, 0, 10], Some(1.5), Some(3.0), &mut o);
        assert!(close(o.quantile(0.5).unwrap(), 2.25, 1e-12));
    }

    /// Buckets of a known distribution give quantiles close to the truth:
    /// uniform on [0, 1) with 0.1-wide buckets interpolates exactly.
    #[test]
    fn uniform_distribution_is_recovered() {
        let bounds: Vec<f64> = (1..10).map(|i| i as f64 / 10.0).collect();
        let mut counts = vec![1000u64; 10];
        counts.push(0);
        let bounds_plus: Vec<f64> = bounds.iter().copied().chain([1.0]).collect();
        let mut b = Buckets::default();
        add_explicit(&bounds_plus, &counts, None, None, &mut b);
        for q in [0.25, 0.5, 0.9, 0.99] {
            assert!(close(b.quantile(q).unwrap(), q, 1e-9), "q={q}");
        }
    }

    /// Two producers with different bounds merge into one distribution:
    /// the overlapping sweep equals the sum of both.
    #[test]
    fn overlapping_buckets_sweep_their_sum() {
        let mut b = Buckets::default();
        b.add(0.0, 1.0, 100.0); // uniform on [0,1]
        b.add(0.0, 2.0, 100.0); // uniform on [0,2]
        // CDF(x) for x ≤ 1: 100x + 50x = 150x; median rank 100 → x = 2/3.
        assert!(close(b.quantile(0.5).unwrap(), 2.0 / 3.0, 1e-12));
        // x > 1: 100 + 50x; rank 180 → x = 1.6.
        assert!(close(b.quantile(0.9).unwrap(), 1.6, 1e-12));
        // A point mass inside a range.
        let mut p = Buckets::default();
        p.add(0.0, 1.0, 50.0);
        p.add(0.5, 0.5, 50.0);
        p.add(0.0, 1.0, 0.0);
        assert!(close(p.quantile(0.2).unwrap(), 0.4, 1e-12));
        assert_eq!(p.quantile(0.5), Some(0.5));
        assert!(close(p.quantile(0.9).unwrap(), 0.8, 1e-12));
    }

    #[test]
    fn bad_explicit_buckets_are_named() {
        assert_eq!(
            check_explicit(&[1.0, 2.0], 2),
            Err(BadBuckets::CountMismatch {
                counts: 2,
                bounds: 2
            })
        );
        assert_eq!(check_explicit(&[2.0, 1.0], 3), Err(BadBuckets::Bounds));
        assert_eq!(check_explicit(&[1.0, f64::NAN], 3), Err(BadBuckets::Bounds));
        assert_eq!(check_explicit(&[1.0], 0), Ok(()));
    }

    /// Scale 0: base 2, bucket i = (2^i, 2^(i+1)].
    #[test]
    fn exponential_buckets_map_to_powers_of_the_base() {
        let e = ExpBuckets {
            scale: 0,
            zero_count: 10,
            pos_offset: 1,
            pos: vec![10, 20], // (2,4], (4,8]
            neg_offset: 0,
            neg: vec![10], // [-2,-1)
            ..Default::default()
        };
        let mut b = Buckets::default();
        e.add_to(None, None, &mut b);
        assert_eq!(
            b.items(),
            &[
                Bucket {
                    lo: -2.0,
                    hi: -1.0,
                    n: 10.0
                },
                Bucket {
                    lo: 0.0,
                    hi: 0.0,
                    n: 10.0
                },
                Bucket {
                    lo: 2.0,
                    hi: 4.0,
                    n: 10.0
                },
                Bucket {
                    lo: 4.0,
                    hi: 8.0,
                    n: 20.0
                },
            ]
        );
        assert_eq!(b.quantile(0.25), Some(0.0));
        assert!(close(b.quantile(0.75).unwrap(), 5.5, 1e-12));
        // Scale 3: base 2^(1/8).
        assert!(close(ExpBuckets::edge(3, 8), 2.0, 1e-12));
        assert!(close(ExpBuckets::edge(-1, 1), 4.0, 1e-12));
    }

    #[test]
    fn exponential_deltas_align_scales_and_detect_resets() {
        let prev = ExpBuckets {
            scale: 2,
            pos_offset: 4,
            pos: vec![1, 1, 1, 1], // indices 4..8 at scale 2
            ..Default::default()
        };
        // The producer downscaled to 1 and recorded two more values.
        let cur = ExpBuckets {
            scale: 1,
            pos_offset: 2,
            pos: vec![3, 3], // indices 2,3 at scale 1 = 4..6, 6..8 at scale 2
            ..Default::default()
        };
        let d = cur.delta_since(&prev).unwrap();
        assert_eq!((d.scale, d.pos_offset, d.pos.clone()), (1, 2, vec![1, 1]));
        let shrunk = ExpBuckets {
            scale: 1,
            pos_offset: 2,
            pos: vec![1, 3],
            ..Default::default()
        };
        assert_eq!(shrunk.delta_since(&prev), None);
        // Negative offsets downscale by floor division.
        let neg = ExpBuckets {
            scale: 1,
            pos_offset: -3,
            pos: vec![1, 1, 1],
            ..Default::default()
        };
        let down = neg.downscale(0);
        assert_eq!((down.pos_offset, down.pos), (-2, vec![1, 2]));
    }

    #[test]
    fn hostile_bucket_layouts_are_bounded() {
        assert_eq!(
            check_explicit(&vec![1.0; MAX_BUCKETS], MAX_BUCKETS + 1),
            Err(BadBuckets::TooMany(MAX_BUCKETS + 1))
        );
        let far = |off| ExpBuckets {
            scale: 0,
            pos_offset: off,
            pos: vec![1],
            ..Default::default()
        };
        // Two points with offsets 4 billion apart: a reset, not a 32 GB
        // allocation.
        assert_eq!(far(2_000_000_000).delta_since(&far(-2_000_000_000)), None);
        let wide = ExpBuckets {
            pos: vec![1; MAX_BUCKETS + 1],
            ..Default::default()
        };
        assert_eq!(wide.check(), Err(BadBuckets::TooMany(MAX_BUCKETS + 1)));
    }

    #[test]
    fn explicit_deltas() {
        let b = [1.0, 2.0];
        assert_eq!(
            explicit_delta(&b, &[1, 2, 3], &b, &[2, 2, 5]),
            Some(vec![1, 0, 2])
        );
        assert_eq!(explicit_delta(&b, &[1, 2, 3], &b, &[0, 2, 5]), None);
        assert_eq!(
            explicit_delta(&b, &[1, 2, 3], &[1.0, 3.0], &[2, 2, 5]),
            None
        );
    }
}
