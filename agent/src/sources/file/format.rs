//! Physical line formats: what one `\n`-terminated line of a log file means.
//!
//! - **CRI** (containerd, CRI-O: everything under `/var/log/pods`):
//!   `<RFC3339Nano time> <stdout|stderr> <P|F>[:<more tags>] <message>`. The
//!   runtime splits lines longer than its buffer (16 KiB) into `P` (partial)
//!   chunks closed by one `F` (full) chunk; the two streams are written by
//!   separate goroutines, so chunks of stdout and stderr interleave.
//! - **docker json-file**: `{"log":"…\n","stream":"stdout","time":"…"}`. A
//!   `log` value without its trailing `\n` is a partial chunk (docker splits
//!   at 16 KiB too).
//! - **plain**: the line is the message.
//!
//! `auto` tries the format that matched the file's previous line first, then
//! the others, so a file pays for detection once, and a file that mixes
//! formats (a runtime switch, a hand-written line) still parses line by line.
//! The checks are byte comparisons: a CRI prefix is recognised without
//! allocating, a docker line is parsed with borrowed strings (allocating only
//! when the log value contains escapes).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Which format the lines of a file are in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Detect per line, trying the file's last format first.
    #[default]
    Auto,
    Cri,
    Docker,
    Plain,
}

/// Which of the container's output streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoStream {
    Stdout,
    Stderr,
}

impl IoStream {
    pub fn as_str(self) -> &'static str {
        match self {
            IoStream::Stdout => "stdout",
            IoStream::Stderr => "stderr",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            IoStream::Stdout => 0,
            IoStream::Stderr => 1,
        }
    }
}

/// One physical line, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The format that matched (never `Auto`).
    pub format: Format,
    pub stream: Option<IoStream>,
    /// Runtime timestamp; 0 when the format has none (OTLP's "unknown").
    pub time_unix_nano: u64,
    /// More chunks of the same logical line follow on this stream.
    pub partial: bool,
    pub message: Cow<'a, [u8]>,
}

/// Parses `line` (without its `\n`) as `format`; `last` is the format that
/// matched this file's previous line, updated here (only used by `Auto`).
/// A line that does not match an explicit format is kept as a plain line:
/// nothing is ever dropped for its shape.
pub fn parse<'a>(format: Format, last: &mut Format, line: &'a [u8]) -> Parsed<'a> {
    match format {
        Format::Cri => parse_cri(line).unwrap_or_else(|| plain(line)),
        Format::Docker => parse_docker(line).unwrap_or_else(|| plain(line)),
        Format::Plain => plain(line),
        Format::Auto => {
            let first = match *last {
                Format::Cri => parse_cri(line),
                Format::Docker => parse_docker(line),
                _ => None,
            };
            let parsed = first
                .or_else(|| (*last != Format::Cri).then(|| parse_cri(line)).flatten())
                .or_else(|| {
                    (*last != Format::Docker && line.starts_with(b"{\"log\":"))
                        .then(|| parse_docker(line))
                        .flatten()
                })
                .unwrap_or_else(|| plain(line));
            *last = parsed.format;
            parsed
        }
    }
}

pub fn plain(line: &[u8]) -> Parsed<'_> {
    Parsed {
        format: Format::Plain,
        stream: None,
        time_unix_nano: 0,
        partial: false,
        message: Cow::Borrowed(line),
    }
}

/// `<time> <stdout|stderr> <P|F>[:tags] <message>`.
pub fn parse_cri(line: &[u8]) -> Option<Parsed<'_>> {
    let sp = memchr::memchr(b' ', line)?;
    let time = parse_rfc3339_nanos(&line[..sp])?;
    let rest = &line[sp + 1..];
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout ") {
        (IoStream::Stdout, r)
    } else if let Some(r) = rest.strip_prefix(b"stderr ") {
        (IoStream::Stderr, r)
    } else {
        return None;
    };
    // The tag field ends at the next space (or the line, for an empty message).
    let tag_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    let tag = &rest[..tag_end];
    let first = tag.split(|&b| b == b':').next()?;
    let partial = match first {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let message = rest.get(tag_end + 1..).unwrap_or(&[]);
    Some(Parsed {
        format: Format::Cri,
        stream: Some(stream),
        time_unix_nano: time,
        partial,
        message: Cow::Borrowed(message),
    })
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
}

