//! What the agent does to every payload before batching: `enrich` (who sent
//! it), `correlate` (which trace and request a log line belongs to) and
//! `mask` (payment card numbers and configured PII never leave the node).
//!
//! # Design
//!
//! - **In place, on the hot path.** [`Transform::apply`] mutates the
//!   payload it is given; it allocates only when it changes something.
//!   Every step has a cheap "nothing to do" exit (an attribute already set,
//!   a string with fewer than 13 digits), because almost every record takes
//!   it.
//! - **Order:** enrich → correlate → mask. Correlation reads IDs before any
//!   masking rule could touch them, and a correlation ID copied into
//!   `correlation.id` is then masked like its original if a rule matches.
//! - **Never destroy what a source set.** Enrich never overwrites a resource
//!   attribute; correlate never replaces a record's own trace/span IDs or an
//!   existing `correlation.id`, and keeps the attributes it read.
//! - **Bounded self-metrics.** Labels are rule names from the configuration,
//!   or fixed sets (`via`, `field`), never a key or value seen in data.

pub mod correlate;
pub mod enrich;
pub mod mask;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::pipeline::Payload;

pub use correlate::{Correlate, CorrelateConfig};
pub use enrich::{Enrich, EnrichConfig};
pub use mask::{Mask, MaskConfig, MaskRule};

/// A configuration that does not validate; lists every problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid transform configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

/// `transform` in the agent's configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    pub enrich: EnrichConfig,
    pub correlate: CorrelateConfig,
    pub mask: MaskConfig,
}

impl TransformConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = self.enrich.problems(&format!("{path}.enrich"));
        out.extend(self.correlate.problems(&format!("{path}.correlate")));
        out.extend(self.mask.problems(&format!("{path}.mask")));
        out
    }

    /// Validates and builds; registers `masked_values_total{rule}`,
    /// `log_records_correlated_total{via}` and
    /// `correlation_invalid_ids_total{field}` in `registry`.
    pub fn build(&self, path: &str, registry: &mut Registry) -> Result<Transform, ConfigError> {
        let problems = self.problems(path);
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Transform {
            enrich: self.enrich.enabled.then(|| self.enrich.build()),
            correlate: self
                .correlate
                .enabled
                .then(|| self.correlate.build(registry)),
            mask: self
                .mask
                .enabled
                .then(|| self.mask.build(registry).expect("validated by problems()")),
        })
    }
}

/// The built transform chain.
#[derive(Debug)]
pub struct Transform {
    enrich: Option<Enrich>,
    correlate: Option<Correlate>,
    mask: Option<Mask>,
}

impl Transform {
    /// No stage at all (what `enabled: false` on every stage builds).
    pub fn none() -> Self {
        Transform {
            enrich: None,
            correlate: None,
            mask: None,
        }
    }

    /// Enriches, correlates and masks `payload` in place.
    pub fn apply(&self, payload: &mut Payload) {
        match payload {
            Payload::Logs(req) => {
                for rl in &mut req.resource_logs {
                    if let Some(e) = &self.enrich {
                        e.apply(&mut rl.resource);
                    }
                    for sl in &mut rl.scope_logs {
                        for record in &mut sl.log_records {
                            if let Some(c) = &self.correlate {
                                c.apply(record);
                            }
                            if let Some(m) = &self.mask {
                                m.log_record(record);
                            }
                        }
                    }
                }
            }
            Payload::Traces(req) => {
                for rs in &mut req.resource_spans {
                    if let Some(e) = &self.enrich {
                        e.apply(&mut rs.resource);
                    }
                    if let Some(m) = &self.mask {
                        for ss in &mut rs.scope_spans {
                            for span in &mut ss.spans {
                                m.span(span);
                            }
                        }
                    }
                }
            }
            Payload::Metrics(req) => {
                if let Some(e) = &self.enrich {
                    for rm in &mut req.resource_metrics {
                        e.apply(&mut rm.resource);
                    }
                }
            }
        }
    }
}

pub(crate) fn string_kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}
