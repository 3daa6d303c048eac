//! Groups: the unit of aggregation, and how a closed step becomes values.
//!
//! One source of data produces several series: a histogram gives
//! `.rate`, `.mean` and one series per quantile; a span operation gives
//! requests, errors, error ratio and latency quantiles. They share one
//! accumulator per step (one latency sketch, not three), so the ingest
//! aggregates per **group** and emits each group's series together.
//!
//! A group is found through its **primary** series (the first output) in
//! the registry, so there is one hash lookup per item and no second index.
//! All outputs are registered at once (all or none, see
//! [`Registry::insert_all`]) and evicted at once: when any output idles
//! out, the whole group goes.
//!
//! Per group: the output ids, a cursor (the next step to emit), the first
//! and last step with data, one accumulator per open step (rarely more than
//! two), and for cumulative metrics the producer [streams](super::stream).
//! A group header is ~150 bytes plus 12 bytes per output. An open RED
//! accumulator holds a latency sketch of 4 bytes per bucket spanned (≈ 1
//! KiB for latencies over two decades) and six exemplar slots; a histogram
//! accumulator holds the step's buckets; a cumulative stream holds its last
//! point and the points of the open steps. All of it is dropped when the
//! step closes or the stream idles out.
//!
//! # Zero-filling
//!
//! Series that **count events the detector itself observes** are
//! zero-filled: RED `requests`/`errors`, log record counts, template counts
//! and the new-or-rare signal. From the group's first step with data until
//! `idle_after` past its last, a closed step without data emits 0 — a
//! request rate of 0 is what an outage looks like. Error ratio and latency
//! have no value without requests and are not filled.
//!
//! Metric series are **never** zero-filled: a missing point means the
//! producer did not report in that step (export interval longer than the
//! step, a scrape that failed), not that the value was 0.

use super::histogram::Buckets;
use super::sketch::Sketch;
use super::stream::Stream;
use super::telemetry::Reason;
use super::{StepPoint, TraceId};
use crate::registry::{KeyRef, Registry, SeriesId};
use crate::template::TemplateId;

pub(crate) const NO_GROUP: u32 = u32::MAX;

/// What a group aggregates, and which outputs it has (in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `[name]`: mean of the step's points.
    Gauge,
    /// `[name.rate]`: per second, from cumulative streams or delta sums.
    Counter,
    /// `[.rate, .mean, .pXX…]`.
    Histogram,
    /// `[.rate, .mean, quantile gauges…]` (quantiles as the producer sends them).
    Summary,
    /// `[requests, errors, error_ratio, latency.pXX…]`.
    Red,
    /// `[log.records]`.
    LogCount,
    /// `[log.template]`.
    Template,
    /// `[log.new_error_templates]`: a count per step, not a rate.
    Novelty,
}

impl Kind {
    pub fn zero_filled(self) -> bool {
        matches!(
            self,
            Kind::Red | Kind::LogCount | Kind::Template | Kind::Novelty
        )
    }
}

/// Exemplar candidates: the `k` traces with the largest value (ties by
/// trace id, one entry per trace with its largest value) — the same set
/// whatever order the items arrive in.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TopK {
    items: Vec<(f64, TraceId)>,
}

fn key_cmp(a: &(f64, TraceId), b: &(f64, TraceId)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then_with(|| b.1.cmp(&a.1))
}

impl TopK {
    pub fn offer(&mut self, k: usize, value: f64, trace: TraceId) {
        if k == 0 || trace == [0u8; 16] || value.is_nan() {
            return;
        }
        if let Some(e) = self.items.iter_mut().find(|e| e.1 == trace) {
            if value > e.0 {
                e.0 = value;
            }
            return;
        }
        let cand = (value, trace);
        if self.items.len() < k {
            self.items.push(cand);
            return;
        }
        let (i, min) = self
            .items
            .iter()
            .enumerate()
            .min_by(|a, b| key_cmp(a.1, b.1))
            .expect("k > 0 items");
        if key_cmp(&cand, min).is_gt() {
            self.items[i] = cand;
        }
    }

    /// Largest value first.
    pub fn traces(&self) -> Vec<TraceId> {
        let mut v = self.items.clone();
        v.sort_by(|a, b| key_cmp(b, a));
        v.into_iter().map(|(_, t)| t).collect()
    }

