//! `IngestConfig`: what a user writes under `ingest:` in the detector config.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::resource::GroupBy;
use crate::registry::Limits;
use crate::template::TemplateConfig;

/// How OTLP becomes per-step series.
///
/// ```yaml
/// ingest:
///   step: 10s              # one value per series per step (whole seconds)
///   grace: 10s             # a step closes when the clock passes its end + grace (default: one step)
///   max_future: 10s        # items stamped further ahead of the clock are dropped (default: one step)
///   quantiles: [0.5, 0.9, 0.99]   # for histograms and span latency
///   series:
///     max_series: 100000
///     max_per_name: 2000   # per name and service
///     max_labels: 32
///     max_label_bytes: 256
///     idle_after: 1h       # series without data this long are evicted
///   metrics:
///     enabled: true
///     max_streams: 64      # producer streams merged into one series
///   spans:
///     enabled: true
///     kinds: [server, consumer]
///     root_spans: true     # plus spans without a parent, whatever their kind
///     group_by: [namespace]
///     slowest_exemplars: 3
///     error_exemplars: 3
///   logs:
///     enabled: true
///     group_by: [namespace]
///     exemplars: 5
///     templates: { depth: 4, similarity: 0.4, max_templates: 10000, … }
///     template_series_min_count: 5
///     novelty: { new_for: 1m, rare_below: 5 }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    /// Default: one step.
    #[serde(with = "humantime_serde")]
    pub grace: Option<Duration>,
    /// Default: one step.
    #[serde(with = "humantime_serde")]
    pub max_future: Option<Duration>,
    /// Quantiles reported for histograms and span latency; each becomes a
    /// series named `…p50`, `…p99`, `…p99.9`.
    pub quantiles: Vec<f64>,
    pub series: SeriesConfig,
    pub metrics: MetricsConfig,
    pub spans: SpansConfig,
    pub logs: LogsConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            step: Duration::from_secs(10),
            grace: None,
            max_future: None,
            quantiles: vec![0.5, 0.9, 0.99],
            series: SeriesConfig::default(),
            metrics: MetricsConfig::default(),
            spans: SpansConfig::default(),
            logs: LogsConfig::default(),
        }
    }
}

/// Bounds of the series registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesConfig {
    pub max_series: usize,
    /// Series per (signal, name, service).
    pub max_per_name: usize,
    pub max_labels: usize,
    pub max_label_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub idle_after: Duration,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        let l = Limits::default();
        SeriesConfig {
            max_series: l.max_series,
            max_per_name: l.max_per_name,
            max_labels: l.max_labels,
            max_label_bytes: l.max_label_bytes,
            idle_after: Duration::from_secs(3600),
        }
    }
}

impl SeriesConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            max_series: self.max_series,
            max_per_name: self.max_per_name,
            max_labels: self.max_labels,
            max_label_bytes: self.max_label_bytes,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Distinct producer streams (resource + scope + attributes) merged into
    /// one series before further streams are refused.
    pub max_streams: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            max_streams: 64,
        }
    }
}

/// OTLP span kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKindName {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKindName {
    pub fn from_otlp(kind: i32) -> SpanKindName {
        match kind {
            1 => SpanKindName::Internal,
            2 => SpanKindName::Server,
            3 => SpanKindName::Client,
            4 => SpanKindName::Producer,
            5 => SpanKindName::Consumer,
            _ => SpanKindName::Unspecified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpanKindName::Unspecified => "unspecified",
            SpanKindName::Internal => "internal",
            SpanKindName::Server => "server",
            SpanKindName::Client => "client",
            SpanKindName::Producer => "producer",
            SpanKindName::Consumer => "consumer",
        }
    }
}

/// Upper bound of `spans.latency_histogram_services`.
pub const MAX_LATENCY_HISTOGRAM_SERVICES: usize = 10_000;

/// RED series from spans.
///
/// RED is measured where work **enters** a service: SERVER spans (requests
/// it serves) and CONSUMER spans (messages it processes). CLIENT and
/// PRODUCER spans describe calls to *other* services and are already
/// counted on the callee's side; INTERNAL spans would count work twice.
/// Root spans (no parent) are the exception: a cron job's or a batch
/// worker's root span is the only record of that unit of work, so they are
/// counted whatever their kind (`root_spans`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpansConfig {
    pub enabled: bool,
    pub kinds: Vec<SpanKindName>,
    pub root_spans: bool,
    pub group_by: Vec<GroupBy>,
    /// Trace ids of the slowest spans kept per RED series and step.
    pub slowest_exemplars: usize,
    /// Trace ids of error spans (the slowest of them) kept per step.
    pub error_exemplars: usize,
    /// Most services (service × namespace label sets) in the
    /// `argus_detector_span_latency_seconds` histogram on `/metrics`; spans
    /// of further services count under `service="_other"`. 0 turns the
    /// histogram off. See `ingest::latency`.
    pub latency_histogram_services: usize,
}

