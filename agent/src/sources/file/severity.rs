//! Severity from what applications actually write.
//!
//! Sources, in the order they are tried:
//! - a JSON `level`/`severity`/`lvl` field (names case-insensitive; pino and
//!   bunyan numeric levels 10…60 too) — see the `record` module;
//! - a klog/glog header (`E0115 10:30:00.123456 …`: Kubernetes components);
//! - a logfmt pair `level=warn` / `lvl=…` / `severity=…` near the start;
//! - a keyword among the first few words: upper case anywhere there
//!   (`2024-01-15 10:30:00 ERROR …`, `WARNING:root:…`), any case when
//!   bracketed (`[error]` as nginx writes it, `<warn>`).
//!
//! Numbers follow the OpenTelemetry data model's ranges (TRACE 1, DEBUG 5,
//! INFO 9, WARN 13, ERROR 17, FATAL 21) and its syslog mapping (notice =
//! INFO2, critical = ERROR2, alert = ERROR3, emergency = FATAL). The text is
//! the word as the application wrote it.

/// OTLP `SeverityNumber` values used here.
pub const TRACE: i32 = 1;
pub const DEBUG: i32 = 5;
pub const INFO: i32 = 9;
pub const INFO2: i32 = 10;
pub const WARN: i32 = 13;
pub const ERROR: i32 = 17;
pub const ERROR2: i32 = 18;
pub const ERROR3: i32 = 19;
pub const FATAL: i32 = 21;

/// How far into a plain line we look for a severity word.
const SCAN_BYTES: usize = 128;
/// How many words of a plain line may precede the severity word.
const SCAN_WORDS: usize = 8;

/// A level name, any case (`"Warning"`, `"ERR"`, `"dpanic"`).
pub fn from_name(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 13 {
        return None;
    }
    let mut buf = [0u8; 13];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"trace" | b"finest" | b"finer" | b"verbose" => TRACE,
        b"debug" | b"dbg" | b"fine" | b"config" => DEBUG,
        b"info" | b"information" | b"informational" => INFO,
        b"notice" => INFO2,
        b"warn" | b"warning" => WARN,
        b"error" | b"err" | b"severe" => ERROR,
        b"crit" | b"critical" => ERROR2,
        b"alert" | b"dpanic" => ERROR3,
        b"fatal" | b"panic" | b"emerg" | b"emergency" => FATAL,
        _ => return None,
    })
}

/// pino / bunyan numeric levels.
pub fn from_number(n: i64) -> Option<i32> {
    Some(match n {
        10 => TRACE,
        20 => DEBUG,
        30 => INFO,
        40 => WARN,
        50 => ERROR,
        60 => FATAL,
        _ => return None,
    })
}

/// Severity of a plain-text message: `(number, text as written)`.
pub fn detect_in_text(msg: &[u8]) -> Option<(i32, &[u8])> {
    if let Some(found) = klog(msg) {
        return Some(found);
    }
    let head = &msg[..msg.len().min(SCAN_BYTES * 2)];
    if let Some(found) = logfmt(head) {
        return Some(found);
    }
    keyword(&msg[..msg.len().min(SCAN_BYTES)])
}

/// `Lmmdd hh:mm:ss.uuuuuu threadid file:line] msg`, L in I/W/E/F.
fn klog(msg: &[u8]) -> Option<(i32, &[u8])> {
    if msg.len() < 8 || msg[5] != b' ' || !msg[1..5].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !(msg[6].is_ascii_digit() && msg[7].is_ascii_digit()) {
        return None;
    }
    let (n, text): (i32, &[u8]) = match msg[0] {
        b'I' => (INFO, b"INFO"),
        b'W' => (WARN, b"WARNING"),
        b'E' => (ERROR, b"ERROR"),
        b'F' => (FATAL, b"FATAL"),
        _ => return None,
    };
    Some((n, text))
}

