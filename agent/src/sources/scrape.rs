//! Prometheus scrape: pulls local `/metrics` endpoints (Prometheus text
//! 0.0.4 or OpenMetrics text) and turns them into OTLP metrics.
//!
//! # Design
//!
//! - **One task per target**, spawned through a `TaskTracker` and started at
//!   an offset inside the interval derived from the URL's hash (as
//!   Prometheus does), so many targets on one node do not all fire at once.
//! - **One scrape = one [`Envelope`]** (`source: "scrape"`, no acks: the
//!   target is scraped again next interval). Its payload holds the target's
//!   metrics and the synthetic `up`, `scrape_duration_seconds` and
//!   `scrape_samples_scraped` gauges, under one resource naming the target
//!   (see [`translation`]). A failed scrape still sends `up = 0`, so a dead
//!   exporter is visible downstream, not just absent.
//! - **Bounded.** The body is read in chunks up to `max_body_bytes`
//!   (compressed *and* decompressed: a gzip bomb stops at the limit), and an
//!   optional `sample_limit` rejects a target that suddenly explodes in
//!   cardinality, like Prometheus' `sample_limit`.
//! - **Failures** are counted by reason in
//!   `scrape_failures_total{reason}` (`connect`, `timeout`, `http_status`,
//!   `body_too_large`, `decompress`, `invalid_utf8`, `sample_limit`,
//!   `request`) and logged when a target starts failing; lines the parser
//!   skipped are counted in `scrape_invalid_lines_total` (see
//!   [`exposition`] for why one bad line does not fail the scrape).
//! - gzip is negotiated with `Accept-Encoding` and decoded with `flate2`
//!   (reqwest's own decompression would need another feature and crate).

pub mod exposition;
pub mod translation;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use argus_common::shutdown::{Shutdown, TaskTracker};

use crate::pipeline::{Envelope, MemoryLimiter, Offer, Payload, offer};
use exposition::Format;
use translation::{StartTimes, kv};

/// A configuration that does not validate; lists every problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid scrape configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

/// Why one scrape failed. All are retried next interval.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    #[error("body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("cannot decompress gzip body: {0}")]
    Decompress(String),
    #[error("body is not UTF-8")]
    InvalidUtf8,
    #[error("{0} samples exceed sample_limit {1}")]
    SampleLimit(usize, usize),
    #[error("request failed: {0}")]
    Request(String),
}

impl ScrapeError {
    /// Bounded label value for `scrape_failures_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Connect(_) => "connect",
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::HttpStatus(_) => "http_status",
            ScrapeError::BodyTooLarge(_) => "body_too_large",
            ScrapeError::Decompress(_) => "decompress",
            ScrapeError::InvalidUtf8 => "invalid_utf8",
            ScrapeError::SampleLimit(..) => "sample_limit",
            ScrapeError::Request(_) => "request",
        }
    }
}

/// One endpoint to scrape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `http://127.0.0.1:9100/metrics`
    pub url: String,
    /// Overrides [`ScrapeConfig::interval`].
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Overrides [`ScrapeConfig::timeout`].
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Target labels. `job` (default `scrape`) and `instance` (default the
    /// URL's `host:port`) become `service.name` / `service.instance.id`;
    /// others are added to every point.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `sources.scrape` in the agent's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    pub targets: Vec<TargetConfig>,
    /// Default 30s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Default 10s; at most the interval.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest body read (compressed and decompressed). Default 16 MiB.
    pub max_body_bytes: usize,
    /// Reject a scrape with more samples than this (0: no limit, the
    /// default).
    pub sample_limit: usize,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            targets: Vec::new(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            max_body_bytes: 16 << 20,
            sample_limit: 0,
        }
    }
}

fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl ScrapeConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.targets.is_empty() {
            out.push(format!(
                "{path}.targets: no target (remove the source instead)"
            ));
        }
        if self.interval < Duration::from_secs(1) {
            out.push(format!("{path}.interval: must be at least 1s"));
        }
        if self.timeout.is_zero() || self.timeout > self.interval {
            out.push(format!(
                "{path}.timeout: must be greater than 0 and at most the interval"
            ));
        }
        if self.max_body_bytes < 1024 {
            out.push(format!("{path}.max_body_bytes: must be at least 1024"));
        }
        let mut seen = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            let at = format!("{path}.targets[{i}]");
            match reqwest::Url::parse(&t.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                Ok(u) => out.push(format!(
                    "{at}.url: must be an http(s) URL with a host (got {:?})",
                    u.as_str()
                )),
                Err(e) => out.push(format!("{at}.url: not a valid URL: {e}")),
            }
            let interval = t.interval.unwrap_or(self.interval);
            if t.interval.is_some() && interval < Duration::from_secs(1) {
                out.push(format!("{at}.interval: must be at least 1s"));
            }
            let timeout = t.timeout.unwrap_or(self.timeout);
            if timeout.is_zero() || timeout > interval {
                out.push(format!(
                    "{at}.timeout: must be greater than 0 and at most the interval ({interval:?})"
                ));
            }
            for k in t.labels.keys() {
                if !valid_label_name(k) || k.starts_with("__") {
                    out.push(format!("{at}.labels: {k:?} is not a valid label name"));
                }
            }
            let key = (t.url.clone(), t.labels.get("job").cloned());
            if seen.contains(&key) {
                out.push(format!("{at}: same url and job as an earlier target"));
            }
            seen.push(key);
        }
        out
    }

    /// Validates, builds the HTTP client, registers self-metrics.
    pub fn build(&self, path: &str, registry: &mut Registry) -> Result<Scrape, ConfigError> {
        let problems = self.problems(path);
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("argus-agent/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| ConfigError(vec![format!("{path}: cannot build HTTP client: {e}")]))?;
        let telemetry = Arc::new(Telemetry::register(registry));
        let targets = self
            .targets
            .iter()
            .map(|t| {
                let url = reqwest::Url::parse(&t.url).expect("validated");
                let mut labels = t.labels.clone();
                let job = labels.remove("job").unwrap_or_else(|| "scrape".into());
                let instance = labels.remove("instance").unwrap_or_else(|| {
                    let host = url.host_str().unwrap_or_default();
                    match url.port_or_known_default() {
                        Some(p) => format!("{host}:{p}"),
                        None => host.to_string(),
                    }
                });
                Arc::new(Target {
                    interval: t.interval.unwrap_or(self.interval),
                    timeout: t.timeout.unwrap_or(self.timeout),
                    resource: vec![
                        kv("service.name", &job),
                        kv("service.instance.id", &instance),
                        kv("server.address", url.host_str().unwrap_or_default()),
                        kv(
                            "server.port",
                            &url.port_or_known_default()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                        ),
                        kv("url.scheme", url.scheme()),
                    ],
                    labels: labels.into_iter().collect(),
                    url,
                    starts: Mutex::new(StartTimes::default()),
                    failing: AtomicBool::new(false),
                })
            })
            .collect();
        Ok(Scrape {
            client,
            targets,
            max_body_bytes: self.max_body_bytes,
            sample_limit: self.sample_limit,
            telemetry,
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug)]
struct Telemetry {
    failures: Family<ReasonLabel, Counter>,
    invalid_lines: Counter,
    dropped_samples: Counter,
    dropped_scrapes: Family<ReasonLabel, Counter>,
}

impl Telemetry {
    fn register(registry: &mut Registry) -> Self {
        let t = Telemetry {
            failures: Family::default(),
            invalid_lines: Counter::default(),
            dropped_samples: Counter::default(),
            dropped_scrapes: Family::default(),
        };
        registry.register(
            "scrape_failures",
            "Failed scrapes of /metrics targets, by reason",
            t.failures.clone(),
        );
        registry.register(
            "scrape_invalid_lines",
            "Exposition lines skipped because they did not parse",
            t.invalid_lines.clone(),
        );
        registry.register(
            "scrape_dropped_samples",
            "Parsed samples with no OTLP equivalent (gauge histograms, stray suffixes)",
            t.dropped_samples.clone(),
        );
        registry.register(
            "scrape_payloads_dropped",
            "Scrapes dropped because the pipeline could not take them within one interval",
            t.dropped_scrapes.clone(),
        );
        t
    }
}

#[derive(Debug)]
struct Target {
    url: reqwest::Url,
    interval: Duration,
    timeout: Duration,
    resource: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    labels: Vec<(String, String)>,
    starts: Mutex<StartTimes>,
    failing: AtomicBool,
}

/// The built scrape source.
#[derive(Clone, Debug)]
pub struct Scrape {
    client: reqwest::Client,
    targets: Vec<Arc<Target>>,
    max_body_bytes: usize,
    sample_limit: usize,
    telemetry: Arc<Telemetry>,
}

/// Wall-clock now, the one place scrape timestamps come from.
fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

impl Scrape {
    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// Scrapes target `index` once, now: its metrics plus `up` etc.
    pub async fn scrape_target(&self, index: usize) -> ExportMetricsServiceRequest {
        let target = &self.targets[index];
        let started = tokio::time::Instant::now();
        let now = now_unix_nano();
        let result = self.fetch(target).await;
        let elapsed = started.elapsed();
        let mut metrics = Vec::new();
        let (up, samples) = match result {
            Ok((text, format)) => {
                let exp = exposition::parse(&text, format);
                if exp.error_count > 0 {
                    self.telemetry.invalid_lines.inc_by(exp.error_count as u64);
                    tracing::debug!(
                        url = %target.url,
                        count = exp.error_count,
                        first = %exp.errors[0],
                        "scrape: skipped lines that do not parse"
                    );
                }
                let n = exp.sample_count();
                if self.sample_limit > 0 && n > self.sample_limit {
                    self.failed(target, &ScrapeError::SampleLimit(n, self.sample_limit));
                    (0.0, n)
                } else {
                    let translated = translation::translate(
                        &exp,
                        &target.labels,
                        now,
                        &mut target.starts.lock(),
                    );
                    if translated.dropped_samples > 0 {
                        self.telemetry
                            .dropped_samples
                            .inc_by(translated.dropped_samples as u64);
                    }
                    metrics = translated.metrics;
                    if target.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(url = %target.url, "scrape target recovered");
                    }
                    (1.0, n)
                }
            }
            Err(e) => {
                self.failed(target, &e);
                (0.0, 0)
            }
        };
        let gauge = |name: &str, description: &str, unit: &str, value: f64| Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: target.labels.iter().map(|(k, v)| kv(k, v)).collect(),
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsDouble(value)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        metrics.push(gauge(
            "up",
            "1 if the target was scraped successfully, else 0",
            "",
            up,
        ));
        metrics.push(gauge(
            "scrape_duration_seconds",
            "Duration of the scrape",
            "s",
            elapsed.as_secs_f64(),
        ));
        metrics.push(gauge(
            "scrape_samples_scraped",
            "Samples the target exposed",
            "",
            samples as f64,
        ));
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: target.resource.clone(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "argus.scrape".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// One failed scrape: counted every time, logged when the target starts
    /// failing (then at debug until it recovers).
    fn failed(&self, target: &Target, e: &ScrapeError) {
        self.telemetry
            .failures
            .get_or_create(&ReasonLabel { reason: e.reason() })
            .inc();
        if !target.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(url = %target.url, error = %e, "scrape failed; up = 0 until it recovers");
        } else {
            tracing::debug!(url = %target.url, error = %e, "scrape still failing");
        }
    }

    async fn fetch(&self, target: &Target) -> Result<(String, Format), ScrapeError> {
        let timeout = target.timeout;
        let work = async {
            let resp = self
                .client
                .get(target.url.clone())
                .header(reqwest::header::ACCEPT, ACCEPT)
                .header(reqwest::header::ACCEPT_ENCODING, "gzip")
                .header(
                    "X-Prometheus-Scrape-Timeout-Seconds",
                    format!("{}", timeout.as_secs_f64()),
                )
                .send()
                .await
                .map_err(|e| classify(e, timeout))?;
            if !resp.status().is_success() {
                return Err(ScrapeError::HttpStatus(resp.status().as_u16()));
            }
            let header = |name| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_ascii_lowercase()
            };
            let format = if header(reqwest::header::CONTENT_TYPE)
                .starts_with("application/openmetrics-text")
            {
                Format::OpenMetrics
            } else {
                Format::Prometheus
            };
            let gzip = header(reqwest::header::CONTENT_ENCODING) == "gzip";
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| classify(e, timeout))? {
                if body.len() + chunk.len() > self.max_body_bytes {
                    return Err(ScrapeError::BodyTooLarge(self.max_body_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            if gzip {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(body.as_slice())
                    .take(self.max_body_bytes as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| ScrapeError::Decompress(e.to_string()))?;
                if out.len() > self.max_body_bytes {
                    return Err(ScrapeError::BodyTooLarge(self.max_body_bytes));
                }
                body = out;
            }
            let text = String::from_utf8(body).map_err(|_| ScrapeError::InvalidUtf8)?;
            Ok((text, format))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ScrapeError::Timeout(timeout)),
        }
    }

    /// Scrapes every target on its interval until `shutdown`.
    pub async fn run(
        self,
        out: mpsc::Sender<Envelope>,
        limiter: MemoryLimiter,
        shutdown: Shutdown,
    ) {
        let tracker = TaskTracker::new();
        for i in 0..self.targets.len() {
            let this = self.clone();
            let (out, limiter, shutdown) = (out.clone(), limiter.clone(), shutdown.clone());
            tracker.spawn(async move { this.run_target(i, out, limiter, shutdown).await });
        }
        tracker.close();
        tracker.wait().await;
    }

    async fn run_target(
        &self,
        index: usize,
        out: mpsc::Sender<Envelope>,
        limiter: MemoryLimiter,
        shutdown: Shutdown,
    ) {
        let target = self.targets[index].clone();
        let interval = target.interval;
        // Spread targets over the interval (Prometheus' offset by hash).
        let mut h = std::collections::hash_map::DefaultHasher::new();
        target.url.as_str().hash(&mut h);
        let offset = Duration::from_nanos(h.finish() % interval.as_nanos().max(1) as u64);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = ticks.tick() => {}
            }
            let request = tokio::select! {
                _ = shutdown.wait() => return,
                r = self.scrape_target(index) => r,
            };
            let payload = Payload::Metrics(request);
            match offer(&out, &limiter, payload, "scrape", interval, &shutdown).await {
                Offer::Sent => {}
                Offer::Dropped(reason) => self.dropped(reason),
                Offer::Shutdown | Offer::Closed => return,
            }
        }
    }

    fn dropped(&self, reason: &'static str) {
        self.telemetry
            .dropped_scrapes
            .get_or_create(&ReasonLabel { reason })
            .inc();
        tracing::warn!(
            reason,
            "scrape dropped: the pipeline could not take it within one interval"
        );
    }
}

fn classify(e: reqwest::Error, timeout: Duration) -> ScrapeError {
    if e.is_timeout() {
        ScrapeError::Timeout(timeout)
    } else if e.is_connect() {
        ScrapeError::Connect(e.to_string())
    } else {
        ScrapeError::Request(e.to_string())
    }
}
