//! The agent's configuration: one YAML document, embedded defaults,
//! environment overrides, and validation that reports every problem at once.
//!
//! # The document
//!
//! ```yaml
//! receiver:            # OTLP in: gRPC 0.0.0.0:4317, HTTP 0.0.0.0:4318 (null: off)
//!   grpc: { endpoint: 0.0.0.0:4317 }
//!   http: { endpoint: 0.0.0.0:4318 }
//! file:                # container log files (null: off)
//!   include: ["/var/log/pods/*/*/*.log"]
//!   data_dir: /var/lib/argus-agent/file
//! host:                # host metrics from /proc and /sys (null: off)
//!   root: /host
//!   interval: 10s
//! scrape:              # Prometheus targets; off unless given
//!   targets: [{ url: "http://127.0.0.1:9100/metrics" }]
//! transform:           # enrich, correlate, mask (all on)
//!   mask: { rules: [{ name: iban, pattern: "\\bDE\\d{20}\\b" }] }
//! batch: { max_bytes: 1MiB, max_items: 8192, timeout: 200ms }
//! memory: { limit: 128MiB }
//! queue:               # durable disk queue
//!   dir: /var/lib/argus-agent/queue
//!   max_bytes: 256MiB
//! exporter:
//!   endpoint: http://argus-detector:4317
//! ops: { listen: 0.0.0.0:8889 }
//! logging: { filter: info, format: json }
//! shutdown_grace: 25s
//! ```
//!
//! Every section is optional and every field has a default: `argus-agent`
//! with no file runs as a DaemonSet agent on the embedded defaults (tails
//! `/var/log/pods`, reports host metrics from `/`, listens for OTLP on
//! 4317/4318, queues under `/var/lib/argus-agent`, ships to
//! `http://argus-detector:4317`). The sources that have an off switch take
//! `null` (`file: null`). Unknown fields are errors everywhere, so a typo
//! never silently means "default".
//!
//! The ops server defaults to **8889**, not the Collector's 8888, so the
//! agent with `hostNetwork: true` does not collide with a Collector (or the
//! detector's ops port) on the same node.
//!
//! # Environment overrides
//!
//! `ARGUS_AGENT__<SECTION>__<FIELD>[__<FIELD>…]=<value>` sets one field,
//! after the file is read: double underscores separate the path (field
//! names keep their single underscores), names are matched lower-cased.
//!
//! ```text
//! ARGUS_AGENT__EXPORTER__ENDPOINT=https://detector.obs:4317
//! ARGUS_AGENT__QUEUE__MAX_BYTES=1GiB
//! ARGUS_AGENT__FILE__INCLUDE='["/var/log/pods/payments_*/*/*.log"]'
//! ARGUS_AGENT__SCRAPE=null
//! ```
//!
//! A value is read as YAML, so numbers, booleans, `null` and flow lists and
//! maps work; quote a value to force a string (`'"8080"'`). An override
//! that names an unknown field is reported like one in the file, with the
//! variable's name. Map keys that are not valid variable names (header
//! names with dashes) can only be set in the file.
//!
//! The node name comes from the downward API as `K8S_NODE_NAME` (then
//! `NODE_NAME`) unless `transform.enrich.node_name` is set.
//!
//! # Validation
//!
//! [`AgentConfig::load`] and `argus-agent validate-config FILE` report all
//! problems together, each naming its field path:
//!
//! - YAML syntax errors, with line and column (nothing else can be checked);
//! - type errors and unknown fields, one per section: each section is
//!   decoded on its own, so a mistake in `file` does not hide one in
//!   `exporter`;
//! - every component's own checks (`problems(path)`) on the sections that
//!   decoded, plus the cross-section checks below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use argus_common::ops::OpsServerConfig;
use argus_common::ops::logging::LoggingConfig;
use argus_common::otlp::OtlpReceiverConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::batch::BatchConfig;
use crate::exporter::ExporterConfig;
use crate::queue::DiskQueueConfig;
use crate::sources::file::FileSourceConfig;
use crate::sources::host::HostMetricsConfig;
use crate::sources::scrape::ScrapeConfig;
use crate::transform::TransformConfig;

/// Prefix of the environment variables that override config fields.
pub const ENV_PREFIX: &str = "ARGUS_AGENT__";

