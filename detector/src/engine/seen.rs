//! Levels the series has already visited: the range of its recent past.
//!
//! The models judge a point against short baselines (the last few values,
//! the last 64, this time of day) and their calibrators against how often
//! they were surprised lately. Neither remembers *where* the series has
//! been: a series that hovers at 10 and visits 300 a few times a day
//! surprises every short baseline each time, though to an operator
//! "back at 300 again" is routine, while the first visit to 3000 — or the
//! first drop to a level not seen all week — is news. Measured on NAB
//! (before this existed): 95 % of the false pages were values inside the
//! range the series covered over the preceding ~4000 points, against about
//! half of the incidents' first flagged points.
//!
//! So the engine keeps the maximum and minimum of the last
//! [`BLOCKS`]`· block` points (by blocks: the running extremes of the
//! current block plus those of the `BLOCKS − 1` full blocks before it; a
//! block's extremes are forgotten all at once when it leaves the horizon)
//! and discounts the evidence against a value inside that range by
//! `seen_decades` (see [`crate::engine::EngineConfig::seen_decades`]). It is a
//! discount, not a gate: a point the models find extraordinary enough
//! still pages inside the range. Cost: two compares per point, and seven
//! at each block boundary. State: 76 bytes.

use serde::{Deserialize, Serialize};

/// Blocks the remembered range spans (the current, partial one included).
pub const BLOCKS: usize = 8;

/// Running extremes of the last `BLOCKS` blocks of a series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// Extremes of the full blocks, a ring of `BLOCKS − 1`.
    hi: [f32; BLOCKS - 1],
    lo: [f32; BLOCKS - 1],
    /// Extremes over the full blocks in the ring (cached at each boundary).
    past_hi: f32,
    past_lo: f32,
    /// Extremes of the current block (valid when `in_block > 0`).
    cur_hi: f32,
    cur_lo: f32,
    /// Points in the current block.
    in_block: u16,
    /// Full blocks in the ring, and the slot the next one goes to.
    full: u8,
    next: u8,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            hi: [0.0; BLOCKS - 1],
            lo: [0.0; BLOCKS - 1],
            // An empty range (hi < lo) contains nothing.
            past_hi: f32::MIN,
            past_lo: f32::MAX,
            cur_hi: 0.0,
            cur_lo: 0.0,
            in_block: 0,
            full: 0,
            next: 0,
        }
    }
}

impl Seen {
    /// Whether `x` lies within the remembered range (inclusive).
    pub fn contains(&self, x: f64, margin: f64) -> bool {
        let (x, margin) = (x as f32, margin as f32);
        let (mut hi, mut lo) = (self.past_hi, self.past_lo);
        if self.in_block > 0 {
            hi = hi.max(self.cur_hi);
            lo = lo.min(self.cur_lo);
        }
        lo - margin <= x && x <= hi + margin
    }

    /// Learns `x`; a block closes after `block` points.
    pub fn learn(&mut self, x: f64, block: u16) {
        let x = x as f32;
        if self.in_block == 0 {
            self.cur_hi = x;
            self.cur_lo = x;
        } else {
            self.cur_hi = self.cur_hi.max(x);
            self.cur_lo = self.cur_lo.min(x);
        }
        self.in_block += 1;
        if self.in_block >= block {
            let slot = self.next as usize;
            self.hi[slot] = self.cur_hi;
            self.lo[slot] = self.cur_lo;
            self.next = ((slot + 1) % (BLOCKS - 1)) as u8;
            self.full = (self.full + 1).min((BLOCKS - 1) as u8);
            let n = self.full as usize;
            self.past_hi = self.hi[..n].iter().copied().fold(f32::MIN, f32::max);
            self.past_lo = self.lo[..n].iter().copied().fold(f32::MAX, f32::min);
            self.in_block = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_covers_the_horizon_and_then_forgets() {
        let mut s = Seen::default();
        assert!(!s.contains(0.0, 0.0), "nothing seen yet");
        s.learn(5.0, 4);
        assert!(s.contains(5.0, 0.0));
        assert!(!s.contains(5.1, 0.0));
        // A peak of 100, then BLOCKS blocks of calm at 1..2.
        for x in [100.0, 1.0, 2.0] {
            s.learn(x, 4);
        }
        assert!(s.contains(100.0, 0.0) && s.contains(1.0, 0.0) && !s.contains(0.5, 0.0));
        for i in 0..(BLOCKS - 1) * 4 - 1 {
            s.learn(1.0 + (i % 2) as f64, 4);
            assert!(s.contains(100.0, 0.0), "forgot the peak after {i} points");
        }
        s.learn(1.0, 4);
        assert!(!s.contains(100.0, 0.0), "the peak's block left the horizon");
        assert!(s.contains(1.5, 0.0));
    }

    #[test]
    fn restored_state_continues_identically() {
        let mut a = Seen::default();
        for i in 0..37 {
            a.learn((i * 7 % 11) as f64, 5);
        }
        let mut b: Seen = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        for i in 0..100 {
            let x = (i * 13 % 17) as f64;
            assert_eq!(a.contains(x, 0.0), b.contains(x, 0.0));
            a.learn(x, 5);
            b.learn(x, 5);
        }
        assert_eq!(a, b);
    }
}
