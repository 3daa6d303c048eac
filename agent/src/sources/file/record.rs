//! One logical log line to one OTLP `LogRecord`.
//!
//! A message that is a JSON object is taken apart: its message-ish field
//! (`msg`, then `message`, then `log`) becomes the body, a recognised
//! `level`/`severity`/`lvl` field becomes `severity_number` + `severity_text`
//! (and leaves the attributes), every other top-level field becomes an
//! attribute under its own key: strings, bools, integers (`IntValue`),
//! fractions (`DoubleValue`), nested objects (`KvlistValue`), arrays
//! (`ArrayValue`), `null` (an empty `AnyValue`). Integers beyond `i64` stay
//! exact as strings. Trace context fields (`trace_id`, `traceparent`, …) are
//! kept as attributes under their original keys: the correlation transform
//! moves them into the record's trace fields.
//!
//! JSON is decoded straight into OTLP values by a serde visitor: no
//! intermediate `serde_json::Value` tree, one allocation per key and string.
//! A message that is not a JSON object is the body as a string (invalid UTF-8
//! replaced by U+FFFD), and its severity is guessed from its first words
//! (see `severity`).

use std::fmt;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::format::IoStream;
use super::severity;

/// Keys whose value becomes the body, by priority.
const BODY_KEYS: [&str; 3] = ["msg", "message", "log"];
/// Keys whose value becomes the severity, by priority.
const LEVEL_KEYS: [&str; 5] = ["level", "severity", "lvl", "loglevel", "log.level"];

/// Attribute keys this source sets (OpenTelemetry semantic conventions).
pub const ATTR_IOSTREAM: &str = "log.iostream";
pub const ATTR_FILE_PATH: &str = "log.file.path";
/// Set (true) on a record whose message was cut at `max_line_bytes`.
pub const ATTR_TRUNCATED: &str = "argus.log.truncated";

/// What a record is built from, besides its message.
#[derive(Clone, Copy, Debug)]
pub struct Meta<'a> {
    pub stream: Option<IoStream>,
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub truncated: bool,
    pub path: &'a str,
    pub parse_json: bool,
}

/// Builds the record for one logical message.
pub fn build(message: &[u8], meta: Meta<'_>) -> LogRecord {
    let mut rec = LogRecord {
        time_unix_nano: meta.time_unix_nano,
        observed_time_unix_nano: meta.observed_time_unix_nano,
        ..Default::default()
    };
    let parsed = if meta.parse_json && looks_like_object(message) {
        parse_object(message)
    } else {
        None
    };
    match parsed {
        Some(obj) => {
            rec.body = obj.body;
            if let Some((n, text)) = obj.severity {
                rec.severity_number = n;
                rec.severity_text = text;
            }
            rec.attributes = obj.attributes;
        }
        None => {
            let text = String::from_utf8_lossy(message);
            if let Some((n, word)) = severity::detect_in_text(message) {
                rec.severity_number = n;
                rec.severity_text = String::from_utf8_lossy(word).into_owned();
            }
            rec.body = Some(string_value(text.into_owned()));
        }
    }
    rec.attributes.reserve(3);
    if let Some(stream) = meta.stream {
        rec.attributes
            .push(kv(ATTR_IOSTREAM, string_value(stream.as_str().to_owned())));
    }
    rec.attributes
        .push(kv(ATTR_FILE_PATH, string_value(meta.path.to_owned())));
    if meta.truncated {
        rec.attributes.push(kv(
            ATTR_TRUNCATED,
            AnyValue {
                value: Some(Value::BoolValue(true)),
            },
        ));
    }
    rec
}

fn looks_like_object(m: &[u8]) -> bool {
    let t = m.trim_ascii();
    t.first() == Some(&b'{') && t.last() == Some(&b'}')
}

pub(crate) fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

pub(crate) fn string_value(s: String) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s)),
    }
}

/// A JSON object message, taken apart.
#[derive(Debug, Default, PartialEq)]
pub struct JsonMessage {
    pub body: Option<AnyValue>,
    pub severity: Option<(i32, String)>,
    pub attributes: Vec<KeyValue>,
}

