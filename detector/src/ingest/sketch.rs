//! A log-linear quantile sketch for span latencies (DDSketch, Masson et al.,
//! VLDB 2019).
//!
//! Positive values fall into buckets `(γ^(i−1), γ^i]` with
//! `γ = (1 + α) / (1 − α)`; a quantile is answered with its bucket's
//! representative `2γ^i / (γ + 1)`, which is within relative error `α` of
//! every value in the bucket. With `α = 2 %` a bucket spans 4 %, so a
//! latency range of 1 ms – 10 s (four decades) needs ~230 buckets.
//!
//! The store is dense over the occupied index range (one `u32` per bucket
//! between the smallest and the largest index seen): an insert is a
//! logarithm and an increment, no allocation once the range is reached.
//! The range is capped at [`MAX_BINS`]; beyond it the lowest buckets are
//! collapsed into one (the high quantiles, which pages are about, keep
//! their accuracy). Values ≤ 1 ns (and zero-length spans) are counted in a
//! separate zero bucket. Exact `min` and `max` are kept and clamp the
//! answers, so p0/p100 are exact.
//!
//! Sketches merge by adding buckets: the per-step sketches of one operation
//! could be rolled up into longer windows without loss beyond `α`.

/// Relative accuracy of every quantile answer.
pub const RELATIVE_ACCURACY: f64 = 0.02;

/// Most buckets one sketch holds (≈ 8 KiB).
pub const MAX_BINS: usize = 2048;

/// Values at or below this go to the zero bucket.
const MIN_POSITIVE: f64 = 1e-9;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sketch {
    /// Index of `bins[0]`.
    offset: i32,
    bins: Vec<u32>,
    zero: u64,
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            offset: 0,
            bins: Vec::new(),
            zero: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
        }
    }
}

