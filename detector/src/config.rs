//! `DetectorConfig`: the whole `argus-detector` configuration, how it is
//! loaded, and every way it can be wrong.
//!
//! ```yaml
//! receiver:            # OTLP in (common::otlp): gRPC :4317, HTTP :4318, auth, TLS, limits
//!   auth: { token_file: /var/run/secrets/argus/token }
//! ingest:              # OTLP → per-step series (crate::ingest); `step` is set under scoring
//!   series: { max_series: 100000 }
//! engine:              # the per-series models (crate::engine)
//!   warmup: 200
//! scoring:             # crate::scoring
//!   step: 10s          # ONE step for ingest and scoring
//!   clock: wall        # wall | event (replays, demos, tests: the clock follows the data)
//!   recent_points: 30  # per series, for /api/v1/series
//!   snapshot: { dir: /var/lib/argus-detector, interval: 5m }
//! incidents:           # crate::incident
//!   window: 2m
//!   entity_labels: [service, pod, node]
//! alerting:            # crate::incident::alert; without alertmanager alerts are logged and served by the API only
//!   alertmanager: { urls: [http://alertmanager:9093] }
//!   critical_score: 0.6
//! remediation:         # crate::remediation (dry_run: true by default)
//!   rules: []
//! outputs:             # crate::outputs: per-series gauges on /metrics, links in alerts
//!   max_series: 1000
//!   dashboard_url: "https://grafana/d/argus?var-service={{service}}&from={{from_ms}}&to={{to_ms}}"
//!   runbook_url: "https://runbooks/argus/{{signal}}"
//! maintenance:         # crate::maintenance: static windows (more through the API)
//!   windows: [{ match: '{service="batch"}', start: 2025-01-01T02:00:00Z, end: 2025-01-01T04:00:00Z }]
//! api:                 # bearer token for the API's write endpoints (maintenance, feedback)
//!   auth: { token_file: /var/run/secrets/argus/api-token }
//! ops:                 # /metrics, /healthz, /readyz and /api/v1/* on one port
//!   listen: 0.0.0.0:9095
//! logging: { filter: info, format: json }
//! ```
//!
//! # Loading
//!
//! [`DetectorConfig::load`]: the file (or nothing: every section has
//! embedded defaults, so `argus-detector run` works with no file at all),
//! then the `ARGUS_DETECTOR__…` environment overrides ([`env`]), then
//! validation. Each top-level section is deserialised on its own, so one
//! typo per section is reported — not only the first of the file — and then
//! every semantic problem of every section that parsed, each naming its
//! field path (`scoring.snapshot.interval: must be at least 1s`).
//!
//! # The step
//!
//! Ingest and scoring share one step, set as `scoring.step` and copied into
//! the ingest at load. Writing `ingest.step` is refused rather than
//! silently overridden.
//!
//! # Ports
//!
//! OTLP keeps the standard 4317 (gRPC) and 4318 (HTTP). The ops server —
//! metrics, health and the HTTP API — defaults to **9095**: clear of
//! Prometheus (9090), Alertmanager (9093/9094), and the Collector's and the
//! agent's own telemetry port (8888), so the detector can run beside any of
//! them on one host.

pub mod env;

use std::path::Path;
use std::time::Duration;

use argus_common::ops::OpsServerConfig;
use argus_common::ops::logging::LoggingConfig;
use argus_common::otlp::{AuthConfig, OtlpReceiverConfig};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::engine::EngineConfig;
use crate::incident::IncidentsConfig;
use crate::incident::alert::AlertingConfig;
use crate::ingest::IngestConfig;
use crate::maintenance::MaintenanceConfig;
use crate::outputs::OutputsConfig;
use crate::remediation::RemediationConfig;
use crate::scoring::ScoringConfig;

/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "ARGUS_DETECTOR__";

