//! An incident as an Alertmanager alert (DESIGN.md: labels identify,
//! annotations explain).
//!
//! # Labels
//!
//! | label | value |
//! |---|---|
//! | `alertname` | `ArgusAnomaly` (one name: routes, inhibitions and silences stay simple; `signal` says what kind) |
//! | `severity` | `warning`; `critical` once any member's score reached `critical_score`, or when a remediation escalated (its `escalate.severity`). Never lowered within an incident |
//! | `service`, `namespace`, `pod`, `node` | the incident's entity and scope, plus any of these every member shares |
//! | `signal` | `traces`, `metrics` or `logs`: the series that opened the incident |
//! | `alerting.labels` | static labels from the config (say `cluster`) |
//!
//! The notifier keys the alert by entity (`ArgusAnomaly/namespace=prod,service=checkout`):
//! at most one incident per entity is open at a time, so a new incident on
//! the same entity re-fires the same Alertmanager alert, as a Prometheus
//! rule would. A severity change is a label change: the notifier resolves
//! the `warning` alert and fires the `critical` one.
//!
//! # Annotations
//!
//! `summary`, `description`, `observed`, `expected`, `band` (of the top
//! member's peak point), `score`, `top_series` (up to five members by
//! score, one per line), `trace_ids` (exemplars, comma-separated),
//! `log_templates` (one per line), `models`, `members`, `incident_id`,
//! `dashboard_url`, `runbook_url`, and `escalation` once a remediation did
//! not help. `startsAt` is the incident's start (data time), `generatorURL`
//! the incident in the detector's API when `outputs.external_url` is set.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Incident;
use crate::alert::{Alert, AlertKey, AlertmanagerConfig, is_label_name};
use crate::outputs::Links;

/// `alerting:` — where alerts go and how they are labelled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Alertmanager replicas. Unset: incidents are logged and served by
    /// the API only.
    pub alertmanager: Option<AlertmanagerConfig>,
    pub alertname: String,
    /// A member score at or above this makes the incident `critical`.
    pub critical_score: f64,
    /// Static labels added to every alert (e.g. `cluster: prod-eu-1`).
    pub labels: BTreeMap<String, String>,
    /// At shutdown, how long the final send of every alert may take.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            alertmanager: None,
            alertname: "ArgusAnomaly".into(),
            critical_score: 0.6,
            labels: BTreeMap::new(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Labels the detector sets itself; static labels may not replace them.
pub const RESERVED_LABELS: [&str; 7] = [
    "alertname",
    "severity",
    "service",
    "namespace",
    "pod",
    "node",
    "signal",
];

impl AlertingConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(am) = &self.alertmanager {
            p.extend(am.problems(&format!("{path}.alertmanager")));
        }
        if self.alertname.is_empty() {
            p.push(format!("{path}.alertname: must not be empty"));
        }
        if !(self.critical_score > 0.0 && self.critical_score <= 1.0) {
            p.push(format!(
                "{path}.critical_score: must be in (0, 1], got {}",
                self.critical_score
            ));
        }
        for k in self.labels.keys() {
            if !is_label_name(k) {
                p.push(format!("{path}.labels.{k}: not a valid label name"));
            } else if RESERVED_LABELS.contains(&k.as_str()) {
                p.push(format!("{path}.labels.{k}: set by the detector itself"));
            }
        }
        p
    }

    /// The problems that involve the engine's trigger too.
    pub fn problems_with_trigger(&self, path: &str, trigger: f64) -> Vec<String> {
        if self.critical_score < trigger {
            vec![format!(
                "{path}.critical_score: below engine.trigger ({trigger}): every incident would be critical"
            )]
        } else {
            Vec::new()
        }
    }
}

/// The notifier key of an incident's alert (see the module docs).
pub fn alert_key(cfg: &AlertingConfig, inc: &Incident) -> AlertKey {
    AlertKey::new(format!("{}/{}", cfg.alertname, inc.entity.key()))
}

/// A number for people: up to 4 significant digits, scientific when huge
/// or tiny.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return format!("{x:.3e}");
    }
    let decimals = if a == 0.0 {
        0
    } else {
        (3 - a.log10().floor() as i32).clamp(0, 6) as usize
    };
    let mut s = format!("{x:.decimals$}");
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

fn rfc3339(ts: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64))
        .to_string()
}