/// The whole agent configuration (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// OTLP/gRPC and OTLP/HTTP receivers; `null` turns both off.
    pub receiver: Option<OtlpReceiverConfig>,
    /// Log file source; `null` turns it off.
    pub file: Option<FileSourceConfig>,
    /// Host metrics source; `null` turns it off.
    pub host: Option<HostMetricsConfig>,
    /// Prometheus scrape source; off unless configured.
    pub scrape: Option<ScrapeConfig>,
    pub transform: TransformConfig,
    pub batch: BatchConfig,
    pub memory: MemoryConfig,
    pub queue: DiskQueueConfig,
    pub exporter: ExporterConfig,
    pub ops: AgentOpsConfig,
    pub logging: LoggingConfig,
    /// On SIGTERM/SIGINT: how long sources, batchers and in-flight exports
    /// get to finish before the process exits anyway (whatever is left is
    /// in the disk queue or re-read from the files: nothing is lost). Keep
    /// it below the pod's `terminationGracePeriodSeconds` (default 30 s).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            receiver: Some(OtlpReceiverConfig::default()),
            file: Some(FileSourceConfig::default()),
            host: Some(HostMetricsConfig::default()),
            scrape: None,
            transform: TransformConfig::default(),
            batch: BatchConfig::default(),
            memory: MemoryConfig::default(),
            queue: DiskQueueConfig::default(),
            exporter: ExporterConfig::default(),
            ops: AgentOpsConfig::default(),
            logging: LoggingConfig::default(),
            shutdown_grace: Duration::from_secs(25),
        }
    }
}

/// `memory:` — the process-wide budget for data between the sources and
/// the disk queue (see [`crate::pipeline::MemoryLimiter`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Bytes of payload in flight before sources are held back (file) or
    /// refused with a retryable status (OTLP). Not the process' RSS: add
    /// ~20 MiB of code, buffers and allocator slack to size the container's
    /// memory limit.
    #[serde(with = "crate::queue::byte_size")]
    pub limit: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            limit: 128 * 1024 * 1024,
        }
    }
}

/// `ops:` — the agent's `/metrics`, `/healthz`, `/readyz` server. The same
/// fields as the detector's, with the agent's own default port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentOpsConfig {
    /// `host:port`; default `0.0.0.0:8889`.
    pub listen: String,
    /// How long open requests get after shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for AgentOpsConfig {
    fn default() -> Self {
        AgentOpsConfig {
            listen: "0.0.0.0:8889".into(),
            shutdown_grace: OpsServerConfig::default().shutdown_grace,
        }
    }
}

