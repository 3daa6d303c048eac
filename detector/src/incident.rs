//! Incidents: concurrent anomalies on one entity, grouped, explained, and
//! closed when everything recovered.
//!
//! # Entity
//!
//! A series' entity is its first label among `entity_labels` (default
//! `service`, then `pod`, then `node`) with a meaningful value
//! (`unknown_service…` is not one), qualified by its `scope_labels`
//! (default `namespace`): `namespace=prod,service=checkout`. A series with
//! none of them is its own entity. Everything about one entity is one
//! incident at a time, whatever the signal: the latency p99, the error
//! ratio and a new error log template of `checkout` page once.
//!
//! # Life of an incident
//!
//! ```text
//!            onset on entity E, no open incident for E
//!   (none) ───────────────────────────────────────────▶ OPEN ◀─┐ onset on E (joins,
//!                                                         │     │ or re-joins a
//!        every member recovered (engine hysteresis)       │     │ recovered member)
//!        → quiet since t_r                                ▼     │
//!                                                  OPEN, quiet ─┘
//!                  no onset on E within `window` of t_r  │
//!                                                        ▼
//!                                  RESOLVED (resolved_at = t_r)
//! ```
//!
//! - A series **joins** at its engine **onset** (the point that opens its
//!   episode) and stays an active member while the engine calls it
//!   anomalous. It **recovers** when its episode closes — the engine's
//!   hysteresis: `recover_points` consecutive points below `recover` — or
//!   when a maintenance window starts covering it, or when it is evicted
//!   for idling.
//! - The incident **resolves** when all its members have recovered and no
//!   new onset came on the entity for `window` after the last recovery.
//!   The resolution time is the last recovery (the truth), not the end of
//!   the quiet window. An onset within the window re-joins the same
//!   incident: anomalies less than `window` apart are one problem, one page.
//! - **Feedback** ("not an anomaly") on an incident dismisses it: resolved
//!   at once, its members desensitised by the engine; series still inside
//!   their episode do not re-open anything until their next onset.
//!
//! All times are data times (step starts), so `wall` and `event` clocks
//! give the same incidents for the same data.
//!
//! # Explanation
//!
//! Per member: its onset, its **peak** point (highest score: observed,
//! expected, band), its last point, the models that fired, and the
//! exemplar trace ids of its most anomalous points. Per incident: the
//! members by peak score (top contributing series), the trace ids of the
//! top members, the log templates seen (set by the service: template
//! series among the members, and templates whose recent trace ids overlap
//! the incident's), the severity, escalations.
//!
//! # Bounds
//!
//! `max_members` per incident (later joiners are counted, not listed),
//! five trace ids per member, ten per incident, ten templates; resolved
//! incidents are kept for `keep_resolved` (data time), at most
//! `max_resolved`.

pub mod alert;
pub mod url;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use argus_common::otlp::Signal;
use serde::{Deserialize, Serialize};

use crate::engine::{ModelKind, Verdict};
use crate::ingest::{StepPoint, TraceId, UNKNOWN_SERVICE};
use crate::registry::{SeriesId, SeriesKey};

/// Internal handle of an incident (dense, never reused in a process;
/// snapshots keep it).
pub type IncidentSeq = u64;

/// `incidents:` — grouping and retention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Anomalies on one entity less than this apart are one incident; an
    /// incident resolves this long after its last member recovered.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The entity label, in order of preference.
    pub entity_labels: Vec<String>,
    /// Labels that qualify the entity (the same service in two namespaces
    /// is two entities).
    pub scope_labels: Vec<String>,
    /// Members listed per incident.
    pub max_members: usize,
    /// Resolved incidents stay listed this long (data time) …
    #[serde(with = "humantime_serde")]
    pub keep_resolved: Duration,
    /// … and at most this many.
    pub max_resolved: usize,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            window: Duration::from_secs(120),
            entity_labels: vec!["service".into(), "pod".into(), "node".into()],
            scope_labels: vec!["namespace".into()],
            max_members: 50,
            keep_resolved: Duration::from_secs(3600),
            max_resolved: 1000,
        }
    }
}

