//! The single-threaded heart of the service: ingest, per-series detectors,
//! incidents, maintenance — everything behind the service's one lock.
//!
//! Everything here is synchronous and takes its clock as an argument, so
//! the benches drive it directly (the `scoring` bench measures
//! [`Core::score`] from `StepPoint` to verdict plus incident bookkeeping).

use std::collections::{BTreeMap, HashMap, HashSet};

use argus_common::otlp::Payload;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use crate::engine::{EngineConfig, SeriesDetector};
use crate::incident::alert::{AlertingConfig, alert_key, render};
use crate::incident::{Event, INCIDENT_TEMPLATES, Incident, Incidents, TemplateRef};
use crate::ingest::{Ingest, IngestStats, StepPoint};
use crate::maintenance::Maintenance;
use crate::outputs::{Links, Row, rank, top_n};
use crate::registry::{SeriesId, SeriesKey};
use crate::scoring::{RecentPoint, SeriesState};
use crate::snapshot::{SeriesIn, display_key};
use crate::template::TemplateId;

/// A restored series waiting for its data to come back.
#[derive(Debug)]
pub(crate) struct Pending {
    pub signal: argus_common::otlp::Signal,
    pub detector: SeriesDetector,
    pub recent: Vec<RecentPoint>,
    pub incident: Option<u64>,
}

/// What scoring one batch produced.
#[derive(Debug, Default)]
pub struct Scored {
    pub points: u64,
    pub maintenance: u64,
    pub claimed: u64,
    /// Newest step start scored.
    pub newest: Option<i64>,
}

/// What alerting and remediation must do after a pass (done outside the
/// lock).
#[derive(Debug, Default)]
pub struct Outbox {
    pub fire: Vec<(crate::alert::AlertKey, crate::alert::Alert, String)>,
    pub resolve: Vec<(crate::alert::AlertKey, i64, String)>,
    /// Newly opened: (incident id, alert labels, annotations).
    pub remediate: Vec<(String, BTreeMap<String, String>, BTreeMap<String, String>)>,
    pub opened: Vec<Incident>,
    pub resolved: Vec<Incident>,
}