/// The detector's configuration. Every section has defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// OTLP receivers (gRPC and HTTP).
    pub receiver: OtlpReceiverConfig,
    /// OTLP → series. `step` comes from `scoring.step`.
    pub ingest: IngestConfig,
    /// The detection engine, shared by every series.
    pub engine: EngineConfig,
    pub scoring: ScoringConfig,
    pub incidents: IncidentsConfig,
    pub alerting: AlertingConfig,
    pub remediation: RemediationConfig,
    pub outputs: OutputsConfig,
    pub maintenance: MaintenanceConfig,
    pub api: ApiConfig,
    pub ops: OpsConfig,
    pub logging: LoggingConfig,
}

/// The HTTP API (`/api/v1/*`, served by the ops server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token required by the write endpoints (`POST`/`DELETE` on
    /// maintenance, `POST` feedback). Reads stay open, like `/metrics`.
    /// Absent: writes are open too (put the port behind a NetworkPolicy).
    pub auth: Option<AuthConfig>,
    /// Most series one `/api/v1/series` answer lists (the rest are counted
    /// in `truncated`), and most series one feedback request may touch.
    pub max_series: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            auth: None,
            max_series: 1000,
        }
    }
}

impl ApiConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(a) = &self.auth {
            p.extend(a.problems(&format!("{path}.auth")));
        }
        if self.max_series == 0 {
            p.push(format!("{path}.max_series: must be at least 1"));
        }
        p
    }
}

/// Where the ops server (metrics, health, API) listens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// `host:port`; `:port` means all interfaces.
    pub listen: String,
    /// How long open requests get after shutdown begins.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

