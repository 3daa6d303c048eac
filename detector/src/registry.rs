//! The bounded series registry: every time series the detector scores, by
//! identity, with a compact id and the caller's per-series state.
//!
//! # Identity
//!
//! A [`SeriesKey`] is a signal kind ([`Signal`]), a name and a small set of
//! labels sorted by label name. Labels are bounded by construction: the
//! ingest only ever puts the resource identity there (`service`,
//! `namespace`, `pod`, `node`), the span name and kind for RED series, the
//! template id for log-template series, and — for metrics — the data point
//! attributes, which are the one open-ended source and therefore count
//! against a per-name cardinality cap.
//!
//! A [`SeriesId`] is a slot index plus a generation: 8 bytes, `Copy`, and
//! never ambiguous. Slots are reused after eviction, but the generation
//! changes, so an id kept somewhere (an open incident, an HTTP client) can
//! never silently resolve to the series that took its slot later.
//! [`SeriesId::slot`] is dense and suitable for indexing side arrays.
//!
//! # Bounds, and what is counted
//!
//! - `max_series` (default 100 000): the global cap. A new key beyond it is
//!   refused with [`Rejected::SeriesLimit`].
//! - `max_per_name` (default 2 000): a cap per *family* — series of one
//!   signal, one name and one `service`. It is per service rather than per
//!   name alone because OpenTelemetry semantic conventions make every
//!   service share names like `http.server.request.duration`: one service
//!   whose instrumentation puts a user id in an attribute must exhaust its
//!   own budget, not everyone's. Refused with [`Rejected::CardinalityLimit`].
//! - `max_labels` / `max_label_bytes`: a key with more labels, or a label
//!   name or value longer than this (or a name over [`MAX_NAME_BYTES`]),
//!   is refused with
//!   [`Rejected::LabelLimit`] (values are never truncated: truncation would
//!   merge distinct streams and corrupt cumulative-counter state).
//! - Idle eviction ([`Registry::evict_idle`]): series whose last update is
//!   older than `idle_after` are removed and their state handed back.
//!
//! Refusals and evictions are counted in `series_dropped_total{reason}`
//! (`series_limit`, `cardinality_limit`, `label_limit`, `evicted_idle`). A
//! refusal is counted per attempt: the registry does not remember refused
//! keys (that memory would itself be unbounded), so a key refused on every
//! export counts on every export — which is what a rate alert wants anyway.
//!
//! # Memory
//!
//! Per registered series, not counting `S`: the slot (key header, hash,
//! last update, generation: 56 bytes + `size_of::<S>()`), the label array
//! (24 bytes per label: an interned label name and an offset), all label
//! values in one allocation, the name shared through an interner, and one
//! entry of the hash index (16 bytes at ≤ 87.5 % load) plus the family
//! count. A typical metric series (5 labels, ~100 bytes of values) costs
//! about 350 bytes: 347 measured with a counting allocator over 100 000
//! series by `cargo bench -p argus-detector --bench ingest -- registry`.
//! [`Registry::key_bytes`] reports the same estimate at run time.
//!
//! # Lookups without allocation
//!
//! The ingest looks a key up for every span, log record and data point, so
//! lookups take a borrowed [`KeyRef`] (label slices pointing into the
//! decoded protobuf) and hash it exactly like the owned [`SeriesKey`]; only
//! a miss that inserts allocates. Hashes use a per-process random seed
//! (label values come from the network: a fixed hash would invite
//! collision floods); the rare 64-bit collision is resolved by comparing
//! keys.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

use argus_common::otlp::Signal;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::ingest::telemetry::Throttle;

pub mod matcher;

pub use matcher::{MatchError, Matcher};

/// Compact identity of a registered series: slot index + generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId {
    slot: u32,
    generation: u32,
}

impl SeriesId {
    /// Dense index (`< Registry::capacity_slots()`), reused after eviction.
    pub fn slot(self) -> usize {
        self.slot as usize
    }

