//! Remediation's self-metrics and log lines: each notable occurrence is one
//! method that logs and counts together.
//!
//! Registered under the caller's prefix (`argus_detector_`):
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `remediation_actions_total` | `rule`, `outcome` | decisions on matched alerts |
//! | `remediation_retries_total` | `rule` | webhook attempts retried |
//! | `remediation_verifications_total` | `rule`, `result` | after `verify_after` |
//! | `remediation_breaker_open` | | 1 while the hourly action budget is spent |
//! | `remediation_in_flight` | | webhooks being sent now |
//! | `remediation_queued` | | admitted actions waiting for a concurrency slot |
//! | `remediation_audit_errors_total` | | audit lines that could not be written |
//!
//! `rule` is a configured rule name (bounded by the config). `outcome` ∈
//! `sent`, `failed`, `dry_run`, `skipped_cooldown`, `skipped_breaker_open`,
//! `skipped_incident_closed`, `skipped_shutdown`, `skipped_audit_unavailable`;
//! `result` ∈ `verified`, `escalated`, `unverified`. Targets, incident IDs and
//! webhook IDs are never labels (they are in the audit log).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every `outcome` of `remediation_actions_total` (module doc).
const OUTCOMES: [&str; 8] = [
    "sent",
    "failed",
    "dry_run",
    "skipped_cooldown",
    "skipped_breaker_open",
    "skipped_incident_closed",
    "skipped_shutdown",
    "skipped_audit_unavailable",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    rule: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerifyLabels {
    rule: String,
    result: &'static str,
}

#[derive(Clone, Debug)]
pub(crate) struct Telemetry {
    actions: Family<ActionLabels, Counter>,
    retries: Family<RuleLabels, Counter>,
    verifications: Family<VerifyLabels, Counter>,
    pub(crate) breaker_open: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) queued: Gauge,
    audit_errors: Counter,
    /// For logging the breaker's transitions once, not per skipped action.
    breaker_logged_open: Arc<AtomicBool>,
}

impl Telemetry {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let t = Telemetry {
            actions: Family::default(),
            retries: Family::default(),
            verifications: Family::default(),
            breaker_open: Gauge::default(),
            in_flight: Gauge::default(),
            queued: Gauge::default(),
            audit_errors: Counter::default(),
            breaker_logged_open: Arc::default(),
        };
        registry.register(
            "remediation_actions",
            "Remediation decisions on matched alerts, by rule and outcome",
            t.actions.clone(),
        );
        registry.register(
            "remediation_retries",
            "Remediation webhook attempts retried, by rule",
            t.retries.clone(),
        );
        registry.register(
            "remediation_verifications",
            "Checks after verify_after whether the incident cleared, by rule and result",
            t.verifications.clone(),
        );
        registry.register(
            "remediation_breaker_open",
            "1 while the global hourly remediation budget (max_actions_per_hour) is spent",
            t.breaker_open.clone(),
        );
        registry.register(
            "remediation_in_flight",
            "Remediation webhooks being sent now",
            t.in_flight.clone(),
        );
        registry.register(
            "remediation_queued",
            "Admitted remediation actions waiting for a concurrency slot",
            t.queued.clone(),
        );
        registry.register(
            "remediation_audit_errors",
            "Remediation audit lines that could not be written",
            t.audit_errors.clone(),
        );
        t
    }

    /// Creates every series of one configured rule at zero, so the
    /// families are on `/metrics` from the start: `rate()` and the
    /// `ArgusRemediationWebhooksFailing` rule see a 0, not nothing, until
    /// the first action.
    pub(crate) fn init_rule(&self, rule: &str) {
        for outcome in OUTCOMES {
            let _ = self.actions.get_or_create(&ActionLabels {
                rule: rule.to_owned(),
                outcome,
            });
        }
        let _ = self.retries.get_or_create(&RuleLabels {
            rule: rule.to_owned(),
        });
        for result in ["verified", "escalated", "unverified"] {
            let _ = self.verifications.get_or_create(&VerifyLabels {
                rule: rule.to_owned(),
                result,
            });
        }
    }

    pub(crate) fn outcome(&self, rule: &str, outcome: &'static str) {
        self.actions
            .get_or_create(&ActionLabels {
                rule: rule.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn skipped(&self, rule: &str, target: &str, reason: &'static str) {
        tracing::debug!(rule, target, reason, "remediation skipped");
        self.outcome(
            rule,
            match reason {
                "cooldown" => "skipped_cooldown",
                "breaker_open" => "skipped_breaker_open",
                "incident_closed" => "skipped_incident_closed",
                "shutdown" => "skipped_shutdown",
                _ => "skipped_audit_unavailable",
            },
        );
    }

    /// The breaker's state after a decision; logs transitions.
    pub(crate) fn breaker(&self, open: bool, limit: u32) {
        self.breaker_open.set(i64::from(open));
        let was = self.breaker_logged_open.swap(open, Ordering::Relaxed);
        if open && !was {
            tracing::warn!(
                limit,
                "remediation circuit breaker open: {limit} actions in the last hour; further actions are skipped (and audited) until the hour rolls on"
            );
        } else if !open && was {
            tracing::info!("remediation circuit breaker closed: actions allowed again");
        }
    }

    pub(crate) fn dry_run(&self, rule: &str, target: &str, webhook_id: &str) {
        tracing::info!(
            rule,
            target,
            webhook_id,
            "remediation dry run: would send the webhook"
        );
        self.outcome(rule, "dry_run");
    }

    pub(crate) fn sent(&self, rule: &str, target: &str, webhook_id: &str, status: u16) {
        tracing::info!(rule, target, webhook_id, status, "remediation webhook sent");
        self.outcome(rule, "sent");
    }

    pub(crate) fn retried(&self, rule: &str, webhook_id: &str, error: &str) {
        tracing::warn!(rule, webhook_id, %error, "remediation webhook attempt failed; retrying with the same webhook-id");
        self.retries
            .get_or_create(&RuleLabels {
                rule: rule.to_owned(),
            })
            .inc();
    }

    pub(crate) fn failed(&self, rule: &str, target: &str, webhook_id: &str, error: &str) {
        tracing::error!(rule, target, webhook_id, %error, "remediation webhook failed for good");
        self.outcome(rule, "failed");
    }

    pub(crate) fn verification(&self, rule: &str, incident: &str, result: &'static str) {
        match result {
            "escalated" => tracing::warn!(
                rule,
                incident,
                "remediation did not resolve the incident; escalating"
            ),
            "verified" => {
                tracing::info!(rule, incident, "remediation verified: the incident cleared")
            }
            _ => tracing::info!(
                rule,
                incident,
                "shutdown before the remediation could be verified"
            ),
        }
        self.verifications
            .get_or_create(&VerifyLabels {
                rule: rule.to_owned(),
                result,
            })
            .inc();
    }

    pub(crate) fn audit_write_failed(&self, path: &Path, lines: usize, e: &std::io::Error) {
        tracing::error!(file = %path.display(), lines, error = %e, "cannot write the remediation audit log; actions are not sent while it fails");
        self.audit_errors.inc_by(lines as u64);
    }
}