/// FNV-1a 64 of a series' display key: the stable `series_id`.
pub fn key_hash(display: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in display.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// See the module docs.
#[derive(Debug)]
pub struct Core {
    pub ingest: Ingest<SeriesState>,
    pub engine: EngineConfig,
    pub incidents: Incidents,
    pub maintenance: Maintenance,
    pub(crate) pending: HashMap<String, Pending>,
    /// Data time after which unclaimed restored series are dropped.
    pub(crate) pending_until: i64,
    recent_points: usize,
    /// Event clock (watermark), unix seconds; 0 until data came.
    pub event_clock: i64,
    alerting: AlertingConfig,
    links: Links,
    /// Round-robin position of the template refresh.
    template_cursor: u64,
}

impl Core {
    pub fn new(
        ingest: Ingest<SeriesState>,
        engine: EngineConfig,
        incidents: Incidents,
        maintenance: Maintenance,
        recent_points: usize,
        alerting: AlertingConfig,
        links: Links,
    ) -> Self {
        Core {
            ingest,
            engine,
            incidents,
            maintenance,
            pending: HashMap::new(),
            pending_until: i64::MAX,
            recent_points,
            event_clock: 0,
            alerting,
            links,
            template_cursor: 0,
        }
    }

    /// Ingests one payload at `now` (unix seconds).
    pub fn ingest(&mut self, payload: &Payload, now: i64) -> IngestStats {
        self.ingest.ingest(payload, now)
    }

    /// Moves the event clock for a payload (see `scoring` docs). Returns
    /// whether a step closed.
    pub fn advance_event_clock(&mut self, payload: &Payload, wall: i64) -> bool {
        let Some(newest) = newest_secs(payload) else {
            return false;
        };
        let max_future = self.ingest.config().max_future().as_secs() as i64;
        let grace = self.ingest.config().grace().as_secs() as i64;
        let step = self.ingest.step();
        let target = newest.min(wall + max_future) - max_future;
        if target <= self.event_clock {
            return false;
        }
        let before = (self.event_clock - grace).div_euclid(step);
        self.event_clock = target;
        (target - grace).div_euclid(step) != before
    }

    /// Scores one closed step point of series `p.series`.
    pub fn score(&mut self, p: &StepPoint, out: &mut Scored) {
        let id = p.series;
        let needs_init = match self.ingest.registry().state(id) {
            Some(s) => s.detector.is_none(),
            None => return, // evicted between flush and scoring
        };
        if needs_init {
            let Some(key) = self.ingest.key(id) else {
                return;
            };
            let display = key.to_string();
            let signal = key.signal();
            let restored = self.pending.remove(&display).filter(|r| r.signal == signal);
            let st = self.ingest.state_mut(id).expect("present above");
            st.key_hash = key_hash(&display);
            match restored {
                Some(r) => {
                    st.detector = Some(Box::new(r.detector));
                    st.recent = r.recent.into_iter().collect();
                    if let Some(seq) = r.incident
                        && self.incidents.rebind(seq, &display, id)
                    {
                        st.incident = Some(seq);
                    }
                    out.claimed += 1;
                }
                None => st.detector = Some(Box::new(SeriesDetector::new(&self.engine))),
            }
        }
        let maint = self.maintenance.any_active(p.ts)
            && self
                .ingest
                .key(id)
                .is_some_and(|k| self.maintenance.covers(k, p.ts));
        let st = self.ingest.state_mut(id).expect("present above");
        let det = st.detector.as_mut().expect("set above");
        let verdict = if maint {
            det.peek(&self.engine, p.ts, p.value)
        } else {
            det.update(&self.engine, p.ts, p.value)
        };
        st.push_recent(
            RecentPoint::new(p.ts, p.value, &verdict, maint),
            self.recent_points,
        );
        let link = st.incident;
        out.points += 1;
        out.maintenance += maint as u64;
        out.newest = Some(out.newest.map_or(p.ts, |n| n.max(p.ts)));
        let new_link = match link {
            Some(seq) => self
                .incidents
                .member_point(seq, id, p, &verdict, maint)
                .then_some(seq),
            None if verdict.onset && !maint => {
                let key: SeriesKey = self.ingest.key(id).expect("present").clone();
                self.incidents.onset(id, &key, p, &verdict)
            }
            None => None,
        };
        if new_link != link
            && let Some(st) = self.ingest.state_mut(id)
        {
            st.incident = new_link;
        }
    }

    /// After a pass: evictions, incident resolution, pending expiry,
    /// window pruning. `now` is the scoring clock.
    pub fn housekeeping(&mut self, now: i64) {
        for e in self.ingest.evict_idle(now) {
            if let Some(seq) = e.state.incident {
                self.incidents
                    .member_gone(seq, &e.key.to_string(), e.last_update);
            }
        }
        if now > self.pending_until && !self.pending.is_empty() {
            tracing::info!(
                series = self.pending.len(),
                "restored series whose data did not come back within idle_after are dropped"
            );
            for (display, p) in self.pending.drain() {
                if let Some(seq) = p.incident {
                    self.incidents.member_gone(seq, &display, now);
                }
            }
        }
        self.incidents.tick(now);
        self.maintenance.prune(now);
    }

    /// Recomputes the log templates of up to `budget` open incidents
    /// (round robin): logs arrive after the spans they explain, so an
    /// incident's templates are refreshed while it is open, not only when
    /// it changes. A changed set re-sends the alert.
    pub fn refresh_templates(&mut self, budget: usize) {
        let mut seqs: Vec<u64> = self.incidents.open().iter().map(|i| i.seq).collect();
        if seqs.is_empty() {
            return;
        }
        seqs.sort_unstable();
        let start = seqs.partition_point(|&s| s <= self.template_cursor);
        let n = budget.min(seqs.len());
        for k in 0..n {
            let seq = seqs[(start + k) % seqs.len()];
            self.template_cursor = seq;
            let Some(inc) = self.incidents.get(seq) else {
                continue;
            };
            let t = self.templates_for(inc);
            if self.incidents.set_templates(seq, t) {
                self.incidents.mark_changed(seq);
            }
        }
    }

    /// Turns incident events into alerts and remediation work.
    pub fn outbox(&mut self) -> Outbox {
        let mut out = Outbox::default();
        for ev in self.incidents.take_events() {
            match ev {
                Event::Opened(seq) | Event::Changed(seq) => {
                    let templates = match self.incidents.get(seq) {
                        Some(inc) => self.templates_for(inc),
                        None => continue,
                    };
                    self.incidents.set_templates(seq, templates);
                    let Some(inc) = self.incidents.get(seq) else {
                        continue;
                    };
                    let alert = render(&self.alerting, &self.links, inc);
                    if matches!(ev, Event::Opened(_)) {
                        out.remediate.push((
                            inc.id.clone(),
                            alert.labels.clone(),
                            alert.annotations.clone(),
                        ));
                        out.opened.push(inc.clone());
                    }
                    out.fire
                        .push((alert_key(&self.alerting, inc), alert, inc.id.clone()));
                }
                Event::Resolved(seq) => {
                    let Some(inc) = self.incidents.get(seq) else {
                        continue;
                    };
                    out.resolve.push((
                        alert_key(&self.alerting, inc),
                        inc.resolved_at.unwrap_or(inc.started_at),
                        inc.id.clone(),
                    ));
                    out.resolved.push(inc.clone());
                }
            }
        }
        out
    }

    /// The log templates an incident names (see [`crate::incident`]).
    fn templates_for(&self, inc: &Incident) -> Vec<TemplateRef> {
        let miner = self.ingest.templates();
        let mut out: Vec<TemplateRef> = Vec::new();
        let add = |id: TemplateId, why: &str, out: &mut Vec<TemplateRef>| {
            let hex = id.to_string();
            if out.len() >= INCIDENT_TEMPLATES || out.iter().any(|t| t.id == hex) {
                return;
            }
            if let Some(t) = miner.get(id) {
                out.push(TemplateRef {
                    id: hex,
                    service: t.service().to_string(),
                    text: t.text(),
                    why: why.to_string(),
                });
            }
        };
        for m in inc.top_members() {
            if let Some(t) = m.labels.get("template").and_then(|t| t.parse().ok()) {
                add(t, "series", &mut out);
            }
            for t in m.template_ids.iter().filter_map(|t| t.parse().ok()) {
                add(t, "series", &mut out);
            }
        }
        let traces: HashSet<[u8; 16]> = inc
            .trace_ids()
            .iter()
            .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
            .collect();
        if !traces.is_empty() {
            for t in miner.iter() {
                if out.len() >= INCIDENT_TEMPLATES {
                    break;
                }
                if t.trace_ids().iter().any(|x| traces.contains(x)) {
                    add(t.id(), "traces", &mut out);
                }
            }
        }
        out
    }

    /// The per-series outputs table and the number of series learning.
    pub fn output_rows(&self, max: usize) -> (Vec<Row>, i64) {
        let mut learning = 0i64;
        let mut cands: Vec<(SeriesId, (bool, i32, u64))> = Vec::new();
        for s in self.ingest.registry().iter() {
            let Some(last) = s.state.last() else { continue };
            if last.learning() {
                learning += 1;
            }
            cands.push((
                s.id,
                rank(last.anomalous(), last.score as f64, s.state.key_hash),
            ));
        }
        let picked = top_n(cands, max, |c| c.1);
        let rows = picked
            .into_iter()
            .filter_map(|(id, _)| {
                let s = self.ingest.series(id)?;
                let last = s.state.last()?;
                Some(Row {
                    series: s.key.name().to_string(),
                    service: s.key.service().to_string(),
                    namespace: s.key.label("namespace").unwrap_or("").to_string(),
                    signal: s.key.signal(),
                    series_id: s.state.key_hash,
                    score: last.score as f64,
                    value: last.value,
                    expected: last.expected as f64,
                    lower: last.lower as f64,
                    upper: last.upper as f64,
                })
            })
            .collect();
        (rows, learning)
    }

    /// Restores a snapshot's series (lazily claimed) and incidents.
    pub(crate) fn restore_series(&mut self, series: Vec<SeriesIn>, until: i64) {
        self.pending_until = until;
        for s in series {
            let display = display_key(
                &s.name,
                s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            self.pending.insert(
                display,
                Pending {
                    signal: s.signal,
                    detector: s.detector,
                    recent: s.recent,
                    incident: s.incident,
                },
            );
        }
    }

    /// "Not an anomaly" for one series, live or still pending.
    pub fn feedback_series(&mut self, id: Option<SeriesId>, display: &str) -> bool {
        if let Some(id) = id
            && let Some(det) = self.ingest.state_mut(id).and_then(|s| s.detector.as_mut())
        {
            det.feedback(&self.engine);
            return true;
        }
        if display.is_empty() {
            return false;
        }
        if let Some(p) = self.pending.get_mut(display) {
            p.detector.feedback(&self.engine);
            return true;
        }
        // A restored member whose id was never bound: find it by key.
        let found = self
            .ingest
            .registry()
            .iter()
            .find(|s| s.key.to_string() == display)
            .map(|s| s.id);
        match found
            .and_then(|id| self.ingest.state_mut(id))
            .and_then(|s| s.detector.as_mut())
        {
            Some(det) => {
                det.feedback(&self.engine);
                true
            }
            None => false,
        }
    }
}

/// The newest item timestamp in a payload, unix seconds (rounded up, so a
/// step's last item closes nothing early).
pub fn newest_secs(payload: &Payload) -> Option<i64> {
    let mut newest: u64 = 0;
    match payload {
        Payload::Traces(r) => {
            for s in r
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
            {
                newest = newest.max(s.end_time_unix_nano);
            }
        }
        Payload::Logs(r) => {
            for l in r
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
            {
                let t = if l.time_unix_nano != 0 {
                    l.time_unix_nano
                } else {
                    l.observed_time_unix_nano
                };
                newest = newest.max(t);
            }
        }
        Payload::Metrics(r) => {
            for m in r
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                let t = match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.iter().map(|p| p.time_unix_nano).max(),
                    Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.time_unix_nano).max(),
                    Some(Data::Histogram(h)) => {
                        h.data_points.iter().map(|p| p.time_unix_nano).max()
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        h.data_points.iter().map(|p| p.time_unix_nano).max()
                    }
                    Some(Data::Summary(s)) => s.data_points.iter().map(|p| p.time_unix_nano).max(),
                    None => None,
                };
                newest = newest.max(t.unwrap_or(0));
            }
        }
    }
    (newest > 0).then(|| newest.div_ceil(1_000_000_000).min(i64::MAX as u64) as i64)
}
