//! Who sent an item: the resource labels every series carries, and
//! attribute values as label strings.
//!
//! | label | resource attribute |
//! |---|---|
//! | `service` | `service.name` (`unknown_service` when absent, as the SDKs do) |
//! | `namespace` | `k8s.namespace.name` |
//! | `pod` | `k8s.pod.name` |
//! | `node` | `k8s.node.name`, else `host.name` |
//!
//! Metric series carry all four (a metric stream belongs to one producer);
//! RED and log series carry `service` plus the configured `group_by`
//! subset (default `namespace`), because request rates and error counts
//! are a property of the service, not of each of its fifty pods.
//!
//! Every other resource attribute (`service.instance.id`,
//! `k8s.container.name`, …) is not a label but still tells producers apart:
//! it goes into the **stream identity** hash that keeps the cumulative
//! state of two containers' counters apart even when they land in the same
//! series.

use std::hash::{DefaultHasher, Hash, Hasher};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};

use crate::registry::{LABEL_NAMESPACE, LABEL_NODE, LABEL_POD, LABEL_SERVICE};

pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// A resource label that RED and log series may be grouped by, besides
/// `service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Namespace,
    Pod,
    Node,
}

/// The resource identity of a batch of items.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResourceLabels<'a> {
    pub service: &'a str,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub node: Option<&'a str>,
    /// Hash of every resource attribute (stream identity).
    pub hash: u64,
}

fn str_value(v: &Option<AnyValue>) -> Option<&str> {
    match v.as_ref()?.value.as_ref()? {
        Value::StringValue(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

impl<'a> ResourceLabels<'a> {
    pub fn of(resource: Option<&'a Resource>) -> Self {
        let mut r = ResourceLabels {
            service: UNKNOWN_SERVICE,
            namespace: None,
            pod: None,
            node: None,
            hash: 0,
        };
        let Some(res) = resource else {
            return r;
        };
        let mut host = None;
        for kv in &res.attributes {
            let v = str_value(&kv.value);
            match kv.key.as_str() {
                "service.name" => r.service = v.unwrap_or(UNKNOWN_SERVICE),
                "k8s.namespace.name" => r.namespace = v,
                "k8s.pod.name" => r.pod = v,
                "k8s.node.name" => r.node = v,
                "host.name" => host = v,
                _ => {}
            }
        }
        r.node = r.node.or(host);
        // Attribute order must not matter: combine per-attribute hashes
        // order-independently.
        r.hash = res
            .attributes
            .iter()
            .map(|kv| {
                let mut h = DefaultHasher::new();
                hash_kv(&mut h, kv);
                h.finish()
            })
            .fold(0u64, |a, b| {
                a.wrapping_add(b.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
            });
        r
    }

    /// `service` plus the configured resource labels, as `(name, value)`.
    pub fn push_grouped(&self, group_by: &[GroupBy], out: &mut Vec<(&'a str, &'a str)>) {
        out.push((LABEL_SERVICE, self.service));
        for g in group_by {
            let (k, v) = match g {
                GroupBy::Namespace => (LABEL_NAMESPACE, self.namespace),
                GroupBy::Pod => (LABEL_POD, self.pod),
                GroupBy::Node => (LABEL_NODE, self.node),
            };
            if let Some(v) = v {
                out.push((k, v));
            }
        }
    }

    /// All four resource labels (metrics).
    pub fn push_all(&self, out: &mut Vec<(&'a str, &'a str)>) {
        self.push_grouped(&[GroupBy::Namespace, GroupBy::Pod, GroupBy::Node], out);
    }
}

fn hash_kv(h: &mut DefaultHasher, kv: &KeyValue) {
    kv.key.hash(h);
    if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        hash_value(h, v);
    }
}

fn hash_value(h: &mut DefaultHasher, v: &Value) {
    match v {
        Value::StringValue(s) => (1u8, s).hash(h),
        Value::BoolValue(b) => (2u8, b).hash(h),
        Value::IntValue(i) => (3u8, i).hash(h),
        Value::DoubleValue(d) => (4u8, d.to_bits()).hash(h),
        Value::ArrayValue(a) => {
            5u8.hash(h);
            for x in &a.values {
                if let Some(x) = &x.value {
                    hash_value(h, x);
                }
            }
        }
        Value::KvlistValue(l) => {
            6u8.hash(h);
            for kv in &l.values {
                hash_kv(h, kv);
            }
        }
        Value::BytesValue(b) => (7u8, b).hash(h),
        Value::StringValueStrindex(i) => (8u8, i).hash(h),
    }
}

/// An attribute value as a label string: strings as they are, numbers and
/// booleans formatted, arrays and maps as compact JSON, bytes as hex.
pub(crate) fn format_value(v: &Value, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::StringValue(s) => out.push_str(s),
        Value::BoolValue(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::IntValue(i) => {
            let _ = write!(out, "{i}");
        }
        Value::DoubleValue(d) => {
            let _ = write!(out, "{d}");
        }
        Value::BytesValue(b) => {
            for x in b {
                let _ = write!(out, "{x:02x}");
            }
        }
        Value::StringValueStrindex(i) => {
            let _ = write!(out, "#{i}");
        }
        Value::ArrayValue(a) => {
            out.push('[');
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_value(x.value.as_ref(), out);
            }
            out.push(']');
        }
        Value::KvlistValue(l) => {
            out.push('{');
            for (i, kv) in l.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", serde_json::Value::from(kv.key.as_str()));
                json_value(kv.value.as_ref().and_then(|v| v.value.as_ref()), out);
            }
            out.push('}');
        }
    }
}

fn json_value(v: Option<&Value>, out: &mut String) {
    match v {
        None => out.push_str("null"),
        Some(Value::StringValue(s)) => {
            out.push_str(&serde_json::Value::from(s.as_str()).to_string())
        }
        Some(v @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => format_value(v, out),
        Some(v @ (Value::BoolValue(_) | Value::IntValue(_))) => format_value(v, out),
        Some(Value::DoubleValue(d)) if d.is_finite() => format_value(&Value::DoubleValue(*d), out),
        Some(other) => {
            let mut s = String::new();
            format_value(other, &mut s);
            out.push_str(&serde_json::Value::from(s).to_string());
        }
    }
}

/// Label names a data point attribute may not take, because resource
/// labels own them; the attribute is renamed `exported_<name>` (the
/// Prometheus convention for the same clash).
pub(crate) fn attribute_label(key: &str) -> &str {
    match key {
        LABEL_SERVICE => "exported_service",
        LABEL_NAMESPACE => "exported_namespace",
        LABEL_POD => "exported_pod",
        LABEL_NODE => "exported_node",
        k => k,
    }
}

/// Data point attributes as labels, borrowing string values and
/// formatting the others into `arena`.
pub(crate) struct AttrLabels {
    arena: String,
    spans: Vec<(usize, usize)>,
}

impl AttrLabels {
    pub fn new() -> Self {
        AttrLabels {
            arena: String::new(),
            spans: Vec::new(),
        }
    }

    /// Appends `attrs` as `(label, value)` to `out`. Call once per point.
    pub fn push<'a>(&'a mut self, attrs: &'a [KeyValue], out: &mut Vec<(&'a str, &'a str)>) {
        self.arena.clear();
        self.spans.clear();
        // Pass 1: format non-string values into the arena.
        for kv in attrs {
            match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(_)) | None => self.spans.push((0, 0)),
                Some(v) => {
                    let s = self.arena.len();
                    format_value(v, &mut self.arena);
                    self.spans.push((s, self.arena.len()));
                }
            }
        }
        // Pass 2: borrow.
        let arena = &self.arena;
        for (kv, &(s, e)) in attrs.iter().zip(&self.spans) {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(x)) => x.as_str(),
                None => "",
                Some(_) => &arena[s..e],
            };
            out.push((attribute_label(&kv.key), v));
        }
    }
}

