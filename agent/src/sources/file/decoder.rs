//! Bytes of one file to OTLP log records, with the offsets that make
//! checkpoints exact.
//!
//! Layers, each per stream where streams exist:
//!
//! 1. **Lines**: `memchr` finds `\n` in each chunk read; a line is handed on
//!    as a slice of the read buffer (no copy) unless it straddles two reads,
//!    then it is assembled in a carry buffer. A line longer than
//!    `max_line_bytes` (plus 1 KiB for CRI/docker framing) keeps its first
//!    bytes; the rest is skipped without being buffered (bounded memory
//!    whatever the file holds). Messages are then cut at `max_line_bytes`
//!    and marked `argus.log.truncated`.
//! 2. **Format** (`format`): CRI, docker json-file, plain.
//! 3. **Partials**: CRI `P` chunks and docker chunks without `\n` are joined
//!    per stream until the closing chunk (capped at `max_line_bytes`). A
//!    partial that waits longer than `partial_timeout` for its end is
//!    emitted as it is (a runtime killed mid-line never writes the `F`).
//! 4. **Multiline** (`multiline`), when configured, per stream.
//! 5. **Record** (`record`): JSON body, severity, attributes.
//!
//! # Offsets: exact replay
//!
//! The decoder knows three positions in the file:
//! - `position`: the next byte to read;
//! - `consumed`: the end of the last complete line;
//! - `resume_offset`: the start of the earliest line that still belongs to
//!   an incomplete record (a pending partial, an open multiline group), else
//!   `consumed` (an unterminated tail is after `consumed`).
//!
//! A batch is cut with a [`Mark`]: the resume offset (where to read again
//! after a restart), `consumed` (called *delivered*: every record completed
//! up to there is in this batch or an earlier one), and, per stream, where
//! that stream's own incomplete record starts. Replaying from a mark, the
//! decoder reads from the resume offset but skips every line that ends at or
//! before the delivered offset and starts before its own stream's pending
//! record: those lines belong to records already delivered. So the state
//! rebuilt for each stream is exactly the state it had when the batch was
//! cut, and the records that follow are exactly those that were not
//! delivered: a stdout partial (or stack trace) pending while stderr lines
//! were shipped costs no duplicate stderr line and cannot re-segment
//! anything after a restart.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::logs::v1::LogRecord;
use tokio::time::Instant;

use super::format::{self, Format, IoStream};
use super::multiline::{Aggregator, Logical, MultilineConfig, Rules};
use super::record::{self, Meta};

/// Fixed per-record overhead in the batch size estimate (attribute keys,
/// timestamps, protobuf framing).
const RECORD_OVERHEAD: usize = 64;
/// A physical line may exceed `max_line_bytes` by this much before it is
/// cut: room for the CRI/docker framing around a message of the maximum size.
const FRAMING_SLACK: usize = 1024;

/// Where a decoder stands, in terms that survive a restart (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// Read from here after a restart.
    pub offset: u64,
    /// Records completed at or before this offset were delivered.
    pub delivered: u64,
    /// Start of each stream's incomplete record (stdout, stderr, lines
    /// without a stream); `None`: nothing of that stream is pending.
    pub pending: [Option<u64>; 3],
}

impl Mark {
    /// Nothing delivered, nothing pending: read from `offset`.
    pub fn at(offset: u64) -> Mark {
        Mark {
            offset,
            delivered: offset,
            pending: [None; 3],
        }
    }
}

/// What every file's decoder shares: compiled from the source config.
#[derive(Clone, Debug)]
pub struct DecoderSettings {
    format: Format,
    multiline: Option<Rules>,
    max_line_bytes: usize,
    partial_timeout: Duration,
    parse_json: bool,
}