    fn merge_into(&self, k: usize, out: &mut TopK) {
        for &(v, t) in &self.items {
            out.offer(k, v, t);
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct GaugeAcc {
    pub sum: f64,
    pub n: u64,
    pub ex: TopK,
}

/// Counters, histograms and summaries.
#[derive(Clone, Debug, Default)]
pub(crate) struct DistAcc {
    /// Σ delta-temporality increases (sum values or histogram counts).
    pub delta: f64,
    /// Σ per-stream rates from cumulative points.
    pub rate: f64,
    /// Some increase (delta point or cumulative difference) arrived.
    pub rated: bool,
    /// Σ sum increases, and the count increase they belong to.
    pub sum: f64,
    pub sum_count: f64,
    pub buckets: Buckets,
    /// Summary quantile gauges: (Σ value, n) per group quantile.
    pub quantiles: Vec<(f64, u32)>,
    pub ex: TopK,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RedAcc {
    pub requests: u64,
    pub errors: u64,
    pub latency: Sketch,
    pub slow: TopK,
    pub errs: TopK,
}

/// Log records, templates, novelty.
#[derive(Clone, Debug, Default)]
pub(crate) struct CountAcc {
    pub n: u64,
    /// Most recent records' traces (value = record time).
    pub traces: TopK,
    /// Templates seen in the step and how often (bounded).
    pub templates: Vec<(TemplateId, u32)>,
}

/// Distinct templates remembered per log series and step.
pub(crate) const MAX_STEP_TEMPLATES: usize = 32;
/// Templates named on a log step point.
pub(crate) const POINT_TEMPLATES: usize = 5;

impl CountAcc {
    pub fn template(&mut self, id: TemplateId) {
        if let Some(e) = self.templates.iter_mut().find(|e| e.0 == id) {
            e.1 += 1;
        } else if self.templates.len() < MAX_STEP_TEMPLATES {
            self.templates.push((id, 1));
        }
    }

    fn top_templates(&self) -> Vec<TemplateId> {
        let mut t = self.templates.clone();
        t.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        t.into_iter().take(POINT_TEMPLATES).map(|e| e.0).collect()
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Acc {
    Gauge(GaugeAcc),
    Dist(Box<DistAcc>),
    Red(Box<RedAcc>),
    Count(CountAcc),
}

impl Acc {
    fn new(kind: Kind) -> Acc {
        match kind {
            Kind::Gauge => Acc::Gauge(GaugeAcc::default()),
            Kind::Counter | Kind::Histogram | Kind::Summary => Acc::Dist(Box::default()),
            Kind::Red => Acc::Red(Box::default()),
            Kind::LogCount | Kind::Template | Kind::Novelty => Acc::Count(CountAcc::default()),
        }
    }

    pub fn gauge(&mut self) -> &mut GaugeAcc {
        match self {
            Acc::Gauge(g) => g,
            _ => unreachable!("accumulator kind follows the group kind"),
        }
    }

    pub fn dist(&mut self) -> &mut DistAcc {
        match self {
            Acc::Dist(d) => d,
            _ => unreachable!("accumulator kind follows the group kind"),
        }
    }

    pub fn red(&mut self) -> &mut RedAcc {
        match self {
            Acc::Red(r) => r,
            _ => unreachable!("accumulator kind follows the group kind"),
        }
    }

    pub fn count(&mut self) -> &mut CountAcc {
        match self {
            Acc::Count(c) => c,
            _ => unreachable!("accumulator kind follows the group kind"),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Group {
    pub kind: Kind,
    /// Output series in the kind's order; `None` for a summary quantile
    /// the registry refused.
    pub outputs: Vec<Option<SeriesId>>,
    /// Summary: the quantile of each output from index 2 on.
    pub quantiles: Vec<f64>,
    /// Template groups: their template.
    pub template: Option<TemplateId>,
    /// Next step to emit.
    cursor: i64,
    /// First and last step that had data.
    first: i64,
    last_data: i64,
    open: Vec<(i64, Acc)>,
    pub streams: Vec<Stream>,
}

impl Group {
    /// The accumulator of open step `k`, marking the step as having data.
    pub fn acc(&mut self, k: i64) -> &mut Acc {
        self.first = self.first.min(k);
        self.last_data = self.last_data.max(k);
        let i = match self.open.iter().position(|(s, _)| *s == k) {
            Some(i) => i,
            None => {
                self.open.push((k, Acc::new(self.kind)));
                self.open.len() - 1
            }
        };
        &mut self.open[i].1
    }

    /// The stream `id`, created if new and fewer than `max` exist.
    pub fn stream(&mut self, id: u64, max: usize) -> Option<&mut Stream> {
        match self.streams.iter().position(|s| s.id == id) {
            Some(i) => Some(&mut self.streams[i]),
            None if self.streams.len() < max => {
                self.streams.push(Stream::new(id));
                self.streams.last_mut()
            }
            None => None,
        }
    }

    pub fn primary(&self) -> Option<SeriesId> {
        self.outputs.first().copied().flatten()
    }
}

/// Settings the emission needs.
pub(crate) struct EmitCtx<'a> {
    pub step: i64,
    pub quantiles: &'a [f64],
    /// Zero-fill stops this many steps after the last data.
    pub idle_steps: i64,
    /// Unix ns: cumulative first points born at or after count in full.
    pub born_after: i64,
    pub slowest_exemplars: usize,
    pub error_exemplars: usize,
}

/// Every group, and the map from series slot to group.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    slots: Vec<Option<Group>>,
    free: Vec<u32>,
    by_series: Vec<u32>,
    len: usize,
}

impl Groups {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, g: u32) -> &Group {
        self.slots[g as usize].as_ref().expect("live group")
    }

    pub fn get_mut(&mut self, g: u32) -> &mut Group {
        self.slots[g as usize].as_mut().expect("live group")
    }

    pub fn of_series(&self, id: SeriesId) -> Option<u32> {
        self.by_series
            .get(id.slot())
            .copied()
            .filter(|&g| g != NO_GROUP)
    }

    /// The group whose primary series is `key`, created with the outputs
    /// `names()` (the first being `key`'s name) when new.
    pub fn resolve<S: Default>(
        &mut self,
        registry: &mut Registry<S>,
        key: &KeyRef<'_>,
        kind: Kind,
        now: i64,
        watermark: i64,
        names: impl FnOnce() -> Vec<String>,
    ) -> Result<u32, Reason> {
        if let Some(id) = registry.find(key) {
            return match self.of_series(id) {
                Some(g) if self.get(g).kind == kind && self.get(g).primary() == Some(id) => Ok(g),
                _ => Err(Reason::Invalid),
            };
        }
        let names = names();
        debug_assert_eq!(names[0], key.name());
        let keys: Vec<KeyRef<'_>> = names
            .iter()
            .map(|n| KeyRef::sorted(key.signal(), n, key.labels()))
            .collect();
        // An output name taken by another group (a gauge `x.p50` next to a
        // histogram `x`): the metric's shape conflicts with what exists.
        if keys[1..].iter().any(|k| registry.find(k).is_some()) {
            return Err(Reason::Invalid);
        }
        let ids = registry
            .insert_all(&keys, now, S::default)
            .map_err(Reason::from)?;
        let group = Group {
            kind,
            outputs: ids.iter().copied().map(Some).collect(),
            quantiles: Vec::new(),
            template: None,
            cursor: watermark,
            first: i64::MAX,
            last_data: i64::MIN,
            open: Vec::new(),
            streams: Vec::new(),
        };
        let g = match self.free.pop() {
            Some(g) => {
                self.slots[g as usize] = Some(group);
                g
            }
            None => {
                self.slots.push(Some(group));
                (self.slots.len() - 1) as u32
            }
        };
        for id in ids {
            self.bind(id, g);
        }
        self.len += 1;
        Ok(g)
    }

    fn bind(&mut self, id: SeriesId, g: u32) {
        if self.by_series.len() <= id.slot() {
            self.by_series.resize(id.slot() + 1, NO_GROUP);
        }
        self.by_series[id.slot()] = g;
    }

    /// Adds an output to an existing group (summary quantiles). A refused
    /// or conflicting key is pushed as `None`, keeping output indices
    /// aligned with what they stand for.
    pub fn add_output<S: Default>(
        &mut self,
        registry: &mut Registry<S>,
        g: u32,
        key: &KeyRef<'_>,
        now: i64,
    ) -> Option<SeriesId> {
        let id = if registry.find(key).is_some() {
            None
        } else {
            registry
                .insert_all(&[*key], now, S::default)
                .ok()
                .map(|v| v[0])
        };
        if let Some(id) = id {
            self.bind(id, g);
        }
        self.get_mut(g).outputs.push(id);
        id
    }

    /// Unbinds the group of series `id` and returns its other live outputs
    /// (the caller removes them from the registry).
    pub fn remove_with(&mut self, id: SeriesId) -> Vec<SeriesId> {
        let Some(g) = self.of_series(id) else {
            return Vec::new();
        };
        let group = self.slots[g as usize].take().expect("live group");
        self.free.push(g);
        self.len -= 1;
        let mut others = Vec::new();
        for out in group.outputs.into_iter().flatten() {
            if self.by_series.get(out.slot()) == Some(&g) {
                self.by_series[out.slot()] = NO_GROUP;
            }
            if out != id {
                others.push(out);
            }
        }
        others
    }

    /// Marks the outputs of every group holding unflushed data as updated
    /// at `now`, so an eviction that runs before the next flush cannot drop
    /// a source that just came back after a long silence.
    pub fn touch_pending<S>(&self, registry: &mut Registry<S>, now: i64) {
        for g in self.slots.iter().flatten() {
            if !g.open.is_empty() {
                for id in g.outputs.iter().flatten() {
                    registry.touch(*id, now);
                }
            }
        }
    }

    /// Live groups, by index.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Group> + '_ {
        self.slots.iter_mut().flatten()
    }

    /// Emits every step below `watermark` of every group, touching the
    /// outputs of steps that had data.
    pub fn flush<S>(
        &mut self,
        registry: &mut Registry<S>,
        watermark: i64,
        ctx: &EmitCtx<'_>,
        out: &mut Vec<StepPoint>,
    ) {
        let mut steps = Vec::new();
        for g in self.slots.iter_mut().flatten() {
            if g.cursor >= watermark {
                continue;
            }
            // Close cumulative streams into their steps' accumulators.
            steps.clear();
            for s in &g.streams {
                s.pending_steps(watermark, &mut steps);
            }
            steps.sort_unstable();
            steps.dedup();
            let mut streams = std::mem::take(&mut g.streams);
            for &k in &steps {
                let acc = g.acc(k).dist();
                for s in &mut streams {
                    let inc = s.close(k, ctx.born_after, &mut acc.buckets);
                    if let Some(r) = inc.rate {
                        acc.rate += r;
                        acc.rated = true;
                    }
                    acc.sum += inc.sum;
                    acc.sum_count += inc.sum_count;
                }
            }
            g.streams = streams;
            // Emit, in step order.
            g.open.sort_by_key(|(k, _)| *k);
            let closed = g.open.iter().take_while(|(k, _)| *k < watermark).count();
            let accs: Vec<(i64, Acc)> = g.open.drain(..closed).collect();
            for &(k, _) in &accs {
                for id in g.outputs.iter().flatten() {
                    registry.touch(*id, k * ctx.step);
                }
            }
            if g.kind.zero_filled() && g.first != i64::MAX {
                let from = g.cursor.max(g.first);
                let to = watermark.min(g.last_data.saturating_add(ctx.idle_steps + 1));
                let mut it = accs.iter().peekable();
                for k in from..to {
                    while it.peek().is_some_and(|(s, _)| *s < k) {
                        it.next();
                    }
                    let acc = it.peek().filter(|(s, _)| *s == k).map(|(_, a)| a);
                    emit(g, k, acc, ctx, out);
                }
            } else {
                for (k, acc) in &accs {
                    emit(g, *k, Some(acc), ctx, out);
                }
            }
            g.cursor = watermark;
        }
    }
}

fn point(
    series: Option<SeriesId>,
    ts: i64,
    value: f64,
    exemplars: Vec<TraceId>,
    templates: Vec<TemplateId>,
    out: &mut Vec<StepPoint>,
) {
    if let Some(series) = series
        && value.is_finite()
    {
        out.push(StepPoint {
            series,
            ts,
            value,
            exemplars,
            templates,
        });
    }
}

/// The values of one closed step of `g` (`acc` = `None`: zero-fill).
fn emit(g: &Group, k: i64, acc: Option<&Acc>, ctx: &EmitCtx<'_>, out: &mut Vec<StepPoint>) {
    let ts = k * ctx.step;
    let step = ctx.step as f64;
    let o = |i: usize| g.outputs.get(i).copied().flatten();
    match (g.kind, acc) {
        (Kind::Gauge, Some(Acc::Gauge(a))) if a.n > 0 => {
            point(o(0), ts, a.sum / a.n as f64, a.ex.traces(), Vec::new(), out);
        }
        (Kind::Counter | Kind::Histogram | Kind::Summary, Some(Acc::Dist(a))) => {
            let ex = a.ex.traces();
            if a.rated {
                point(
                    o(0),
                    ts,
                    a.rate + a.delta / step,
                    ex.clone(),
                    Vec::new(),
                    out,
                );
            }
            if g.kind == Kind::Counter {
                return;
            }
            if a.sum_count > 0.0 {
                point(o(1), ts, a.sum / a.sum_count, ex.clone(), Vec::new(), out);
            }
            if g.kind == Kind::Histogram {
                for (i, q) in ctx.quantiles.iter().enumerate() {
                    if let Some(v) = a.buckets.quantile(*q) {
                        point(o(2 + i), ts, v, ex.clone(), Vec::new(), out);
                    }
                }
            } else {
                for (i, (sum, n)) in a.quantiles.iter().enumerate() {
                    if *n > 0 {
                        point(o(2 + i), ts, sum / *n as f64, ex.clone(), Vec::new(), out);
                    }
                }
            }
        }
        (Kind::Red, acc) => {
            let empty = RedAcc::default();
            let a = match acc {
                Some(Acc::Red(a)) => a,
                _ => &empty,
            };
            let slow = a.slow.traces();
            let errs = a.errs.traces();
            let mut both = TopK::default();
            let k = ctx.slowest_exemplars + ctx.error_exemplars;
            a.slow.merge_into(k, &mut both);
            a.errs.merge_into(k, &mut both);
            point(
                o(0),
                ts,
                a.requests as f64 / step,
                both.traces(),
                Vec::new(),
                out,
            );
            point(
                o(1),
                ts,
                a.errors as f64 / step,
                errs.clone(),
                Vec::new(),
                out,
            );
            if a.requests > 0 {
                point(
                    o(2),
                    ts,
                    a.errors as f64 / a.requests as f64,
                    errs,
                    Vec::new(),
                    out,
                );
                for (i, q) in ctx.quantiles.iter().enumerate() {
                    if let Some(v) = a.latency.quantile(*q) {
                        point(o(3 + i), ts, v, slow.clone(), Vec::new(), out);
                    }
                }
            }
        }
        (Kind::LogCount | Kind::Template | Kind::Novelty, acc) => {
            let (n, traces, templates) = match acc {
                Some(Acc::Count(c)) => (c.n, c.traces.traces(), c.top_templates()),
                _ => (0, Vec::new(), Vec::new()),
            };
            let templates = match g.template {
                Some(t) => vec![t],
                None => templates,
            };
            // Novelty is a number of records (a handful, readable as is);
            // the volume series are rates like every other count.
            let v = if g.kind == Kind::Novelty {
                n as f64
            } else {
                n as f64 / step
            };
            point(o(0), ts, v, traces, templates, out);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(b: u8) -> TraceId {
        [b; 16]
    }

    #[test]
    fn topk_is_order_independent() {
        let offers = [(5.0, 1), (7.0, 2), (9.0, 1), (1.0, 3), (7.0, 4), (8.0, 5)];
        let mut reference = None;
        // Every rotation and the reverse give the same set.
        for r in 0..offers.len() {
            for rev in [false, true] {
                let mut o: Vec<_> = offers.to_vec();
                o.rotate_left(r);
                if rev {
                    o.reverse();
                }
                let mut k = TopK::default();
                for (v, b) in o {
                    k.offer(3, v, t(b));
                }
                let got = k.traces();
                match &reference {
                    None => reference = Some(got),
                    Some(want) => assert_eq!(&got, want),
                }
            }
        }
        assert_eq!(reference.unwrap(), vec![t(1), t(5), t(2)]);
        let mut z = TopK::default();
        z.offer(3, 1.0, [0; 16]);
        assert!(z.traces().is_empty(), "an all-zero trace id is no trace");
    }
}