/// The alert for an incident (firing form; the notifier sets `endsAt`).
pub fn render(cfg: &AlertingConfig, links: &Links, inc: &Incident) -> Alert {
    let common = inc.common_labels();
    let mut labels: BTreeMap<String, String> = cfg.labels.clone();
    labels.insert("alertname".into(), cfg.alertname.clone());
    labels.insert("severity".into(), inc.severity.clone());
    labels.insert("signal".into(), inc.signal.as_str().into());
    for l in ["service", "namespace", "pod", "node"] {
        if let Some(v) = common.get(l) {
            labels.insert(l.into(), v.clone());
        }
    }

    let top = inc.top_members();
    let mut a = BTreeMap::new();
    let entity = &inc.entity.value;
    if let Some(m) = top.first() {
        let pk = &m.peak;
        let more = if inc.members.len() > 1 {
            format!(
                " (+{} more series)",
                inc.members.len() - 1 + inc.members_dropped as usize
            )
        } else {
            String::new()
        };
        a.insert(
            "summary".into(),
            format!(
                "{entity}: {} is {}, expected {} (normal {} to {}){more}",
                m.name,
                fmt_num(pk.observed),
                fmt_num(pk.expected),
                fmt_num(pk.lower),
                fmt_num(pk.upper),
            ),
        );
        a.insert("observed".into(), fmt_num(pk.observed));
        a.insert("expected".into(), fmt_num(pk.expected));
        a.insert(
            "band".into(),
            format!("{} to {}", fmt_num(pk.lower), fmt_num(pk.upper)),
        );
    }
    a.insert("score".into(), format!("{:.2}", inc.max_score()));
    a.insert(
        "top_series".into(),
        top.iter()
            .take(5)
            .map(|m| {
                format!(
                    "{} score={:.2} observed={} expected={} band=[{}, {}]",
                    m.series,
                    m.peak.score,
                    fmt_num(m.peak.observed),
                    fmt_num(m.peak.expected),
                    fmt_num(m.peak.lower),
                    fmt_num(m.peak.upper)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    a.insert("trace_ids".into(), inc.trace_ids().join(","));
    a.insert(
        "log_templates".into(),
        inc.templates
            .iter()
            .map(|t| format!("[{}] {}", t.id, t.text))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let models: Vec<&str> = inc.models().iter().map(|m| m.as_str()).collect();
    a.insert("models".into(), models.join(","));
    a.insert(
        "members".into(),
        (inc.members.len() + inc.members_dropped as usize).to_string(),
    );
    a.insert("incident_id".into(), inc.id.clone());
    let active = inc.members.iter().filter(|m| m.active).count();
    a.insert(
        "description".into(),
        format!(
            "Argus saw {} anomalous series on {} since {} ({} still anomalous); models: {}. \
             Top series:\n{}",
            inc.members.len() + inc.members_dropped as usize,
            inc.entity.key(),
            rfc3339(inc.started_at),
            active,
            if models.is_empty() {
                "-".to_string()
            } else {
                models.join(", ")
            },
            a.get("top_series").cloned().unwrap_or_default(),
        ),
    );
    if let Some(t) = &links.dashboard {
        a.insert("dashboard_url".into(), t.render(inc));
    }
    if let Some(t) = &links.runbook {
        a.insert("runbook_url".into(), t.render(inc));
    }
    if !inc.escalations.is_empty() {
        a.insert("escalation".into(), inc.escalations.join("\n"));
    }
    Alert {
        labels,
        annotations: a,
        starts_at: Some(UNIX_EPOCH + Duration::from_secs(inc.started_at.max(0) as u64)),
        ends_at: None,
        generator_url: links
            .external_url
            .as_ref()
            .map(|u| format!("{}/api/v1/incidents/{}", u.trim_end_matches('/'), inc.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(1234.5678), "1235");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(12_345_678.0), "1.235e7");
        assert_eq!(fmt_num(0.000_012), "1.200e-5");
        assert_eq!(fmt_num(f64::NAN), "n/a");
        assert_eq!(fmt_num(-2.5), "-2.5");
    }

    #[test]
    fn static_labels_cannot_replace_identity() {
        let mut c = AlertingConfig::default();
        c.labels.insert("cluster".into(), "eu".into());
        assert!(c.problems("alerting").is_empty());
        c.labels.insert("severity".into(), "page".into());
        c.labels.insert("bad-name".into(), "x".into());
        let p = c.problems("alerting");
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
