//! What an operator writes under `remediation:`, and every way it can be
//! wrong.
//!
//! ```yaml
//! remediation:
//!   dry_run: true                  # the default: decide and audit, send nothing
//!   max_actions_per_hour: 10       # circuit breaker, all rules together
//!   max_concurrent: 2              # webhooks in flight; more wait their turn
//!   audit_log: /var/lib/argus-detector/remediation-audit.jsonl
//!   secret: { file: /etc/argus/webhook-secret }    # or { env: ARGUS_WEBHOOK_SECRET }
//!   retry: { initial_interval: 1s, max_interval: 30s, multiplier: 2 }
//!   max_attempts: 4
//!   rules:
//!     - name: restart-checkout
//!       match: ['service=~"checkout|payments"', 'severity!="info"']
//!       target: [service, pod]     # cooldown is per rule and these labels' values
//!       cooldown: 30m
//!       verify_after: 5m
//!       action:
//!         url: https://ops-bot.internal/hooks/restart
//!         timeout: 15s
//!         payload:                 # JSON; strings may hold placeholders
//!           action: rollout-restart
//!           deployment: "{{labels.service}}"
//!           pod: "{{labels.pod}}"
//!           reason: "{{annotations.summary}} (incident {{incident.id}})"
//!       escalate:
//!         severity: critical
//!         annotation: "restart of {{labels.service}} did not help"
//! ```
//!
//! # Why `dry_run` defaults to true
//! A remediation rule acts on production by itself. The first time a rule
//! set meets real alerts it should only *say* what it would have done: dry
//! run goes through matching, cooldown and the breaker exactly like a live
//! run and audits every decision (`dry_run` instead of `sent`), so the audit
//! log of a dry-run week is the evidence for turning it off. Turning it off
//! is one explicit line in the config.
//!
//! # Secrets
//! A secret is `whsec_` followed by the base64 of 24–64 random bytes (the
//! Standard Webhooks format, e.g. `whsec_$(head -c 32 /dev/urandom | base64)`).
//! The file or variable may hold several secrets separated by whitespace:
//! every one signs (the spec's space-separated signature list), which is how
//! a secret is rotated without downtime. Files are re-read at every send.
//! Secrets and signatures are never logged, audited or exported.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use argus_common::backoff::BackoffConfig;
use serde::{Deserialize, Serialize};

use super::matcher::Matcher;
use super::template::Template;

/// Self-healing webhooks and their safeguards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationConfig {
    /// Decide and audit everything, send nothing. Default true: see the
    /// module docs.
    #[serde(default = "default_true")]
    pub dry_run: bool,
    /// Global circuit breaker: at most this many actions (all rules, dry-run
    /// ones included) in any rolling hour; further matches are skipped and
    /// audited as `breaker_open`.
    #[serde(default = "default_max_actions_per_hour")]
    pub max_actions_per_hour: u32,
    /// Webhooks in flight at once. An admitted action beyond it waits for a
    /// slot (it already counted against the breaker, which bounds the wait
    /// line) and is dropped if its incident closed meanwhile.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// The append-only JSON-lines audit log (one line per decision).
    /// Required as soon as there is a rule.
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// The signing secret of every rule without its own.
    #[serde(default)]
    pub secret: Option<SecretSource>,
    /// Backoff between attempts of one webhook.
    #[serde(default = "default_retry")]
    pub retry: BackoffConfig,
    /// Attempts per webhook, the first included (each with the same
    /// `webhook-id`, so the receiver can deduplicate).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// One rule: which alerts, which webhook, and the limits around it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique; appears in the audit log and as a metric label.
    pub name: String,
    /// Alertmanager-style label matchers, all of which must hold:
    /// `name="v"`, `name!="v"`, `name=~"regex"`, `name!~"regex"` (regexes
    /// anchored at both ends; quotes optional for simple values).
    #[serde(rename = "match")]
    pub matchers: Vec<String>,
    pub action: ActionConfig,
    /// Labels whose values identify the action's target. Cooldown applies per
    /// rule and target: two pods both get restarted, the same pod not twice.
    /// Empty: the whole rule is one target.
    #[serde(default)]
    pub target: Vec<String>,
    /// After an action on a target, further matches for that target are
    /// skipped this long.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub cooldown: Duration,
    /// After a successful webhook, wait this long, then ask whether the
    /// incident is still open: `verified` if not, `escalated` if it is.
    #[serde(default = "default_verify_after", with = "humantime_serde")]
    pub verify_after: Duration,
    #[serde(default)]
    pub escalate: EscalateConfig,
}