impl Default for SpansConfig {
    fn default() -> Self {
        SpansConfig {
            enabled: true,
            kinds: vec![SpanKindName::Server, SpanKindName::Consumer],
            root_spans: true,
            group_by: vec![GroupBy::Namespace],
            slowest_exemplars: 3,
            error_exemplars: 3,
            latency_histogram_services: 200,
        }
    }
}

/// Log count series, templates and the new-or-rare error signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    pub enabled: bool,
    pub group_by: Vec<GroupBy>,
    /// Trace ids kept per log series and step.
    pub exemplars: usize,
    pub templates: TemplateConfig,
    /// A template gets its own count series once it has matched this many
    /// records — or at its first error/fatal record.
    pub template_series_min_count: u64,
    pub novelty: NoveltyConfig,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            group_by: vec![GroupBy::Namespace],
            exemplars: 5,
            templates: TemplateConfig::default(),
            template_series_min_count: 5,
            novelty: NoveltyConfig::default(),
        }
    }
}

/// The "new or rare error template" signal (`log.new_error_templates`).
///
/// A warn/error/fatal record counts when its template is
/// - **new**: first seen less than `new_for` before this record, or
/// - **rare**: this record is among the first `rare_below` of the
///   template within the template window (`templates.window`, 24 h).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoveltyConfig {
    #[serde(with = "humantime_serde")]
    pub new_for: Duration,
    pub rare_below: u64,
}

impl Default for NoveltyConfig {
    fn default() -> Self {
        NoveltyConfig {
            new_for: Duration::from_secs(60),
            rare_below: 5,
        }
    }
}

/// Every problem of an [`IngestConfig`], each naming its field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid ingest configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

fn whole_secs(d: Duration) -> bool {
    d.subsec_nanos() == 0
}

impl IngestConfig {
    pub fn grace(&self) -> Duration {
        self.grace.unwrap_or(self.step)
    }

    pub fn max_future(&self) -> Duration {
        self.max_future.unwrap_or(self.step)
    }

    /// Names every problem, each prefixed with `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.step.as_secs() == 0 || !whole_secs(self.step) || self.step.as_secs() > 3600 {
            p.push(format!(
                "{path}.step: must be a whole number of seconds between 1s and 1h, got {:?}",
                self.step
            ));
        }
        for (name, d) in [("grace", self.grace), ("max_future", self.max_future)] {
            if let Some(d) = d
                && (!whole_secs(d) || d > Duration::from_secs(3600))
            {
                p.push(format!(
                    "{path}.{name}: must be a whole number of seconds of at most 1h, got {d:?}"
                ));
            }
        }
        if self.quantiles.is_empty() || self.quantiles.len() > 10 {
            p.push(format!(
                "{path}.quantiles: between 1 and 10 quantiles, got {}",
                self.quantiles.len()
            ));
        }
        for (i, q) in self.quantiles.iter().enumerate() {
            if !(*q > 0.0 && *q < 1.0) {
                p.push(format!("{path}.quantiles[{i}]: must be in (0, 1), got {q}"));
            } else if self.quantiles[..i].contains(q) {
                p.push(format!("{path}.quantiles[{i}]: {q} is listed twice"));
            }
        }
        let s = &self.series;
        if s.max_series == 0 {
            p.push(format!("{path}.series.max_series: must be at least 1"));
        }
        if s.max_per_name == 0 || s.max_per_name > s.max_series {
            p.push(format!(
                "{path}.series.max_per_name: must be between 1 and max_series ({}), got {}",
                s.max_series, s.max_per_name
            ));
        }
        if s.max_labels < 4 {
            p.push(format!(
                "{path}.series.max_labels: must be at least 4 (the resource labels), got {}",
                s.max_labels
            ));
        }
        if s.max_label_bytes < 64 {
            p.push(format!(
                "{path}.series.max_label_bytes: must be at least 64, got {}",
                s.max_label_bytes
            ));
        }
        let min_idle = self.step + self.grace() + self.max_future();
        if s.idle_after <= min_idle {
            p.push(format!(
                "{path}.series.idle_after: must exceed step + grace + max_future ({min_idle:?}), got {:?}",
                s.idle_after
            ));
        }
        if self.metrics.max_streams == 0 {
            p.push(format!("{path}.metrics.max_streams: must be at least 1"));
        }
        let sp = &self.spans;
        if sp.kinds.is_empty() && !sp.root_spans && sp.enabled {
            p.push(format!(
                "{path}.spans.kinds: empty with root_spans off: no span would count (set enabled: false instead)"
            ));
        }
        if sp.slowest_exemplars > 16 {
            p.push(format!("{path}.spans.slowest_exemplars: at most 16"));
        }
        if sp.error_exemplars > 16 {
            p.push(format!("{path}.spans.error_exemplars: at most 16"));
        }
        if sp.latency_histogram_services > MAX_LATENCY_HISTOGRAM_SERVICES {
            p.push(format!(
                "{path}.spans.latency_histogram_services: at most {MAX_LATENCY_HISTOGRAM_SERVICES} (each costs 17 samples per scrape), got {}",
                sp.latency_histogram_services
            ));
        }
        for (name, g) in [("spans", &sp.group_by), ("logs", &self.logs.group_by)] {
            for (i, x) in g.iter().enumerate() {
                if g[..i].contains(x) {
                    p.push(format!("{path}.{name}.group_by[{i}]: listed twice"));
                }
            }
        }
        let l = &self.logs;
        if l.exemplars > 16 {
            p.push(format!("{path}.logs.exemplars: at most 16"));
        }
        p.extend(l.templates.problems(&format!("{path}.logs.templates")));
        if l.template_series_min_count == 0 {
            p.push(format!(
                "{path}.logs.template_series_min_count: must be at least 1"
            ));
        }
        if l.novelty.rare_below == 0 && l.novelty.new_for.is_zero() {
            p.push(format!(
                "{path}.logs.novelty: new_for and rare_below are both 0: the signal could never fire"
            ));
        }
        p
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = self.problems("ingest");
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p))
        }
    }
}

