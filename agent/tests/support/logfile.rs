//! A log-writing application for durability tests: a thread that appends
//! numbered CRI lines to a file at a fixed rate, carrying Luhn-valid card
//! numbers in several spellings, and that can rotate its file by rename or
//! by copytruncate while it writes. Plus the check that every numbered line
//! arrived, and the count of duplicates.
//!
//! Include with `#[path = "support/logfile.rs"] mod logfile;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Luhn-valid test card numbers, as people and programs write them.
pub const CARDS: [&str; 6] = [
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5500000000000004",
    "3782 822463 10005",
    "6011-0009-9013-9424",
    "4012888888881881",
];

/// How each of [`CARDS`] must arrive: first 6 and last 4 digits kept,
/// separators in place.
pub const MASKED: [&str; 6] = [
    "4111 11** **** 1111",
    "4111-11**-****-1111",
    "550000******0004",
    "3782 82**** *0005",
    "6011-00**-****-9424",
    "401288******1881",
];

/// The message of line `seq` (what the agent ships as the record body).
pub fn message(seq: u64) -> String {
    let card = CARDS[(seq % CARDS.len() as u64) as usize];
    format!(
        "seq={seq:09} user=u{:04} paid EUR {}.{:02} with card {card} status=approved",
        seq % 9973,
        seq % 500,
        seq % 100
    )
}

/// The sequence number in a body written by [`message`].
pub fn seq_of(body: &str) -> Option<u64> {
    let rest = body.strip_prefix("seq=")?;
    rest.get(..9)?.parse().ok()
}

/// How the writer rotates its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    None,
    /// Rename `app.log` → `app.log.N`, create a new `app.log` (kubelet,
    /// logrotate `create`).
    Rename,
    /// Copy `app.log` → `app.log.N`, truncate `app.log` in place (logrotate
    /// `copytruncate`); the writer keeps its `O_APPEND` descriptor.
    CopyTruncate,
}

/// A writer thread; see the module docs.
pub struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    rotations: Arc<AtomicU64>,
    /// Lines per second over the whole run, from its first line to its last.
    handle: Option<JoinHandle<f64>>,
}

/// What to write.
#[derive(Clone, Debug)]
pub struct Plan {
    pub path: PathBuf,
    pub lines_per_sec: u64,
    /// Stop after this many lines (the writer also stops when asked).
    pub total: u64,
    pub rotation: Rotation,
    /// Rotate after every this many lines.
    pub rotate_every: u64,
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

impl Writer {
    pub fn start(plan: Plan) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let rotations = Arc::new(AtomicU64::new(0));
        let (s, w, r) = (stop.clone(), written.clone(), rotations.clone());
        let handle = std::thread::spawn(move || run(plan, s, w, r));
        Writer {
            stop,
            written,
            rotations,
            handle: Some(handle),
        }
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }

    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` lines are written.
    pub fn wait_written(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.written() < n {
            assert!(
                Instant::now() < deadline,
                "writer stalled at {}",
                self.written()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the plan to complete; returns the lines written and the
    /// rate achieved (lines per second, first line to last).
    pub fn finish(mut self) -> (u64, f64) {
        let rate = self.handle.take().unwrap().join().unwrap();
        (self.written(), rate)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    plan: Plan,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    rotations: Arc<AtomicU64>,
) -> f64 {
    let mut file = open_append(&plan.path);
    let started = Instant::now();
    let mut seq = 0u64;
    let mut buf = String::new();
    while seq < plan.total && !stop.load(Ordering::SeqCst) {
        let due =
            ((started.elapsed().as_secs_f64() * plan.lines_per_sec as f64) as u64).min(plan.total);
        buf.clear();
        while seq < due {
            let ts = chrono_like(seq);
            buf.push_str(&format!("{ts} stdout F {}\n", message(seq)));
            seq += 1;
            if plan.rotation != Rotation::None && seq.is_multiple_of(plan.rotate_every) {
                // Write what belongs to the old file, then rotate.
                file.write_all(buf.as_bytes()).unwrap();
                buf.clear();
                rotate(
                    &plan,
                    &mut file,
                    rotations.fetch_add(1, Ordering::SeqCst) + 1,
                );
            }
        }
        if !buf.is_empty() {
            file.write_all(buf.as_bytes()).unwrap();
        }
        written.store(seq, Ordering::SeqCst);
        if seq < plan.total {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    written.store(seq, Ordering::SeqCst);
    seq as f64 / started.elapsed().as_secs_f64()
}

fn rotate(plan: &Plan, file: &mut File, n: u64) {
    let rotated = PathBuf::from(format!("{}.{n}", plan.path.display()));
    match plan.rotation {
        Rotation::None => {}
        Rotation::Rename => {
            std::fs::rename(&plan.path, &rotated).unwrap();
            *file = open_append(&plan.path);
        }
        Rotation::CopyTruncate => {
            std::fs::copy(&plan.path, &rotated).unwrap();
            file.set_len(0).unwrap();
        }
    }
}

/// A CRI timestamp that moves with `seq` (the agent does not care whether
/// it is the real time).
fn chrono_like(seq: u64) -> String {
    let s = seq / 1000;
    let ns = (seq % 1000) * 1_000_000;
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{ns:09}Z",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

/// What arrived, against what was written.
#[derive(Debug)]
pub struct Tally {
    pub missing: Vec<u64>,
    pub duplicates: u64,
    /// Bodies holding a card number unmasked.
    pub unmasked: Vec<String>,
    /// Bodies whose sequence number could not be read.
    pub unparsable: Vec<String>,
}

/// Checks `bodies` against lines `0..written`.
pub fn tally(bodies: &[String], written: u64) -> Tally {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    let mut unmasked = Vec::new();
    let mut unparsable = Vec::new();
    for b in bodies {
        if CARDS.iter().any(|c| b.contains(c)) {
            unmasked.push(b.clone());
        }
        match seq_of(b) {
            Some(s) => {
                *seen.entry(s).or_default() += 1;
                let masked = MASKED[(s % MASKED.len() as u64) as usize];
                if !b.contains(masked) {
                    unmasked.push(b.clone());
                }
            }
            None => unparsable.push(b.clone()),
        }
    }
    let missing = (0..written).filter(|s| !seen.contains_key(s)).collect();
    let duplicates = seen.values().map(|n| n - 1).sum();
    Tally {
        missing,
        duplicates,
        unmasked,
        unparsable,
    }
}

/// Polls until every line `0..written` is among what `bodies()` returns
/// (cheaply: the full tally runs only once `count()` reaches `written` and
/// again only when it has grown since), or `within` passes. Returns the
/// final tally; `Err` carries the last one on timeout.
///
/// The tally clones and indexes every body; doing it on every poll would
/// make the test compete with the agent it measures for the machine's CPUs.
pub fn wait_all(
    written: u64,
    within: Duration,
    count: impl Fn() -> usize,
    bodies: impl Fn() -> Vec<String>,
) -> Result<Tally, Tally> {
    let deadline = Instant::now() + within;
    let mut tallied_at = None;
    loop {
        let n = count();
        if n as u64 >= written && tallied_at != Some(n) {
            let t = tally(&bodies(), written);
            if t.missing.is_empty() {
                return Ok(t);
            }
            tallied_at = Some(n);
            if Instant::now() > deadline {
                return Err(t);
            }
        } else if Instant::now() > deadline {
            return Err(tally(&bodies(), written));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Seconds since `t`, for logs.
pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}
