//! A hand-written parser of the Prometheus text exposition format 0.0.4 and
//! of OpenMetrics 1.0 text.
//!
//! # Grammar accepted
//!
//! ```text
//! # HELP <name> <text with \\ and \n escapes>
//! # TYPE <name> counter|gauge|histogram|gaugehistogram|summary|info|stateset|untyped|unknown
//! # UNIT <name> <unit>                       (OpenMetrics)
//! # EOF                                      (OpenMetrics; nothing after it is read)
//! <name>[{<label>="<value>",...}] <value> [<timestamp>] [# {<labels>} <value> [<timestamp>]]
//! ```
//!
//! - Metric and label names are `[a-zA-Z_:][a-zA-Z0-9_:]*` (no `:` in
//!   label names), or, as Prometheus 3 writes UTF-8 names, quoted:
//!   `{"my.metric", "my.label"="v"}`.
//! - Label values escape `\\`, `\"` and `\n`; an unknown escape is kept as
//!   written. Spaces around labels and a trailing comma are accepted.
//! - Values are floats incl. `NaN`, `+Inf`, `-Inf` (any case, as Go parses
//!   them). Timestamps are integer milliseconds in 0.0.4 and float seconds in
//!   OpenMetrics; both become milliseconds.
//! - Exemplars (` # {trace_id="…"} 0.67 [ts]`, OpenMetrics) are kept.
//!
//! # Errors
//!
//! Prometheus rejects a whole scrape on one bad line; this parser skips the
//! bad line, records why ([`Exposition::errors`], the first few, plus a
//! count) and keeps the rest, so one exporter bug does not blank every
//! metric of a target. The caller counts and logs them.
//!
//! # Families
//!
//! Samples belong to the family a `# TYPE` (or `# HELP`) line named, matched
//! exactly or through the type's suffixes (`_bucket`/`_sum`/`_count` for
//! histograms, `_total`/`_created` for counters, …). A sample no family
//! claims is its own `unknown` family. Samples of one family need not be
//! contiguous.

use std::collections::HashMap;

/// Which text format the body is in (from the response's `Content-Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Prometheus,
    /// `application/openmetrics-text`
    OpenMetrics,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped` (0.0.4), `unknown` (OpenMetrics), or no `# TYPE` line.
    Unknown,
}

impl MetricType {
    fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// Sample name suffixes that belong to a family of this type.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Summary => &["_sum", "_count", "_created"],
            MetricType::Info => &["_info"],
            _ => &[],
        }
    }
}

pub type Labels = Vec<(String, String)>;

#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Full sample name, suffix included (`http_requests_total`, `x_bucket`).
    pub name: String,
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar>,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: MetricType,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// How many line errors are kept with their reasons (all are counted).
pub const MAX_KEPT_ERRORS: usize = 8;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    pub families: Vec<Family>,
    /// The first [`MAX_KEPT_ERRORS`] bad lines.
    pub errors: Vec<LineError>,
    /// All bad lines.
    pub error_count: usize,
}

impl Exposition {
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }

    fn error(&mut self, line: usize, reason: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < MAX_KEPT_ERRORS {
            self.errors.push(LineError {
                line,
                reason: reason.into(),
            });
        }
    }
}

/// Parses one exposition. Never panics, whatever the input.
pub fn parse(text: &str, format: Format) -> Exposition {
    let mut exp = Exposition::default();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            match parse_comment(comment, format) {
                Comment::Eof => break,
                Comment::Other => {}
                Comment::Bad(reason) => exp.error(n, reason),
                Comment::Meta { name, meta } => {
                    let idx = family_index(&mut exp, &mut by_name, &name);
                    let fam = &mut exp.families[idx];
                    match meta {
                        Meta::Help(h) => fam.help = Some(h),
                        Meta::Unit(u) => fam.unit = Some(u),
                        Meta::Type(t) => {
                            if !fam.samples.is_empty() && fam.kind != t {
                                exp.error(n, format!("TYPE for {name} after its samples"));
                            } else {
                                fam.kind = t;
                            }
                        }
                    }
                }
            }
            continue;
        }
        match parse_sample(line, format) {
            Ok(sample) => {
                let idx = match owner(&exp, &by_name, &sample.name) {
                    Some(idx) => idx,
                    None => family_index(&mut exp, &mut by_name, &sample.name),
                };
                exp.families[idx].samples.push(sample);
            }
            Err(reason) => exp.error(n, reason),
        }
    }
    exp
}