/// The webhook a rule calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// `http://` or `https://` endpoint receiving the JSON POST.
    pub url: String,
    /// The JSON body. Any string in it may hold `{{labels.NAME}}`,
    /// `{{annotations.NAME}}`, `{{incident.id}}`, `{{rule.name}}`,
    /// `{{webhook.id}}` or `{{target}}`; substituted values are inserted as
    /// JSON strings, so a label value can never change the body's structure.
    /// Unset: Argus' own body (see the `remediation` module docs).
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// Deadline of one attempt (the Standard Webhooks spec suggests 15–30 s).
    #[serde(default = "default_action_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// This rule's signing secret, instead of `remediation.secret`.
    #[serde(default)]
    pub secret: Option<SecretSource>,
}

/// What the detector is asked to do when an action did not help.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalateConfig {
    /// The severity the alert is raised to.
    pub severity: String,
    /// An annotation added to the alert (placeholders as in `payload`).
    pub annotation: String,
}

impl Default for EscalateConfig {
    fn default() -> Self {
        Self {
            severity: "critical".into(),
            annotation: "automatic remediation {{rule.name}} (webhook {{webhook.id}}) did not resolve the incident".into(),
        }
    }
}

/// Where a secret comes from: `{ file: PATH }` or `{ env: NAME }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    File { file: PathBuf },
    Env { env: String },
}

fn default_true() -> bool {
    true
}
fn default_max_actions_per_hour() -> u32 {
    10
}
fn default_max_concurrent() -> usize {
    2
}
fn default_retry() -> BackoffConfig {
    BackoffConfig {
        initial_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(30),
        multiplier: 2.0,
    }
}
fn default_max_attempts() -> u32 {
    4
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_verify_after() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_action_timeout() -> Duration {
    Duration::from_secs(15)
}

impl Default for RemediationConfig {
    /// Dry run, no rules.
    fn default() -> Self {
        Self {
            dry_run: true,
            max_actions_per_hour: default_max_actions_per_hour(),
            max_concurrent: default_max_concurrent(),
            audit_log: None,
            secret: None,
            retry: default_retry(),
            max_attempts: default_max_attempts(),
            rules: Vec::new(),
        }
    }
}

impl ActionConfig {
    /// An action to `url` with the default body, timeout and secret.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            payload: None,
            timeout: default_action_timeout(),
            secret: None,
        }
    }
}

impl RuleConfig {
    /// A rule with the default cooldown, verification and escalation.
    pub fn new(name: impl Into<String>, matchers: &[&str], action: ActionConfig) -> Self {
        Self {
            name: name.into(),
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            action,
            target: Vec::new(),
            cooldown: default_cooldown(),
            verify_after: default_verify_after(),
            escalate: EscalateConfig::default(),
        }
    }
}

impl RemediationConfig {
    /// Every static problem (no I/O), each naming its field under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_actions_per_hour == 0 {
            out.push(format!(
                "{path}.max_actions_per_hour: must be greater than 0 (to stop all actions, remove the rules or set dry_run)"
            ));
        }
        if self.max_concurrent == 0 {
            out.push(format!("{path}.max_concurrent: must be greater than 0"));
        }
        if self.max_attempts == 0 {
            out.push(format!("{path}.max_attempts: must be at least 1"));
        }
        out.extend(self.retry.problems(&format!("{path}.retry")));
        if !self.rules.is_empty() && self.audit_log.is_none() {
            out.push(format!(
                "{path}.audit_log: required: every remediation decision is audited"
            ));
        }
        if let Some(s) = &self.secret {
            out.extend(s.problems(&format!("{path}.secret")));
        }
        let mut names = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let field = format!("{path}.rules[{i}]");
            if rule.name.trim().is_empty() {
                out.push(format!("{field}.name: must not be empty"));
            } else if !names.insert(rule.name.as_str()) {
                out.push(format!(
                    "{field}.name: {:?} is used by an earlier rule; names must be unique",
                    rule.name
                ));
            }
            if rule.matchers.is_empty() {
                out.push(format!(
                    "{field}.match: at least one matcher is required (a rule matching every alert is almost never intended)"
                ));
            }
            for (j, m) in rule.matchers.iter().enumerate() {
                if let Err(e) = Matcher::parse(m) {
                    out.push(format!("{field}.match[{j}]: {e}"));
                }
            }
            for (j, t) in rule.target.iter().enumerate() {
                if !crate::alert::is_label_name(t) {
                    out.push(format!(
                        "{field}.target[{j}]: {t:?} is not a valid label name"
                    ));
                }
            }
            if rule.cooldown.is_zero() {
                out.push(format!("{field}.cooldown: must be greater than 0"));
            }
            if rule.verify_after.is_zero() {
                out.push(format!("{field}.verify_after: must be greater than 0"));
            }
            out.extend(rule.action.problems(&format!("{field}.action")));
            if self.secret.is_none() && rule.action.secret.is_none() && !self.dry_run {
                out.push(format!(
                    "{field}.action.secret: no signing secret (set {path}.secret or this field); unsigned webhooks are never sent"
                ));
            }
            if rule.escalate.severity.trim().is_empty() {
                out.push(format!("{field}.escalate.severity: must not be empty"));
            }
            if let Err(e) = Template::parse(&rule.escalate.annotation) {
                out.push(format!("{field}.escalate.annotation: {e}"));
            }
        }
        out
    }
}