impl DecoderSettings {
    pub fn new(
        format: Format,
        multiline: Option<&MultilineConfig>,
        max_line_bytes: usize,
        partial_timeout: Duration,
        parse_json: bool,
    ) -> Result<DecoderSettings, regex::Error> {
        Ok(DecoderSettings {
            format,
            multiline: multiline.map(MultilineConfig::compile).transpose()?,
            max_line_bytes: max_line_bytes.max(1),
            partial_timeout,
            parse_json,
        })
    }
}

/// Records decoded from one or more chunks, and what counting needs.
#[derive(Debug, Default)]
pub struct Output {
    pub records: Vec<LogRecord>,
    /// Estimated encoded size of `records` (for batch cuts; cheap).
    pub approx_bytes: usize,
    /// Physical lines seen.
    pub lines: u64,
    /// Lines or records cut at `max_line_bytes`.
    pub truncated: u64,
    /// Stamped on every record built into this output.
    pub observed_time_unix_nano: u64,
    /// `feed` stops after the line that reaches either cap.
    pub max_records: usize,
    pub max_bytes: usize,
}

impl Output {
    /// An output without caps.
    pub fn new(observed_time_unix_nano: u64) -> Output {
        Output::capped(observed_time_unix_nano, usize::MAX, usize::MAX)
    }

    /// An output `feed` stops filling at `max_records` or `max_bytes`.
    pub fn capped(observed_time_unix_nano: u64, max_records: usize, max_bytes: usize) -> Output {
        Output {
            observed_time_unix_nano,
            max_records,
            max_bytes,
            ..Default::default()
        }
    }

    pub fn is_full(&self) -> bool {
        self.records.len() >= self.max_records || self.approx_bytes >= self.max_bytes
    }
}

/// Decodes one file. Feed it the file's bytes in order, in chunks of any size.
#[derive(Debug)]
pub struct Decoder {
    lines: Lines,
    state: State,
}

#[derive(Debug)]
struct Lines {
    position: u64,
    consumed: u64,
    carry: Vec<u8>,
    carry_start: u64,
    /// Bytes of the carried line were skipped for length.
    carry_cut: bool,
}

#[derive(Debug)]
struct State {
    ctx: Ctx,
    last_format: Format,
    partials: [Option<Partial>; 2],
    multiline: Option<Aggregator>,
}

#[derive(Debug)]
struct Ctx {
    settings: Arc<DecoderSettings>,
    path: Arc<str>,
    /// While replaying from a mark, up to its delivered offset.
    replay: Option<Mark>,
}

#[derive(Debug)]
struct Partial {
    start: u64,
    time: u64,
    buf: Vec<u8>,
    truncated: bool,
    last: Instant,
}

impl Decoder {
    /// A decoder reading `path` from byte `start`, with nothing to replay.
    pub fn new(settings: Arc<DecoderSettings>, path: Arc<str>, start: u64) -> Decoder {
        Decoder::resume(settings, path, Mark::at(start))
    }

    /// A decoder continuing from `mark` (after a restart or a rewind):
    /// reads from `mark.offset`, emits only what `mark` says was not delivered.
    pub fn resume(settings: Arc<DecoderSettings>, path: Arc<str>, mark: Mark) -> Decoder {
        let multiline = settings
            .multiline
            .clone()
            .map(|r| Aggregator::new(r, settings.max_line_bytes));
        let mut d = Decoder {
            lines: Lines {
                position: 0,
                consumed: 0,
                carry: Vec::new(),
                carry_start: 0,
                carry_cut: false,
            },
            state: State {
                ctx: Ctx {
                    settings,
                    path,
                    replay: None,
                },
                last_format: Format::Auto,
                partials: [None, None],
                multiline,
            },
        };
        d.reset(mark);
        d
    }

    /// Forgets everything and continues from `mark`.
    pub fn reset(&mut self, mark: Mark) {
        let lines = &mut self.lines;
        lines.position = mark.offset;
        lines.consumed = mark.offset;
        lines.carry.clear();
        lines.carry.shrink_to(64 * 1024);
        lines.carry_start = mark.offset;
        lines.carry_cut = false;
        self.state.partials = [None, None];
        if let Some(m) = &mut self.state.multiline {
            m.clear();
            m.take_truncations();
        }
        self.state.ctx.replay = (mark.delivered > mark.offset).then_some(mark);
    }

