//! The alert as Alertmanager's `POST /api/v2/alerts` takes it
//! (`postableAlert`), its identity, and the checks Alertmanager would make.
//!
//! Alertmanager validates a batch alert by alert and answers `400` for the
//! whole request when any alert is invalid (while storing the valid ones), so
//! one malformed alert would turn every batch it rides in into an error that
//! retrying cannot fix. [`Alert::normalise`] therefore applies Alertmanager's
//! own rules before an alert is accepted: empty label values are removed (an
//! empty label is no label, in Prometheus and Alertmanager alike), at least
//! one label must remain, and label and annotation names must be valid
//! Prometheus label names (the classic `[a-zA-Z_][a-zA-Z0-9_]*`, accepted by
//! every Alertmanager version).

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One alert. Labels identify it (two alerts with the same labels are the
/// same alert to Alertmanager); annotations explain it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// When the incident began. Left `None`, the notifier stamps the time of
    /// the first [`fire`](super::Notifier::fire) and keeps it across updates.
    #[serde(
        rename = "startsAt",
        default,
        with = "rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub starts_at: Option<SystemTime>,
    /// Set by the notifier on every send (Prometheus semantics: now + 4 ×
    /// resend interval while firing, the resolution time once resolved); a
    /// value given to `fire` is ignored.
    #[serde(
        rename = "endsAt",
        default,
        with = "rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub ends_at: Option<SystemTime>,
    /// A link back to what produced the alert (a dashboard, the detector's
    /// page for the series).
    #[serde(
        rename = "generatorURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub generator_url: Option<String>,
}

/// Why an alert cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("an alert needs at least one label with a non-empty value")]
    NoLabels,
    #[error("label name {0:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidLabelName(String),
    #[error("annotation name {0:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")]
    InvalidAnnotationName(String),
    #[error("generator_url is not a valid absolute URL: {0}")]
    InvalidGeneratorUrl(String),
}

