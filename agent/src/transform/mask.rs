//! PII masking on the node: payment card numbers and configured regex rules,
//! in log bodies and string attributes of log records, and in span and span
//! event attributes (nested maps and arrays included).
//!
//! # Card numbers
//!
//! A hand-written scanner, no regex: strings with fewer than 13 ASCII digits
//! are rejected after one counting pass (nearly every string). Otherwise the
//! scanner finds *digit runs*: groups of digits joined by single spaces or
//! dashes (`4111 1111 1111 1111`, `3782-822463-10005`), bounded on both
//! sides by something that is not an ASCII letter or digit (so hex IDs and
//! tokens like `x4111…` are left alone). Inside a run it looks for the
//! leftmost, then longest, window of whole groups holding 13–19 digits
//! that passes the Luhn check and starts with an allowed digit; such a
//! window is masked and the search goes on after it. So a card followed by
//! an expiry year in one run (`4111 1111 1111 1111 2030`) is still found,
//! while one unbroken run of 20+ digits (an order ID, a nanosecond
//! timestamp) is never a card.
//!
//! Masking keeps the first 6 and last 4 digits (the most PCI DSS allows to
//! display) and replaces the others with `*`, *keeping separators in
//! place* (and masks again until no card-like run is left, see
//! [`mask_cards`]): `4111 1111 1111 1111` → `4111 11** **** 1111`. The string keeps
//! its length, so offsets into the line stay meaningful.
//!
//! **First digits.** Luhn alone passes 1 in 10 random numbers, and 13-digit
//! epoch milliseconds and 19-digit epoch nanoseconds (both starting with
//! `1` until 2033) are everywhere in logs. Payment cards start with 2–6
//! (ISO/IEC 7812 major industry identifiers: airlines/Mastercard 2-series,
//! Amex/JCB/Diners 3, Visa 4, Mastercard 5, Discover/UnionPay/Maestro 6), so
//! `card_first_digits` defaults to `"23456"`. Set it to `"0123456789"` to
//! mask every Luhn-valid run.
//!
//! # Regex rules
//!
//! `{name, pattern, replacement}` with `regex` crate syntax; the replacement
//! may use `$1` / `$name`. A `RegexSet` first tells which rules match a
//! string at all, so a string no rule matches costs one scan. Each masked
//! value is counted under the rule's name (`masked_values_total{rule}`,
//! `rule="card"` for card numbers).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

/// The rule name card numbers are counted under.
pub const CARD_RULE: &str = "card";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskConfig {
    pub enabled: bool,
    /// Mask Luhn-valid card numbers. Default true.
    pub cards: bool,
    /// Digits a card number may start with. Default `"23456"` (see module
    /// docs: keeps epoch timestamps unmasked).
    pub card_first_digits: String,
    /// Extra regex rules, applied after card masking, in order.
    pub rules: Vec<MaskRule>,
}

impl Default for MaskConfig {
    fn default() -> Self {
        MaskConfig {
            enabled: true,
            cards: true,
            card_first_digits: "23456".into(),
            rules: Vec::new(),
        }
    }
}

/// One regex masking rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// Label value of `masked_values_total{rule}`: keep it short and fixed.
    pub name: String,
    pub pattern: String,
    /// Default `****`.
    #[serde(default = "default_replacement")]
    pub replacement: String,
}

fn default_replacement() -> String {
    "****".into()
}

