//! Environment overrides: `ARGUS_DETECTOR__SECTION__FIELD=value`.
//!
//! Every variable that starts with the prefix (`ARGUS_DETECTOR__`) names a
//! path into the YAML document, segments separated by a double underscore
//! and lower-cased: `ARGUS_DETECTOR__SCORING__CLOCK=event` sets
//! `scoring.clock`, `ARGUS_DETECTOR__ALERTING__ALERTMANAGER__URLS__0=…` sets
//! the first element of `alerting.alertmanager.urls`. Missing mappings on
//! the way are created; a numeric segment indexes a sequence (one past its
//! end appends).
//!
//! The value is parsed as a YAML scalar or flow collection, so `true`, `30s`,
//! `0.5`, `[a, b]` and `{file: /x}` mean what they mean in the file; a value
//! that is not valid YAML is taken as a plain string.
//!
//! Overrides are applied to the parsed document before it is turned into a
//! [`DetectorConfig`](super::DetectorConfig), so they go through exactly the
//! same validation as the file, and a problem names the field path (and the
//! variable it came from) like any other.

use serde_yaml::{Mapping, Value};

/// Applies every `prefix…` variable to `doc`; returns one problem per
/// variable that could not be applied.
pub fn apply(
    doc: &mut Value,
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix) && k.len() > prefix.len())
        .collect();
    // Deterministic: a later index after an earlier one (`…__0`, `…__1`).
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[prefix.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            problems.push(format!(
                "{name}: empty path segment (use __ between fields)"
            ));
            continue;
        }
        let value = parse_value(&raw);
        if let Err(e) = set(doc, &path, value) {
            problems.push(format!("{name} ({}): {e}", path.join(".")));
        }
    }
    problems
}

fn parse_value(raw: &str) -> Value {
    match serde_yaml::from_str::<Value>(raw) {
        // A document separator or an empty string parses as null; an
        // operator who wrote `X=` means the empty string only for strings,
        // and null (the field's default) otherwise — keep YAML's reading.
        Ok(v) => v,
        Err(_) => Value::String(raw.to_string()),
    }
}

fn set(doc: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let (head, rest) = path.split_first().expect("non-empty path");
    if doc.is_null() {
        *doc = if head.parse::<usize>().is_ok() {
            Value::Sequence(Vec::new())
        } else {
            Value::Mapping(Mapping::new())
        };
    }
    match doc {
        Value::Mapping(m) => {
            let key = Value::String(head.clone());
            if rest.is_empty() {
                m.insert(key, value);
                return Ok(());
            }
            let child = m.entry(key).or_insert(Value::Null);
            set(child, rest, value)
        }
        Value::Sequence(s) => {
            let i: usize = head
                .parse()
                .map_err(|_| format!("{head:?} indexes a list; use a number"))?;
            if i > s.len() {
                return Err(format!(
                    "index {i} is past the end of a list of {} (set them in order)",
                    s.len()
                ));
            }
            if i == s.len() {
                s.push(Value::Null);
            }
            if rest.is_empty() {
                s[i] = value;
                return Ok(());
            }
            set(&mut s[i], rest, value)
        }
        other => Err(format!(
            "cannot set {head:?} inside a {} value",
            match other {
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                _ => "scalar",
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn paths_create_maps_and_index_lists() {
        let mut doc: Value = serde_yaml::from_str("scoring: {step: 10s}\nalerting: {}").unwrap();
        let p = apply(
            &mut doc,
            "ARGUS_DETECTOR__",
            vars(&[
                ("ARGUS_DETECTOR__SCORING__CLOCK", "event"),
                ("ARGUS_DETECTOR__SCORING__RECENT_POINTS", "12"),
                (
                    "ARGUS_DETECTOR__ALERTING__ALERTMANAGER__URLS__0",
                    "http://a:9093",
                ),
                (
                    "ARGUS_DETECTOR__ALERTING__ALERTMANAGER__URLS__1",
                    "http://b:9093",
                ),
                ("ARGUS_DETECTOR__ENGINE__DISABLED", "[kmeans]"),
                ("OTHER__SCORING__CLOCK", "wall"),
            ]),
        );
        assert!(p.is_empty(), "{p:?}");
        let want: Value = serde_yaml::from_str(
            "scoring: {step: 10s, clock: event, recent_points: 12}\n\
             alerting: {alertmanager: {urls: ['http://a:9093', 'http://b:9093']}}\n\
             engine: {disabled: [kmeans]}",
        )
        .unwrap();
        assert_eq!(doc, want);
    }

    #[test]
    fn impossible_paths_are_named() {
        let mut doc: Value = serde_yaml::from_str("scoring: {step: 10s}\nl: [1]").unwrap();
        let p = apply(
            &mut doc,
            "ARGUS_DETECTOR__",
            vars(&[
                ("ARGUS_DETECTOR__SCORING__STEP__X", "1"),
                ("ARGUS_DETECTOR__L__5", "1"),
                ("ARGUS_DETECTOR__L__A", "1"),
                ("ARGUS_DETECTOR__A____B", "1"),
            ]),
        );
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(
            p[0].starts_with("ARGUS_DETECTOR__A____B: empty path segment"),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("(l.5): index 5 is past the end")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.contains("(scoring.step.x): cannot set")),
            "{p:?}"
        );
    }
}