impl ActionConfig {
    fn problems(&self, field: &str) -> Vec<String> {
        let mut out = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Err(e) => out.push(format!("{field}.url: not a valid URL: {e}")),
            Ok(u) => {
                if !matches!(u.scheme(), "http" | "https") {
                    out.push(format!(
                        "{field}.url: scheme must be http or https, not {:?}",
                        u.scheme()
                    ));
                }
                if !u.username().is_empty() || u.password().is_some() {
                    out.push(format!(
                        "{field}.url: credentials in the URL are not allowed (the signature authenticates Argus)"
                    ));
                }
            }
        }
        if self.timeout.is_zero() {
            out.push(format!("{field}.timeout: must be greater than 0"));
        }
        if let Some(p) = &self.payload {
            super::template::payload_problems(p, &format!("{field}.payload"), &mut out);
        }
        if let Some(s) = &self.secret {
            out.extend(s.problems(&format!("{field}.secret")));
        }
        out
    }
}

impl SecretSource {
    fn problems(&self, field: &str) -> Vec<String> {
        match self {
            SecretSource::File { file } if file.as_os_str().is_empty() => {
                vec![format!("{field}.file: must not be empty")]
            }
            SecretSource::Env { env } if env.is_empty() => {
                vec![format!("{field}.env: must not be empty")]
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_example_parses_with_defaults() {
        let cfg: RemediationConfig = serde_yaml::from_str(
            r#"
audit_log: /tmp/audit.jsonl
secret: { env: ARGUS_WEBHOOK_SECRET }
rules:
  - name: restart
    match: ['service=~"checkout|payments"']
    target: [service, pod]
    action:
      url: https://ops/hooks/restart
      payload: { deployment: "{{labels.service}}" }
"#,
        )
        .unwrap();
        assert!(cfg.dry_run, "dry run unless said otherwise");
        assert_eq!(cfg.rules[0].cooldown, Duration::from_secs(1800));
        assert_eq!(
            cfg.secret,
            Some(SecretSource::Env {
                env: "ARGUS_WEBHOOK_SECRET".into()
            })
        );
        assert!(
            cfg.problems("remediation").is_empty(),
            "{:?}",
            cfg.problems("remediation")
        );
        let err =
            serde_yaml::from_str::<RemediationConfig>("rules: []\ndryrun: false").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut rule = RuleConfig::new("", &[r#"service=~"(""#], ActionConfig::new("ftp://x"));
        rule.cooldown = Duration::ZERO;
        rule.verify_after = Duration::ZERO;
        rule.target = vec!["k8s.pod".into()];
        rule.action.timeout = Duration::ZERO;
        rule.action.payload = Some(serde_json::json!({"a": ["{{labels.}}", "{{secret}}"]}));
        rule.escalate.annotation = "{{nope".into();
        rule.escalate.severity = String::new();
        let mut dup = RuleConfig::new("x", &[], ActionConfig::new("http://u:p@h/"));
        dup.name = "x".into();
        let cfg = RemediationConfig {
            dry_run: false,
            max_actions_per_hour: 0,
            max_concurrent: 0,
            max_attempts: 0,
            audit_log: None,
            rules: vec![rule, dup.clone(), dup],
            ..RemediationConfig::default()
        };
        let p = cfg.problems("r");
        for field in [
            "r.max_actions_per_hour",
            "r.max_concurrent",
            "r.max_attempts",
            "r.audit_log: required",
            "r.rules[0].name: must not be empty",
            "r.rules[0].match[0]: invalid regex",
            "r.rules[0].target[0]",
            "r.rules[0].cooldown",
            "r.rules[0].verify_after",
            "r.rules[0].action.url: scheme",
            "r.rules[0].action.timeout",
            "r.rules[0].action.payload.a[0]: ",
            "r.rules[0].action.payload.a[1]: unknown placeholder",
            "r.rules[0].action.secret: no signing secret",
            "r.rules[0].escalate.severity",
            "r.rules[0].escalate.annotation",
            "r.rules[1].match: at least one",
            "r.rules[1].action.url: credentials",
            "r.rules[2].name: \"x\" is used",
        ] {
            assert!(p.iter().any(|m| m.starts_with(field)), "{field} in {p:#?}");
        }
    }
}