/// Parses a JSON object message; `None` if it is not one.
pub fn parse_object(message: &[u8]) -> Option<JsonMessage> {
    let Object(mut fields) = serde_json::from_slice(message).ok()?;
    let mut out = JsonMessage::default();
    if let Some(i) = BODY_KEYS
        .iter()
        .find_map(|k| fields.iter().position(|f| f.key == *k))
    {
        out.body = fields.remove(i).value;
    }
    for key in LEVEL_KEYS {
        let Some(i) = fields.iter().position(|f| f.key == key) else {
            continue;
        };
        let number = match fields[i].value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => severity::from_name(s.as_bytes()),
            Some(Value::IntValue(n)) => severity::from_number(*n),
            _ => None,
        };
        if let Some(number) = number {
            let text = match fields.remove(i).value.and_then(|v| v.value) {
                Some(Value::StringValue(s)) => s,
                Some(Value::IntValue(n)) => n.to_string(),
                _ => String::new(),
            };
            out.severity = Some((number, text));
            break;
        }
    }
    out.attributes = fields;
    Some(out)
}

/// A top-level JSON object as OTLP key-values, in document order.
struct Object(Vec<KeyValue>);

impl<'de> de::Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object, A::Error> {
                // Top level: typical structured logs have up to a dozen
                // fields, plus the three `build` appends.
                key_values(map, 16).map(Object)
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// `capacity`: a guess; JSON does not say how many fields follow.
fn key_values<'de, A: MapAccess<'de>>(
    mut map: A,
    capacity: usize,
) -> Result<Vec<KeyValue>, A::Error> {
    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(capacity));
    while let Some(key) = map.next_key::<String>()? {
        let value = map.next_value_seed(AnyValueSeed)?;
        out.push(KeyValue {
            key,
            value: Some(value),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Deserializes any JSON value directly into an OTLP `AnyValue`.
struct AnyValueSeed;

impl<'de> DeserializeSeed<'de> for AnyValueSeed {
    type Value = AnyValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        d.deserialize_any(AnyValueVisitor)
    }
}

struct AnyValueVisitor;

fn any(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

impl<'de> Visitor<'de> for AnyValueVisitor {
    type Value = AnyValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<AnyValue, E> {
        Ok(any(Value::BoolValue(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<AnyValue, E> {
        Ok(any(Value::IntValue(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<AnyValue, E> {
        Ok(any(match i64::try_from(v) {
            Ok(i) => Value::IntValue(i),
            Err(_) => Value::StringValue(v.to_string()),
        }))
    }
    fn visit_f64<E>(self, v: f64) -> Result<AnyValue, E> {
        Ok(any(Value::DoubleValue(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<AnyValue, E> {
        Ok(any(Value::StringValue(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<AnyValue, E> {
        Ok(any(Value::StringValue(v)))
    }
    fn visit_unit<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_none<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(4));
        while let Some(v) = seq.next_element_seed(AnyValueSeed)? {
            values.push(v);
        }
        Ok(any(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<AnyValue, A::Error> {
        Ok(any(Value::KvlistValue(KeyValueList {
            values: key_values(map, 4)?,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(path: &str) -> Meta<'_> {
        Meta {
            stream: Some(IoStream::Stdout),
            time_unix_nano: 7,
            observed_time_unix_nano: 9,
            truncated: false,
            path,
            parse_json: true,
        }
    }

    fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a Value> {
        r.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn json_fields_become_typed_attributes() {
        let r = build(
            br#"{"level":"warn","msg":"slow","ms":12,"ratio":0.5,"ok":false,"big":18446744073709551615,"user":{"id":"u1","tags":["a",1]},"gone":null,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#,
            meta("/p"),
        );
        assert_eq!(r.body, Some(string_value("slow".into())));
        assert_eq!((r.severity_number, r.severity_text.as_str()), (13, "warn"));
        assert_eq!(attr(&r, "ms"), Some(&Value::IntValue(12)));
        assert_eq!(attr(&r, "ratio"), Some(&Value::DoubleValue(0.5)));
        assert_eq!(attr(&r, "ok"), Some(&Value::BoolValue(false)));
        assert_eq!(
            attr(&r, "big"),
            Some(&Value::StringValue("18446744073709551615".into()))
        );
        let Some(Value::KvlistValue(user)) = attr(&r, "user") else {
            panic!("user is not a kvlist: {r:?}")
        };
        assert_eq!(user.values[0].key, "id");
        let Some(Value::ArrayValue(tags)) = user.values[1].value.as_ref().unwrap().value.as_ref()
        else {
            panic!("tags is not an array")
        };
        assert_eq!(tags.values[1].value, Some(Value::IntValue(1)));
        assert!(
            r.attributes
                .iter()
                .any(|kv| kv.key == "gone" && kv.value == Some(AnyValue { value: None }))
        );
        // Trace context stays an attribute for the correlation transform.
        assert!(attr(&r, "trace_id").is_some());
        assert!(r.trace_id.is_empty());
        // The level and message moved out of the attributes.
        assert!(attr(&r, "level").is_none() && attr(&r, "msg").is_none());
        assert_eq!(
            attr(&r, ATTR_IOSTREAM),
            Some(&Value::StringValue("stdout".into()))
        );
        assert_eq!(
            attr(&r, ATTR_FILE_PATH),
            Some(&Value::StringValue("/p".into()))
        );
        assert_eq!((r.time_unix_nano, r.observed_time_unix_nano), (7, 9));
    }

    #[test]
    fn body_key_priority_and_non_string_bodies() {
        let r = build(br#"{"message":"m","msg":"winner","log":"l"}"#, meta("/p"));
        assert_eq!(r.body, Some(string_value("winner".into())));
        assert_eq!(attr(&r, "message"), Some(&Value::StringValue("m".into())));
        let r = build(br#"{"log":{"a":1}}"#, meta("/p"));
        assert!(matches!(r.body.unwrap().value, Some(Value::KvlistValue(_))));
        // No message field: no body, everything is an attribute.
        let r = build(br#"{"a":1}"#, meta("/p"));
        assert_eq!(r.body, None);
        assert_eq!(attr(&r, "a"), Some(&Value::IntValue(1)));
    }

    #[test]
    fn severity_from_json_fields() {
        let cases: &[(&str, i32, &str)] = &[
            (r#"{"severity":"ERROR","msg":"x"}"#, 17, "ERROR"),
            (r#"{"lvl":"dbug","level":"Info"}"#, 9, "Info"),
            (r#"{"level":50,"msg":"pino"}"#, 17, "50"),
            (r#"{"level":"loud","msg":"x"}"#, 0, ""),
        ];
        for (line, n, text) in cases {
            let r = build(line.as_bytes(), meta("/p"));
            assert_eq!(
                (r.severity_number, r.severity_text.as_str()),
                (*n, *text),
                "{line}"
            );
        }
        // An unrecognised level stays an attribute.
        let r = build(br#"{"level":"loud"}"#, meta("/p"));
        assert_eq!(attr(&r, "level"), Some(&Value::StringValue("loud".into())));
    }

    #[test]
    fn plain_and_broken_json_are_string_bodies() {
        for line in [&b"ERROR {not json}"[..], b"{\"a\":", b"[1,2]", b"{broken}"] {
            let r = build(line, meta("/p"));
            assert_eq!(
                r.body,
                Some(string_value(String::from_utf8_lossy(line).into_owned())),
            );
        }
        let r = build(b"ERROR boom", meta("/p"));
        assert_eq!((r.severity_number, r.severity_text.as_str()), (17, "ERROR"));
        let r = build(b"bad \xff utf8", meta("/p"));
        assert_eq!(r.body, Some(string_value("bad \u{fffd} utf8".into())));
        // With JSON parsing off, a JSON message is a string.
        let r = build(
            br#"{"msg":"x"}"#,
            Meta {
                parse_json: false,
                ..meta("/p")
            },
        );
        assert_eq!(r.body, Some(string_value(r#"{"msg":"x"}"#.into())));
    }

    #[test]
    fn truncated_records_are_marked() {
        let r = build(
            b"cut",
            Meta {
                truncated: true,
                stream: None,
                ..meta("/p")
            },
        );
        assert_eq!(attr(&r, ATTR_TRUNCATED), Some(&Value::BoolValue(true)));
        assert!(attr(&r, ATTR_IOSTREAM).is_none());
    }
}