fn family_index(exp: &mut Exposition, by_name: &mut HashMap<String, usize>, name: &str) -> usize {
    if let Some(&i) = by_name.get(name) {
        return i;
    }
    exp.families.push(Family {
        name: name.to_string(),
        kind: MetricType::Unknown,
        help: None,
        unit: None,
        samples: Vec::new(),
    });
    let i = exp.families.len() - 1;
    by_name.insert(name.to_string(), i);
    i
}

/// The family a sample name belongs to, through its type's suffixes.
fn owner(exp: &Exposition, by_name: &HashMap<String, usize>, sample: &str) -> Option<usize> {
    if let Some(&i) = by_name.get(sample) {
        let f = &exp.families[i];
        // `foo_count` named exactly can still belong to summary `foo`: an
        // exact family only wins when it is not a bare placeholder.
        if f.kind != MetricType::Unknown || f.help.is_some() || !f.samples.is_empty() {
            return Some(i);
        }
    }
    for (pos, _) in sample.match_indices('_') {
        let (base, suffix) = sample.split_at(pos);
        if let Some(&i) = by_name.get(base)
            && exp.families[i].kind.suffixes().contains(&suffix)
        {
            return Some(i);
        }
    }
    by_name.get(sample).copied()
}

enum Meta {
    Help(String),
    Type(MetricType),
    Unit(String),
}

enum Comment {
    Meta { name: String, meta: Meta },
    Eof,
    Other,
    Bad(String),
}

fn parse_comment(c: &str, format: Format) -> Comment {
    let c = c.strip_prefix(' ').unwrap_or(c);
    if c.trim_end() == "EOF" && format == Format::OpenMetrics {
        return Comment::Eof;
    }
    let (keyword, rest) = match c.split_once(' ') {
        Some(kr) => kr,
        None => return Comment::Other,
    };
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
        return Comment::Other;
    }
    let rest = rest.trim_start_matches(' ');
    let (name, text) = match rest.split_once([' ', '\t']) {
        Some((n, t)) => (n, t),
        None => (rest, ""),
    };
    let name = if let Some(q) = name.strip_prefix('"') {
        match q.strip_suffix('"') {
            Some(n) => n.to_string(),
            None => return Comment::Bad(format!("bad quoted name in # {keyword}")),
        }
    } else {
        if !valid_metric_name(name) {
            return Comment::Bad(format!("invalid metric name {name:?} in # {keyword}"));
        }
        name.to_string()
    };
    let meta = match keyword {
        "HELP" => Meta::Help(unescape(text, format == Format::OpenMetrics)),
        "UNIT" => Meta::Unit(text.trim().to_string()),
        _ => match MetricType::parse(text.trim()) {
            Some(t) => Meta::Type(t),
            None => return Comment::Bad(format!("unknown metric type {:?}", text.trim())),
        },
    };
    Comment::Meta { name, meta }
}

fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// HELP text: `\\` and `\n` (and `\"` in OpenMetrics); other escapes kept.
fn unescape(s: &str, quotes: bool) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A cursor over one sample line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A `"…"` string with `\\`, `\"`, `\n` escapes; the cursor is on `"`.
    fn quoted(&mut self) -> Result<String, String> {
        if !self.eat(b'"') {
            return Err("expected '\"'".into());
        }
        let mut out = String::new();
        let rest = &self.s[self.pos..];
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err("unterminated quoted string".into())
    }

    fn bare_name(&mut self) -> &'a str {
        self.take_while(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
    }
}

