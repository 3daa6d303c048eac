//! Multiline aggregation (stack traces, continued lines), Vector's model.
//!
//! A line matching `start_pattern` opens a group, when no group is open. With
//! a group open, `condition_pattern` and the mode decide each next line:
//!
//! | mode               | condition matches            | condition does not match          |
//! |--------------------|------------------------------|-----------------------------------|
//! | `continue_through` | line joins the group         | group ends; the line starts anew  |
//! | `continue_past`    | line joins the group         | line joins, then the group ends   |
//! | `halt_before`      | group ends; line starts anew | line joins the group              |
//! | `halt_with`        | line joins, then group ends  | line joins the group              |
//!
//! "Starts anew" means: opens a group if it matches `start_pattern`, else is
//! a record by itself. A group also ends when no line joined it for
//! `timeout` (the writer may never print the line that would end it).
//!
//! Groups are per stream: a container's stdout stack trace never swallows
//! its stderr lines. Lines are joined with `\n`; a group is capped at
//! `max_line_bytes` (the rest is cut and counted). Regexes run on bytes
//! (no UTF-8 validation) and only when multiline is configured.

use std::time::Duration;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::format::IoStream;

/// `multiline:` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Regex a line must match to open a group (e.g. `^[^\s]` for Java).
    pub start_pattern: String,
    /// Regex the mode tests each following line against (e.g. `^\s+at `).
    pub condition_pattern: String,
    pub mode: MultilineMode,
    /// A group with no new line for this long is emitted as it is.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// How `condition_pattern` decides whether a line belongs to the open group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultilineMode {
    ContinueThrough,
    ContinuePast,
    HaltBefore,
    HaltWith,
}

impl MultilineConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (name, pat) in [
            ("start_pattern", &self.start_pattern),
            ("condition_pattern", &self.condition_pattern),
        ] {
            if let Err(e) = Regex::new(pat) {
                out.push(format!("{path}.{name}: invalid regex: {e}"));
            }
        }
        if self.timeout.is_zero() {
            out.push(format!("{path}.timeout: must be greater than 0"));
        }
        out
    }

    pub(crate) fn compile(&self) -> Result<Rules, regex::Error> {
        Ok(Rules {
            start: Regex::new(&self.start_pattern)?,
            condition: Regex::new(&self.condition_pattern)?,
            mode: self.mode,
            timeout: self.timeout,
        })
    }
}

/// Compiled multiline settings.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    start: Regex,
    condition: Regex,
    mode: MultilineMode,
    timeout: Duration,
}

/// A logical line (after CRI/docker partials are joined) or a finished group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Logical<'a> {
    pub msg: &'a [u8],
    pub stream: Option<IoStream>,
    /// File offset where the line (its first physical chunk) starts.
    pub start: u64,
    pub time: u64,
    pub truncated: bool,
}

#[derive(Debug)]
struct Group {
    stream: Option<IoStream>,
    start: u64,
    time: u64,
    buf: Vec<u8>,
    truncated: bool,
    last: Instant,
}

impl Group {
    fn open(line: Logical<'_>, now: Instant, max: usize) -> Group {
        let take = line.msg.len().min(max);
        Group {
            stream: line.stream,
            start: line.start,
            time: line.time,
            buf: line.msg[..take].to_vec(),
            truncated: line.truncated || take < line.msg.len(),
            last: now,
        }
    }

    /// Appends a line; returns true when this is what first cut the group.
    fn append(&mut self, line: Logical<'_>, now: Instant, max: usize) -> bool {
        self.last = now;
        let was = self.truncated;
        let room = max.saturating_sub(self.buf.len() + 1);
        if room == 0 {
            self.truncated = true;
        } else {
            self.buf.push(b'\n');
            let take = line.msg.len().min(room);
            self.buf.extend_from_slice(&line.msg[..take]);
            self.truncated |= take < line.msg.len() || line.truncated;
        }
        !was && self.truncated
    }

    fn as_logical(&self) -> Logical<'_> {
        Logical {
            msg: &self.buf,
            stream: self.stream,
            start: self.start,
            time: self.time,
            truncated: self.truncated,
        }
    }
}

