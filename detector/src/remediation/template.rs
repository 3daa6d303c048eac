//! Webhook payload templates: a JSON value whose strings may hold
//! `{{placeholders}}`.
//!
//! Substitution happens inside JSON strings only, after parsing, so a label
//! value full of quotes and braces is inserted as text and can never change
//! the body's structure (no injection through alert labels). Placeholders:
//! `labels.NAME`, `annotations.NAME` (empty when absent, as in Alertmanager
//! templates), `incident.id`, `rule.name`, `webhook.id`, `target`.
//! Anything else is a configuration error, caught when the config is
//! checked rather than when an incident is already burning.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// One parsed template string.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Label(String),
    Annotation(String),
    IncidentId,
    RuleName,
    WebhookId,
    Target,
}

/// What placeholders are filled from.
pub(crate) struct Context<'a> {
    pub(crate) labels: &'a BTreeMap<String, String>,
    pub(crate) annotations: &'a BTreeMap<String, String>,
    pub(crate) incident_id: &'a str,
    pub(crate) rule: &'a str,
    pub(crate) webhook_id: &'a str,
    pub(crate) target: &'a str,
}

const KNOWN: &str = "labels.NAME, annotations.NAME, incident.id, rule.name, webhook.id or target";

impl Template {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {s:?}"))?;
            let name = after[..close].trim();
            let part = if let Some(l) = name.strip_prefix("labels.") {
                if !crate::alert::is_label_name(l) {
                    return Err(format!("{{{{{name}}}}}: {l:?} is not a valid label name"));
                }
                Part::Label(l.to_owned())
            } else if let Some(a) = name.strip_prefix("annotations.") {
                if !crate::alert::is_label_name(a) {
                    return Err(format!(
                        "{{{{{name}}}}}: {a:?} is not a valid annotation name"
                    ));
                }
                Part::Annotation(a.to_owned())
            } else {
                match name {
                    "incident.id" => Part::IncidentId,
                    "rule.name" => Part::RuleName,
                    "webhook.id" => Part::WebhookId,
                    "target" => Part::Target,
                    _ => {
                        return Err(format!("unknown placeholder {{{{{name}}}}} (use {KNOWN})"));
                    }
                }
            };
            parts.push(part);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    pub(crate) fn render(&self, cx: &Context<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            let _ = match p {
                Part::Text(t) => out.write_str(t),
                Part::Label(l) => out.write_str(cx.labels.get(l).map_or("", String::as_str)),
                Part::Annotation(a) => {
                    out.write_str(cx.annotations.get(a).map_or("", String::as_str))
                }
                Part::IncidentId => out.write_str(cx.incident_id),
                Part::RuleName => out.write_str(cx.rule),
                Part::WebhookId => out.write_str(cx.webhook_id),
                Part::Target => out.write_str(cx.target),
            };
        }
        out
    }
}

/// A JSON payload with every string parsed as a template.
#[derive(Clone, Debug)]
pub(crate) enum PayloadTemplate {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Template),
    Array(Vec<PayloadTemplate>),
    Object(Vec<(String, PayloadTemplate)>),
}

impl PayloadTemplate {
    /// Parses every string; the error names the JSON path of the first bad one.
    pub(crate) fn parse(v: &Value) -> Result<Self, (String, String)> {
        Self::parse_at(v, String::new())
    }

    fn parse_at(v: &Value, at: String) -> Result<Self, (String, String)> {
        Ok(match v {
            Value::Null => PayloadTemplate::Null,
            Value::Bool(b) => PayloadTemplate::Bool(*b),
            Value::Number(n) => PayloadTemplate::Number(n.clone()),
            Value::String(s) => PayloadTemplate::String(Template::parse(s).map_err(|e| (at, e))?),
            Value::Array(a) => PayloadTemplate::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, x)| Self::parse_at(x, format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(o) => PayloadTemplate::Object(
                o.iter()
                    .map(|(k, x)| {
                        Ok::<_, (String, String)>((
                            k.clone(),
                            Self::parse_at(x, format!("{at}.{k}"))?,
                        ))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    pub(crate) fn render(&self, cx: &Context<'_>) -> Value {
        match self {
            PayloadTemplate::Null => Value::Null,
            PayloadTemplate::Bool(b) => Value::Bool(*b),
            PayloadTemplate::Number(n) => Value::Number(n.clone()),
            PayloadTemplate::String(t) => Value::String(t.render(cx)),
            PayloadTemplate::Array(a) => Value::Array(a.iter().map(|x| x.render(cx)).collect()),
            PayloadTemplate::Object(o) => {
                Value::Object(o.iter().map(|(k, x)| (k.clone(), x.render(cx))).collect())
            }
        }
    }
}

/// Every bad template string in a payload, each named by its JSON path.
pub(crate) fn payload_problems(v: &Value, field: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Err(e) = Template::parse(s) {
                out.push(format!("{field}: {e}"));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                payload_problems(x, &format!("{field}[{i}]"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                payload_problems(x, &format!("{field}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx<'a>(
        labels: &'a BTreeMap<String, String>,
        annotations: &'a BTreeMap<String, String>,
    ) -> Context<'a> {
        Context {
            labels,
            annotations,
            incident_id: "inc-42",
            rule: "restart",
            webhook_id: "msg_1",
            target: "service=checkout",
        }
    }

    #[test]
    fn placeholders_are_filled_inside_strings_only() {
        let labels = BTreeMap::from([(
            "service".to_owned(),
            r#"evil", "admin": true, "x": "{{"#.to_owned(),
        )]);
        let ann = BTreeMap::from([("summary".to_owned(), "slow".to_owned())]);
        let t = PayloadTemplate::parse(&serde_json::json!({
            "svc": "{{labels.service}}",
            "why": "{{ annotations.summary }} ({{incident.id}}, {{rule.name}}, {{webhook.id}}, {{target}})",
            "missing": "[{{labels.pod}}]",
            "n": 3, "ok": true, "list": ["{{incident.id}}", null],
        }))
        .unwrap();
        let v = t.render(&cx(&labels, &ann));
        assert_eq!(
            v,
            serde_json::json!({
                "svc": r#"evil", "admin": true, "x": "{{"#,
                "why": "slow (inc-42, restart, msg_1, service=checkout)",
                "missing": "[]",
                "n": 3, "ok": true, "list": ["inc-42", null],
            })
        );
        assert!(
            v.get("admin").is_none(),
            "a label value cannot inject fields"
        );
    }

    #[test]
    fn bad_placeholders_are_named_by_path() {
        let mut out = Vec::new();
        payload_problems(
            &serde_json::json!({"a": {"b": ["ok", "{{labels.}}"]}, "c": "{{secret}}", "d": "{{x"}),
            "p",
            &mut out,
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].starts_with("p.a.b[1]: "), "{out:?}");
        assert!(
            out[1].starts_with("p.c: unknown placeholder {{secret}}"),
            "{out:?}"
        );
        assert!(out[2].starts_with("p.d: unclosed"), "{out:?}");
    }
}