/// The detector's default ops port (see the module docs).
pub const DEFAULT_OPS_LISTEN: &str = "0.0.0.0:9095";

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: DEFAULT_OPS_LISTEN.into(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl OpsConfig {
    pub fn server(&self) -> OpsServerConfig {
        OpsServerConfig {
            listen: self.listen.clone(),
            shutdown_grace: self.shutdown_grace,
        }
    }

    pub fn problems(&self, path: &str) -> Vec<String> {
        self.server().problems(path)
    }
}

/// Every problem found while loading, each naming its field path.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid detector configuration ({} problem{}):\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl DetectorConfig {
    /// Reads `path` (or nothing: defaults), applies the process'
    /// `ARGUS_DETECTOR__…` variables, validates.
    pub fn load(path: Option<&Path>) -> Result<DetectorConfig, ConfigError> {
        let text = match path {
            None => String::new(),
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| ConfigError(vec![format!("{}: cannot read: {e}", p.display())]))?,
        };
        Self::from_yaml_with_env(&text, std::env::vars())
    }

    /// [`load`](Self::load) from text, with the environment given.
    pub fn from_yaml_with_env(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<DetectorConfig, ConfigError> {
        let mut problems = Vec::new();
        let mut doc: Value = if text.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            match serde_yaml::from_str(text) {
                Ok(Value::Null) => Value::Mapping(Default::default()),
                Ok(v) => v,
                Err(e) => return Err(ConfigError(vec![format!("YAML syntax: {e}")])),
            }
        };
        problems.extend(env::apply(&mut doc, ENV_PREFIX, vars));
        let (cfg, parse_problems) = Self::from_document(doc);
        problems.extend(parse_problems);
        // Semantic checks only make sense for what parsed; sections that
        // did not are at their defaults and would add noise.
        problems.extend(cfg.problems());
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError(problems))
        }
    }

    /// Deserialises section by section, so each section's first type error
    /// is reported. Returns the config (failed sections at their defaults)
    /// and the problems.
    fn from_document(doc: Value) -> (DetectorConfig, Vec<String>) {
        let mut problems = Vec::new();
        let mut cfg = DetectorConfig::default();
        let Value::Mapping(map) = doc else {
            return (
                cfg,
                vec!["top level: expected a mapping of sections (receiver:, scoring:, …)".into()],
            );
        };
        let mut step_in_ingest = false;
        for (k, v) in map {
            let Some(section) = k.as_str().map(str::to_owned) else {
                problems.push(format!("top level: section names are strings, got {k:?}"));
                continue;
            };
            if v.is_null() {
                continue;
            }
            fn parse<T: serde::de::DeserializeOwned>(
                section: &str,
                v: Value,
                slot: &mut T,
                problems: &mut Vec<String>,
            ) {
                match serde_yaml::from_value::<T>(v) {
                    Ok(x) => *slot = x,
                    Err(e) => problems.push(format!("{section}: {e}")),
                }
            }
            match section.as_str() {
                "receiver" => parse(&section, v, &mut cfg.receiver, &mut problems),
                "ingest" => {
                    step_in_ingest = v.get("step").is_some();
                    parse(&section, v, &mut cfg.ingest, &mut problems)
                }
                "engine" => parse(&section, v, &mut cfg.engine, &mut problems),
                "scoring" => parse(&section, v, &mut cfg.scoring, &mut problems),
                "incidents" => parse(&section, v, &mut cfg.incidents, &mut problems),
                "alerting" => parse(&section, v, &mut cfg.alerting, &mut problems),
                "remediation" => parse(&section, v, &mut cfg.remediation, &mut problems),
                "outputs" => parse(&section, v, &mut cfg.outputs, &mut problems),
                "maintenance" => parse(&section, v, &mut cfg.maintenance, &mut problems),
                "api" => parse(&section, v, &mut cfg.api, &mut problems),
                "ops" => parse(&section, v, &mut cfg.ops, &mut problems),
                "logging" => parse(&section, v, &mut cfg.logging, &mut problems),
                other => problems.push(format!(
                    "{other}: unknown section (expected one of receiver, ingest, engine, scoring, \
                     incidents, alerting, remediation, outputs, maintenance, api, ops, logging)"
                )),
            }
        }
        if step_in_ingest {
            problems.push(
                "ingest.step: the step is set once, as scoring.step (ingest and scoring share it)"
                    .into(),
            );
        }
        cfg.ingest.step = cfg.scoring.step;
        (cfg, problems)
    }

    /// Every semantic problem, each naming its field path.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        p.extend(self.receiver.problems("receiver"));
        if self.ingest.step != self.scoring.step {
            p.push(format!(
                "ingest.step: must equal scoring.step ({:?}), got {:?}",
                self.scoring.step, self.ingest.step
            ));
        }
        // The step is validated once, under scoring.step.
        p.extend(
            self.ingest.problems("ingest").into_iter().filter(|m| {
                !(self.ingest.step == self.scoring.step && m.starts_with("ingest.step:"))
            }),
        );
        p.extend(self.engine.problems("engine"));
        p.extend(self.scoring.problems("scoring"));
        p.extend(self.incidents.problems("incidents"));
        p.extend(self.alerting.problems("alerting"));
        p.extend(
            self.alerting
                .problems_with_trigger("alerting", self.engine.trigger),
        );
        p.extend(self.remediation.problems("remediation"));
        p.extend(self.outputs.problems("outputs"));
        p.extend(self.maintenance.problems("maintenance"));
        p.extend(self.api.problems("api"));
        p.extend(self.ops.problems("ops"));
        p.extend(self.logging.problems("logging"));
        if let Some(ops) = argus_common_endpoint(&self.ops.listen) {
            for (name, ep) in [
                (
                    "receiver.grpc.endpoint",
                    self.receiver.grpc.as_ref().map(|g| &g.endpoint),
                ),
                (
                    "receiver.http.endpoint",
                    self.receiver.http.as_ref().map(|h| &h.endpoint),
                ),
            ] {
                if let Some(ep) = ep.and_then(|e| argus_common_endpoint(e))
                    && ep == ops
                    && !ep.ends_with(":0")
                {
                    p.push(format!("ops.listen: same address as {name} ({ep})"));
                }
            }
        }
        p
    }

    /// The defaults, as YAML (`argus-detector print-default-config`).
    pub fn default_yaml() -> String {
        let mut cfg = DetectorConfig::default();
        cfg.ingest.step = cfg.scoring.step;
        serde_yaml::to_string(&cfg).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// `:port` → `0.0.0.0:port`, as the servers bind it.
fn argus_common_endpoint(e: &str) -> Option<String> {
    let (host, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    Some(if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else {
        e.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<DetectorConfig, ConfigError> {
        DetectorConfig::from_yaml_with_env(
            text,
            vars.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn runs_on_embedded_defaults() {
        let cfg = load("", &[]).unwrap();
        assert_eq!(cfg.ops.listen, DEFAULT_OPS_LISTEN);
        assert_eq!(cfg.scoring.step, Duration::from_secs(10));
        assert_eq!(cfg.ingest.step, cfg.scoring.step);
        assert!(cfg.alerting.alertmanager.is_none());
        assert!(cfg.remediation.dry_run);
        // The printed defaults load back to the same config.
        let again = load(&DetectorConfig::default_yaml(), &[]).unwrap_err();
        // … except that printing includes ingest.step, which is refused.
        assert_eq!(again.0.len(), 1, "{again}");
        assert!(again.0[0].starts_with("ingest.step:"), "{again}");
    }

    #[test]
    fn scoring_step_drives_the_ingest_and_env_overrides_apply() {
        let cfg = load(
            "scoring: {step: 30s}\n",
            &[
                ("ARGUS_DETECTOR__SCORING__CLOCK", "event"),
                ("ARGUS_DETECTOR__OPS__LISTEN", "127.0.0.1:9999"),
                ("ARGUS_DETECTOR__INGEST__SERIES__MAX_SERIES", "5000"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.ingest.step, Duration::from_secs(30));
        assert_eq!(cfg.scoring.clock, crate::scoring::ClockMode::Event);
        assert_eq!(cfg.ops.listen, "127.0.0.1:9999");
        assert_eq!(cfg.ingest.series.max_series, 5000);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let yaml = r#"
receiver:
  grpc: { endpoint: "nope" }
ingest:
  step: 5s
  series: { max_series: 0 }
engine:
  trigger: 2
scoring:
  step: 0s
  recent_points: 100000
incidents:
  window: 0s
  entity_labels: []
alerting:
  alertmanager: { urls: [] }
  critical_score: 0.1
remediation:
  max_actions_per_hour: 0
outputs:
  max_series: 200000
  dashboard_url: "https://g/{{nope}}"
maintenance:
  windows: [{ match: 'x{', start: "yesterday", end: 2025-01-01T00:00:00Z }]
ops:
  listen: "x"
logging:
  filter: "[="
bogus: 1
"#;
        let err = load(yaml, &[("ARGUS_DETECTOR__SCORING__CLOCK", "sundial")]).unwrap_err();
        let fields = [
            "receiver.grpc.endpoint:",
            "ingest.step:",
            "ingest.series.max_series:",
            "engine.trigger:",
            "scoring: ",
            "incidents.window:",
            "incidents.entity_labels:",
            "alerting.alertmanager.urls:",
            "alerting.critical_score:",
            "remediation.max_actions_per_hour:",
            "outputs.max_series:",
            "outputs.dashboard_url:",
            "maintenance.windows[0].match:",
            "maintenance.windows[0].start:",
            "ops.listen:",
            "logging.filter:",
            "bogus: unknown section",
        ];
        for f in fields {
            assert!(
                err.0.iter().any(|m| m.starts_with(f)),
                "{f} missing in {err}"
            );
        }
        // The env override's bad value is the scoring section's parse error.
        assert!(
            err.0
                .iter()
                .any(|m| m.starts_with("scoring: ") && m.contains("sundial")),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_named_per_section() {
        let err = load("scoring: {stepp: 10s}\nincidents: {windw: 1m}\n", &[]).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.0[0].starts_with("scoring: unknown field `stepp`"),
            "{err}"
        );
        assert!(
            err.0[1].starts_with("incidents: unknown field `windw`"),
            "{err}"
        );
    }

    #[test]
    fn ops_port_must_differ_from_the_receivers() {
        let err = load("ops: {listen: ':4317'}\n", &[]).unwrap_err();
        assert!(
            err.0[0].starts_with("ops.listen: same address as receiver.grpc.endpoint"),
            "{err}"
        );
    }
}
