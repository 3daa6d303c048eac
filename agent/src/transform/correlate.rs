//! Ties log records to traces and requests.
//!
//! A record without `trace_id`/`span_id` gets them from, in order:
//! 1. a W3C `traceparent` (attribute, top-level body field, JSON body field,
//!    or `traceparent=` in a plain-text body);
//! 2. separate trace/span ID fields (`trace_id`, `traceId`, `trace.id`,
//!    `span_id`, `spanId`, `span.id` by default), found the same places.
//!
//! Attributes are looked at before the body, and a traceparent beats
//! separate fields wherever it was found (it carries both IDs and the
//! sampled flag, from one writer). A span ID is only set together with a
//! trace ID (the record's own or a found one): alone it joins nothing.
//!
//! IDs are validated: 32 / 16 hex digits, not all zeros (the W3C "invalid"
//! value); a traceparent must be lowercase, version ≠ `ff`, exactly 55
//! characters for version `00`, and for later versions 55 characters
//! followed by `-` and whatever that version adds. An invalid ID is counted
//! (`correlation_invalid_ids_total{field}`) and left where it was.
//!
//! The first of the configured correlation keys (`correlation_id`,
//! `request_id`, `x-request-id`, … — the earlier in the list the stronger)
//! is also copied into one attribute, `correlation.id`, so the detector can
//! join logs of one request across services whatever each service calls it.
//!
//! Key names match ASCII-case-insensitively (`X-Request-ID`). Body scanning
//! is a single pass with no allocation unless something is found: JSON is
//! tokenised just enough to tell keys from values (so a `"trace_id"` inside
//! a message string is not a key), and plain text is searched for
//! `key=value` / `key="value"` pairs.

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use super::string_kv;

/// The attribute every correlation key is normalised into.
pub const CORRELATION_ID: &str = "correlation.id";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelateConfig {
    pub enabled: bool,
    /// Keys holding a W3C traceparent.
    pub traceparent_keys: Vec<String>,
    /// Keys holding a 32-hex-digit trace ID.
    pub trace_id_keys: Vec<String>,
    /// Keys holding a 16-hex-digit span ID.
    pub span_id_keys: Vec<String>,
    /// Keys copied into `correlation.id`, strongest first.
    pub correlation_keys: Vec<String>,
    /// Also look inside log bodies (JSON text, structured bodies, and
    /// `key=value` in plain text). Default true.
    pub body: bool,
}

impl Default for CorrelateConfig {
    fn default() -> Self {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        CorrelateConfig {
            enabled: true,
            traceparent_keys: v(&["traceparent"]),
            trace_id_keys: v(&["trace_id", "traceId", "trace.id"]),
            span_id_keys: v(&["span_id", "spanId", "span.id"]),
            correlation_keys: v(&[
                "correlation_id",
                "correlationId",
                "request_id",
                "requestId",
                "x-request-id",
            ]),
            body: true,
        }
    }
}