/// Open groups, one slot per stream (stdout, stderr, none).
#[derive(Debug)]
pub(crate) struct Aggregator {
    rules: Rules,
    max: usize,
    groups: [Option<Group>; 3],
    /// Groups cut at `max` since the last `take_truncations`.
    truncations: u64,
}

fn slot(stream: Option<IoStream>) -> usize {
    stream.map_or(2, IoStream::index)
}

impl Aggregator {
    pub fn new(rules: Rules, max: usize) -> Aggregator {
        Aggregator {
            rules,
            max,
            groups: [None, None, None],
            truncations: 0,
        }
    }

    pub fn push(&mut self, line: Logical<'_>, now: Instant, emit: &mut impl FnMut(Logical<'_>)) {
        let i = slot(line.stream);
        let Some(mut group) = self.groups[i].take() else {
            return self.fresh(line, now, emit);
        };
        let matched = self.rules.condition.is_match(line.msg);
        match (self.rules.mode, matched) {
            (MultilineMode::ContinueThrough, true)
            | (MultilineMode::ContinuePast, true)
            | (MultilineMode::HaltBefore, false)
            | (MultilineMode::HaltWith, false) => {
                self.append(&mut group, line, now);
                self.groups[i] = Some(group);
            }
            (MultilineMode::ContinuePast, false) | (MultilineMode::HaltWith, true) => {
                self.append(&mut group, line, now);
                emit(group.as_logical());
            }
            (MultilineMode::ContinueThrough, false) | (MultilineMode::HaltBefore, true) => {
                emit(group.as_logical());
                self.fresh(line, now, emit);
            }
        }
    }

    fn append(&mut self, group: &mut Group, line: Logical<'_>, now: Instant) {
        if group.append(line, now, self.max) {
            self.truncations += 1;
        }
    }

    fn fresh(&mut self, line: Logical<'_>, now: Instant, emit: &mut impl FnMut(Logical<'_>)) {
        if self.rules.start.is_match(line.msg) {
            let group = Group::open(line, now, self.max);
            if group.truncated && !line.truncated {
                self.truncations += 1;
            }
            self.groups[slot(line.stream)] = Some(group);
        } else {
            emit(line);
        }
    }

    /// Emits groups that waited `timeout` for another line.
    pub fn flush_expired(&mut self, now: Instant, emit: &mut impl FnMut(Logical<'_>)) {
        for g in &mut self.groups {
            if g.as_ref()
                .is_some_and(|g| now.saturating_duration_since(g.last) >= self.rules.timeout)
                && let Some(g) = g.take()
            {
                emit(g.as_logical());
            }
        }
    }

    /// Emits every open group, oldest first.
    pub fn flush_all(&mut self, emit: &mut impl FnMut(Logical<'_>)) {
        let mut open: Vec<Group> = self.groups.iter_mut().filter_map(Option::take).collect();
        open.sort_by_key(|g| g.start);
        for g in open {
            emit(g.as_logical());
        }
    }

    /// Where the earliest open group starts (it must be re-read after a restart).
    #[cfg(test)]
    pub fn pending_start(&self) -> Option<u64> {
        self.groups.iter().flatten().map(|g| g.start).min()
    }

    /// Where the open group of slot `i` (stdout, stderr, no stream) starts.
    pub fn pending_start_of(&self, i: usize) -> Option<u64> {
        self.groups[i].as_ref().map(|g| g.start)
    }

    /// When the earliest open group times out.
    pub fn deadline(&self) -> Option<Instant> {
        self.groups
            .iter()
            .flatten()
            .map(|g| g.last + self.rules.timeout)
            .min()
    }

    pub fn clear(&mut self) {
        self.groups = [None, None, None];
    }

    pub fn take_truncations(&mut self) -> u64 {
        std::mem::take(&mut self.truncations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(start: &str, cond: &str, mode: MultilineMode) -> Aggregator {
        let cfg = MultilineConfig {
            start_pattern: start.into(),
            condition_pattern: cond.into(),
            mode,
            timeout: Duration::from_secs(1),
        };
        Aggregator::new(cfg.compile().unwrap(), 1 << 20)
    }

    fn run(a: &mut Aggregator, lines: &[&str]) -> Vec<String> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut emit = |l: Logical<'_>| out.push(String::from_utf8(l.msg.to_vec()).unwrap());
        for (i, l) in lines.iter().enumerate() {
            let line = Logical {
                msg: l.as_bytes(),
                stream: None,
                start: i as u64,
                time: 0,
                truncated: false,
            };
            a.push(line, now, &mut emit);
        }
        a.flush_all(&mut emit);
        out
    }

    #[test]
    fn the_four_modes() {
        let mut a = agg(r"^[^\s]", r"^\s", MultilineMode::ContinueThrough);
        assert_eq!(
            run(&mut a, &["a", " 1", " 2", "b", "c", " 3"]),
            ["a\n 1\n 2", "b", "c\n 3"]
        );
        let mut a = agg(r"\\$", r"\\$", MultilineMode::ContinuePast);
        assert_eq!(
            run(&mut a, &["x", "a \\", "b \\", "c", "d"]),
            ["x", "a \\\nb \\\nc", "d"]
        );
        let mut a = agg(r"^BEGIN", r"^BEGIN|^plain", MultilineMode::HaltBefore);
        assert_eq!(
            run(
                &mut a,
                &["plain", "BEGIN 1", "x", "y", "BEGIN 2", "z", "plain"]
            ),
            ["plain", "BEGIN 1\nx\ny", "BEGIN 2\nz", "plain"]
        );
        let mut a = agg(r"^INSERT", r";$", MultilineMode::HaltWith);
        assert_eq!(
            run(&mut a, &["INSERT a", "b,", "c;", "noise", "INSERT d;"]),
            ["INSERT a\nb,\nc;", "noise", "INSERT d;"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_flushes_an_idle_group_and_tracks_its_start() {
        let mut a = agg(r"^[^\s]", r"^\s", MultilineMode::ContinueThrough);
        let mut out = Vec::new();
        let line = |msg: &'static [u8], start| Logical {
            msg,
            stream: Some(IoStream::Stderr),
            start,
            time: 0,
            truncated: false,
        };
        let mut emit = |l: Logical<'_>| out.push((l.start, l.msg.to_vec()));
        a.push(line(b"Exception", 100), Instant::now(), &mut emit);
        a.push(line(b"  at x", 110), Instant::now(), &mut emit);
        assert_eq!(a.pending_start(), Some(100));
        tokio::time::advance(Duration::from_millis(999)).await;
        a.flush_expired(Instant::now(), &mut emit);
        assert_eq!(a.pending_start(), Some(100), "not yet");
        tokio::time::advance(Duration::from_millis(1)).await;
        a.flush_expired(Instant::now(), &mut emit);
        assert_eq!(out, [(100, b"Exception\n  at x".to_vec())]);
        assert_eq!(a.pending_start(), None);
    }

    #[test]
    fn groups_are_capped() {
        let cfg = MultilineConfig {
            start_pattern: "^S".into(),
            condition_pattern: r"^\s".into(),
            mode: MultilineMode::ContinueThrough,
            timeout: Duration::from_secs(1),
        };
        let mut a = Aggregator::new(cfg.compile().unwrap(), 8);
        let mut out = Vec::new();
        let now = Instant::now();
        let mut emit = |l: Logical<'_>| out.push((l.msg.to_vec(), l.truncated));
        for (i, m) in [&b"S1234"[..], b" 5678", b" 9"].iter().enumerate() {
            let l = Logical {
                msg: m,
                stream: None,
                start: i as u64,
                time: 0,
                truncated: false,
            };
            a.push(l, now, &mut emit);
        }
        a.flush_all(&mut emit);
        assert_eq!(out, [(b"S1234\n 5".to_vec(), true)]);
        assert_eq!(a.take_truncations(), 1);
    }

    #[test]
    fn bad_patterns_are_named() {
        let cfg = MultilineConfig {
            start_pattern: "(".into(),
            condition_pattern: "ok".into(),
            mode: MultilineMode::HaltBefore,
            timeout: Duration::ZERO,
        };
        let p = cfg.problems("file.multiline");
        assert!(
            p[0].starts_with("file.multiline.start_pattern: invalid regex:"),
            "{p:?}"
        );
        assert_eq!(p[1], "file.multiline.timeout: must be greater than 0");
        assert_eq!(p.len(), 2);
    }
}