/// Order-independent hash of data point attributes, combined with the
/// resource/scope hash: the identity of one cumulative stream.
pub(crate) fn stream_hash(base: u64, attrs: &[KeyValue]) -> u64 {
    attrs
        .iter()
        .map(|kv| {
            let mut h = DefaultHasher::new();
            hash_kv(&mut h, kv);
            h.finish()
        })
        .fold(base.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x51, |a, b| {
            a.wrapping_add(b.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
        })
}

/// Hash of the resource and scope (name, version).
pub(crate) fn scope_hash(resource: u64, name: &str, version: &str) -> u64 {
    let mut h = DefaultHasher::new();
    resource.hash(&mut h);
    name.hash(&mut h);
    version.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn resource_labels_and_host_fallback() {
        let res = Resource {
            attributes: vec![
                kv("service.name", Value::StringValue("checkout".into())),
                kv("k8s.namespace.name", Value::StringValue("prod".into())),
                kv("host.name", Value::StringValue("ip-10-0-0-1".into())),
                kv("service.instance.id", Value::StringValue("a".into())),
            ],
            ..Default::default()
        };
        let r = ResourceLabels::of(Some(&res));
        assert_eq!(
            (r.service, r.namespace, r.pod, r.node),
            ("checkout", Some("prod"), None, Some("ip-10-0-0-1"))
        );
        let mut res2 = res.clone();
        res2.attributes.reverse();
        assert_eq!(
            ResourceLabels::of(Some(&res2)).hash,
            r.hash,
            "order-independent"
        );
        res2.attributes[0] = kv("service.instance.id", Value::StringValue("b".into()));
        assert_ne!(
            ResourceLabels::of(Some(&res2)).hash,
            r.hash,
            "instance tells streams apart"
        );
        assert_eq!(ResourceLabels::of(None).service, UNKNOWN_SERVICE);
    }

    #[test]
    fn attribute_values_become_label_strings() {
        let attrs = vec![
            kv("route", Value::StringValue("/pay".into())),
            kv("code", Value::IntValue(503)),
            kv("ok", Value::BoolValue(false)),
            kv("ratio", Value::DoubleValue(0.5)),
            kv(
                "tags",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue("a\"b".into())),
                    }],
                }),
            ),
            kv(
                "m",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", Value::IntValue(1))],
                }),
            ),
            kv("service", Value::StringValue("shadow".into())),
        ];
        let mut a = AttrLabels::new();
        let mut out = Vec::new();
        a.push(&attrs, &mut out);
        assert_eq!(
            out,
            vec![
                ("route", "/pay"),
                ("code", "503"),
                ("ok", "false"),
                ("ratio", "0.5"),
                ("tags", "[\"a\\\"b\"]"),
                ("m", "{\"k\":1}"),
                ("exported_service", "shadow"),
            ]
        );
        let mut rev = attrs.clone();
        rev.reverse();
        assert_eq!(stream_hash(7, &attrs), stream_hash(7, &rev));
        assert_ne!(stream_hash(7, &attrs), stream_hash(8, &attrs));
    }
}