/// `{a="1",b="2"}` starting at `{`. A quoted entry without `=` is the metric
/// name (Prometheus 3 UTF-8 names), returned separately.
fn parse_labels(cur: &mut Cursor<'_>) -> Result<(Labels, Option<String>), String> {
    cur.eat(b'{');
    let mut labels: Labels = Vec::new();
    let mut name = None;
    loop {
        cur.skip_spaces();
        if cur.eat(b'}') {
            return Ok((labels, name));
        }
        let key = if cur.peek() == Some(b'"') {
            cur.quoted()?
        } else {
            let k = cur.bare_name();
            if !valid_label_name(k) {
                return Err(format!("invalid label name {k:?}"));
            }
            k.to_string()
        };
        cur.skip_spaces();
        if cur.eat(b'=') {
            cur.skip_spaces();
            if cur.peek() != Some(b'"') {
                return Err(format!("label {key}: value must be quoted"));
            }
            let value = cur.quoted()?;
            if labels.iter().any(|(k, _)| *k == key) {
                return Err(format!("duplicate label {key}"));
            }
            labels.push((key, value));
        } else if name.is_none() && labels.is_empty() {
            name = Some(key);
        } else {
            return Err(format!("expected '=' after label {key}"));
        }
        cur.skip_spaces();
        if cur.eat(b',') {
            continue;
        }
        if cur.eat(b'}') {
            return Ok((labels, name));
        }
        return Err("expected ',' or '}' in labels".into());
    }
}

/// Go's `strconv.ParseFloat` accepts `NaN`, `Inf`, `+Inf`, `-Inf` in any
/// case; so does Rust's, plus `infinity`. Anything else must be a plain
/// decimal float.
pub fn parse_value(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

fn parse_timestamp(s: &str, format: Format) -> Result<i64, String> {
    match format {
        Format::Prometheus => s
            .parse::<i64>()
            .map_err(|_| format!("invalid timestamp {s:?}")),
        Format::OpenMetrics => match s.parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs.abs() < 9.2e15 => {
                Ok((secs * 1000.0).round() as i64)
            }
            _ => Err(format!("invalid timestamp {s:?}")),
        },
    }
}

fn parse_sample(line: &str, format: Format) -> Result<Sample, String> {
    let mut cur = Cursor { s: line, pos: 0 };
    cur.skip_spaces();
    let mut name = cur.bare_name().to_string();
    let mut labels = Vec::new();
    if cur.peek() == Some(b'{') {
        let (l, quoted_name) = parse_labels(&mut cur)?;
        labels = l;
        match (name.is_empty(), quoted_name) {
            (true, Some(q)) => name = q,
            (false, Some(_)) => return Err("metric name given twice".into()),
            (true, None) => return Err("no metric name".into()),
            (false, None) => {}
        }
    } else if !valid_metric_name(&name) {
        return Err(format!("invalid metric name at {:?}", truncate(line)));
    }
    if name.is_empty() {
        return Err("no metric name".into());
    }
    if !cur.skip_spaces() {
        return Err("expected a space before the value".into());
    }
    let value_str = cur.take_while(|c| c != b' ' && c != b'\t');
    let value = parse_value(value_str).ok_or_else(|| format!("invalid value {value_str:?}"))?;
    cur.skip_spaces();
    let mut timestamp_ms = None;
    if cur.peek().is_some_and(|c| c != b'#') {
        let ts = cur.take_while(|c| c != b' ' && c != b'\t');
        timestamp_ms = Some(parse_timestamp(ts, format)?);
        cur.skip_spaces();
    }
    let mut exemplar = None;
    if cur.eat(b'#') {
        cur.skip_spaces();
        if cur.peek() != Some(b'{') {
            return Err("exemplar without labels".into());
        }
        let (labels, name) = parse_labels(&mut cur)?;
        if name.is_some() {
            return Err("exemplar labels must be key=value".into());
        }
        cur.skip_spaces();
        let v = cur.take_while(|c| c != b' ' && c != b'\t');
        let value = parse_value(v).ok_or_else(|| format!("invalid exemplar value {v:?}"))?;
        cur.skip_spaces();
        let ts = cur.take_while(|c| c != b' ' && c != b'\t');
        let timestamp_ms = if ts.is_empty() {
            None
        } else {
            // Exemplar timestamps are float seconds in both formats.
            Some(parse_timestamp(ts, Format::OpenMetrics)?)
        };
        exemplar = Some(Exemplar {
            labels,
            value,
            timestamp_ms,
        });
        cur.skip_spaces();
    }
    if cur.peek().is_some() {
        return Err(format!(
            "unexpected text after the value: {:?}",
            truncate(&line[cur.pos..])
        ));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
        exemplar,
    })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