    pub fn generation(self) -> u32 {
        self.generation
    }

    /// One integer for APIs and logs (`generation << 32 | slot`).
    pub fn as_u64(self) -> u64 {
        (self.generation as u64) << 32 | self.slot as u64
    }

    pub fn from_u64(v: u64) -> SeriesId {
        SeriesId {
            slot: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

impl std::fmt::Display for SeriesId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.as_u64())
    }
}

/// The owned identity of a series.
///
/// Label names are interned (shared by every series using them); all label
/// values live in one string, `labels[i].1` being the end offset of value
/// `i`. Labels are sorted by name and unique.
#[derive(Clone, PartialEq, Eq)]
pub struct SeriesKey {
    signal: Signal,
    name: Arc<str>,
    labels: Box<[(Arc<str>, u32)]>,
    values: Box<str>,
}

impl SeriesKey {
    pub fn signal(&self) -> Signal {
        self.signal
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(name, value)` pairs, sorted by name.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        let mut start = 0usize;
        self.labels.iter().map(move |(k, end)| {
            let v = &self.values[start..*end as usize];
            start = *end as usize;
            (&**k, v)
        })
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The `service` label (empty when absent).
    pub fn service(&self) -> &str {
        self.label(LABEL_SERVICE).unwrap_or("")
    }

    /// This key as a borrowed [`KeyRef`]-compatible label list.
    pub fn label_vec(&self) -> Vec<(&str, &str)> {
        self.labels().collect()
    }

    /// Heap bytes owned by this key (the interned name counted as shared).
    fn heap_bytes(&self) -> usize {
        self.labels.len() * std::mem::size_of::<(Arc<str>, u32)>() + alloc_size(self.values.len())
    }
}

/// A malloc-ish rounding: what a small allocation really takes.
fn alloc_size(len: usize) -> usize {
    if len == 0 { 0 } else { (len + 15) & !15 }
}

impl std::fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{self}", self.signal.as_str())
    }
}

/// `name{label="value",…}` with `"` and `\` escaped, as in PromQL.
impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.labels().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

impl serde::Serialize for SeriesKey {
    fn serialize<Se: serde::Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        use serde::ser::SerializeStruct;
        struct Labels<'a>(&'a SeriesKey);
        impl serde::Serialize for Labels<'_> {
            fn serialize<Se: serde::Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
                s.collect_map(self.0.labels())
            }
        }
        let mut st = s.serialize_struct("SeriesKey", 3)?;
        st.serialize_field("signal", &self.signal)?;
        st.serialize_field("name", &*self.name)?;
        st.serialize_field("labels", &Labels(self))?;
        st.end()
    }
}

/// Label names the ingest derives from the resource.
pub const LABEL_SERVICE: &str = "service";
pub const LABEL_NAMESPACE: &str = "namespace";
pub const LABEL_POD: &str = "pod";
pub const LABEL_NODE: &str = "node";

/// A borrowed key for lookups: labels sorted by name, unique.
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    signal: Signal,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
}

impl<'a> KeyRef<'a> {
    /// Sorts `labels` by name and drops repeated names (the first wins).
    pub fn new<'b: 'a>(
        signal: Signal,
        name: &'a str,
        labels: &'a mut Vec<(&'b str, &'b str)>,
    ) -> Self {
        sort_labels(labels);
        let labels: &'a [(&'b str, &'b str)] = labels;
        KeyRef {
            signal,
            name,
            labels,
        }
    }

    /// For labels the caller already sorted and deduplicated (checked in
    /// debug builds).
    pub fn sorted(signal: Signal, name: &'a str, labels: &'a [(&'a str, &'a str)]) -> Self {
        debug_assert!(
            labels.windows(2).all(|w| w[0].0 < w[1].0),
            "labels not sorted/unique: {labels:?}"
        );
        KeyRef {
            signal,
            name,
            labels,
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    pub fn name(&self) -> &'a str {
        self.name
    }

    pub fn labels(&self) -> &'a [(&'a str, &'a str)] {
        self.labels
    }

