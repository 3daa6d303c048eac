//! The detector's ingest: OTLP payloads in, one value per series per step
//! out, with the context an incident needs (exemplar trace ids, log
//! templates).
//!
//! ```text
//!  Payload ──▶ Ingest::ingest(payload, now) ──▶ IngestStats (accepted / rejected by reason)
//!                │  metrics ─ gauge · rate · histogram quantiles      (metric)
//!                │  spans ─── RED per service/operation/kind          (span)
//!                │  logs ──── counts · Drain templates · novelty      (log, crate::template)
//!                ▼
//!   per-step accumulators of each group (group) ── bounded by the series registry (crate::registry)
//!                ▼
//!  Ingest::flush(now) ──▶ Vec<StepPoint> for every closed step  ──▶ the engine
//! ```
//!
//! # Series
//!
//! | signal | name | labels | value per step |
//! |---|---|---|---|
//! | metrics | `<name>` (gauge, non-monotonic cumulative sum) | resource + attributes | mean of the step's points |
//! | metrics | `<name>.rate` (monotonic sum, any delta sum) | resource + attributes | increase per second (reset-aware) |
//! | metrics | `<name>.rate`, `.mean`, `.p50/.p90/.p99` (histogram, exponential histogram) | resource + attributes | count/s, Δsum/Δcount, quantiles of the step's bucket increases |
//! | metrics | `<name>.rate`, `.mean`, `.p<q>` (summary) | resource + attributes | count/s, Δsum/Δcount, mean of each reported quantile |
//! | traces | `span.requests`, `span.errors` | `service`, `operation`, `span_kind` + `group_by` | per second (zero-filled) |
//! | traces | `span.error_ratio` | same | errors / requests (steps with requests) |
//! | traces | `span.latency.p50/.p90/.p99` | same | seconds, from a 2 %-accurate [sketch] |
//! | logs | `log.records` | `service`, `severity` (`error`/`warn`/`info`/`other`) + `group_by` | records per second (zero-filled) |
//! | logs | `log.template` | `service`, `template` + `group_by` | records per second of one template (zero-filled) |
//! | logs | `log.new_error_templates` | `service` + `group_by` | number of warn/error records in the step whose template is new or rare (zero-filled) |
//!
//! Resource labels are described in `resource` (`service`, `namespace`,
//! `pod`, `node`); which series are zero-filled, and why metrics are not,
//! in `group`; the rate of cumulative streams in `stream`; quantiles from
//! buckets in [`histogram`].
//!
//! **RED** counts SERVER and CONSUMER spans and root spans, by default
//! ([`SpansConfig`] explains why). A span belongs to the step of its end.
//! Error = status code ERROR. Each RED point carries exemplars: the
//! slowest spans' trace ids (latency series), the slowest error spans'
//! (error series), both (requests).
//!
//! **Logs**: a record's severity bucket comes from `severity_number`, else
//! from `severity_text` (`ERROR`, `warning`, `crit`, …). Its body — a
//! string, or the `message`/`msg`/`log` field of a map body — is mined by
//! [Drain](crate::template); the record's trace id is kept with its
//! template. A template gets its own `log.template` series once it matched
//! `template_series_min_count` records, or at its first error record (this
//! bounds template series to what recurs or matters). The
//! **new-or-rare error** signal counts warn/error/fatal records whose
//! template was first seen less than `novelty.new_for` ago, or which are
//! among the first `novelty.rare_below` records of their template within
//! the template window (24 h): a never-seen error fires the step it appears
//! in, its thousandth repeat does not.
//!
//! # Time
//!
//! `now` (unix seconds) is always passed in: the ingest never reads a
//! clock, so tests drive it and a replay is deterministic. The late/future
//! rule and the watermark are in `step`: items are bucketed by their own
//! timestamp, a step closes when the clock passes its end plus `grace`,
//! late items are dropped and counted, items more than `max_future` ahead
//! are dropped and counted, and any order within open steps gives the same
//! values.
//!
//! # Bounds
//!
//! Everything the ingest holds is bounded by the registry
//! (`max_series`, `max_per_name`, `idle_after`), the template miner
//! (`max_templates`), `max_streams` per metric series, a fixed number of
//! open steps per series, and small fixed caps on exemplars and templates
//! per point. [`Ingest::evict_idle`] hands back the caller's state of
//! evicted series; call it periodically, e.g. after each flush (it scans
//! the registry: ~0.15 ms per 100 000 series, bench
//! `registry/evict_idle_scan`).
//!
//! # Threading
//!
//! [`Ingest`] is a single-threaded core (`&mut self`); the caller puts it
//! behind a lock or in an actor. The `ingest` bench measures spans/s and
//! log lines/s through it.

use argus_common::otlp::{Payload, Signal};