impl AgentOpsConfig {
    pub fn server_config(&self) -> OpsServerConfig {
        OpsServerConfig {
            listen: self.listen.clone(),
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// A configuration that cannot run: every problem, each naming its field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The top-level section names, in document order.
const SECTIONS: [&str; 12] = [
    "receiver",
    "file",
    "host",
    "scrape",
    "transform",
    "batch",
    "memory",
    "queue",
    "exporter",
    "ops",
    "logging",
    "shutdown_grace",
];

impl AgentConfig {
    /// Reads `path` (or nothing: the embedded defaults), applies the
    /// process' `ARGUS_AGENT__*` variables and validates. Every problem is
    /// in the error.
    pub fn load(path: Option<&Path>) -> Result<AgentConfig, ConfigError> {
        let text = match path {
            None => String::new(),
            Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError {
                problems: vec![format!("{}: cannot read: {e}", p.display())],
            })?,
        };
        Self::from_yaml(&text, std::env::vars())
    }

    /// Parses `yaml` (empty: defaults), applies the overrides among `env`
    /// (pairs of name and value; names without [`ENV_PREFIX`] are ignored)
    /// and validates.
    pub fn from_yaml(
        yaml: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<AgentConfig, ConfigError> {
        let mut problems = Vec::new();
        let mut doc = match serde_yaml::from_str::<Value>(yaml) {
            Ok(Value::Null) => Value::Mapping(Default::default()),
            Ok(v @ Value::Mapping(_)) => v,
            Ok(_) => {
                return Err(ConfigError {
                    problems: vec![
                        "the configuration must be a YAML mapping of sections (receiver, file, …)"
                            .into(),
                    ],
                });
            }
            Err(e) => {
                return Err(ConfigError {
                    problems: vec![format!("YAML syntax: {e}")],
                });
            }
        };
        let origins = apply_env(&mut doc, env, &mut problems);
        let cfg = decode_sections(doc, &origins, &mut problems);
        problems.extend(cfg.problems());
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every problem the sections' own checks and the cross-section checks
    /// find, each naming its field path.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = &self.receiver {
            out.extend(r.problems("receiver"));
        }
        if let Some(f) = &self.file {
            out.extend(f.problems("file"));
        }
        if let Some(h) = &self.host {
            out.extend(h.problems("host"));
        }
        if let Some(s) = &self.scrape {
            out.extend(s.problems("scrape"));
        }
        out.extend(self.transform.problems("transform"));
        out.extend(self.batch.problems("batch"));
        out.extend(self.queue.problems("queue"));
        out.extend(self.exporter.problems("exporter"));
        out.extend(self.ops.server_config().problems("ops"));
        out.extend(self.logging.problems("logging"));

        if self.receiver.is_none()
            && self.file.is_none()
            && self.host.is_none()
            && self.scrape.is_none()
        {
            out.push(
                "receiver, file, host, scrape: every source is off; the agent would have nothing to do"
                    .into(),
            );
        }
        if self.batch.max_bytes >= self.queue.max_record_bytes {
            out.push(format!(
                "batch.max_bytes: must be below queue.max_record_bytes ({}) so that a batch fits in one queue record (got {})",
                self.queue.max_record_bytes, self.batch.max_bytes
            ));
        }
        let min_memory = 4 * self.batch.max_bytes;
        if self.memory.limit < min_memory.max(4 << 20) {
            out.push(format!(
                "memory.limit: must be at least 4MiB and 4 × batch.max_bytes ({min_memory} bytes): one open batch per signal plus room for the sources (got {})",
                self.memory.limit
            ));
        }
        if let Some(f) = &self.file
            && same_dir(&f.data_dir, &self.queue.dir)
        {
            out.push(format!(
                "file.data_dir: same directory as queue.dir ({}); each needs its own (both lock their directory)",
                self.queue.dir.display()
            ));
        }
        if self.shutdown_grace.is_zero() {
            out.push("shutdown_grace: must be greater than 0".into());
        }
        out
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let norm = |p: &Path| -> PathBuf { p.components().collect() };
    norm(a) == norm(b)
}

/// Dotted field path → the variable that set it.
type Origins = BTreeMap<String, String>;

/// Applies `ARGUS_AGENT__*` overrides to the document; returns which paths
/// they set.
fn apply_env(
    doc: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<String>,
) -> Origins {
    let mut origins = Origins::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    // Deterministic: a section set whole (`ARGUS_AGENT__SCRAPE=…`) comes
    // before the fields set inside it.
    vars.sort();
    for (name, raw) in vars {
        let segments: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            problems.push(format!(
                "{name}: not a field path (use ARGUS_AGENT__SECTION__FIELD, double underscores between names)"
            ));
            continue;
        }
        let value = match raw.trim() {
            "" => Value::String(String::new()),
            t => serde_yaml::from_str::<Value>(t).unwrap_or_else(|_| Value::String(raw.clone())),
        };
        let path = segments.join(".");
        match set_path(doc, &segments, value) {
            Ok(()) => {
                origins.insert(path, name);
            }
            Err(at) => problems.push(format!(
                "{name}: cannot set {path}: {at} is not a mapping in the configuration"
            )),
        }
    }
    origins
}

/// Sets `path` in `doc`, creating mappings on the way (a `null` counts as
/// an empty mapping). Err: the path prefix that holds a non-mapping value.
fn set_path(doc: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let mut node = doc;
    for (i, key) in path.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Default::default());
        }
        let Value::Mapping(map) = node else {
            return Err(path[..i].join("."));
        };
        let key = Value::String(key.clone());
        if i + 1 == path.len() {
            map.insert(key, value);
            return Ok(());
        }
        node = map.entry(key).or_insert(Value::Null);
    }
    Ok(())
}

