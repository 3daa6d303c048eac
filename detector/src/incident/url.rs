//! Link templates: the `dashboard_url` and `runbook_url` of an alert.
//!
//! A template is a URL with `{{placeholder}}`s, filled per incident with
//! percent-encoded values (so a value can never add a query parameter or
//! change the path):
//!
//! | placeholder | value |
//! |---|---|
//! | `service`, `namespace`, `pod`, `node` | the incident's label, empty when its members disagree |
//! | `signal` | `traces`, `metrics` or `logs` (the opening series') |
//! | `entity` | `namespace=prod,service=checkout` |
//! | `incident_id` | the incident id |
//! | `series` | the top contributing series' name |
//! | `from_ms` | start − 30 min, unix milliseconds (Grafana's `from=`) |
//! | `to_ms` | resolution + 30 min, or `now` while open (Grafana's `to=`) |

use super::Incident;

/// Every placeholder a template may use.
pub const PLACEHOLDERS: [&str; 10] = [
    "service",
    "namespace",
    "pod",
    "node",
    "signal",
    "entity",
    "incident_id",
    "series",
    "from_ms",
    "to_ms",
];

/// A parsed link template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTemplate {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

impl UrlTemplate {
    pub fn parse(s: &str) -> Result<UrlTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let Some(j) = after.find("}}") else {
                return Err(format!(
                    "unclosed {{{{ at byte {}",
                    s.len() - rest.len() + i
                ));
            };
            let name = after[..j].trim();
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{{{name}}}}} (known: {})",
                    PLACEHOLDERS.join(", ")
                ));
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[j + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        let t = UrlTemplate { parts };
        let probe = t.render_with(|_| "x".to_string());
        reqwest::Url::parse(&probe)
            .map_err(|e| format!("not an absolute URL once filled ({probe}): {e}"))?;
        Ok(t)
    }

    fn render_with(&self, mut value: impl FnMut(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&encode(&value(v))),
            }
        }
        out
    }

    /// The link for one incident.
    pub fn render(&self, inc: &Incident) -> String {
        let labels = inc.common_labels();
        let top = inc.top_members();
        self.render_with(|v| match v {
            "service" | "namespace" | "pod" | "node" => labels.get(v).cloned().unwrap_or_default(),
            "signal" => inc.signal.as_str().to_string(),
            "entity" => inc.entity.key(),
            "incident_id" => inc.id.clone(),
            "series" => top.first().map(|m| m.name.clone()).unwrap_or_default(),
            "from_ms" => ((inc.started_at - 1800) * 1000).to_string(),
            "to_ms" => match inc.resolved_at {
                Some(r) => ((r + 1800) * 1000).to_string(),
                None => "now".to_string(),
            },
            _ => String::new(),
        })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_checked_and_values_encoded() {
        assert!(
            UrlTemplate::parse("https://g/d?x={{nope}}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(
            UrlTemplate::parse("https://g/d?x={{service")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            UrlTemplate::parse("/relative/{{service}}")
                .unwrap_err()
                .contains("absolute URL")
        );
        let t = UrlTemplate::parse(
            "https://g/d/argus?var-service={{ service }}&from={{from_ms}}&to={{to_ms}}",
        )
        .unwrap();
        let s = t.render_with(|v| match v {
            "service" => "a&b=c d/é".into(),
            "from_ms" => "1000".into(),
            _ => "now".into(),
        });
        assert_eq!(
            s,
            "https://g/d/argus?var-service=a%26b%3Dc%20d%2F%C3%A9&from=1000&to=now"
        );
    }
}
