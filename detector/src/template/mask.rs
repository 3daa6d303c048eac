//! Tokenising a log line and masking its variable tokens.
//!
//! A line is split on whitespace (the first line of a multi-line body
//! only: a stack trace's frames would make every occurrence a different
//! length). Each token is then classified; variable ones become `<*>`
//! before Drain ever sees them, so most templates are right from their
//! first line and the tree is not split by ids.
//!
//! Classification looks at the token's *core* — the token without
//! surrounding punctuation `"'()[]{}<>,;:.!?` — and masks it when the core
//! is:
//!
//! - a number, signed or not, decimal or scientific, optionally with a unit
//!   (`42`, `-3.5e2`, `12ms`, `1.5s`, `250µs`, `3KB`, `99%`, `2x`);
//! - a compound duration (`1h2m3.5s`, `1m30s`);
//! - hexadecimal with a digit: `0x…` of any length, else at least 6 hex
//!   digits (trace and span ids, hashes, `abc123`);
//! - made of separated segments (`. _ - / : @ # + ,`) one of which is a
//!   number or such a hex run, and containing a digit: IPs with ports
//!   (`/10.0.0.1:5000`), UUIDs, timestamps (`2024-05-01T12:00:00Z`,
//!   `12:00:01.250`), HDFS blocks (`blk_-1608999687919862906`), pod names
//!   (`checkout-7f9c6d8b5-x2k4p`), paths with ids (`/users/1234`).
//!
//! `key=value` tokens keep their key and mask only the value
//! (`user_id=42` → `user_id=<*>`, `status=ok` unchanged), so logfmt lines
//! keep their structure.
//!
//! The rules err on the side of masking: a constant mistaken for a variable
//! (`HTTP/1.1`, `utf-8`) costs a less readable template but the same
//! counts, while a variable left in place splits one template into
//! thousands. Words without a digit are never masked.

/// The wildcard token.
pub const WILDCARD: &str = "<*>";

const PUNCT: &[char] = &[
    '"', '\'', '(', ')', '[', ']', '{', '}', '<', '>', ',', ';', ':', '.', '!', '?',
];

/// Token ranges into a shared buffer, reused across lines.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    buf: String,
    ranges: Vec<(u32, u32)>,
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn get(&self, i: usize) -> &str {
        let (s, e) = self.ranges[i];
        &self.buf[s as usize..e as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    fn push(&mut self, s: &str) {
        let start = self.buf.len() as u32;
        self.buf.push_str(s);
        self.ranges.push((start, self.buf.len() as u32));
    }

    /// Tokenises and masks `line` (its first line, at most `max_bytes`
    /// bytes of it); beyond `max_tokens − 1` tokens the rest of the line
    /// becomes one final `<*>`.
    pub fn fill(&mut self, line: &str, max_tokens: usize, max_bytes: usize) {
        self.buf.clear();
        self.ranges.clear();
        let first = line.split('\n').next().unwrap_or("");
        let first = first.strip_suffix('\r').unwrap_or(first);
        let mut cut = first.len().min(max_bytes);
        while !first.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut words = first[..cut].split_whitespace().peekable();
        while let Some(w) = words.next() {
            if self.ranges.len() + 1 >= max_tokens && words.peek().is_some() {
                self.push(WILDCARD);
                return;
            }
            self.push_masked(w);
        }
    }

    fn push_masked(&mut self, token: &str) {
        let core = token.trim_matches(PUNCT);
        if let Some(eq) = core.find('=')
            && eq > 0
            && is_key(&core[..eq])
        {
            let value = core[eq + 1..].trim_matches(PUNCT);
            let start = self.buf.len() as u32;
            self.buf.push_str(&core[..eq + 1]);
            if is_variable(value) {
                self.buf.push_str(WILDCARD);
            } else {
                self.buf.push_str(&core[eq + 1..]);
            }
            self.ranges.push((start, self.buf.len() as u32));
        } else if is_variable(core) {
            self.push(WILDCARD);
        } else {
            self.push(token);
        }
    }
}

fn is_key(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Whether a token core is a variable (see the module doc).
pub fn is_variable(s: &str) -> bool {
    if s.is_empty() || !s.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    if is_number_with_unit(s) || is_duration(s) || is_hex_id(s) {
        return true;
    }
    s.split(['.', '_', '-', '/', ':', '@', '#', '+', ','])
        .any(|seg| !seg.is_empty() && (seg.bytes().all(|b| b.is_ascii_digit()) || is_hex_id(seg)))
}

fn is_hex_id(s: &str) -> bool {
    let (body, prefixed) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(b) => (b, true),
        None => (s, false),
    };
    !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_hexdigit())
        && (prefixed || (body.len() >= 6 && body.bytes().any(|b| b.is_ascii_digit())))
}

