//! Process logging: `tracing` to stderr, text for people, JSON for log
//! pipelines (one object per line, as Kubernetes' log collectors expect).
//!
//! The filter uses `RUST_LOG` syntax (`info,argus_agent::queue=debug`).
//! When the `RUST_LOG` environment variable is set and valid it wins over
//! the config, so an operator can raise verbosity on one pod with
//! `kubectl set env` without editing the ConfigMap; an invalid `RUST_LOG` is
//! reported and the config's filter used, rather than logging nothing.
//! Stderr keeps stdout free for the CLI's own output.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logging settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `RUST_LOG`-style directives.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("logging.filter: {0}")]
    Filter(String),
    /// A global subscriber was already installed (e.g. by a test harness).
    #[error("logging already initialised: {0}")]
    AlreadySet(String),
}

impl LoggingConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        match EnvFilter::try_new(&self.filter) {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!(
                "{path}.filter: invalid directives {:?}: {e}",
                self.filter
            )],
        }
    }

    /// The filter directives in force given `rust_log` (the environment
    /// variable's value), and a warning to log when `RUST_LOG` was unusable.
    pub fn effective_filter(&self, rust_log: Option<&str>) -> (String, Option<String>) {
        match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
            None => (self.filter.clone(), None),
            Some(env) => match EnvFilter::try_new(env) {
                Ok(_) => (env.to_string(), None),
                Err(e) => (
                    self.filter.clone(),
                    Some(format!("ignoring invalid RUST_LOG {env:?}: {e}")),
                ),
            },
        }
    }

    /// Installs the global subscriber. Call once, first thing in `main`.
    pub fn init(&self) -> Result<(), LoggingError> {
        let rust_log = std::env::var("RUST_LOG").ok();
        let (directives, warning) = self.effective_filter(rust_log.as_deref());
        let filter =
            EnvFilter::try_new(&directives).map_err(|e| LoggingError::Filter(e.to_string()))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        let result = match self.format {
            LogFormat::Text => builder.try_init(),
            LogFormat::Json => builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init(),
        };
        result.map_err(|e| LoggingError::AlreadySet(e.to_string()))?;
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_when_valid() {
        let cfg = LoggingConfig::default();
        assert_eq!(cfg.effective_filter(None), ("info".into(), None));
        assert_eq!(cfg.effective_filter(Some("  ")), ("info".into(), None));
        assert_eq!(
            cfg.effective_filter(Some("debug,hyper=warn")),
            ("debug,hyper=warn".into(), None)
        );
        let (f, warning) = cfg.effective_filter(Some("debug,[=bad"));
        assert_eq!(f, "info");
        assert!(warning.unwrap().contains("RUST_LOG"));
    }

    #[test]
    fn config_is_validated_and_parsed() {
        let cfg: LoggingConfig =
            serde_yaml::from_str("filter: warn,argus=debug\nformat: json").unwrap();
        assert_eq!(cfg.format, LogFormat::Json);
        assert!(cfg.problems("logging").is_empty());
        let bad = LoggingConfig {
            filter: "info,[=x".into(),
            ..Default::default()
        };
        assert!(bad.problems("logging")[0].starts_with("logging.filter:"));
        assert!(serde_yaml::from_str::<LoggingConfig>("format: xml").is_err());
    }
}