use crate::registry::{Evicted, Registry, SeriesId, SeriesKey, SeriesRef, SeriesTelemetry};
use crate::template::{Template, TemplateId, TemplateMiner};

pub mod config;
pub(crate) mod group;
pub mod histogram;
pub mod latency;
mod log;
mod metric;
pub(crate) mod resource;
pub mod sketch;
mod span;
pub(crate) mod step;
mod stream;
pub mod telemetry;

pub use config::{
    ConfigError, IngestConfig, LogsConfig, MetricsConfig, NoveltyConfig, SeriesConfig,
    SpanKindName, SpansConfig, quantile_suffix,
};
pub use log::Severity;
pub use resource::{GroupBy, UNKNOWN_SERVICE};
pub use telemetry::Reason;

use group::{EmitCtx, Groups};
use step::{NANOS, StepClock, Timing};
use telemetry::Telemetry;

/// A W3C / OTLP trace id.
pub type TraceId = [u8; 16];

/// One series' value for one closed step: what the engine scores.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPoint {
    pub series: SeriesId,
    /// Start of the step, unix seconds.
    pub ts: i64,
    pub value: f64,
    /// Trace ids behind this value (slowest spans, error spans, largest
    /// histogram exemplars, recent log records), most telling first; a
    /// handful at most.
    pub exemplars: Vec<TraceId>,
    /// Log templates behind this value (log series only), most frequent
    /// first.
    pub templates: Vec<TemplateId>,
}

/// What one payload did: the receiver's partial-success answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestStats {
    pub signal: Signal,
    /// Items in the payload (spans, log records, metric data points).
    pub received: u64,
    /// Items taken, including `ignored` ones.
    pub accepted: u64,
    /// Valid items that make no series by design (CLIENT spans, data
    /// points flagged "no recorded value", a disabled signal).
    pub ignored: u64,
    rejected: [u64; Reason::ALL.len()],
}

impl IngestStats {
    pub fn new(signal: Signal) -> Self {
        IngestStats {
            signal,
            received: 0,
            accepted: 0,
            ignored: 0,
            rejected: [0; Reason::ALL.len()],
        }
    }

    /// Items rejected, all reasons.
    pub fn rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }

    pub fn rejected_for(&self, reason: Reason) -> u64 {
        self.rejected[reason as usize]
    }

    /// `(reason, count)` for every reason with rejections.
    pub fn rejections(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL
            .into_iter()
            .map(|r| (r, self.rejected[r as usize]))
            .filter(|(_, n)| *n > 0)
    }

    /// The OTLP partial-success `error_message`, when something was
    /// rejected: `"3 of 10 spans rejected: late=2, series_limit=1"`.
    pub fn message(&self) -> Option<String> {
        let n = self.rejected();
        if n == 0 {
            return None;
        }
        let what = match self.signal {
            Signal::Traces => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
        };
        let reasons: Vec<String> = self
            .rejections()
            .map(|(r, n)| format!("{}={n}", r.as_str()))
            .collect();
        Some(format!(
            "{n} of {} {what} rejected: {}",
            self.received,
            reasons.join(", ")
        ))
    }

    pub(crate) fn accept(&mut self) {
        self.received += 1;
        self.accepted += 1;
    }

    pub(crate) fn ignore(&mut self) {
        self.accept();
        self.ignored += 1;
    }

    pub(crate) fn reject(&mut self, r: Reason) {
        self.received += 1;
        self.rejected[r as usize] += 1;
    }

    pub(crate) fn timing(&mut self, t: Timing) {
        self.reject(match t {
            Timing::Late => Reason::Late,
            Timing::Future => Reason::Future,
        })
    }
}

/// OTLP trace id bytes, if they are a valid (16-byte, non-zero) id.
pub(crate) fn trace_id(bytes: &[u8]) -> Option<TraceId> {
    let t: TraceId = bytes.try_into().ok()?;
    (t != [0; 16]).then_some(t)
}

impl IngestConfig {
    /// Validates and builds the ingest, registering its self-metrics in
    /// `registry` (a sub-registry already prefixed, e.g. `argus_detector`).
    pub fn build<S: Default>(
        &self,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Ingest<S>, ConfigError> {
        self.validate()?;
        let series = SeriesTelemetry::register(registry);
        let telemetry = Telemetry::register(registry);
        let latency =
            latency::SpanLatency::register(registry, self.spans.latency_histogram_services);
        let mut ingest = Ingest::with_parts(self.clone(), series, telemetry);
        ingest.latency = latency;
        Ok(ingest)
    }
}

/// OTLP in, per-step series out. See the module doc.
#[derive(Debug)]
pub struct Ingest<S = ()> {
    cfg: IngestConfig,
    clock: StepClock,
    registry: Registry<S>,
    groups: Groups,
    miner: TemplateMiner,
    telemetry: Telemetry,
    /// `span_latency_seconds` (inert unless built with a registry).
    latency: latency::SpanLatency,
    /// Unix ns of the first clock: cumulative counters started after it
    /// count in full on their first point.
    born_after: Option<i64>,
}

impl<S: Default> Ingest<S> {
    /// An ingest whose self-metrics are not exported (tests, tools).
    pub fn new(cfg: IngestConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self::with_parts(
            cfg,
            SeriesTelemetry::default(),
            Telemetry::default(),
        ))
    }