/// `p50`, `p90`, `p99`, `p99.9`: the series-name suffix of a quantile.
pub fn quantile_suffix(q: f64) -> String {
    let pct = q * 100.0;
    let mut s = format!("{pct:.4}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("p{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = IngestConfig::default();
        assert_eq!(c.problems("ingest"), Vec::<String>::new());
        assert_eq!(c.grace(), Duration::from_secs(10));
        assert_eq!(c.max_future(), Duration::from_secs(10));
    }

    #[test]
    fn yaml_parses_and_unknown_fields_are_refused() {
        let c: IngestConfig = serde_yaml::from_str(
            "step: 30s\ngrace: 15s\nspans: { kinds: [server], group_by: [namespace, pod] }\nlogs: { novelty: { new_for: 5m } }\n",
        )
        .unwrap();
        assert_eq!(c.step, Duration::from_secs(30));
        assert_eq!(c.grace(), Duration::from_secs(15));
        assert_eq!(c.max_future(), Duration::from_secs(30));
        assert_eq!(c.spans.group_by, vec![GroupBy::Namespace, GroupBy::Pod]);
        assert_eq!(c.logs.novelty.new_for, Duration::from_secs(300));
        let e = serde_yaml::from_str::<IngestConfig>("steps: 10s\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `steps`"), "{e}");
        let e = serde_yaml::from_str::<IngestConfig>("spans: { kinds: [serverr] }\n").unwrap_err();
        assert!(e.to_string().contains("serverr"), "{e}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut c = IngestConfig {
            step: Duration::from_millis(1500),
            grace: Some(Duration::from_millis(500)),
            quantiles: vec![0.5, 1.0, 0.5],
            ..Default::default()
        };
        c.series.max_per_name = 0;
        c.series.idle_after = Duration::from_secs(2);
        c.spans.kinds.clear();
        c.spans.root_spans = false;
        c.logs.templates.similarity = 0.0;
        c.logs.group_by = vec![GroupBy::Pod, GroupBy::Pod];
        let p = c.problems("ingest");
        let fields: Vec<&str> = p.iter().map(|s| s.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            vec![
                "ingest.step",
                "ingest.grace",
                "ingest.quantiles[1]",
                "ingest.quantiles[2]",
                "ingest.series.max_per_name",
                "ingest.series.idle_after",
                "ingest.spans.kinds",
                "ingest.logs.group_by[1]",
                "ingest.logs.templates.similarity",
            ],
            "{p:#?}"
        );
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ingest.step")
        );
    }

    #[test]
    fn quantile_suffixes() {
        for (q, s) in [
            (0.5, "p50"),
            (0.9, "p90"),
            (0.99, "p99"),
            (0.999, "p99.9"),
            (0.25, "p25"),
            (0.995, "p99.5"),
        ] {
            assert_eq!(quantile_suffix(q), s);
        }
    }
}