    fn service(&self) -> &'a str {
        self.labels
            .iter()
            .find(|(k, _)| *k == LABEL_SERVICE)
            .map_or("", |(_, v)| v)
    }

    fn matches(&self, key: &SeriesKey) -> bool {
        self.signal == key.signal
            && self.name == &*key.name
            && self.labels.len() == key.labels.len()
            && self.labels.iter().zip(key.labels()).all(|(a, b)| *a == b)
    }
}

/// Stable sort by label name, first occurrence of a name wins.
pub fn sort_labels(labels: &mut Vec<(&str, &str)>) {
    labels.sort_by(|a, b| a.0.cmp(b.0));
    labels.dedup_by(|later, earlier| later.0 == earlier.0);
}

fn signal_tag(s: Signal) -> u8 {
    match s {
        Signal::Logs => 1,
        Signal::Traces => 2,
        Signal::Metrics => 3,
    }
}

/// The key hash. 0xfe/0xff never occur in UTF-8, so the framing is
/// unambiguous.
fn hash_parts<'x>(
    seed: &RandomState,
    signal: Signal,
    name: &str,
    labels: impl Iterator<Item = (&'x str, &'x str)>,
) -> u64 {
    let mut h = seed.build_hasher();
    h.write_u8(signal_tag(signal));
    h.write(name.as_bytes());
    h.write_u8(0xff);
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write_u8(0xfe);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

fn family_hash(seed: &RandomState, signal: Signal, name: &str, service: &str) -> u64 {
    let mut h = seed.build_hasher();
    h.write_u8(0x80 | signal_tag(signal));
    h.write(name.as_bytes());
    h.write_u8(0xff);
    h.write(service.as_bytes());
    h.finish()
}

/// Hasher for keys that already are random 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type PreHashedMap<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

/// Why a new series was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejected {
    #[error("series limit reached")]
    SeriesLimit,
    #[error("cardinality limit of this name and service reached")]
    CardinalityLimit,
    #[error("too many labels or a label too long")]
    LabelLimit,
}

impl Rejected {
    pub fn reason(self) -> &'static str {
        match self {
            Rejected::SeriesLimit => REASON_SERIES_LIMIT,
            Rejected::CardinalityLimit => REASON_CARDINALITY_LIMIT,
            Rejected::LabelLimit => REASON_LABEL_LIMIT,
        }
    }
}

/// Longest series name (OpenTelemetry allows 255-byte metric names; the
/// ingest appends suffixes such as `.p99.9`).
pub const MAX_NAME_BYTES: usize = 1024;

pub const REASON_SERIES_LIMIT: &str = "series_limit";
pub const REASON_CARDINALITY_LIMIT: &str = "cardinality_limit";
pub const REASON_LABEL_LIMIT: &str = "label_limit";
pub const REASON_EVICTED_IDLE: &str = "evicted_idle";

/// Bounds of a [`Registry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_series: usize,
    pub max_per_name: usize,
    pub max_labels: usize,
    pub max_label_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series: 100_000,
            max_per_name: 2_000,
            max_labels: 32,
            max_label_bytes: 256,
        }
    }
}

/// A series removed by [`Registry::evict_idle`] or [`Registry::remove`].
#[derive(Debug)]
pub struct Evicted<S> {
    pub id: SeriesId,
    pub key: SeriesKey,
    pub state: S,
    /// Unix seconds of the last update.
    pub last_update: i64,
}

/// One registered series, borrowed.
#[derive(Debug)]
pub struct SeriesRef<'a, S> {
    pub id: SeriesId,
    pub key: &'a SeriesKey,
    pub state: &'a S,
    pub last_update: i64,
}

#[derive(Debug)]
struct Entry<S> {
    key: SeriesKey,
    hash: u64,
    last_update: i64,
    state: S,
}

#[derive(Debug)]
struct Slot<S> {
    generation: u32,
    entry: Option<Entry<S>>,
}