    fn with_parts(cfg: IngestConfig, series: SeriesTelemetry, telemetry: Telemetry) -> Self {
        let clock = StepClock::new(
            cfg.step.as_secs() as i64,
            cfg.grace().as_secs() as i64,
            cfg.max_future().as_secs() as i64,
        );
        Ingest {
            registry: Registry::with_telemetry(cfg.series.limits(), series),
            miner: TemplateMiner::new(cfg.logs.templates.clone()),
            clock,
            groups: Groups::default(),
            telemetry,
            latency: latency::SpanLatency::default(),
            born_after: None,
            cfg,
        }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.cfg
    }

    /// Step length in seconds.
    pub fn step(&self) -> i64 {
        self.clock.step()
    }

    /// The ingest clock: the largest `now` seen (unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    fn advance(&mut self, now: i64) {
        self.clock.advance(now);
        if self.born_after.is_none() {
            self.born_after = Some(now.saturating_mul(NANOS));
        }
    }

    /// Turns one payload's items into step accumulators. `now` is the
    /// current time, unix seconds.
    pub fn ingest(&mut self, payload: &Payload, now: i64) -> IngestStats {
        self.advance(now);
        let mut st = IngestStats::new(payload.signal());
        match payload {
            Payload::Metrics(r) => self.ingest_metrics(r, &mut st),
            Payload::Traces(r) => self.ingest_traces(r, &mut st),
            Payload::Logs(r) => self.ingest_logs(r, &mut st),
        }
        let now = self.clock.now();
        self.telemetry.received(st.signal, st.received);
        for (r, n) in st.rejections() {
            self.telemetry.rejected(st.signal, r, n, now);
        }
        st
    }

    /// Every value of every step closed by `now` (see the module doc),
    /// sorted by step, then series.
    pub fn flush(&mut self, now: i64) -> Vec<StepPoint> {
        self.advance(now);
        let ctx = EmitCtx {
            step: self.clock.step(),
            quantiles: &self.cfg.quantiles,
            idle_steps: self.cfg.series.idle_after.as_secs() as i64 / self.clock.step(),
            born_after: self.born_after.unwrap_or(0),
            slowest_exemplars: self.cfg.spans.slowest_exemplars,
            error_exemplars: self.cfg.spans.error_exemplars,
        };
        let mut out = Vec::new();
        self.groups
            .flush(&mut self.registry, self.clock.watermark(), &ctx, &mut out);
        out.sort_unstable_by_key(|p| (p.ts, p.series));
        self.telemetry.templates(self.miner.len());
        out
    }

    /// Removes every series without data for `series.idle_after`, with the
    /// other series of the same source, and hands back their state.
    pub fn evict_idle(&mut self, now: i64) -> Vec<Evicted<S>> {
        self.advance(now);
        let now = self.clock.now();
        let idle = self.cfg.series.idle_after.as_secs() as i64;
        self.groups.touch_pending(&mut self.registry, now);
        let mut out = self.registry.evict_idle(now, idle);
        let mut siblings = Vec::new();
        for e in &out {
            for other in self.groups.remove_with(e.id) {
                siblings.extend(self.registry.evict(other));
            }
        }
        out.extend(siblings);
        // Producer streams that went quiet inside a live series (a pod
        // replaced by another with the same labels).
        for g in self.groups.iter_mut() {
            g.streams
                .retain(|s| now.saturating_sub(s.last_seen) <= idle);
        }
        out
    }

    pub fn registry(&self) -> &Registry<S> {
        &self.registry
    }

    pub fn series(&self, id: SeriesId) -> Option<SeriesRef<'_, S>> {
        self.registry.get(id)
    }

    pub fn key(&self, id: SeriesId) -> Option<&SeriesKey> {
        self.registry.key(id)
    }

    /// The caller's state of a series (e.g. its detector).
    pub fn state_mut(&mut self, id: SeriesId) -> Option<&mut S> {
        self.registry.state_mut(id)
    }

    pub fn templates(&self) -> &TemplateMiner {
        &self.miner
    }

    pub fn template(&self, id: TemplateId) -> Option<&Template> {
        self.miner.get(id)
    }

    /// Groups (sources) currently aggregated.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}