impl MaskConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.cards
            && (self.card_first_digits.is_empty()
                || !self.card_first_digits.bytes().all(|b| b.is_ascii_digit()))
        {
            out.push(format!(
                "{path}.card_first_digits: must be one or more digits (got {:?})",
                self.card_first_digits
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("{path}.rules[{i}]");
            if r.name.is_empty()
                || r.name.len() > 64
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                out.push(format!(
                    "{at}.name: {:?} must be 1–64 letters, digits, `_` or `-` (it is a metric label)",
                    r.name
                ));
            }
            if r.name == CARD_RULE {
                out.push(format!(
                    "{at}.name: {CARD_RULE:?} is reserved for card numbers"
                ));
            }
            if self.rules[..i].iter().any(|o| o.name == r.name) {
                out.push(format!(
                    "{at}.name: {:?} is used by an earlier rule",
                    r.name
                ));
            }
            match Regex::new(&r.pattern) {
                Err(e) => out.push(format!("{at}.pattern: invalid regex: {e}")),
                Ok(re) if re.is_match("") => {
                    out.push(format!("{at}.pattern: matches the empty string"));
                }
                Ok(_) => {}
            }
        }
        out
    }

    /// Compiles the rules and registers `masked_values_total{rule}`.
    pub fn build(&self, registry: &mut Registry) -> Result<Mask, regex::Error> {
        let family = Family::<RuleLabel, Counter>::default();
        registry.register(
            "masked_values",
            "Values masked on the node, by masking rule (`card` for card numbers)",
            family.clone(),
        );
        let counter = |name: &str| {
            family
                .get_or_create(&RuleLabel {
                    rule: name.to_string(),
                })
                .clone()
        };
        let mut first_digits = [false; 10];
        for b in self.card_first_digits.bytes().filter(u8::is_ascii_digit) {
            first_digits[usize::from(b - b'0')] = true;
        }
        let rules = self
            .rules
            .iter()
            .map(|r| {
                Ok(Rule {
                    regex: Regex::new(&r.pattern)?,
                    replacement: r.replacement.clone(),
                    counter: counter(&r.name),
                })
            })
            .collect::<Result<Vec<_>, regex::Error>>()?;
        let set = if rules.is_empty() {
            None
        } else {
            Some(RegexSet::new(self.rules.iter().map(|r| &r.pattern))?)
        };
        Ok(Mask {
            cards: self.cards.then_some(first_digits),
            card_counter: counter(CARD_RULE),
            rules,
            set,
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
}

#[derive(Debug)]
struct Rule {
    regex: Regex,
    replacement: String,
    counter: Counter,
}

/// Built [`MaskConfig`].
#[derive(Debug)]
pub struct Mask {
    /// Allowed first digits, when card masking is on.
    cards: Option<[bool; 10]>,
    card_counter: Counter,
    rules: Vec<Rule>,
    set: Option<RegexSet>,
}

impl Mask {
    /// Masks one string in place; returns how many values were masked.
    pub fn string(&self, s: &mut String) -> usize {
        let mut n = 0;
        if let Some(first) = &self.cards {
            let c = mask_cards(s, first);
            if c > 0 {
                self.card_counter.inc_by(c as u64);
            }
            n += c;
        }
        if let Some(set) = &self.set {
            let hits = set.matches(s);
            if hits.matched_any() {
                for i in hits.iter() {
                    let rule = &self.rules[i];
                    let mut count = 0u64;
                    let replaced = rule.regex.replace_all(s, |caps: &regex::Captures<'_>| {
                        count += 1;
                        let mut dst = String::new();
                        caps.expand(&rule.replacement, &mut dst);
                        dst
                    });
                    if let std::borrow::Cow::Owned(new) = replaced {
                        *s = new;
                    }
                    if count > 0 {
                        rule.counter.inc_by(count);
                        n += count as usize;
                    }
                }
            }
        }
        n
    }

    /// Strings anywhere inside a value (maps and arrays included).
    pub fn value(&self, v: &mut AnyValue) {
        match &mut v.value {
            Some(any_value::Value::StringValue(s)) => {
                self.string(s);
            }
            Some(any_value::Value::KvlistValue(list)) => self.attributes(&mut list.values),
            Some(any_value::Value::ArrayValue(arr)) => {
                for v in &mut arr.values {
                    self.value(v);
                }
            }
            _ => {}
        }
    }

    pub fn attributes(&self, attrs: &mut [KeyValue]) {
        for kv in attrs {
            if let Some(v) = &mut kv.value {
                self.value(v);
            }
        }
    }

    pub fn log_record(&self, r: &mut LogRecord) {
        if let Some(b) = &mut r.body {
            self.value(b);
        }
        self.attributes(&mut r.attributes);
    }

    pub fn span(&self, span: &mut Span) {
        self.attributes(&mut span.attributes);
        for e in &mut span.events {
            self.attributes(&mut e.attributes);
        }
    }
}

/// Luhn checksum over ASCII digits.
pub fn luhn_valid(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

const MIN_DIGITS: usize = 13;
const MAX_DIGITS: usize = 19;

fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'-'
}

/// Masks card numbers in `s` (see module docs); returns how many.
/// `first_digits[d]` says whether a card may start with digit `d`.
///
/// Runs until nothing card-like is left: masking a card inside a longer
/// run leaves its last 4 digits joined to the digits after it (`…1111 2030
/// 0000 0000 4`), which can by chance form a new Luhn-valid run that a PCI
/// scanner over the stored logs would flag. Such a run is masked too, so the
/// output never holds a card-like run. The extra pass is cheap: after a
/// normal card only 10 digits remain and the digit count rejects it.
pub fn mask_cards(s: &mut String, first_digits: &[bool; 10]) -> usize {
    let mut total = 0;
    loop {
        // Each pass masks at least 3 digits, so this ends.
        let n = mask_cards_once(s, first_digits);
        if n == 0 {
            return total;
        }
        total += n;
    }
}

fn mask_cards_once(s: &mut String, first_digits: &[bool; 10]) -> usize {
    let b = s.as_bytes();
    if b.iter().filter(|c| c.is_ascii_digit()).count() < MIN_DIGITS {
        return 0;
    }
    // Byte ranges of windows to mask; allocated only when a card is found.
    let mut windows: Vec<(usize, usize)> = Vec::new();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let n = b.len();
    let mut i = 0;
    while i < n {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let left_ok = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        // First find the run's extent and digit count without storing
        // anything: most runs (dates, amounts, IDs) are too short or glued to
        // letters and are skipped here.
        let mut j = i;
        let mut digits = 0;
        loop {
            while j < n && b[j].is_ascii_digit() {
                j += 1;
                digits += 1;
            }
            if j + 1 < n && is_sep(b[j]) && b[j + 1].is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        let right_ok = j == n || !b[j].is_ascii_alphanumeric();
        if left_ok && right_ok && digits >= MIN_DIGITS {
            groups.clear();
            let mut k = i;
            while k < j {
                let g = k;
                while k < j && b[k].is_ascii_digit() {
                    k += 1;
                }
                groups.push((g, k));
                k += 1; // the separator
            }
            find_windows(b, &groups, first_digits, &mut windows);
        }
        i = j;
    }
    if windows.is_empty() {
        return 0;
    }
    let count = windows.len();
    let mut bytes = std::mem::take(s).into_bytes();
    for (start, end) in windows {
        let total = bytes[start..end]
            .iter()
            .filter(|c| c.is_ascii_digit())
            .count();
        let mut seen = 0;
        for c in &mut bytes[start..end] {
            if c.is_ascii_digit() {
                if seen >= 6 && seen < total - 4 {
                    *c = b'*';
                }
                seen += 1;
            }
        }
    }
    // Only ASCII digits were replaced by ASCII `*`: still valid UTF-8.
    *s = String::from_utf8(bytes).expect("ASCII replaced by ASCII");
    count
}

/// Leftmost-longest card windows (whole groups) within one run.
fn find_windows(
    b: &[u8],
    groups: &[(usize, usize)],
    first_digits: &[bool; 10],
    out: &mut Vec<(usize, usize)>,
) {
    let len = |g: &(usize, usize)| g.1 - g.0;
    let mut start = 0;
    'outer: while start < groups.len() {
        if !first_digits[usize::from(b[groups[start].0] - b'0')] {
            start += 1;
            continue;
        }
        // The furthest group end keeping ≤ 19 digits.
        let mut total = 0;
        let mut last = start;
        while last < groups.len() && total + len(&groups[last]) <= MAX_DIGITS {
            total += len(&groups[last]);
            last += 1;
        }
        // Try [start, end) from longest to shortest.
        let mut end = last;
        while end > start {
            if total >= MIN_DIGITS {
                let mut buf = [0u8; MAX_DIGITS];
                let mut k = 0;
                for &(s, e) in &groups[start..end] {
                    for &c in &b[s..e] {
                        buf[k] = c;
                        k += 1;
                    }
                }
                if luhn_valid(buf[..k].iter().copied()) {
                    out.push((groups[start].0, groups[end - 1].1));
                    start = end;
                    continue 'outer;
                }
            } else {
                break;
            }
            end -= 1;
            total -= len(&groups[end]);
        }
        start += 1;
    }
}