/// `reason` of `series_dropped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The registry's self-metrics: `series_active` and
/// `series_dropped_total{reason}`.
#[derive(Clone, Debug, Default)]
pub struct SeriesTelemetry {
    active: Gauge,
    dropped: Family<ReasonLabels, Counter>,
}

impl SeriesTelemetry {
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let t = SeriesTelemetry::default();
        registry.register(
            "series_active",
            "Series in the detector's registry (scored by the engine)",
            t.active.clone(),
        );
        registry.register(
            "series_dropped",
            "Series refused (series_limit, cardinality_limit, label_limit; per attempt) or evicted after idling (evicted_idle)",
            t.dropped.clone(),
        );
        for reason in [
            REASON_SERIES_LIMIT,
            REASON_CARDINALITY_LIMIT,
            REASON_LABEL_LIMIT,
            REASON_EVICTED_IDLE,
        ] {
            drop(t.dropped.get_or_create(&ReasonLabels { reason }));
        }
        t
    }

    /// Count of `series_dropped_total{reason}` (for tests and stats).
    pub fn dropped(&self, reason: &'static str) -> u64 {
        self.dropped.get_or_create(&ReasonLabels { reason }).get()
    }
}

/// Bounded map from [`SeriesKey`] to a compact [`SeriesId`] and the caller's
/// per-series state `S`.
#[derive(Debug)]
pub struct Registry<S> {
    limits: Limits,
    seed: RandomState,
    slots: Vec<Slot<S>>,
    free: Vec<u32>,
    len: usize,
    /// Key hash → the first series with that hash.
    index: PreHashedMap<SeriesId>,
    /// Further series whose key hash collides (practically always empty).
    collisions: PreHashedMap<Vec<SeriesId>>,
    /// Family hash (signal, name, service) → series count.
    families: PreHashedMap<u32>,
    /// Interned names and label names with the number of registered keys
    /// using them; dropped at zero.
    interned: HashMap<Arc<str>, u32>,
    telemetry: SeriesTelemetry,
    throttle: [Throttle; 3],
    /// Tests: every key hashes alike, to exercise collision handling.
    #[cfg(test)]
    collide: bool,
}

impl<S> Registry<S> {
    pub fn new(limits: Limits) -> Self {
        Self::with_telemetry(limits, SeriesTelemetry::default())
    }

    pub fn with_telemetry(limits: Limits, telemetry: SeriesTelemetry) -> Self {
        Registry {
            limits,
            seed: RandomState::new(),
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            index: PreHashedMap::default(),
            collisions: PreHashedMap::default(),
            families: PreHashedMap::default(),
            interned: HashMap::new(),
            telemetry,
            throttle: Default::default(),
            #[cfg(test)]
            collide: false,
        }
    }