/// Decodes each top-level section on its own, collecting one error per
/// section that fails; failed sections keep their defaults so that the
/// other sections can still be checked.
fn decode_sections(doc: Value, origins: &Origins, problems: &mut Vec<String>) -> AgentConfig {
    let mut cfg = AgentConfig::default();
    let Value::Mapping(map) = doc else {
        return cfg;
    };
    for (key, value) in map {
        let name = match &key {
            Value::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        match name.as_str() {
            "receiver" => cfg.receiver = optional(&name, value, origins, problems),
            "file" => cfg.file = optional(&name, value, origins, problems),
            "host" => cfg.host = optional(&name, value, origins, problems),
            "scrape" => cfg.scrape = optional(&name, value, origins, problems),
            "transform" => set(&mut cfg.transform, &name, value, origins, problems),
            "batch" => set(&mut cfg.batch, &name, value, origins, problems),
            "memory" => set(&mut cfg.memory, &name, value, origins, problems),
            "queue" => set(&mut cfg.queue, &name, value, origins, problems),
            "exporter" => set(&mut cfg.exporter, &name, value, origins, problems),
            "ops" => set(&mut cfg.ops, &name, value, origins, problems),
            "logging" => set(&mut cfg.logging, &name, value, origins, problems),
            "shutdown_grace" => {
                #[derive(Deserialize)]
                struct Grace(#[serde(with = "humantime_serde")] Duration);
                if let Some(Grace(d)) = decode::<Grace>(&name, value, origins, problems) {
                    cfg.shutdown_grace = d;
                }
            }
            _ => problems.push(with_origin(
                format!(
                    "{name}: unknown field `{name}`, expected one of {}",
                    SECTIONS.map(|s| format!("`{s}`")).join(", ")
                ),
                &name,
                origins,
            )),
        }
    }
    cfg
}

/// A section with an off switch: `null` is off, anything else is decoded
/// (a section that fails to decode counts as on, with its defaults, so the
/// rest can be checked).
fn optional<T: DeserializeOwned + Default>(
    name: &str,
    value: Value,
    origins: &Origins,
    problems: &mut Vec<String>,
) -> Option<T> {
    if value.is_null() {
        return None;
    }
    Some(decode(name, value, origins, problems).unwrap_or_default())
}

fn set<T: DeserializeOwned>(
    field: &mut T,
    name: &str,
    value: Value,
    origins: &Origins,
    problems: &mut Vec<String>,
) {
    if let Some(v) = decode(name, value, origins, problems) {
        *field = v;
    }
}

/// Decodes one section, naming the failing field by its full path.
fn decode<T: DeserializeOwned>(
    name: &str,
    value: Value,
    origins: &Origins,
    problems: &mut Vec<String>,
) -> Option<T> {
    // An empty section (`batch:`) means all defaults.
    let value = if value.is_null() {
        Value::Mapping(Default::default())
    } else {
        value
    };
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner.is_empty() || inner == "." {
                name.to_string()
            } else {
                format!("{name}.{inner}")
            };
            let message = e.into_inner().to_string();
            problems.push(with_origin(format!("{path}: {message}"), &path, origins));
            None
        }
    }
}