    /// Where this decoder stands: checkpoint this with the batch just cut.
    pub fn mark(&self) -> Mark {
        let mut pending = [None; 3];
        for (i, p) in self.state.partials.iter().enumerate() {
            pending[i] = p.as_ref().map(|p| p.start);
        }
        if let Some(m) = &self.state.multiline {
            for (i, slot) in pending.iter_mut().enumerate() {
                *slot = match (*slot, m.pending_start_of(i)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        let consumed = self.lines.consumed;
        Mark {
            offset: pending.iter().flatten().fold(consumed, |a, &b| a.min(b)),
            delivered: consumed,
            pending,
        }
    }

    /// The file offset of the next byte `feed` expects.
    pub fn position(&self) -> u64 {
        self.lines.position
    }

    /// The end of the last complete line.
    pub fn consumed(&self) -> u64 {
        self.lines.consumed
    }

    /// Where to start reading again so that no incomplete record is lost.
    pub fn resume_offset(&self) -> u64 {
        self.mark().offset
    }

    /// Holds bytes of an incomplete record (partial, open group or unterminated line).
    pub fn has_pending(&self) -> bool {
        self.lines.position > self.lines.consumed || self.resume_offset() < self.lines.consumed
    }

    /// When the earliest pending partial or group times out.
    pub fn deadline(&self) -> Option<Instant> {
        let t = self.state.ctx.settings.partial_timeout;
        let partial = self
            .state
            .partials
            .iter()
            .flatten()
            .map(|p| p.last + t)
            .min();
        let group = self.state.multiline.as_ref().and_then(Aggregator::deadline);
        match (partial, group) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Decodes the next bytes of the file (they start at `position()`).
    /// Returns how many bytes of `chunk` were used: fewer than its length
    /// when `out` filled up, in which case the rest must be fed again
    /// (from `position()`).
    pub fn feed(&mut self, chunk: &[u8], now: Instant, out: &mut Output) -> usize {
        let max = self.state.ctx.settings.max_line_bytes + FRAMING_SLACK;
        let lines = &mut self.lines;
        let mut pos = lines.position;
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let end = pos + i as u64 + 1;
            let piece = &rest[..i];
            if lines.carry.is_empty() && !lines.carry_cut {
                let cut = piece.len() > max;
                let line = if cut { &piece[..max] } else { piece };
                self.state.line(strip_cr(line), pos, end, cut, now, out);
            } else {
                lines.append(piece, max);
                let cut = lines.carry_cut;
                self.state.line(
                    strip_cr(&lines.carry),
                    lines.carry_start,
                    end,
                    cut,
                    now,
                    out,
                );
                lines.carry.clear();
                lines.carry_cut = false;
            }
            lines.consumed = end;
            pos = end;
            rest = &rest[i + 1..];
            if out.is_full() {
                lines.position = pos;
                self.state.collect_truncations(out);
                return chunk.len() - rest.len();
            }
        }
        if !rest.is_empty() {
            if lines.carry.is_empty() && !lines.carry_cut {
                lines.carry_start = pos;
            }
            lines.append(rest, max);
            pos += rest.len() as u64;
        }
        lines.position = pos;
        self.state.collect_truncations(out);
        chunk.len()
    }

    /// Emits partials and groups that waited past their timeout.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Output) {
        let timeout = self.state.ctx.settings.partial_timeout;
        for i in 0..2 {
            if self.state.partials[i]
                .as_ref()
                .is_some_and(|p| now.saturating_duration_since(p.last) >= timeout)
            {
                self.state.close_partial(i, now, out);
            }
        }
        let State { ctx, multiline, .. } = &mut self.state;
        if let Some(m) = multiline {
            m.flush_expired(now, &mut |l| ctx.emit(l, out));
        }
        self.state.collect_truncations(out);
    }

    /// The file is finished (rotated away and drained): emits everything
    /// held, the unterminated last line included.
    pub fn flush_all(&mut self, now: Instant, out: &mut Output) {
        let end = self.lines.position;
        if self.lines.position > self.lines.consumed {
            let lines = &mut self.lines;
            let cut = lines.carry_cut;
            self.state.line(
                strip_cr(&lines.carry),
                lines.carry_start,
                end,
                cut,
                now,
                out,
            );
            lines.carry.clear();
            lines.carry_cut = false;
            lines.consumed = end;
        }
        for i in 0..2 {
            self.state.close_partial(i, now, out);
        }
        let State { ctx, multiline, .. } = &mut self.state;
        if let Some(m) = multiline {
            m.flush_all(&mut |l| ctx.emit(l, out));
        }
        self.state.collect_truncations(out);
    }
}

impl Lines {
    /// Appends to the carried line, keeping at most `max` bytes of it.
    fn append(&mut self, bytes: &[u8], max: usize) {
        let room = max.saturating_sub(self.carry.len());
        if bytes.len() > room {
            self.carry_cut = true;
        }
        self.carry
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl State {
    fn line(
        &mut self,
        raw: &[u8],
        start: u64,
        end: u64,
        cut: bool,
        now: Instant,
        out: &mut Output,
    ) {
        out.lines += 1;
        if cut {
            out.truncated += 1;
        }
        let settings = &self.ctx.settings;
        let max = settings.max_line_bytes;
        let p = format::parse(settings.format, &mut self.last_format, raw);
        if let Some(mark) = self.ctx.replay {
            if end > mark.delivered {
                self.ctx.replay = None;
            } else if mark.pending[p.stream.map_or(2, IoStream::index)].is_none_or(|at| start < at)
            {
                // Part of a record delivered before the mark was taken.
                return;
            }
        }
        if let Some(stream) = p.stream {
            let slot = &mut self.partials[stream.index()];
            if p.partial {
                match slot {
                    Some(pending) => {
                        if pending.append(&p.message, max) && !cut {
                            out.truncated += 1;
                        }
                        pending.truncated |= cut;
                        pending.last = now;
                    }
                    None => {
                        let take = p.message.len().min(max);
                        *slot = Some(Partial {
                            start,
                            time: p.time_unix_nano,
                            buf: p.message[..take].to_vec(),
                            truncated: cut || take < p.message.len(),
                            last: now,
                        });
                    }
                }
                return;
            }
            if let Some(mut pending) = slot.take() {
                if pending.append(&p.message, max) && !cut {
                    out.truncated += 1;
                }
                pending.truncated |= cut;
                let l = Logical {
                    msg: &pending.buf,
                    stream: Some(stream),
                    start: pending.start,
                    time: pending.time,
                    truncated: pending.truncated,
                };
                self.logical(l, now, out);
                return;
            }
        }
        let long = p.message.len() > max;
        if long && !cut {
            out.truncated += 1;
        }
        let l = Logical {
            msg: &p.message[..p.message.len().min(max)],
            stream: p.stream,
            start,
            time: p.time_unix_nano,
            truncated: cut || long,
        };
        self.logical(l, now, out);
    }

    fn close_partial(&mut self, i: usize, now: Instant, out: &mut Output) {
        if let Some(p) = self.partials[i].take() {
            let stream = if i == 0 {
                IoStream::Stdout
            } else {
                IoStream::Stderr
            };
            let l = Logical {
                msg: &p.buf,
                stream: Some(stream),
                start: p.start,
                time: p.time,
                truncated: p.truncated,
            };
            self.logical(l, now, out);
        }
    }

    fn logical(&mut self, l: Logical<'_>, now: Instant, out: &mut Output) {
        match &mut self.multiline {
            Some(m) => m.push(l, now, &mut |g| self.ctx.emit(g, out)),
            None => self.ctx.emit(l, out),
        }
    }

    fn collect_truncations(&mut self, out: &mut Output) {
        if let Some(m) = &mut self.multiline {
            out.truncated += m.take_truncations();
        }
    }
}

impl Partial {
    /// Appends a chunk; true when this is what first cut the line.
    fn append(&mut self, chunk: &[u8], max: usize) -> bool {
        let room = max.saturating_sub(self.buf.len());
        let take = chunk.len().min(room);
        self.buf.extend_from_slice(&chunk[..take]);
        let first_cut = !self.truncated && take < chunk.len();
        self.truncated |= take < chunk.len();
        first_cut
    }
}

impl Ctx {
    fn emit(&self, l: Logical<'_>, out: &mut Output) {
        out.approx_bytes += l.msg.len() + self.path.len() + RECORD_OVERHEAD;
        out.records.push(record::build(
            l.msg,
            Meta {
                stream: l.stream,
                time_unix_nano: l.time,
                observed_time_unix_nano: out.observed_time_unix_nano,
                truncated: l.truncated,
                path: &self.path,
                parse_json: self.settings.parse_json,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::multiline::MultilineMode;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn settings(format: Format, max: usize) -> Arc<DecoderSettings> {
        Arc::new(DecoderSettings::new(format, None, max, Duration::from_secs(5), true).unwrap())
    }

    fn body(r: &LogRecord) -> String {
        match r.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        }
    }

    fn stream(r: &LogRecord) -> Option<String> {
        r.attributes
            .iter()
            .find(|kv| kv.key == record::ATTR_IOSTREAM)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    }

    fn decode_all(d: &mut Decoder, input: &[u8]) -> Output {
        let mut out = Output::new(1);
        d.feed(input, Instant::now(), &mut out);
        out
    }

    #[test]
    fn cri_partials_join_per_stream() {
        let mut d = Decoder::new(settings(Format::Auto, 1 << 20), "/f".into(), 0);
        let input = b"2024-01-15T10:30:00Z stdout P hel\n\
2024-01-15T10:30:01Z stderr F err one\n\
2024-01-15T10:30:02Z stdout P lo \n\
2024-01-15T10:30:03Z stderr P err \n\
2024-01-15T10:30:04Z stdout F world\n\
2024-01-15T10:30:05Z stderr F two\n";
        let out = decode_all(&mut d, input);
        let got: Vec<_> = out
            .records
            .iter()
            .map(|r| (stream(r).unwrap(), body(r), r.time_unix_nano))
            .collect();
        let t = |s: u64| (1_705_314_600 + s) * 1_000_000_000;
        assert_eq!(
            got,
            [
                ("stderr".into(), "err one".into(), t(1)),
                ("stdout".into(), "hello world".into(), t(0)),
                ("stderr".into(), "err two".into(), t(3)),
            ]
        );
        assert_eq!(out.lines, 6);
        assert_eq!(d.resume_offset(), input.len() as u64);
    }

    #[test]
    fn resume_offset_waits_for_the_earliest_incomplete_record() {
        let mut d = Decoder::new(settings(Format::Cri, 1 << 20), "/f".into(), 100);
        let p = b"2024-01-15T10:30:00Z stdout P a\n";
        let f = b"2024-01-15T10:30:00Z stderr F b\n";
        let mut out = Output::new(1);
        d.feed(p, Instant::now(), &mut out);
        d.feed(f, Instant::now(), &mut out);
        d.feed(
            b"2024-01-15T10:30:00Z stderr F unterminated",
            Instant::now(),
            &mut out,
        );
        assert_eq!(out.records.len(), 1);
        assert_eq!(d.consumed(), 100 + (p.len() + f.len()) as u64);
        assert_eq!(d.resume_offset(), 100, "the stdout partial starts at 100");
        assert!(d.has_pending());
        d.feed(
            b"\n2024-01-15T10:30:00Z stdout F c\n",
            Instant::now(),
            &mut out,
        );
        assert_eq!(d.resume_offset(), d.position());
        assert!(!d.has_pending());
        assert_eq!(
            out.records.iter().map(body).collect::<Vec<_>>(),
            ["b", "unterminated", "ac"]
        );
    }

    #[test]
    fn replay_from_a_mark_skips_what_was_delivered() {
        // A stdout partial was pending while stderr records were delivered.
        let lines: [&[u8]; 5] = [
            b"2024-01-15T10:30:00Z stderr F before\n",
            b"2024-01-15T10:30:00Z stdout P a\n",
            b"2024-01-15T10:30:00Z stderr F delivered\n",
            b"2024-01-15T10:30:00Z stdout F b\n",
            b"2024-01-15T10:30:00Z stderr F new\n",
        ];
        let input = lines.concat();
        let cut = (lines[0].len() + lines[1].len() + lines[2].len()) as u64;
        let s = settings(Format::Cri, 1 << 20);
        let mut first = Decoder::new(Arc::clone(&s), "/f".into(), 0);
        let out = decode_all(&mut first, &input[..cut as usize]);
        assert_eq!(
            out.records.iter().map(body).collect::<Vec<_>>(),
            ["before", "delivered"]
        );
        let mark = first.mark();
        let stdout_start = lines[0].len() as u64;
        assert_eq!(
            mark,
            Mark {
                offset: stdout_start,
                delivered: cut,
                pending: [Some(stdout_start), None, None],
            }
        );
        let mut again = Decoder::resume(s, "/f".into(), mark);
        let out = decode_all(&mut again, &input[mark.offset as usize..]);
        assert_eq!(
            out.records.iter().map(body).collect::<Vec<_>>(),
            ["ab", "new"]
        );
    }

    #[test]
    fn resuming_at_the_very_end_still_flushes_the_open_group() {
        // Found by the fuzzer: a group pending at the delivered offset must
        // be emitted when the file is finished after a restart.
        let ml = MultilineConfig {
            start_pattern: r"^\S".into(),
            condition_pattern: r"^\s".into(),
            mode: MultilineMode::HaltBefore,
            timeout: Duration::from_secs(1),
        };
        let s = Arc::new(
            DecoderSettings::new(
                Format::Cri,
                Some(&ml),
                1 << 20,
                Duration::from_secs(5),
                true,
            )
            .unwrap(),
        );
        let input = b"WWWYWWWWWW,\n";
        let mut first = Decoder::new(Arc::clone(&s), "/f".into(), 0);
        assert!(decode_all(&mut first, input).records.is_empty());
        let mark = first.mark();
        assert_eq!(mark.pending[2], Some(0));
        let mut again = Decoder::resume(s, "/f".into(), mark);
        let mut out = decode_all(&mut again, input);
        again.flush_all(Instant::now(), &mut out);
        assert_eq!(
            out.records.iter().map(body).collect::<Vec<_>>(),
            ["WWWYWWWWWW,"]
        );
    }

    #[test]
    fn docker_partials_and_plain_lines() {
        let mut d = Decoder::new(settings(Format::Docker, 1 << 20), "/f".into(), 0);
        let out = decode_all(
            &mut d,
            b"{\"log\":\"part \",\"stream\":\"stdout\",\"time\":\"2024-01-15T10:30:00Z\"}\n\
{\"log\":\"one\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-15T10:30:00Z\"}\n\
{\"log\":\"two\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-15T10:30:00Z\"}\n\
not docker at all\r\n",
        );
        assert_eq!(
            out.records.iter().map(body).collect::<Vec<_>>(),
            ["one", "part two", "not docker at all"]
        );
        assert_eq!(stream(&out.records[2]), None);
    }

    #[test]
    fn overlong_lines_are_cut_without_buffering_the_rest() {
        let mut d = Decoder::new(settings(Format::Plain, 8), "/f".into(), 0);
        let mut out = Output::new(1);
        let long = "0123456789".repeat(300);
        // The long line arrives in pieces: the carry never exceeds the cap.
        d.feed(b"short\n", Instant::now(), &mut out);
        for piece in long.as_bytes().chunks(700) {
            d.feed(piece, Instant::now(), &mut out);
            assert!(d.lines.carry.len() <= 8 + FRAMING_SLACK);
        }
        d.feed(
            format!("\nnext\n{long}\nmiddle-sized\n").as_bytes(),
            Instant::now(),
            &mut out,
        );
        assert_eq!(
            out.records.iter().map(body).collect::<Vec<_>>(),
            ["short", "01234567", "next", "01234567", "middle-s"]
        );
        assert_eq!(out.truncated, 3);
        let cut = out.records[1]
            .attributes
            .iter()
            .any(|kv| kv.key == record::ATTR_TRUNCATED);
        assert!(cut);
        assert_eq!(d.consumed(), d.position());
    }

    #[test]
    fn joined_partials_are_capped_too() {
        let mut d = Decoder::new(settings(Format::Cri, 6), "/f".into(), 0);
        let out = decode_all(
            &mut d,
            b"2024-01-15T10:30:00Z stdout P abcd\n2024-01-15T10:30:00Z stdout P efgh\n2024-01-15T10:30:00Z stdout F ijkl\n",
        );
        assert_eq!(out.records.iter().map(body).collect::<Vec<_>>(), ["abcdef"]);
        assert_eq!(out.truncated, 1);
    }

    #[test]
    fn feed_stops_at_the_record_cap() {
        let mut d = Decoder::new(settings(Format::Plain, 1 << 20), "/f".into(), 0);
        let input = b"a\nb\nc\nd\ne";
        let mut out = Output::capped(1, 2, usize::MAX);
        assert_eq!(d.feed(input, Instant::now(), &mut out), 4);
        assert_eq!(d.position(), 4);
        let mut out = Output::capped(1, 2, usize::MAX);
        assert_eq!(d.feed(&input[4..], Instant::now(), &mut out), 4);
        let mut out = Output::capped(1, 2, usize::MAX);
        assert_eq!(d.feed(&input[8..], Instant::now(), &mut out), 1);
        assert!(out.records.is_empty(), "e is not terminated yet");
        assert_eq!(d.position(), input.len() as u64);
        assert_eq!(d.consumed(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn lone_partials_flush_after_the_timeout() {
        let mut d = Decoder::new(settings(Format::Cri, 1 << 20), "/f".into(), 0);
        let mut out = Output::new(1);
        d.feed(
            b"2024-01-15T10:30:00Z stdout P dying\n",
            Instant::now(),
            &mut out,
        );
        assert_eq!(d.deadline(), Some(Instant::now() + Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        d.flush_expired(Instant::now(), &mut out);
        assert_eq!(out.records.iter().map(body).collect::<Vec<_>>(), ["dying"]);
        assert!(!d.has_pending());
    }

    #[test]
    fn flush_all_emits_the_unterminated_tail_and_open_groups() {
        let ml = MultilineConfig {
            start_pattern: r"^\S".into(),
            condition_pattern: r"^\s".into(),
            mode: MultilineMode::ContinueThrough,
            timeout: Duration::from_secs(1),
        };
        let s = DecoderSettings::new(
            Format::Plain,
            Some(&ml),
            1 << 20,
            Duration::from_secs(5),
            true,
        )
        .unwrap();
        let mut d = Decoder::new(Arc::new(s), "/f".into(), 0);
        let mut out = decode_all(&mut d, b"Exception\n  at a\n  at b");
        assert!(out.records.is_empty());
        d.flush_all(Instant::now(), &mut out);
        assert_eq!(
            out.records.iter().map(body).collect::<Vec<_>>(),
            ["Exception\n  at a\n  at b"]
        );
        assert!(!d.has_pending());
    }
}