    fn key_hash(&self, key: &KeyRef<'_>) -> u64 {
        #[cfg(test)]
        if self.collide {
            return 42;
        }
        hash_parts(&self.seed, key.signal, key.name, key.labels.iter().copied())
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn telemetry(&self) -> &SeriesTelemetry {
        &self.telemetry
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the highest slot ever used: the size side arrays indexed by
    /// [`SeriesId::slot`] need.
    pub fn capacity_slots(&self) -> usize {
        self.slots.len()
    }

    fn entry(&self, id: SeriesId) -> Option<&Entry<S>> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry_mut(&mut self, id: SeriesId) -> Option<&mut Entry<S>> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    pub fn contains(&self, id: SeriesId) -> bool {
        self.entry(id).is_some()
    }

    pub fn get(&self, id: SeriesId) -> Option<SeriesRef<'_, S>> {
        self.entry(id).map(|e| SeriesRef {
            id,
            key: &e.key,
            state: &e.state,
            last_update: e.last_update,
        })
    }

    pub fn key(&self, id: SeriesId) -> Option<&SeriesKey> {
        self.entry(id).map(|e| &e.key)
    }

    pub fn state(&self, id: SeriesId) -> Option<&S> {
        self.entry(id).map(|e| &e.state)
    }

    pub fn state_mut(&mut self, id: SeriesId) -> Option<&mut S> {
        self.entry_mut(id).map(|e| &mut e.state)
    }

    /// Unix seconds of the last update.
    pub fn last_update(&self, id: SeriesId) -> Option<i64> {
        self.entry(id).map(|e| e.last_update)
    }

    /// Marks the series updated at `now` (never moves backwards).
    pub fn touch(&mut self, id: SeriesId, now: i64) {
        if let Some(e) = self.entry_mut(id) {
            e.last_update = e.last_update.max(now);
        }
    }

    /// The series with this key, without touching it.
    pub fn find(&self, key: &KeyRef<'_>) -> Option<SeriesId> {
        self.find_hashed(key, self.key_hash(key))
    }

    fn find_hashed(&self, key: &KeyRef<'_>, hash: u64) -> Option<SeriesId> {
        let first = *self.index.get(&hash)?;
        if self.entry(first).is_some_and(|e| key.matches(&e.key)) {
            return Some(first);
        }
        self.collisions
            .get(&hash)?
            .iter()
            .copied()
            .find(|&id| self.entry(id).is_some_and(|e| key.matches(&e.key)))
    }

    /// The series with this key, touched at `now`; registered with
    /// `S::default()` when new and within bounds.
    pub fn get_or_insert(&mut self, key: &KeyRef<'_>, now: i64) -> Result<SeriesId, Rejected>
    where
        S: Default,
    {
        self.get_or_insert_with(key, now, S::default)
    }

    pub fn get_or_insert_with(
        &mut self,
        key: &KeyRef<'_>,
        now: i64,
        state: impl FnOnce() -> S,
    ) -> Result<SeriesId, Rejected> {
        let hash = self.key_hash(key);
        if let Some(id) = self.find_hashed(key, hash) {
            self.touch(id, now);
            return Ok(id);
        }
        self.insert_new(key, hash, now, state())
    }

    /// Why `key` could not be added now (without counting anything).
    fn check(&self, key: &KeyRef<'_>, extra_in_family: u32) -> Result<u64, Rejected> {
        if key.labels.len() > self.limits.max_labels
            || key.name.len() > MAX_NAME_BYTES
            || key.labels.iter().any(|(k, v)| {
                k.len() > self.limits.max_label_bytes || v.len() > self.limits.max_label_bytes
            })
        {
            return Err(Rejected::LabelLimit);
        }
        if self.len >= self.limits.max_series {
            return Err(Rejected::SeriesLimit);
        }
        let fam = family_hash(&self.seed, key.signal, key.name, key.service());
        let count = self.families.get(&fam).copied().unwrap_or(0) + extra_in_family;
        if count as usize >= self.limits.max_per_name {
            return Err(Rejected::CardinalityLimit);
        }
        Ok(fam)
    }

    fn insert_new(
        &mut self,
        key: &KeyRef<'_>,
        hash: u64,
        now: i64,
        state: S,
    ) -> Result<SeriesId, Rejected> {
        match self.check(key, 0) {
            Ok(fam) => Ok(self.insert_unchecked(key, hash, fam, now, state)),
            Err(why) => Err(self.refused(why, key, now)),
        }
    }

    /// Registers several new series at once, all of them or none: the
    /// series one source produces (a histogram's rate, mean and quantiles)
    /// must not exist in part. Keys already registered are returned as they
    /// are. A refusal is counted once.
    pub fn insert_all(
        &mut self,
        keys: &[KeyRef<'_>],
        now: i64,
        mut state: impl FnMut() -> S,
    ) -> Result<Vec<SeriesId>, Rejected> {
        let mut plan: Vec<(Option<SeriesId>, u64, u64)> = Vec::with_capacity(keys.len());
        let mut new = 0usize;
        for key in keys {
            let hash = self.key_hash(key);
            if let Some(id) = self.find_hashed(key, hash) {
                plan.push((Some(id), hash, 0));
                continue;
            }
            let fam = family_hash(&self.seed, key.signal, key.name, key.service());
            let same = plan.iter().filter(|p| p.0.is_none() && p.2 == fam).count() as u32;
            let checked = self.check(key, same).and_then(|f| {
                if self.len + new >= self.limits.max_series {
                    Err(Rejected::SeriesLimit)
                } else {
                    Ok(f)
                }
            });
            match checked {
                Ok(fam) => plan.push((None, hash, fam)),
                Err(why) => return Err(self.refused(why, key, now)),
            }
            new += 1;
        }
        let ids = keys
            .iter()
            .zip(plan)
            .map(|(key, (existing, hash, fam))| match existing {
                Some(id) => {
                    self.touch(id, now);
                    id
                }
                None => self.insert_unchecked(key, hash, fam, now, state()),
            })
            .collect();
        Ok(ids)
    }

    fn insert_unchecked(
        &mut self,
        key: &KeyRef<'_>,
        hash: u64,
        fam: u64,
        now: i64,
        state: S,
    ) -> SeriesId {
        *self.families.entry(fam).or_insert(0) += 1;
        let owned = self.own(key);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        let id = SeriesId {
            slot,
            generation: s.generation,
        };
        s.entry = Some(Entry {
            key: owned,
            hash,
            last_update: now,
            state,
        });
        match self.index.entry(hash) {
            MapEntry::Vacant(v) => {
                v.insert(id);
            }
            MapEntry::Occupied(_) => self.collisions.entry(hash).or_default().push(id),
        }
        self.len += 1;
        self.telemetry.active.set(self.len as i64);
        id
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(n) = self.interned.get_mut(s) {
            *n += 1;
            let (k, _) = self.interned.get_key_value(s).expect("just found");
            return k.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.interned.insert(a.clone(), 1);
        a
    }

    fn own(&mut self, key: &KeyRef<'_>) -> SeriesKey {
        let name = self.intern(key.name);
        let mut values = String::with_capacity(key.labels.iter().map(|(_, v)| v.len()).sum());
        let mut labels = Vec::with_capacity(key.labels.len());
        for (k, v) in key.labels {
            values.push_str(v);
            labels.push((self.intern(k), values.len() as u32));
        }
        SeriesKey {
            signal: key.signal,
            name,
            labels: labels.into_boxed_slice(),
            values: values.into_boxed_str(),
        }
    }

    fn release(&mut self, s: &Arc<str>) {
        if let Some(n) = self.interned.get_mut(&**s) {
            *n -= 1;
            if *n == 0 {
                self.interned.remove(&**s);
            }
        }
    }

    /// Removes a series (not counted as a drop: the caller decided).
    pub fn remove(&mut self, id: SeriesId) -> Option<Evicted<S>> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let e = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.slot);
        self.len -= 1;
        self.telemetry.active.set(self.len as i64);

        // Index.
        if self.index.get(&e.hash) == Some(&id) {
            match self.collisions.get_mut(&e.hash) {
                Some(more) => {
                    let next = more.pop().expect("collision lists are never empty");
                    if more.is_empty() {
                        self.collisions.remove(&e.hash);
                    }
                    self.index.insert(e.hash, next);
                }
                None => {
                    self.index.remove(&e.hash);
                }
            }
        } else if let Some(more) = self.collisions.get_mut(&e.hash) {
            more.retain(|&x| x != id);
            if more.is_empty() {
                self.collisions.remove(&e.hash);
            }
        }
        // Family count.
        let fam = family_hash(&self.seed, e.key.signal, &e.key.name, e.key.service());
        if let MapEntry::Occupied(mut o) = self.families.entry(fam) {
            *o.get_mut() -= 1;
            if *o.get() == 0 {
                o.remove();
            }
        }
        // Interned strings.
        self.release(&e.key.name);
        for (k, _) in e.key.labels.iter() {
            self.release(k);
        }
        Some(Evicted {
            id,
            key: e.key,
            state: e.state,
            last_update: e.last_update,
        })
    }

    /// Removes a series because it idled (counted as `evicted_idle`).
    pub fn evict(&mut self, id: SeriesId) -> Option<Evicted<S>> {
        let e = self.remove(id)?;
        self.count_evicted(1);
        Some(e)
    }

    fn count_evicted(&self, n: u64) {
        self.telemetry
            .dropped
            .get_or_create(&ReasonLabels {
                reason: REASON_EVICTED_IDLE,
            })
            .inc_by(n);
    }

    /// Removes every series last updated more than `idle_after` seconds
    /// before `now`, counting each as `evicted_idle`, and hands their state
    /// back so the caller can snapshot or forget it.
    pub fn evict_idle(&mut self, now: i64, idle_after: i64) -> Vec<Evicted<S>> {
        let stale: Vec<SeriesId> = self
            .iter()
            .filter(|s| now.saturating_sub(s.last_update) > idle_after)
            .map(|s| s.id)
            .collect();
        let out: Vec<Evicted<S>> = stale.into_iter().filter_map(|id| self.remove(id)).collect();
        if !out.is_empty() {
            tracing::info!(
                series = out.len(),
                idle_after_seconds = idle_after,
                active = self.len,
                "evicted idle series (no data within idle_after)"
            );
            self.count_evicted(out.len() as u64);
        }
        out
    }

    /// A new series was refused: counted, and logged at most once a minute
    /// per reason (with how many were refused in between).
    fn refused(&mut self, why: Rejected, key: &KeyRef<'_>, now: i64) -> Rejected {
        let reason = why.reason();
        self.telemetry
            .dropped
            .get_or_create(&ReasonLabels { reason })
            .inc();
        let t = &mut self.throttle[why as usize];
        if let Some(suppressed) = t.admit(now, 60) {
            tracing::warn!(
                reason,
                signal = key.signal.as_str(),
                name = key.name,
                service = key.service(),
                labels = key.labels.len(),
                active = self.len,
                max_series = self.limits.max_series,
                max_per_name = self.limits.max_per_name,
                refused_since_last_log = suppressed,
                "new series refused: registry bound reached (data for it is dropped)"
            );
        }
        why
    }

    /// Every registered series, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = SeriesRef<'_, S>> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.entry.as_ref().map(|e| SeriesRef {
                id: SeriesId {
                    slot: i as u32,
                    generation: s.generation,
                },
                key: &e.key,
                state: &e.state,
                last_update: e.last_update,
            })
        })
    }

    /// Every registered series with mutable state, in slot order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (SeriesId, &SeriesKey, &mut S)> + '_ {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let generation = s.generation;
            s.entry.as_mut().map(|e| {
                (
                    SeriesId {
                        slot: i as u32,
                        generation,
                    },
                    &e.key,
                    &mut e.state,
                )
            })
        })
    }

    /// Series matching a selector (see [`Matcher`]), in slot order.
    pub fn select<'a>(&'a self, m: &'a Matcher) -> impl Iterator<Item = SeriesRef<'a, S>> + 'a {
        self.iter().filter(move |s| m.matches(s.key))
    }

    /// Bytes the registry spends on keys and indexes, excluding `S` (see the
    /// module doc for the breakdown).
    pub fn key_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Slot<S>>() - std::mem::size_of::<S>();
        let slots = self.slots.capacity() * slot + self.free.capacity() * 4;
        let keys: usize = self.iter().map(|s| s.key.heap_bytes()).sum();
        // hashbrown: key + value + 1 control byte per bucket.
        let index = self.index.capacity() * (8 + 8 + 1);
        let families = self.families.capacity() * (8 + 4 + 1);
        let interned: usize = self
            .interned
            .keys()
            .map(|k| 16 + 16 + alloc_size(k.len()) + 17)
            .sum();
        slots + keys + index + families + interned
    }
}

#[cfg(test)]
mod tests;