/// `{"log":"…\n","stream":"stdout","time":"…"}`; other fields (`attrs`) are ignored.
pub fn parse_docker(line: &[u8]) -> Option<Parsed<'_>> {
    if line.first() != Some(&b'{') {
        return None;
    }
    let d: DockerLine<'_> = serde_json::from_slice(line).ok()?;
    let stream = match d.stream.as_deref() {
        Some("stdout") => Some(IoStream::Stdout),
        Some("stderr") => Some(IoStream::Stderr),
        _ => None,
    };
    let time = d
        .time
        .as_deref()
        .and_then(|t| parse_rfc3339_nanos(t.as_bytes()))
        .unwrap_or(0);
    let (message, partial) = match d.log {
        Cow::Borrowed(s) => match s.strip_suffix('\n') {
            Some(m) => (Cow::Borrowed(m.as_bytes()), false),
            None => (Cow::Borrowed(s.as_bytes()), true),
        },
        Cow::Owned(mut s) => {
            let partial = !s.ends_with('\n');
            if !partial {
                s.pop();
            }
            (Cow::Owned(s.into_bytes()), partial)
        }
    };
    Some(Parsed {
        format: Format::Docker,
        stream,
        time_unix_nano: time,
        partial,
        message,
    })
}

/// RFC 3339 (`2024-01-15T10:30:00.123456789Z`, `…+01:00`) to Unix nanoseconds.
/// Hand-rolled: it runs once per line, and a general date library would cost
/// more than the rest of the line's parsing. Times before 1970 are `None`.
pub fn parse_rfc3339_nanos(s: &[u8]) -> Option<u64> {
    fn num(b: &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for &c in b {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u64::from(c - b'0');
        }
        Some(v)
    }
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let year = num(&s[0..4])? as i64;
    let month = num(&s[5..7])?;
    let day = num(&s[8..10])?;
    let hour = num(&s[11..13])?;
    let min = num(&s[14..16])?;
    let sec = num(&s[17..19])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u64;
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        // Beyond nanoseconds, digits are dropped (truncation, like Go's parser).
        for (i, &c) in frac[..digits].iter().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + u64::from(c - b'0');
            }
        }
        for _ in digits..9 {
            nanos *= 10;
        }
        rest = &frac[digits..];
    }
    let offset_secs: i64 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = num(&[*h1, *h2])? as i64;
            let m = num(&[*m1, *m2])? as i64;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as i64, day as i64);
    let secs = days * 86_400 + (hour * 3600 + min * 60 + sec) as i64 - offset_secs;
    if secs < 0 {
        return None;
    }
    (secs as u64).checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn days_in_month(year: i64, month: u64) -> u64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_705_314_600_123_456_789; // 2024-01-15T10:30:00.123456789Z

    #[test]
    fn rfc3339_variants() {
        let cases: &[(&str, Option<u64>)] = &[
            ("2024-01-15T10:30:00.123456789Z", Some(T0)),
            ("2024-01-15T11:30:00.123456789+01:00", Some(T0)),
            ("2024-01-15T05:00:00.123456789-05:30", Some(T0)),
            ("2024-01-15T10:30:00Z", Some(T0 - 123_456_789)),
            ("2024-01-15T10:30:00.1Z", Some(T0 - 23_456_789)),
            ("2024-01-15T10:30:00.1234567891234Z", Some(T0)),
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000_000_000)),
            ("2023-02-29T00:00:00Z", None),
            ("2024-13-01T00:00:00Z", None),
            ("2024-01-15T24:00:00Z", None),
            ("2024-01-15T10:30:00.Z", None),
            ("2024-01-15T10:30:00", None),
            ("2024-01-15T10:30:00+0100", None),
            ("1969-12-31T23:59:59Z", None),
            ("not a time at all, no", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_rfc3339_nanos(s.as_bytes()), *want, "{s}");
        }
    }

    #[test]
    fn cri_lines() {
        let p = parse_cri(b"2024-01-15T10:30:00.123456789Z stdout F hello world").unwrap();
        assert_eq!(p.stream, Some(IoStream::Stdout));
        assert_eq!(p.time_unix_nano, T0);
        assert!(!p.partial);
        assert_eq!(&*p.message, b"hello world");

        let p = parse_cri(b"2024-01-15T10:30:00.123456789Z stderr P part").unwrap();
        assert_eq!(p.stream, Some(IoStream::Stderr));
        assert!(p.partial);

        // Empty message, with and without the separating space; extra tags.
        assert_eq!(
            &*parse_cri(b"2024-01-15T10:30:00Z stdout F").unwrap().message,
            b""
        );
        assert_eq!(
            &*parse_cri(b"2024-01-15T10:30:00Z stdout F ")
                .unwrap()
                .message,
            b""
        );
        assert!(
            !parse_cri(b"2024-01-15T10:30:00Z stdout F:x y")
                .unwrap()
                .partial
        );
        // Message keeps its own spaces.
        assert_eq!(
            &*parse_cri(b"2024-01-15T10:30:00Z stdout F  two  spaces ")
                .unwrap()
                .message,
            b" two  spaces "
        );

        for bad in [
            &b"2024-01-15T10:30:00Z stdin F x"[..],
            b"2024-01-15T10:30:00Z stdout X x",
            b"yesterday stdout F x",
            b"",
            b"2024-01-15T10:30:00Z",
        ] {
            assert!(parse_cri(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn docker_lines() {
        let p = parse_docker(
            br#"{"log":"hello\n","stream":"stderr","time":"2024-01-15T10:30:00.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(p.stream, Some(IoStream::Stderr));
        assert_eq!(p.time_unix_nano, T0);
        assert!(!p.partial);
        assert_eq!(&*p.message, b"hello");

        let p = parse_docker(br#"{"log":"par","stream":"stdout","time":"2024-01-15T10:30:00Z"}"#)
            .unwrap();
        assert!(p.partial);
        assert_eq!(&*p.message, b"par");

        // Escapes are decoded (and then the value is owned).
        let p = parse_docker(
            br#"{"log":"{\"a\":\"\u00e9\"}\n","stream":"stdout","attrs":{"x":"y"},"time":"2024-01-15T10:30:00Z"}"#,
        )
        .unwrap();
        assert_eq!(&*p.message, "{\"a\":\"é\"}".as_bytes());
        assert!(!p.partial);

        assert!(parse_docker(br#"{"msg":"x"}"#).is_none());
        assert!(parse_docker(br#"{"log":"x""#).is_none());
    }

    #[test]
    fn auto_detects_per_line_and_remembers() {
        let mut last = Format::Auto;
        let cri = b"2024-01-15T10:30:00Z stdout F a";
        let docker = br#"{"log":"b\n","stream":"stdout","time":"2024-01-15T10:30:00Z"}"#;
        let json_app = br#"{"level":"info","msg":"c"}"#;
        assert_eq!(parse(Format::Auto, &mut last, cri).format, Format::Cri);
        assert_eq!(last, Format::Cri);
        assert_eq!(
            parse(Format::Auto, &mut last, docker).format,
            Format::Docker
        );
        assert_eq!(last, Format::Docker);
        let p = parse(Format::Auto, &mut last, json_app);
        assert_eq!(p.format, Format::Plain);
        assert_eq!(&*p.message, json_app);
        assert_eq!(parse(Format::Auto, &mut last, cri).format, Format::Cri);
        // An explicit format keeps a non-matching line as plain text.
        assert_eq!(parse(Format::Cri, &mut last, b"oops").format, Format::Plain);
    }
}