impl Sketch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    fn index(v: f64) -> i32 {
        (v.ln() / gamma().ln()).ceil() as i32
    }

    fn value_of(i: i32) -> f64 {
        let g = gamma();
        2.0 * g.powi(i) / (g + 1.0)
    }

    /// Adds one non-negative value (negative and non-finite values are
    /// ignored: latencies cannot be either).
    pub fn add(&mut self, v: f64) {
        self.add_n(v, 1);
    }

    pub fn add_n(&mut self, v: f64, n: u32) {
        if !v.is_finite() || v < 0.0 || n == 0 {
            return;
        }
        self.count += n as u64;
        self.sum += v * n as f64;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v <= MIN_POSITIVE {
            self.zero += n as u64;
            return;
        }
        let i = Self::index(v);
        let slot = self.slot_for(i);
        self.bins[slot] = self.bins[slot].saturating_add(n);
    }

    /// The bin position for index `i`, growing (or collapsing) the range.
    fn slot_for(&mut self, i: i32) -> usize {
        if self.bins.is_empty() {
            self.offset = i;
            self.bins.push(0);
            return 0;
        }
        let hi = self.offset + self.bins.len() as i32 - 1;
        if i < self.offset {
            let want = (hi - i + 1) as usize;
            if want > MAX_BINS {
                // Collapse: the value lands in the lowest bucket kept.
                let new_lo = hi - MAX_BINS as i32 + 1;
                self.grow_down(new_lo);
                return 0;
            }
            self.grow_down(i);
            0
        } else if i > hi {
            let want = (i - self.offset + 1) as usize;
            if want > MAX_BINS {
                let new_lo = i - MAX_BINS as i32 + 1;
                self.collapse_below(new_lo);
            }
            let len = (i - self.offset + 1) as usize;
            self.bins.resize(len, 0);
            len - 1
        } else {
            (i - self.offset) as usize
        }
    }

    fn grow_down(&mut self, new_lo: i32) {
        if new_lo >= self.offset {
            return;
        }
        let extra = (self.offset - new_lo) as usize;
        let mut v = vec![0u32; extra + self.bins.len()];
        v[extra..].copy_from_slice(&self.bins);
        self.bins = v;
        self.offset = new_lo;
    }

    /// Folds every bin below `new_lo` into bin `new_lo`.
    fn collapse_below(&mut self, new_lo: i32) {
        if new_lo <= self.offset {
            return;
        }
        let cut = ((new_lo - self.offset) as usize).min(self.bins.len());
        let folded: u32 = self.bins[..cut]
            .iter()
            .fold(0u32, |a, &b| a.saturating_add(b));
        self.bins.drain(..cut);
        self.offset = new_lo;
        if self.bins.is_empty() {
            self.bins.push(0);
        }
        self.bins[0] = self.bins[0].saturating_add(folded);
    }

    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.zero += other.zero;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        for (j, &c) in other.bins.iter().enumerate() {
            if c > 0 {
                let slot = self.slot_for(other.offset + j as i32);
                self.bins[slot] = self.bins[slot].saturating_add(c);
            }
        }
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) within relative error
    /// [`RELATIVE_ACCURACY`]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        // The extremes are known exactly.
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        let rank = q * (self.count - 1) as f64;
        let mut seen = self.zero as f64;
        if seen > rank {
            return Some(0f64.max(self.min));
        }
        for (j, &c) in self.bins.iter().enumerate() {
            seen += c as f64;
            if seen > rank {
                let v = Self::value_of(self.offset + j as i32);
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Bytes held, heap included.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.bins.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
        sorted[rank]
    }

    /// Quantiles of several distributions are within α of the exact ones.
    #[test]
    fn quantiles_are_within_relative_accuracy() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let dists: Vec<(&str, Vec<f64>)> = vec![
            (
                "uniform 1–100 ms",
                (0..20_000).map(|_| 0.001 + 0.099 * uniform()).collect(),
            ),
            (
                "exponential mean 50 ms",
                (0..20_000)
                    .map(|_| -0.05 * (1.0 - uniform()).ln())
                    .collect(),
            ),
            (
                "log-normal, heavy tail",
                (0..20_000)
                    .map(|_| {
                        let (u1, u2) = (uniform().max(1e-12), uniform());
                        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                        (z * 1.2 - 3.0).exp()
                    })
                    .collect(),
            ),
            (
                "bimodal: cache hits and misses",
                (0..20_000)
                    .map(|i| {
                        if i % 10 == 0 {
                            0.8 + 0.4 * uniform()
                        } else {
                            0.002 + 0.001 * uniform()
                        }
                    })
                    .collect(),
            ),
        ];
        for (name, mut xs) in dists {
            let mut s = Sketch::new();
            for &x in &xs {
                s.add(x);
            }
            xs.sort_by(f64::total_cmp);
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let want = exact(&xs, q);
                let got = s.quantile(q).unwrap();
                let err = (got - want).abs() / want;
                assert!(
                    err <= RELATIVE_ACCURACY + 1e-9,
                    "{name} q={q}: got {got}, exact {want}, error {err}"
                );
            }
            assert!(s.state_bytes() < 4096, "{name}: {} bytes", s.state_bytes());
        }
    }

    #[test]
    fn merge_equals_adding_everything_to_one() {
        let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
        for i in 1..=1000 {
            let v = i as f64 * 0.001;
            if i % 3 == 0 { &mut a } else { &mut b }.add(v);
            all.add(v);
        }
        // Widely separated ranges force both growth directions.
        a.add(1e-7);
        all.add(1e-7);
        b.add(1e3);
        all.add(1e3);
        a.merge(&b);
        for q in [0.01, 0.5, 0.99, 1.0] {
            assert_eq!(a.quantile(q), all.quantile(q), "q={q}");
        }
        assert_eq!(a.count(), 1002);
    }

    #[test]
    fn zero_and_extreme_values() {
        let mut s = Sketch::new();
        assert_eq!(s.quantile(0.5), None);
        s.add(0.0);
        s.add(0.0);
        s.add(f64::NAN);
        s.add(-1.0);
        s.add(2.0);
        assert_eq!(s.count(), 3);
        assert_eq!(s.quantile(0.5), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(2.0));
        // A range wider than MAX_BINS collapses the low end but keeps the
        // top accurate.
        let mut w = Sketch::new();
        w.add(1e-8);
        w.add(1e12);
        w.add(1e11);
        assert!(w.bins.len() <= MAX_BINS);
        let top = w.quantile(1.0).unwrap();
        assert_eq!(top, 1e12);
        let mid = w.quantile(0.5).unwrap();
        assert!((mid - 1e11).abs() / 1e11 <= RELATIVE_ACCURACY, "{mid}");
    }
}