/// Adds "(set by ARGUS_AGENT__…)" when an override set `path` or a field
/// containing it.
fn with_origin(problem: String, path: &str, origins: &Origins) -> String {
    let var = origins.iter().find(|(p, _)| {
        path == p.as_str()
            || path.starts_with(&format!("{p}."))
            || p.starts_with(&format!("{path}."))
    });
    match var {
        Some((_, var)) => format!("{problem} (set by {var})"),
        None => problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_file_means_the_embedded_defaults_and_they_are_valid() {
        let cfg = AgentConfig::from_yaml("", env(&[])).unwrap();
        assert_eq!(cfg, AgentConfig::default());
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let r = cfg.receiver.as_ref().unwrap();
        assert_eq!(r.grpc.as_ref().unwrap().endpoint, "0.0.0.0:4317");
        assert_eq!(r.http.as_ref().unwrap().endpoint, "0.0.0.0:4318");
        assert_eq!(cfg.ops.listen, "0.0.0.0:8889");
        assert_eq!(cfg.memory.limit, 128 << 20);
        assert_eq!(cfg.queue.dir, PathBuf::from("/var/lib/argus-agent/queue"));
        assert!(cfg.scrape.is_none() && cfg.file.is_some() && cfg.host.is_some());
    }

    #[test]
    fn sections_are_partial_and_null_turns_a_source_off() {
        let cfg = AgentConfig::from_yaml(
            "file: null\nhost:\n  interval: 30s\nmemory: { limit: 64MiB }\nbatch:\n",
            env(&[]),
        )
        .unwrap();
        assert!(cfg.file.is_none());
        assert_eq!(cfg.host.unwrap().interval, Duration::from_secs(30));
        assert_eq!(cfg.memory.limit, 64 << 20);
        assert_eq!(cfg.batch, BatchConfig::default());
    }

    #[test]
    fn env_overrides_set_nested_fields_with_yaml_values() {
        let cfg = AgentConfig::from_yaml(
            "exporter:\n  endpoint: http://a:4317\n",
            env(&[
                (
                    "ARGUS_AGENT__EXPORTER__ENDPOINT",
                    "https://detector.obs:4317",
                ),
                ("ARGUS_AGENT__EXPORTER__CONCURRENCY", "8"),
                ("ARGUS_AGENT__QUEUE__MAX_BYTES", "1GiB"),
                ("ARGUS_AGENT__FILE__INCLUDE", r#"["/logs/*.log"]"#),
                ("ARGUS_AGENT__TRANSFORM__ENRICH__NODE_NAME", "node-7"),
                ("ARGUS_AGENT__HOST", "null"),
                ("ARGUS_AGENT_CONFIG", "ignored: single underscore"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.exporter.endpoint, "https://detector.obs:4317");
        assert_eq!(cfg.exporter.concurrency, 8);
        assert_eq!(cfg.queue.max_bytes, 1 << 30);
        assert_eq!(cfg.file.unwrap().include, vec!["/logs/*.log".to_string()]);
        assert_eq!(cfg.transform.enrich.node_name.as_deref(), Some("node-7"));
        assert!(cfg.host.is_none());
    }

    #[test]
    fn env_override_errors_name_the_variable() {
        let err = AgentConfig::from_yaml(
            "memory: { limit: 64MiB }",
            env(&[
                ("ARGUS_AGENT__EXPORTER__ENDPIONT", "http://x:4317"),
                ("ARGUS_AGENT__BATCH__MAX_ITEMS", "many"),
                ("ARGUS_AGENT__MEMORY__LIMIT__X", "1"),
                ("ARGUS_AGENT__QUEUE____DIR", "/q"),
                ("ARGUS_AGENT__QUEUE__MAX_BYTES", "-5"),
            ]),
        )
        .unwrap_err();
        let p = &err.problems;
        assert!(
            p.iter().any(|m| m.starts_with("exporter")
                && m.contains("unknown field `endpiont`")
                && m.ends_with("(set by ARGUS_AGENT__EXPORTER__ENDPIONT)")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("batch.max_items: invalid type")
                    && m.ends_with("(set by ARGUS_AGENT__BATCH__MAX_ITEMS)")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("ARGUS_AGENT__MEMORY__LIMIT__X: cannot set memory.limit.x")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("ARGUS_AGENT__QUEUE____DIR: not a field path")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("queue.max_bytes: invalid size -5")),
            "{p:#?}"
        );
        assert_eq!(p.len(), 5, "{p:#?}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let yaml = r#"
receiver:
  grpc: { endpoint: "localhost" }
file:
  include: ["/var/log/["]
  multiline: { start_pattern: "(", mode: halt_before, condition_pattern: x }
exporter:
  endpoint: detector:4317
  concurrency: 0
batch:
  max_itemz: 3
queue:
  fsync: sometimes
memory:
  limit: 1KiB
ops:
  listen: nowhere
logging:
  filter: "info,[=x"
colour: blue
"#;
        let err = AgentConfig::from_yaml(yaml, env(&[])).unwrap_err();
        let p = &err.problems;
        for want in [
            "receiver.grpc.endpoint:",
            "file.include[0]: invalid glob",
            "file.multiline.start_pattern: invalid regex",
            "exporter.endpoint: missing scheme",
            "exporter.concurrency:",
            "batch.max_itemz: unknown field `max_itemz`",
            "queue.fsync: expected always, never or a duration",
            "memory.limit: must be at least",
            "ops.listen:",
            "logging.filter:",
            "colour: unknown field `colour`",
        ] {
            assert!(
                p.iter().any(|m| m.starts_with(want)),
                "{want:?} missing from {p:#?}"
            );
        }
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let err = AgentConfig::from_yaml("batch:\n  timeout: [1s\n", env(&[])).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].starts_with("YAML syntax:"), "{err}");
        assert!(err.problems[0].contains("line"), "{err}");
        let err = AgentConfig::from_yaml("- a\n- b\n", env(&[])).unwrap_err();
        assert!(err.problems[0].contains("mapping"), "{err}");
    }

    #[test]
    fn cross_section_checks() {
        let mut cfg = AgentConfig::default();
        cfg.batch.max_bytes = cfg.queue.max_record_bytes;
        cfg.file.as_mut().unwrap().data_dir = "/var/lib/argus-agent/queue/".into();
        cfg.shutdown_grace = Duration::ZERO;
        let p = cfg.problems();
        assert!(
            p.iter()
                .any(|m| m.starts_with("batch.max_bytes: must be below queue.max_record_bytes")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|m| m.starts_with("file.data_dir: same directory as queue.dir")),
            "{p:#?}"
        );
        assert!(p.iter().any(|m| m.starts_with("shutdown_grace:")), "{p:#?}");
        let off = AgentConfig {
            receiver: None,
            file: None,
            host: None,
            scrape: None,
            ..AgentConfig::default()
        };
        assert!(
            off.problems()
                .iter()
                .any(|m| m.contains("every source is off"))
        );
    }
}
