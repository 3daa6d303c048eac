//! Per-series outputs on `/metrics`, for Grafana, and the links alerts carry.
//!
//! Five gauge families, one sample per exported series, from its last
//! scored point:
//!
//! | metric | value |
//! |---|---|
//! | `argus_detector_series_anomaly_score` | calibrated score in [0, 1] |
//! | `argus_detector_series_value` | the observed value |
//! | `argus_detector_series_expected` | what the engine expected |
//! | `argus_detector_series_lower` / `_upper` | the band (inside it, no model would page) |
//!
//! Labels are bounded: `series` (the series name, e.g.
//! `span.latency.p99`), `service`, `namespace`, `signal`, and `series_id` —
//! 16 hex digits of a hash of the full series key, stable across restarts,
//! which keeps two series of one name and service (two operations) apart
//! without putting their attributes into labels. Look one up with
//! `/api/v1/series?match=…`; the API shows the same `series_id`.
//!
//! # Which series, when there are more than `max_series`
//!
//! Ranked by: anomalous now first, then score rounded down to a tenth,
//! then `series_id`. Rounding makes the ranking **stable**: the calm bulk
//! (scores below 0.1) is always the same subset, so the exported set only
//! changes when something becomes interesting — no churn of Prometheus
//! series from noise. With fewer series than the cap, all are exported.
//! Series still learning are exported too (score 0), so a dashboard shows
//! the band forming. The table is rebuilt after every scored step.

use std::sync::Arc;

use argus_common::otlp::Signal;
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::{Deserialize, Serialize};

use crate::incident::url::UrlTemplate;

/// `outputs:` — per-series metrics and alert links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    /// Most series exported on `/metrics` (0 exports none).
    pub max_series: usize,
    /// Alert `dashboard_url` template (see [`crate::incident::url`]).
    pub dashboard_url: Option<String>,
    /// Alert `runbook_url` template.
    pub runbook_url: Option<String>,
    /// How others reach this detector (`https://argus-detector.monitoring:9095`):
    /// alerts link back to `/api/v1/incidents/<id>` as their `generatorURL`.
    pub external_url: Option<String>,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        OutputsConfig {
            max_series: 1000,
            dashboard_url: None,
            runbook_url: None,
            external_url: None,
        }
    }
}

/// Most series the cap may allow (each costs five samples per scrape).
pub const MAX_EXPORTED: usize = 100_000;

impl OutputsConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_series > MAX_EXPORTED {
            p.push(format!(
                "{path}.max_series: at most {MAX_EXPORTED}, got {}",
                self.max_series
            ));
        }
        for (name, t) in [
            ("dashboard_url", &self.dashboard_url),
            ("runbook_url", &self.runbook_url),
        ] {
            if let Some(t) = t
                && let Err(e) = UrlTemplate::parse(t)
            {
                p.push(format!("{path}.{name}: {e}"));
            }
        }
        if let Some(u) = &self.external_url
            && let Err(e) = reqwest::Url::parse(u)
        {
            p.push(format!("{path}.external_url: not an absolute URL: {e}"));
        }
        p
    }

    /// The parsed link templates (call after validation).
    pub fn links(&self) -> Links {
        Links {
            dashboard: self
                .dashboard_url
                .as_deref()
                .and_then(|t| UrlTemplate::parse(t).ok()),
            runbook: self
                .runbook_url
                .as_deref()
                .and_then(|t| UrlTemplate::parse(t).ok()),
            external_url: self.external_url.clone(),
        }
    }
}

/// Links an alert carries.
#[derive(Clone, Debug, Default)]
pub struct Links {
    pub dashboard: Option<UrlTemplate>,
    pub runbook: Option<UrlTemplate>,
    pub external_url: Option<String>,
}

/// One exported series.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub series: String,
    pub service: String,
    pub namespace: String,
    pub signal: Signal,
    pub series_id: u64,
    pub score: f64,
    pub value: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The rank key of a series: smaller exports first.
pub fn rank(anomalous: bool, score: f64, series_id: u64) -> (bool, i32, u64) {
    let tenth = if score.is_finite() {
        (score * 10.0).floor() as i32
    } else {
        0
    };
    (!anomalous, -tenth, series_id)
}