impl Alert {
    /// An alert with these labels and nothing else.
    pub fn new<K: Into<String>, V: Into<String>>(labels: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Self::default()
        }
    }

    /// Adds an annotation (builder style).
    pub fn annotate(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(name.into(), value.into());
        self
    }

    /// Applies Alertmanager's rules (see the module docs): removes empty
    /// labels and annotations, then checks what is left.
    pub fn normalise(&mut self) -> Result<(), AlertError> {
        self.labels.retain(|_, v| !v.is_empty());
        self.annotations.retain(|_, v| !v.is_empty());
        if self.labels.is_empty() {
            return Err(AlertError::NoLabels);
        }
        if let Some(bad) = self.labels.keys().find(|k| !is_label_name(k)) {
            return Err(AlertError::InvalidLabelName(bad.clone()));
        }
        if let Some(bad) = self.annotations.keys().find(|k| !is_label_name(k)) {
            return Err(AlertError::InvalidAnnotationName(bad.clone()));
        }
        if let Some(url) = &self.generator_url
            && let Err(e) = reqwest::Url::parse(url)
        {
            return Err(AlertError::InvalidGeneratorUrl(e.to_string()));
        }
        Ok(())
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What identifies an alert to the notifier. Usually
/// [`AlertKey::fingerprint`] of the labels (the same 16 hex digits
/// Alertmanager shows as the alert's `fingerprint`); the detector may use its
/// own incident ID instead, and then changing the labels under one key (for
/// example escalating `severity`) resolves the alert with the old labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey(String);

impl AlertKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// Alertmanager's fingerprint of a label set (Prometheus'
    /// `LabelSet.Fingerprint`: FNV-1a 64 over the sorted names and values,
    /// each followed by the byte 0xff), as 16 lower-case hex digits.
    pub fn fingerprint(labels: &BTreeMap<String, String>) -> Self {
        Self(format!("{:016x}", fingerprint(labels)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for AlertKey {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for AlertKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}

pub(crate) fn fingerprint(labels: &BTreeMap<String, String>) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    // BTreeMap iterates in byte order of the names, as Go's sort does.
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    h
}

/// RFC 3339 timestamps in UTC with millisecond precision, as Alertmanager
/// writes and reads them.
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339_millis(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => parse(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }

    /// Parses RFC 3339 with any offset (Alertmanager answers in UTC, but a
    /// Go zero time or a local offset must not break a reader).
    pub fn parse(s: &str) -> Result<SystemTime, String> {
        if let Some(utc) = s.strip_suffix('Z') {
            return humantime::parse_rfc3339_weak(utc).map_err(|e| format!("{s:?}: {e}"));
        }
        // "+hh:mm" / "-hh:mm" offset: parse the local part, then shift.
        let (local, sign, off) = split_offset(s).ok_or_else(|| format!("not RFC 3339: {s:?}"))?;
        let t = humantime::parse_rfc3339_weak(local).map_err(|e| format!("{s:?}: {e}"))?;
        let shift = std::time::Duration::from_secs(off);
        Ok(if sign > 0 { t - shift } else { t + shift })
    }

    fn split_offset(s: &str) -> Option<(&str, i32, u64)> {
        if s.len() < 6 {
            return None;
        }
        let (local, off) = s.split_at(s.len() - 6);
        let b = off.as_bytes();
        let sign = match b[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        if b[3] != b':' || !local.contains('T') {
            return None;
        }
        let h: u64 = off[1..3].parse().ok()?;
        let m: u64 = off[4..6].parse().ok()?;
        Some((local, sign, h * 3600 + m * 60))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn serialises_as_alertmanager_postable_alert() {
        let mut a = Alert::new([("alertname", "HighLatency"), ("service", "checkout")])
            .annotate("summary", "p99 3× the baseline");
        a.starts_at = Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        a.ends_at = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_240));
        a.generator_url = Some("http://argus/series/1".into());
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "labels": {"alertname": "HighLatency", "service": "checkout"},
                "annotations": {"summary": "p99 3× the baseline"},
                "startsAt": "2023-11-14T22:13:20.123Z",
                "endsAt": "2023-11-14T22:17:20.000Z",
                "generatorURL": "http://argus/series/1",
            })
        );
        let back: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn reads_alertmanager_times_with_nanoseconds_and_offsets() {
        let t = rfc3339::parse("2023-11-14T22:13:20.123456789Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_700_000_000, 123_456_789)
        );
        let t = rfc3339::parse("2023-11-14T23:13:20+01:00").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert!(rfc3339::parse("yesterday").is_err());
    }

    #[test]
    fn normalise_applies_alertmanagers_rules() {
        let mut a = Alert::new([("alertname", "X"), ("pod", "")]).annotate("note", "");
        a.normalise().unwrap();
        assert_eq!(a.labels.len(), 1, "empty label removed");
        assert!(a.annotations.is_empty());
        assert_eq!(
            Alert::new([("pod", "")]).normalise(),
            Err(AlertError::NoLabels)
        );
        assert_eq!(
            Alert::new([("k8s.pod", "p")]).normalise(),
            Err(AlertError::InvalidLabelName("k8s.pod".into()))
        );
        assert_eq!(
            Alert::new([("a", "b")]).annotate("1st", "x").normalise(),
            Err(AlertError::InvalidAnnotationName("1st".into()))
        );
        let mut a = Alert::new([("a", "b")]);
        a.generator_url = Some("not a url".into());
        assert!(matches!(
            a.normalise(),
            Err(AlertError::InvalidGeneratorUrl(_))
        ));
    }

    #[test]
    fn fingerprint_is_fnv1a_over_sorted_pairs() {
        // Hand-computed FNV-1a of "a\xffb\xff" (what Prometheus' model computes).
        let mut h: u64 = 14_695_981_039_346_656_037;
        for b in b"a\xffb\xff" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(1_099_511_628_211);
        }
        let labels = BTreeMap::from([("a".to_owned(), "b".to_owned())]);
        assert_eq!(AlertKey::fingerprint(&labels).as_str(), format!("{h:016x}"));
        // Pairs are delimited: moving a character across the boundary changes it.
        let l1 = BTreeMap::from([("ab".to_owned(), "c".to_owned())]);
        let l2 = BTreeMap::from([("a".to_owned(), "bc".to_owned())]);
        assert_ne!(AlertKey::fingerprint(&l1), AlertKey::fingerprint(&l2));
    }
}
