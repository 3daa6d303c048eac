//! Series selectors for the HTTP API (`/api/v1/series?match=…`).
//!
//! The syntax is the familiar PromQL selector, reduced to what a registry
//! of scored series needs:
//!
//! ```text
//! http.server.request.duration.p99{service="checkout",namespace="prod"}
//! span.*{service="checkout"}
//! {service="checkout",signal="logs"}
//! log.template{template="3f9a0c2e11d4b7a5"}
//! span.latency.p9?{span_kind!="client"}
//! ```
//!
//! - The name is a glob: `*` matches any run of characters (dots included),
//!   `?` exactly one; without `*`/`?` it is an exact name. It may be left
//!   out when labels follow.
//! - Label matchers are `label="value"` (equality) or `label!="value"`
//!   (absent labels compare as the empty string, as in PromQL). Values are
//!   double-quoted with `\"`, `\\` and `\n` escapes.
//! - `signal` is a pseudo-label matching the series' kind: `metrics`,
//!   `traces` or `logs`.
//!
//! Matching is a scan over the registry: selectors serve an operator's
//! queries, not the ingest path, and a scan of 100 000 keys takes a few
//! milliseconds.

use super::SeriesKey;

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    name: Option<NamePattern>,
    labels: Vec<LabelMatcher>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum NamePattern {
    Exact(String),
    Glob(Vec<GlobPart>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum GlobPart {
    Literal(char),
    AnyOne,
    AnyRun,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LabelMatcher {
    name: String,
    value: String,
    negate: bool,
}

/// Why a selector did not parse; `at` is a byte offset into it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid series selector at byte {at}: {reason}")]
pub struct MatchError {
    pub at: usize,
    pub reason: String,
}

/// The pseudo-label naming the signal kind.
pub const LABEL_SIGNAL: &str = "signal";

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '/' | '*' | '?')
}

fn is_label_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | ':')
}

impl Matcher {
    pub fn parse(s: &str) -> Result<Matcher, MatchError> {
        let mut p = Parser { s, pos: 0 };
        p.skip_ws();
        let name_start = p.pos;
        while p.peek().is_some_and(is_name_char) {
            p.bump();
        }
        let raw_name = &s[name_start..p.pos];
        let name = (!raw_name.is_empty()).then(|| NamePattern::new(raw_name));
        p.skip_ws();
        let mut labels = Vec::new();
        if p.eat('{') {
            loop {
                p.skip_ws();
                if p.eat('}') {
                    break;
                }
                let l_start = p.pos;
                while p.peek().is_some_and(is_label_char) {
                    p.bump();
                }
                let lname = &s[l_start..p.pos];
                if lname.is_empty() {
                    return Err(p.err("expected a label name"));
                }
                p.skip_ws();
                let negate = if p.eat('!') {
                    if !p.eat('=') {
                        return Err(p.err("expected `!=`"));
                    }
                    true
                } else if p.eat('=') {
                    if p.peek() == Some('~') {
                        return Err(
                            p.err("regular expressions are not supported; use a name glob or `=`")
                        );
                    }
                    false
                } else {
                    return Err(p.err("expected `=` or `!=`"));
                };
                p.skip_ws();
                let value = p.quoted()?;
                labels.push(LabelMatcher {
                    name: lname.to_string(),
                    value,
                    negate,
                });
                p.skip_ws();
                if p.eat(',') {
                    continue;
                }
                if p.eat('}') {
                    break;
                }
                return Err(p.err("expected `,` or `}`"));
            }
        }
        p.skip_ws();
        if p.pos != s.len() {
            return Err(p.err("unexpected character"));
        }
        if name.is_none() && labels.iter().all(|l| l.negate || l.value.is_empty()) {
            return Err(MatchError {
                at: 0,
                reason:
                    "a selector needs a name or at least one label matcher with a non-empty value"
                        .into(),
            });
        }
        Ok(Matcher { name, labels })
    }

    pub fn matches(&self, key: &SeriesKey) -> bool {
        if let Some(n) = &self.name
            && !n.matches(key.name())
        {
            return false;
        }
        self.labels.iter().all(|l| {
            let actual = if l.name == LABEL_SIGNAL {
                key.signal().as_str()
            } else {
                key.label(&l.name).unwrap_or("")
            };
            (actual == l.value) != l.negate
        })
    }
}

impl std::str::FromStr for Matcher {
    type Err = MatchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Matcher::parse(s)
    }
}

impl NamePattern {
    fn new(raw: &str) -> NamePattern {
        if !raw.contains(['*', '?']) {
            return NamePattern::Exact(raw.to_string());
        }
        let mut parts = Vec::new();
        for c in raw.chars() {
            let part = match c {
                '*' => GlobPart::AnyRun,
                '?' => GlobPart::AnyOne,
                c => GlobPart::Literal(c),
            };
            // `**` is `*`.
            if part == GlobPart::AnyRun && parts.last() == Some(&GlobPart::AnyRun) {
                continue;
            }
            parts.push(part);
        }
        NamePattern::Glob(parts)
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(e) => e == name,
            NamePattern::Glob(parts) => {
                let chars: Vec<char> = name.chars().collect();
                glob_match(parts, &chars)
            }
        }
    }
}