impl IncidentsConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if self.window.is_zero() {
            p.push(format!("{path}.window: must be more than 0s"));
        }
        if self.entity_labels.is_empty() {
            p.push(format!(
                "{path}.entity_labels: name at least one label (service, pod, node)"
            ));
        }
        for (field, list) in [
            ("entity_labels", &self.entity_labels),
            ("scope_labels", &self.scope_labels),
        ] {
            for (i, l) in list.iter().enumerate() {
                if !crate::alert::is_label_name(l) {
                    p.push(format!("{path}.{field}[{i}]: not a label name: {l:?}"));
                } else if list[..i].contains(l) {
                    p.push(format!("{path}.{field}[{i}]: {l:?} is listed twice"));
                }
            }
        }
        if self.max_members == 0 || self.max_members > 1000 {
            p.push(format!(
                "{path}.max_members: must be between 1 and 1000, got {}",
                self.max_members
            ));
        }
        if self.max_resolved > 100_000 {
            p.push(format!("{path}.max_resolved: at most 100000"));
        }
        p
    }
}

/// What an incident is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// Scope labels present on the opening series (`namespace`).
    pub scope: Vec<(String, String)>,
    /// `service`, `pod`, `node` — or `series` for a series of its own.
    pub label: String,
    pub value: String,
}

impl Entity {
    /// `namespace=prod,service=checkout`: the grouping key.
    pub fn key(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.scope {
            s.push_str(k);
            s.push('=');
            s.push_str(v);
            s.push(',');
        }
        s.push_str(&self.label);
        s.push('=');
        s.push_str(&self.value);
        s
    }
}

/// A meaningful entity value: `unknown_service` (what SDKs report without
/// `service.name`) identifies nothing.
fn meaningful(label: &str, v: &str) -> bool {
    !(v.is_empty() || label == "service" && v.starts_with(UNKNOWN_SERVICE))
}

/// One point, as an explanation quotes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    pub ts: i64,
    pub observed: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    pub score: f64,
}

impl Explain {
    fn of(p: &StepPoint, v: &Verdict) -> Self {
        Explain {
            ts: p.ts,
            observed: p.value,
            expected: v.expected,
            lower: v.lower,
            upper: v.upper,
            score: v.score,
        }
    }
}

/// Trace ids kept per member (peak, newest point) and per incident.
pub const MEMBER_TRACES: usize = 3;
pub const RECENT_TRACES: usize = 2;
pub const INCIDENT_TRACES: usize = 10;
/// Log templates named per incident.
pub const INCIDENT_TEMPLATES: usize = 10;

/// One series of an incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// `name{label="value",…}`.
    pub series: String,
    pub name: String,
    pub signal: Signal,
    pub labels: BTreeMap<String, String>,
    /// The registry id in this process (not stable across restarts).
    #[serde(skip)]
    pub id: Option<SeriesId>,
    pub onset: i64,
    /// Still anomalous.
    pub active: bool,
    pub recovered_at: Option<i64>,
    pub peak: Explain,
    pub last: Explain,
    /// Models that fired on any of its anomalous points.
    pub models: Vec<ModelKind>,
    /// Exemplar trace ids of its most anomalous point (the peak), hex.
    pub trace_ids: Vec<String>,
    /// Exemplar trace ids of its newest anomalous point: what logs being
    /// written now refer to.
    pub recent_trace_ids: Vec<String>,
    /// Log templates behind its points (log series), hex ids.
    pub template_ids: Vec<String>,
}

/// Open or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Open,
    Resolved,
}

/// A log template named by an incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub id: String,
    pub service: String,
    pub text: String,
    /// `series` (its count series is a member) or `traces` (its recent
    /// records share trace ids with the incident).
    pub why: String,
}