/// Keeps the `n` best-ranked of `items` (by `key`), sorted.
pub fn top_n<T, K: Ord + Copy>(mut items: Vec<T>, n: usize, key: impl Fn(&T) -> K) -> Vec<T> {
    if items.len() > n {
        if n == 0 {
            return Vec::new();
        }
        items.select_nth_unstable_by_key(n - 1, |x| key(x));
        items.truncate(n);
    }
    items.sort_by_key(|x| key(x));
    items
}

/// The exported table, shared between the scoring loop (writer) and
/// scrapes (readers).
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    rows: Arc<RwLock<Arc<Vec<Row>>>>,
}

impl Outputs {
    pub fn publish(&self, rows: Vec<Row>) {
        *self.rows.write() = Arc::new(rows);
    }

    pub fn rows(&self) -> Arc<Vec<Row>> {
        self.rows.read().clone()
    }
}

type Labels<'a> = [(&'static str, &'a str); 5];

/// name, help, and which field of a row.
type FamilySpec = (&'static str, &'static str, fn(&Row) -> f64);

impl Collector for Outputs {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.rows();
        let families: [FamilySpec; 5] = [
            (
                "series_anomaly_score",
                "Calibrated anomaly score of the series' last scored step, 0 to 1 (capped set of series, see outputs.max_series)",
                |r| r.score,
            ),
            (
                "series_value",
                "Observed value of the series' last scored step",
                |r| r.value,
            ),
            (
                "series_expected",
                "Value the engine expected for the series' last scored step",
                |r| r.expected,
            ),
            (
                "series_lower",
                "Lower edge of the band: below it the series would page",
                |r| r.lower,
            ),
            (
                "series_upper",
                "Upper edge of the band: above it the series would page",
                |r| r.upper,
            ),
        ];
        for (name, help, get) in families {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for r in rows.iter() {
                let v = get(r);
                if !v.is_finite() {
                    continue;
                }
                let id = format!("{:016x}", r.series_id);
                let labels: Labels<'_> = [
                    ("series", &r.series),
                    ("service", &r.service),
                    ("namespace", &r.namespace),
                    ("signal", r.signal.as_str()),
                    ("series_id", &id),
                ];
                let fam = m.encode_family(&labels)?;
                ConstGauge::new(v).encode(fam)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_is_stable_for_the_calm_bulk() {
        // Calm series (scores < 0.1 jitter) always rank by id.
        let a = rank(false, 0.03, 5);
        let b = rank(false, 0.07, 2);
        assert!(b < a, "same tenth: id decides");
        assert!(rank(true, 0.2, 9) < rank(false, 0.9, 1), "anomalous first");
        assert!(
            rank(false, 0.55, 9) < rank(false, 0.31, 1),
            "higher tenth first"
        );
        let picked = top_n((0..100u64).collect(), 3, |&i| {
            rank(i == 50, 0.01 * (i % 7) as f64, i)
        });
        assert_eq!(picked, vec![50, 0, 1]);
        assert!(top_n(vec![1, 2], 0, |&i| i).is_empty());
    }

    #[test]
    fn exposition_has_bounded_labels_and_skips_nan() {
        let o = Outputs::default();
        o.publish(vec![Row {
            series: "span.latency.p99".into(),
            service: "checkout".into(),
            namespace: "prod".into(),
            signal: Signal::Traces,
            series_id: 0xabc,
            score: 0.5,
            value: 1.5,
            expected: 0.25,
            lower: f64::NAN,
            upper: 0.4,
        }]);
        let mut reg = prometheus_client::registry::Registry::with_prefix("argus_detector");
        reg.register_collector(Box::new(o));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains(
            "argus_detector_series_anomaly_score{series=\"span.latency.p99\",service=\"checkout\",namespace=\"prod\",signal=\"traces\",series_id=\"0000000000000abc\"} 0.5"
        ), "{text}");
        assert!(text.contains("argus_detector_series_upper{"), "{text}");
        assert!(!text.contains("argus_detector_series_lower{"), "{text}");
    }
}