/// Iterative glob matching with single-star backtracking: O(n·m) worst
/// case, no recursion.
fn glob_match(p: &[GlobPart], s: &[char]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(GlobPart::AnyRun) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(GlobPart::AnyOne) => {
                pi += 1;
                si += 1;
            }
            Some(GlobPart::Literal(c)) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|x| *x == GlobPart::AnyRun)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn err(&self, reason: &str) -> MatchError {
        MatchError {
            at: self.pos,
            reason: reason.to_string(),
        }
    }

    fn quoted(&mut self) -> Result<String, MatchError> {
        if !self.eat('"') {
            return Err(self.err("expected a double-quoted value"));
        }
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some('"') => {
                    self.bump();
                    return Ok(out);
                }
                Some('\\') => {
                    self.bump();
                    match self.peek() {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('n') => out.push('\n'),
                        _ => return Err(self.err("unknown escape (use \\\", \\\\ or \\n)")),
                    }
                    self.bump();
                }
                Some(c) => {
                    out.push(c);
                    self.bump();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{KeyRef, Limits, Registry};
    use argus_common::otlp::Signal;

    fn reg() -> Registry<()> {
        let mut r = Registry::new(Limits::default());
        let series: [(Signal, &str, &[(&str, &str)]); 5] = [
            (
                Signal::Traces,
                "span.requests",
                &[("service", "checkout"), ("span_kind", "server")],
            ),
            (
                Signal::Traces,
                "span.latency.p99",
                &[("service", "checkout"), ("span_kind", "server")],
            ),
            (
                Signal::Metrics,
                "http.server.duration.p99",
                &[("route", "/pay"), ("service", "checkout")],
            ),
            (
                Signal::Metrics,
                "http.server.duration.p99",
                &[("route", "/pay"), ("service", "cart")],
            ),
            (
                Signal::Logs,
                "log.records",
                &[("service", "cart"), ("severity", "error")],
            ),
        ];
        for (sig, name, labels) in series {
            r.get_or_insert(&KeyRef::sorted(sig, name, labels), 0)
                .unwrap();
        }
        r
    }

    fn names(r: &Registry<()>, sel: &str) -> Vec<String> {
        let m = Matcher::parse(sel).unwrap();
        r.select(&m).map(|s| s.key.to_string()).collect()
    }

    #[test]
    fn selects_by_name_glob_labels_and_signal() {
        let r = reg();
        let cases: [(&str, usize); 11] = [
            ("span.requests", 1),
            ("span.*", 2),
            ("*", 5),
            ("*.p99", 3),
            ("span.latency.p9?", 1),
            ("span.latency.p9", 0),
            ("{service=\"checkout\"}", 3),
            ("http.server.duration.p99{service=\"cart\"}", 1),
            ("*{service!=\"checkout\"}", 2),
            ("{signal=\"logs\"}", 1),
            (
                "{service=\"checkout\", signal=\"traces\", span_kind=\"server\"}",
                2,
            ),
        ];
        for (sel, n) in cases {
            assert_eq!(names(&r, sel).len(), n, "{sel}: {:?}", names(&r, sel));
        }
        assert_eq!(
            names(&r, "http.*{service=\"cart\"}"),
            vec!["http.server.duration.p99{route=\"/pay\",service=\"cart\"}"]
        );
    }

    #[test]
    fn parse_errors_name_the_position() {
        for (sel, at) in [
            ("{service=checkout}", 9),
            ("x{service=~\"a\"}", 10),
            ("x{service=\"a\"", 13),
            ("x{=\"a\"}", 2),
            ("x y", 2),
            ("{service=\"\"}", 0),
            ("", 0),
        ] {
            let e = Matcher::parse(sel).unwrap_err();
            assert_eq!(e.at, at, "{sel}: {e}");
        }
    }

    #[test]
    fn quoted_values_unescape() {
        let m = Matcher::parse(r#"x{a="q\"b\\"}"#).unwrap();
        assert_eq!(m.labels[0].value, "q\"b\\");
    }

    #[test]
    fn glob_backtracks() {
        let p = |s: &str| match NamePattern::new(s) {
            NamePattern::Glob(g) => g,
            NamePattern::Exact(_) => panic!("not a glob"),
        };
        let m = |pat: &str, s: &str| glob_match(&p(pat), &s.chars().collect::<Vec<_>>());
        assert!(m("a*b*c", "axxbyyc"));
        assert!(m("a*b*c", "abbbc"));
        assert!(!m("a*b*c", "abbbd"));
        assert!(m("*.rate", "http.requests.rate"));
        assert!(!m("*.rate", "http.requests.rates"));
        assert!(m("?", "é"));
    }
}