/// One incident (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub seq: IncidentSeq,
    pub entity: Entity,
    pub state: IncidentState,
    /// Onset of the first member (data time, unix seconds).
    pub started_at: i64,
    /// Every member recovered at this time (the quiet window runs).
    pub recovered_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// The signal of the series that opened it.
    pub signal: Signal,
    /// `warning`, `critical`, or what an escalation set.
    pub severity: String,
    /// Annotations added by remediation escalations, oldest first.
    pub escalations: Vec<String>,
    /// Closed by "not an anomaly" feedback.
    pub dismissed: bool,
    pub members: Vec<Member>,
    /// Joiners beyond `max_members`, not listed.
    pub members_dropped: u32,
    pub templates: Vec<TemplateRef>,
    /// Bumped on every change an alert should show.
    pub revision: u64,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.state == IncidentState::Open
    }

    /// Highest peak score of any member.
    pub fn max_score(&self) -> f64 {
        self.members
            .iter()
            .map(|m| m.peak.score)
            .fold(0.0, f64::max)
    }

    /// Members by peak score, highest first (top contributing series).
    pub fn top_members(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.iter().collect();
        v.sort_by(|a, b| {
            b.peak
                .score
                .total_cmp(&a.peak.score)
                .then_with(|| a.onset.cmp(&b.onset))
                .then_with(|| a.series.cmp(&b.series))
        });
        v
    }

    /// Exemplar trace ids, the top members' first, unique, at most
    /// [`INCIDENT_TRACES`].
    pub fn trace_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in self.top_members() {
            for t in m.trace_ids.iter().chain(&m.recent_trace_ids) {
                if out.len() < INCIDENT_TRACES && !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
        out
    }

    /// Models that fired on any member.
    pub fn models(&self) -> Vec<ModelKind> {
        ModelKind::ALL
            .into_iter()
            .filter(|k| self.members.iter().any(|m| m.models.contains(k)))
            .collect()
    }

    /// Labels every member shares (plus the entity's): what the alert
    /// may carry without lying about some member.
    pub fn common_labels(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = match self.members.first() {
            Some(m) => m.labels.clone(),
            None => BTreeMap::new(),
        };
        for m in self.members.iter().skip(1) {
            out.retain(|k, v| m.labels.get(k) == Some(v));
        }
        for (k, v) in &self.entity.scope {
            out.insert(k.clone(), v.clone());
        }
        if self.entity.label != "series" {
            out.insert(self.entity.label.clone(), self.entity.value.clone());
        }
        out
    }

    fn member_mut(&mut self, id: SeriesId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == Some(id))
    }

    /// Every member calm: start the quiet window.
    fn check_quiet(&mut self, ts: i64) {
        if self.members.iter().all(|m| !m.active) {
            self.recovered_at.get_or_insert(ts);
        }
    }
}

/// What changed, for alerting and remediation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Opened(IncidentSeq),
    /// A material change (member joined, severity, escalation, a much
    /// higher peak): the alert is updated.
    Changed(IncidentSeq),
    Resolved(IncidentSeq),
}

/// The incident table.
#[derive(Debug)]
pub struct Incidents {
    cfg: IncidentsConfig,
    critical_score: f64,
    open: HashMap<IncidentSeq, Incident>,
    by_entity: HashMap<String, IncidentSeq>,
    /// Oldest first.
    resolved: VecDeque<Incident>,
    next_seq: IncidentSeq,
    events: Vec<Event>,
    /// Max score at the last `Changed`/`Opened`, per open incident.
    announced_score: HashMap<IncidentSeq, f64>,
}

/// A peak this much above the last announced one updates the alert.
const RESCORE: f64 = 0.1;

impl Incidents {
    pub fn new(cfg: IncidentsConfig, critical_score: f64) -> Self {
        Incidents {
            cfg,
            critical_score,
            open: HashMap::new(),
            by_entity: HashMap::new(),
            resolved: VecDeque::new(),
            next_seq: 1,
            events: Vec::new(),
            announced_score: HashMap::new(),
        }
    }

    pub fn config(&self) -> &IncidentsConfig {
        &self.cfg
    }