fn logfmt(head: &[u8]) -> Option<(i32, &[u8])> {
    for key in [&b"level="[..], b"lvl=", b"severity="] {
        let mut from = 0;
        while let Some(i) = memchr::memmem::find(&head[from..], key) {
            let at = from + i;
            from = at + key.len();
            if at > 0 && head[at - 1] != b' ' {
                continue;
            }
            let mut value = &head[from..];
            let quoted = value.first() == Some(&b'"');
            if quoted {
                value = &value[1..];
            }
            let end = value
                .iter()
                .position(|&c| c == b' ' || (quoted && c == b'"'))
                .unwrap_or(value.len());
            let value = &value[..end];
            if let Some(n) = from_name(value) {
                return Some((n, value));
            }
        }
    }
    None
}

fn keyword(head: &[u8]) -> Option<(i32, &[u8])> {
    let mut words = 0;
    let mut i = 0;
    while i < head.len() && words < SCAN_WORDS {
        if !head[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let start = i;
        while i < head.len() && head[i].is_ascii_alphanumeric() {
            i += 1;
        }
        // A word cut by the scan window might be longer: not a keyword.
        if i == head.len() && head.len() == SCAN_BYTES {
            return None;
        }
        words += 1;
        let word = &head[start..i];
        let upper = word.iter().all(|c| !c.is_ascii_lowercase());
        let bracketed = start > 0
            && matches!(
                (head[start - 1], head.get(i)),
                (b'[', Some(b']')) | (b'<', Some(b'>'))
            );
        if (upper || bracketed)
            && word.len() >= 3
            && let Some(n) = from_name(word)
        {
            return Some((n, word));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_severity_table() {
        let cases: &[(&str, Option<(i32, &str)>)] = &[
            (
                "2024-01-15 10:30:00 ERROR payment failed",
                Some((ERROR, "ERROR")),
            ),
            (
                "2024-01-15T10:30:00.123Z WARN  [main] slow",
                Some((WARN, "WARN")),
            ),
            ("WARNING:root:disk almost full", Some((WARN, "WARNING"))),
            ("INFO Started server", Some((INFO, "INFO"))),
            (
                "[2024-01-15 10:30:00] DEBUG cache miss",
                Some((DEBUG, "DEBUG")),
            ),
            ("FATAL could not bind", Some((FATAL, "FATAL"))),
            ("TRACE entering foo", Some((TRACE, "TRACE"))),
            ("Jan 15 SEVERE: java.util.logging", Some((ERROR, "SEVERE"))),
            (
                "2024/01/15 10:30:00 [error] 31#31: upstream timed out",
                Some((ERROR, "error")),
            ),
            ("<warn> something", Some((WARN, "warn"))),
            (
                "E0115 10:30:00.123456       1 reflector.go:138] watch failed",
                Some((ERROR, "ERROR")),
            ),
            (
                "I0115 10:30:00.123456       1 main.go:1] ok",
                Some((INFO, "INFO")),
            ),
            (
                "time=2024-01-15T10:30:00Z level=warn msg=\"slow\"",
                Some((WARN, "warn")),
            ),
            ("ts=1 lvl=error msg=x", Some((ERROR, "error"))),
            ("msg=x level=\"info\"", Some((INFO, "info"))),
            // Lower case in prose is not a severity; neither are unknown words.
            ("user reported an error in checkout", None),
            ("GET /info 200", None),
            ("hello world", None),
            ("", None),
            // Too far into the line: not looked at.
            ("a b c d e f g h i j ERROR", None),
            // `sublevel=` is not `level=`.
            ("sublevel=error x", None),
        ];
        for (line, want) in cases {
            let got = detect_in_text(line.as_bytes())
                .map(|(n, t)| (n, std::str::from_utf8(t).unwrap().to_string()));
            let want = want.map(|(n, t)| (n, t.to_string()));
            assert_eq!(got, want, "{line:?}");
        }
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(from_name(b"Warning"), Some(WARN));
        assert_eq!(from_name(b"CRITICAL"), Some(ERROR2));
        assert_eq!(from_name(b"notice"), Some(INFO2));
        assert_eq!(from_name(b"loud"), None);
        assert_eq!(from_name(b"averyveryverylongword"), None);
        assert_eq!(from_number(30), Some(INFO));
        assert_eq!(from_number(50), Some(ERROR));
        assert_eq!(from_number(3), None);
    }
}