/// Length of a leading unsigned decimal (`12`, `1.5`, `.5`, `2.`), 0 if none.
fn number_prefix(b: &[u8]) -> usize {
    let mut i = 0;
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        let mut j = i + 1;
        let mut frac = 0;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
            frac += 1;
        }
        if digits + frac > 0 {
            i = j;
            digits += frac;
        }
    }
    if digits == 0 { 0 } else { i }
}

const UNITS: &[&str] = &[
    "ns", "us", "µs", "ms", "s", "m", "h", "d", "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib",
    "tib", "k", "%", "x", "bytes", "sec", "secs", "min", "mins",
];

fn is_unit(s: &str) -> bool {
    s.is_empty() || UNITS.iter().any(|u| u.eq_ignore_ascii_case(s))
}

fn is_number_with_unit(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let n = number_prefix(&b[i..]);
    if n == 0 {
        return false;
    }
    i += n;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > start {
            i = j;
        }
    }
    is_unit(&s[i..])
}

fn is_duration(s: &str) -> bool {
    const DUR: &[&str] = &["ns", "us", "µs", "ms", "s", "m", "h", "d"];
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let n = number_prefix(rest.as_bytes());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        // Longest unit first (`ms` before `m`).
        let Some(u) = DUR
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len())
        else {
            return false;
        };
        rest = &rest[u.len()..];
        parts += 1;
    }
    parts > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(line: &str) -> String {
        let mut t = Tokens::default();
        t.fill(line, 64, 4096);
        t.iter().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn variables_are_masked_constants_kept() {
        let cases = [
            (
                "Receiving block blk_123 src: /10.0.0.1:5000 dest: /10.0.0.2:50010",
                "Receiving block <*> src: <*> dest: <*>",
            ),
            (
                "PacketResponder 1 for block blk_-1608999687919862906 terminating",
                "PacketResponder <*> for block <*> terminating",
            ),
            (
                "request 550e8400-e29b-41d4-a716-446655440000 took 12.5ms (retries=3)",
                "request <*> took <*> retries=<*>",
            ),
            (
                "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 status=ok",
                "trace_id=<*> span=<*> status=ok",
            ),
            (
                "GC pause 1m30s, heap 512MiB of 2GiB (25%)",
                "GC pause <*> heap <*> of <*> <*>",
            ),
            (
                "pod checkout-7f9c6d8b5-x2k4p restarted",
                "pod <*> restarted",
            ),
            (
                "at 2024-05-01T12:00:00.123Z value -3.5e2",
                "at <*> value <*>",
            ),
            ("connected to ::1 port 0x1f90", "connected to <*> port <*>"),
            (
                "sha256 digest of e2e suite ok",
                "sha256 digest of e2e suite ok",
            ),
            ("user alice logged in", "user alice logged in"),
        ];
        for (line, want) in cases {
            assert_eq!(masked(line), want, "{line}");
        }
    }

    #[test]
    fn only_the_first_line_and_a_bounded_number_of_tokens() {
        assert_eq!(
            masked("NullPointerException: boom\n\tat com.x.Y.z(Y.java:42)\n"),
            "NullPointerException: boom"
        );
        let mut t = Tokens::default();
        t.fill("a b c d e f g", 4, 4096);
        assert_eq!(t.iter().collect::<Vec<_>>(), ["a", "b", "c", "<*>"]);
        t.fill("a b c d", 4, 4096);
        assert_eq!(t.iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        // Byte cut on a char boundary.
        t.fill("héllo wörld", 64, 9);
        assert_eq!(t.iter().collect::<Vec<_>>(), ["héllo", "w"]);
    }

    #[test]
    fn number_and_duration_shapes() {
        for v in [
            "0", "+1", "-2.", ".5", "1e9", "3.2E-4", "12ms", "250µs", "1h2m3.5s", "100%", "2x",
            "8KiB",
        ] {
            assert!(is_variable(v), "{v}");
        }
        for v in ["", "-", "e5", "ms", "abc", "HTTP", "k8s", "utf8", "ipv4"] {
            assert!(!is_variable(v), "{v}");
        }
    }
}