impl CorrelateConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        let lists = [
            ("traceparent_keys", &self.traceparent_keys),
            ("trace_id_keys", &self.trace_id_keys),
            ("span_id_keys", &self.span_id_keys),
            ("correlation_keys", &self.correlation_keys),
        ];
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (field, list) in lists {
            for (i, k) in list.iter().enumerate() {
                if k.is_empty() || k.bytes().any(|b| !is_key_byte(b)) {
                    out.push(format!(
                        "{path}.{field}[{i}]: {k:?} is not a key (letters, digits, `_`, `-`, `.`)"
                    ));
                }
                if let Some((other, _)) = seen.iter().find(|(_, s)| s.eq_ignore_ascii_case(k)) {
                    out.push(format!(
                        "{path}.{field}[{i}]: {k:?} is already listed in {other}"
                    ));
                }
                seen.push((field, k));
            }
        }
        out
    }

    pub fn build(&self, registry: &mut Registry) -> Correlate {
        let correlated = Family::<ViaLabel, Counter>::default();
        let invalid = Family::<FieldLabel, Counter>::default();
        registry.register(
            "log_records_correlated",
            "Log records that got a trace ID from a traceparent or trace ID field, by where it was found",
            correlated.clone(),
        );
        registry.register(
            "correlation_invalid_ids",
            "Trace IDs, span IDs and traceparents that failed validation and were left as they were",
            invalid.clone(),
        );
        let mut keys = Vec::new();
        let mut add = |list: &[String], field: Field| {
            keys.extend(list.iter().map(|k| (k.clone(), field)));
        };
        add(&self.traceparent_keys, Field::Traceparent);
        add(&self.trace_id_keys, Field::TraceId);
        add(&self.span_id_keys, Field::SpanId);
        for (rank, k) in self.correlation_keys.iter().enumerate() {
            keys.push((k.clone(), Field::Correlation(rank as u8)));
        }
        let min_len = keys.iter().map(|(k, _)| k.len()).min().unwrap_or(0);
        let max_len = keys.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        // One statement per counter: `get_or_create` returns a read guard,
        // and a guard living to the end of a struct literal would deadlock
        // the next `get_or_create` that must insert.
        let via = |via: &'static str| correlated.get_or_create(&ViaLabel { via }).clone();
        let bad = |field: &'static str| invalid.get_or_create(&FieldLabel { field }).clone();
        let (via_attribute, via_body) = (via("attribute"), via("body"));
        let invalid_traceparent = bad("traceparent");
        let invalid_trace_id = bad("trace_id");
        let invalid_span_id = bad("span_id");
        Correlate {
            keys,
            min_len,
            max_len,
            body: self.body,
            via_attribute,
            via_body,
            invalid_traceparent,
            invalid_trace_id,
            invalid_span_id,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabel {
    via: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldLabel {
    field: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Traceparent,
    TraceId,
    SpanId,
    /// Rank in `correlation_keys`: lower is stronger.
    Correlation(u8),
}

/// A parsed W3C traceparent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// Parses a W3C `traceparent` header value (see module docs for the rules).
pub fn parse_traceparent(s: &str) -> Option<TraceParent> {
    let b = s.trim().as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = lower_hex(&b[0..2])?;
    if version == [0xff] || (version == [0] && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
        return None;
    }
    let trace_id: [u8; 16] = lower_hex(&b[3..35])?.try_into().ok()?;
    let span_id: [u8; 8] = lower_hex(&b[36..52])?.try_into().ok()?;
    let flags = lower_hex(&b[53..55])?[0];
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        span_id,
        flags,
    })
}

fn lower_hex(b: &[u8]) -> Option<Vec<u8>> {
    if b.iter().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(b).ok()
}

/// A hex ID of exactly `N` bytes, either case, not all zeros.
pub fn parse_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.trim();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    (out != [0u8; N]).then_some(out)
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// What one record's attributes and body offered.
#[derive(Default)]
struct Found {
    traceparent: Option<(TraceParent, Via)>,
    trace_id: Option<([u8; 16], Via)>,
    span_id: Option<[u8; 8]>,
    correlation: Option<(u8, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Attribute,
    Body,
}

/// Built [`CorrelateConfig`].
#[derive(Debug)]
pub struct Correlate {
    keys: Vec<(String, Field)>,
    min_len: usize,
    max_len: usize,
    body: bool,
    via_attribute: Counter,
    via_body: Counter,
    invalid_traceparent: Counter,
    invalid_trace_id: Counter,
    invalid_span_id: Counter,
}

impl Correlate {
    fn field(&self, key: &str) -> Option<Field> {
        if key.len() < self.min_len || key.len() > self.max_len {
            return None;
        }
        self.keys
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, f)| *f)
    }

    /// Sets the record's missing IDs and `correlation.id` (see module docs).
    pub fn apply(&self, record: &mut LogRecord) {
        let need_trace = record.trace_id.len() != 16 || record.trace_id.iter().all(|&b| b == 0);
        let need_span = record.span_id.len() != 8 || record.span_id.iter().all(|&b| b == 0);
        let need_corr = !record.attributes.iter().any(|a| a.key == CORRELATION_ID);
        if !(need_trace || need_span || need_corr) {
            return;
        }
        let mut found = Found::default();
        for kv in &record.attributes {
            if let Some(field) = self.field(&kv.key) {
                self.offer_value(field, kv.value.as_ref(), Via::Attribute, &mut found);
            }
        }
        let complete = |f: &Found| {
            (f.traceparent.is_some() || (!need_trace && !need_span))
                && (!need_corr || f.correlation.as_ref().is_some_and(|(r, _)| *r == 0))
        };
        if self.body && !complete(&found) {
            match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => self.scan_text(s, &mut found),
                Some(any_value::Value::KvlistValue(list)) => {
                    for kv in &list.values {
                        if let Some(field) = self.field(&kv.key) {
                            self.offer_value(field, kv.value.as_ref(), Via::Body, &mut found);
                        }
                    }
                }
                _ => {}
            }
        }

        // Prefer the traceparent (both IDs from one writer), then separate
        // fields.
        let (trace, span, flags, via) = match (found.traceparent, found.trace_id) {
            (Some((tp, via)), _) => (
                Some(tp.trace_id),
                Some(tp.span_id),
                Some(tp.flags),
                Some(via),
            ),
            (None, Some((t, via))) => (Some(t), found.span_id, None, Some(via)),
            (None, None) => (None, found.span_id, None, None),
        };
        let mut set_trace = false;
        if need_trace && let Some(t) = trace {
            record.trace_id = t.to_vec();
            set_trace = true;
            if let Some(f) = flags
                && record.flags & 0xff == 0
            {
                record.flags |= u32::from(f);
            }
            match via {
                Some(Via::Body) => self.via_body.inc(),
                _ => self.via_attribute.inc(),
            };
        }
        // A span ID is only meaningful with its own trace: when the record
        // kept its own trace ID, a found span is taken only if whatever
        // trace ID came with it is the same one.
        let span_fits = set_trace || (!need_trace && trace.is_none_or(|t| record.trace_id == t));
        if need_span
            && span_fits
            && let Some(s) = span
        {
            record.span_id = s.to_vec();
        }
        if need_corr && let Some((_, id)) = found.correlation {
            record.attributes.push(string_kv(CORRELATION_ID, id));
        }
    }

    fn offer_value(&self, field: Field, v: Option<&AnyValue>, via: Via, found: &mut Found) {
        match v.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => self.offer(field, s, via, found),
            Some(any_value::Value::IntValue(i)) => {
                if let Field::Correlation(_) = field {
                    self.offer(field, &i.to_string(), via, found);
                }
            }
            Some(any_value::Value::BytesValue(b)) => match field {
                Field::TraceId if found.trace_id.is_none() => {
                    match <[u8; 16]>::try_from(b.as_slice()) {
                        Ok(id) if id != [0; 16] => found.trace_id = Some((id, via)),
                        _ => {
                            self.invalid_trace_id.inc();
                        }
                    }
                }
                Field::SpanId if found.span_id.is_none() => match <[u8; 8]>::try_from(b.as_slice())
                {
                    Ok(id) if id != [0; 8] => found.span_id = Some(id),
                    _ => {
                        self.invalid_span_id.inc();
                    }
                },
                _ => {}
            },
            _ => {}
        }
    }

    fn offer(&self, field: Field, value: &str, via: Via, found: &mut Found) {
        match field {
            Field::Traceparent => {
                if found.traceparent.is_none() {
                    match parse_traceparent(value) {
                        Some(tp) => found.traceparent = Some((tp, via)),
                        None => {
                            self.invalid_traceparent.inc();
                        }
                    }
                }
            }
            Field::TraceId => {
                if found.trace_id.is_none() {
                    match parse_id::<16>(value) {
                        Some(id) => found.trace_id = Some((id, via)),
                        None => {
                            self.invalid_trace_id.inc();
                        }
                    }
                }
            }
            Field::SpanId => {
                if found.span_id.is_none() {
                    match parse_id::<8>(value) {
                        Some(id) => found.span_id = Some(id),
                        None => {
                            self.invalid_span_id.inc();
                        }
                    }
                }
            }
            Field::Correlation(rank) => {
                let value = value.trim();
                if !value.is_empty() && found.correlation.as_ref().is_none_or(|(r, _)| rank < *r) {
                    found.correlation = Some((rank, value.to_string()));
                }
            }
        }
    }

    /// A string body: JSON fields from its first `{`, then `key=value` pairs.
    fn scan_text(&self, s: &str, found: &mut Found) {
        if let Some(start) = s.find('{') {
            self.scan_json(&s[start..], found);
        }
        if s.contains('=') {
            self.scan_pairs(s, found);
        }
    }

    /// Single-pass tokeniser: a string followed by `:` is a key; its value,
    /// when a string or a number, is offered. Nested objects are walked the
    /// same way; escapes inside strings are honoured.
    fn scan_json(&self, s: &str, found: &mut Found) {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'"' {
                i += 1;
                continue;
            }
            let Some((key, after)) = json_string(b, i) else {
                return;
            };
            let mut j = skip_ws(b, after);
            if j >= b.len() || b[j] != b':' {
                i = after;
                continue;
            }
            j = skip_ws(b, j + 1);
            let field = std::str::from_utf8(key).ok().and_then(|k| self.field(k));
            let Some(field) = field else {
                i = j;
                continue;
            };
            if j < b.len() && b[j] == b'"' {
                let Some((raw, after_value)) = json_string(b, j) else {
                    return;
                };
                let value = std::str::from_utf8(raw).unwrap_or("");
                if value.contains('\\') {
                    let quoted = &s[j..after_value];
                    if let Ok(unescaped) = serde_json::from_str::<String>(quoted) {
                        self.offer(field, &unescaped, Via::Body, found);
                    }
                } else {
                    self.offer(field, value, Via::Body, found);
                }
                i = after_value;
            } else {
                let end = (j..b.len())
                    .find(|&k| !matches!(b[k], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(b.len());
                if end > j
                    && let Field::Correlation(_) = field
                {
                    self.offer(field, &s[j..end], Via::Body, found);
                }
                i = end.max(j);
            }
        }
    }

    /// `key=value` and `key="value"` in plain text (logfmt and friends).
    fn scan_pairs(&self, s: &str, found: &mut Found) {
        let b = s.as_bytes();
        let mut from = 0;
        while let Some(off) = b[from..].iter().position(|&c| c == b'=') {
            let eq = from + off;
            from = eq + 1;
            let start = (0..eq)
                .rev()
                .find(|&k| !is_key_byte(b[k]))
                .map_or(0, |k| k + 1);
            if start == eq {
                continue;
            }
            let Some(field) = self.field(&s[start..eq]) else {
                continue;
            };
            let (vs, ve) = if b.get(eq + 1) == Some(&b'"') {
                let end = b[eq + 2..]
                    .iter()
                    .position(|&c| c == b'"')
                    .map_or(b.len(), |p| eq + 2 + p);
                (eq + 2, end)
            } else {
                let end = b[eq + 1..]
                    .iter()
                    .position(|&c| {
                        c.is_ascii_whitespace()
                            || matches!(c, b',' | b';' | b'&' | b'"' | b'\'' | b')' | b']' | b'}')
                    })
                    .map_or(b.len(), |p| eq + 1 + p);
                (eq + 1, end)
            };
            if ve > vs {
                self.offer(field, &s[vs..ve], Via::Body, found);
            }
            from = ve.max(from);
        }
    }
}

/// The raw bytes of the JSON string starting at `b[start] == '"'` and the
/// index just past its closing quote.
fn json_string(b: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let mut k = start + 1;
    while k < b.len() {
        match b[k] {
            b'\\' => k += 2,
            b'"' => return Some((&b[start + 1..k], k + 1)),
            _ => k += 1,
        }
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}