    /// The entity of a series (see the module docs).
    pub fn entity_of(&self, key: &SeriesKey) -> Entity {
        let scope = self
            .cfg
            .scope_labels
            .iter()
            .filter_map(|l| {
                key.label(l)
                    .filter(|v| !v.is_empty())
                    .map(|v| (l.clone(), v.to_string()))
            })
            .collect();
        for l in &self.cfg.entity_labels {
            if let Some(v) = key.label(l)
                && meaningful(l, v)
            {
                return Entity {
                    scope,
                    label: l.clone(),
                    value: v.to_string(),
                };
            }
        }
        Entity {
            scope,
            label: "series".into(),
            value: key.to_string(),
        }
    }

    /// Drains what happened since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn get(&self, seq: IncidentSeq) -> Option<&Incident> {
        self.open
            .get(&seq)
            .or_else(|| self.resolved.iter().rev().find(|i| i.seq == seq))
    }

    pub fn get_mut(&mut self, seq: IncidentSeq) -> Option<&mut Incident> {
        self.open.get_mut(&seq)
    }

    pub fn by_id(&self, id: &str) -> Option<&Incident> {
        self.open
            .values()
            .find(|i| i.id == id)
            .or_else(|| self.resolved.iter().rev().find(|i| i.id == id))
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Open incidents, oldest first.
    pub fn open(&self) -> Vec<&Incident> {
        let mut v: Vec<&Incident> = self.open.values().collect();
        v.sort_by_key(|i| (i.started_at, i.seq));
        v
    }

    /// Resolved incidents still listed, newest first.
    pub fn resolved(&self) -> impl Iterator<Item = &Incident> + '_ {
        self.resolved.iter().rev()
    }

    /// A point of a series linked to open incident `seq`. Returns whether
    /// the series stays linked (false: it recovered, or the incident is no
    /// longer open).
    pub fn member_point(
        &mut self,
        seq: IncidentSeq,
        id: SeriesId,
        p: &StepPoint,
        v: &Verdict,
        maintenance: bool,
    ) -> bool {
        let critical = self.critical_score;
        let Some(inc) = self.open.get_mut(&seq) else {
            return false;
        };
        let Some(m) = inc.member_mut(id) else {
            return false;
        };
        if maintenance || !v.anomalous {
            m.active = false;
            m.recovered_at = Some(p.ts);
            inc.check_quiet(p.ts);
            return false;
        }
        m.last = Explain::of(p, v);
        for k in v.fired_models() {
            if !m.models.contains(&k) {
                m.models.push(k);
            }
        }
        if v.score > m.peak.score {
            m.peak = m.last;
            if !p.exemplars.is_empty() {
                m.trace_ids = traces(&p.exemplars, MEMBER_TRACES);
            }
        }
        if !p.exemplars.is_empty() {
            m.recent_trace_ids = traces(&p.exemplars, RECENT_TRACES);
        }
        let max = inc.max_score();
        let mut changed = false;
        if max >= critical && inc.severity == "warning" {
            inc.severity = "critical".into();
            changed = true;
        }
        let announced = self.announced_score.get(&seq).copied().unwrap_or(0.0);
        if max >= announced + RESCORE {
            changed = true;
        }
        if changed {
            self.changed(seq);
        }
        true
    }

    /// An onset of series `id` (key `key`) at `p`: joins or opens the
    /// entity's incident. Returns the incident the series is now linked
    /// to (None when it was full).
    pub fn onset(
        &mut self,
        id: SeriesId,
        key: &SeriesKey,
        p: &StepPoint,
        v: &Verdict,
    ) -> Option<IncidentSeq> {
        let entity = self.entity_of(key);
        let ekey = entity.key();
        let member = || Member {
            series: key.to_string(),
            name: key.name().to_string(),
            signal: key.signal(),
            labels: key
                .labels()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            id: Some(id),
            onset: p.ts,
            active: true,
            recovered_at: None,
            peak: Explain::of(p, v),
            last: Explain::of(p, v),
            models: v.fired_models().collect(),
            trace_ids: traces(&p.exemplars, MEMBER_TRACES),
            recent_trace_ids: traces(&p.exemplars, RECENT_TRACES),
            template_ids: p.templates.iter().map(|t| t.to_string()).collect(),
        };
        if let Some(&seq) = self.by_entity.get(&ekey) {
            let max_members = self.cfg.max_members;
            let inc = self
                .open
                .get_mut(&seq)
                .expect("by_entity points at open incidents");
            inc.recovered_at = None;
            let series = key.to_string();
            if let Some(m) = inc.members.iter_mut().find(|m| m.series == series) {
                // Re-joins after recovering within the window.
                m.id = Some(id);
                m.active = true;
                m.recovered_at = None;
                m.last = Explain::of(p, v);
                if v.score > m.peak.score && !p.exemplars.is_empty() {
                    m.trace_ids = traces(&p.exemplars, MEMBER_TRACES);
                }
                if v.score > m.peak.score {
                    m.peak = m.last;
                }
                if !p.exemplars.is_empty() {
                    m.recent_trace_ids = traces(&p.exemplars, RECENT_TRACES);
                }
            } else if inc.members.len() < max_members {
                inc.members.push(member());
            } else {
                inc.members_dropped += 1;
                return None;
            }
            if inc.max_score() >= self.critical_score {
                inc.severity = "critical".into();
            }
            self.changed(seq);
            return Some(seq);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let m = member();
        let mut inc = Incident {
            id: uuid::Uuid::now_v7().simple().to_string(),
            seq,
            entity,
            state: IncidentState::Open,
            started_at: p.ts,
            recovered_at: None,
            resolved_at: None,
            signal: key.signal(),
            severity: "warning".into(),
            escalations: Vec::new(),
            dismissed: false,
            members: vec![m],
            members_dropped: 0,
            templates: Vec::new(),
            revision: 1,
        };
        if inc.max_score() >= self.critical_score {
            inc.severity = "critical".into();
        }
        self.announced_score.insert(seq, inc.max_score());
        self.open.insert(seq, inc);
        self.by_entity.insert(ekey, seq);
        self.events.push(Event::Opened(seq));
        Some(seq)
    }

    /// Re-announces an open incident (after a restart, so its alert is
    /// sent again at once).
    pub fn mark_changed(&mut self, seq: IncidentSeq) {
        self.changed(seq);
    }

    fn changed(&mut self, seq: IncidentSeq) {
        if let Some(inc) = self.open.get_mut(&seq) {
            inc.revision += 1;
            self.announced_score.insert(seq, inc.max_score());
            if !self.events.contains(&Event::Changed(seq))
                && !self.events.contains(&Event::Opened(seq))
            {
                self.events.push(Event::Changed(seq));
            }
        }
    }

    /// A member series disappeared (idle eviction, or a snapshot's series
    /// never came back): it counts as recovered at `ts`.
    pub fn member_gone(&mut self, seq: IncidentSeq, series: &str, ts: i64) {
        if let Some(inc) = self.open.get_mut(&seq)
            && let Some(m) = inc.members.iter_mut().find(|m| m.series == series)
            && m.active
        {
            m.active = false;
            m.recovered_at = Some(ts);
            inc.check_quiet(ts);
        }
    }

    /// A restored series came back under a new id.
    pub fn rebind(&mut self, seq: IncidentSeq, series: &str, id: SeriesId) -> bool {
        match self.open.get_mut(&seq) {
            Some(inc) => match inc.members.iter_mut().find(|m| m.series == series) {
                Some(m) => {
                    m.id = Some(id);
                    m.active
                }
                None => false,
            },
            None => false,
        }
    }

    /// Resolves incidents quiet for `window` as of `now` (data time), and
    /// forgets resolved ones past retention.
    pub fn tick(&mut self, now: i64) {
        let window = self.cfg.window.as_secs() as i64;
        let due: Vec<IncidentSeq> = self
            .open
            .values()
            .filter(|i| i.recovered_at.is_some_and(|r| now >= r + window))
            .map(|i| i.seq)
            .collect();
        for seq in due {
            let r = self.open[&seq].recovered_at.expect("filtered");
            self.close(seq, r);
        }
        let keep = self.cfg.keep_resolved.as_secs() as i64;
        while self
            .resolved
            .front()
            .is_some_and(|i| i.resolved_at.unwrap_or(0) + keep < now)
            || self.resolved.len() > self.cfg.max_resolved
        {
            self.resolved.pop_front();
        }
    }

    fn close(&mut self, seq: IncidentSeq, at: i64) {
        let Some(mut inc) = self.open.remove(&seq) else {
            return;
        };
        self.by_entity.remove(&inc.entity.key());
        self.announced_score.remove(&seq);
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(at.max(inc.started_at));
        for m in &mut inc.members {
            if m.active {
                m.active = false;
                m.recovered_at = Some(at);
            }
        }
        inc.revision += 1;
        self.resolved.push_back(inc);
        self.events.retain(|e| *e != Event::Changed(seq));
        self.events.push(Event::Resolved(seq));
    }

    /// "Not an anomaly": closes the incident at `now`. Returns its members'
    /// series (for the engine's feedback).
    pub fn dismiss(&mut self, id: &str, now: i64) -> Option<Vec<(Option<SeriesId>, String)>> {
        let seq = self.open.values().find(|i| i.id == id).map(|i| i.seq);
        let members = match seq {
            Some(seq) => {
                let inc = self.open.get_mut(&seq).expect("found");
                inc.dismissed = true;
                let m = inc
                    .members
                    .iter()
                    .map(|m| (m.id, m.series.clone()))
                    .collect();
                self.close(seq, now);
                m
            }
            None => {
                // Feedback on a resolved incident still desensitises.
                let inc = self.resolved.iter_mut().find(|i| i.id == id)?;
                inc.dismissed = true;
                inc.members
                    .iter()
                    .map(|m| (m.id, m.series.clone()))
                    .collect()
            }
        };
        Some(members)
    }

    /// A remediation action did not help: raise the severity, annotate.
    pub fn escalate(&mut self, id: &str, severity: &str, annotation: &str) -> bool {
        let Some(seq) = self.open.values().find(|i| i.id == id).map(|i| i.seq) else {
            return false;
        };
        let inc = self.open.get_mut(&seq).expect("found");
        if !severity.is_empty() {
            inc.severity = severity.to_string();
        }
        if !annotation.is_empty() && !inc.escalations.iter().any(|a| a == annotation) {
            inc.escalations.push(annotation.to_string());
        }
        self.changed(seq);
        true
    }

    /// Sets the templates an incident names; true when they changed.
    pub fn set_templates(&mut self, seq: IncidentSeq, t: Vec<TemplateRef>) -> bool {
        match self.open.get_mut(&seq) {
            Some(inc) if inc.templates != t => {
                inc.templates = t;
                true
            }
            _ => false,
        }
    }

    /// Everything, for a snapshot: (open, resolved, next seq).
    pub fn export(&self) -> (Vec<Incident>, Vec<Incident>, IncidentSeq) {
        (
            self.open().into_iter().cloned().collect(),
            self.resolved.iter().cloned().collect(),
            self.next_seq,
        )
    }

    /// Restores a snapshot's incidents (member ids are re-bound as their
    /// series come back).
    pub fn restore(&mut self, open: Vec<Incident>, resolved: Vec<Incident>, next_seq: IncidentSeq) {
        self.next_seq = self.next_seq.max(next_seq);
        for inc in open {
            self.next_seq = self.next_seq.max(inc.seq + 1);
            self.by_entity.insert(inc.entity.key(), inc.seq);
            self.announced_score.insert(inc.seq, inc.max_score());
            self.open.insert(inc.seq, inc);
        }
        for inc in resolved {
            self.next_seq = self.next_seq.max(inc.seq + 1);
            self.resolved.push_back(inc);
        }
    }
}

fn traces(from: &[TraceId], n: usize) -> Vec<String> {
    from.iter().take(n).map(hex::encode).collect()
}

#[cfg(test)]
mod tests;
