//! Log template mining: Drain (He, Zhu, Zheng, Lyu — "Drain: An Online Log
//! Parsing Approach with Fixed Depth Tree", ICWS 2017), bounded.
//!
//! # How a line finds its template
//!
//! 1. The line is tokenised and its variable tokens are masked to `<*>`
//!    ([`mask`]: numbers, durations, hex ids, IPs, UUIDs, timestamps,
//!    `key=value` values).
//! 2. A fixed-depth parse tree narrows the candidates: service → token
//!    count → the first `depth − 2` tokens (a token containing a digit, or
//!    any new token once a node has `max_children` children, goes down the
//!    `<*>` branch, so the tree cannot explode on ids that masking missed).
//! 3. Among the templates at that leaf, the most similar wins when its
//!    similarity — the share of positions where template and line carry the
//!    same token — reaches `similarity` (default 0.4, Drain3's default);
//!    ties go to the template with more `<*>` (the more general one).
//!    Positions where a template already has `<*>` neither help nor hurt,
//!    except that a masked `<*>` in the line agrees with one in the
//!    template.
//! 4. A match generalises the template: positions that differ become `<*>`.
//!    No match creates a new template.
//!
//! Templates are mined **per service**: the same text in two services is
//! two templates, and "new" means new to that service.
//!
//! # Identity
//!
//! A [`TemplateId`] is a stable 64-bit FNV-1a hash of the service and the
//! template's masked tokens *when it was created*; it does not change when
//! the template generalises, so the series and incidents that refer to it
//! stay valid. It is stable across restarts for templates whose first line
//! was already fully masked (the common case); a template that only became
//! general by merging may come back under the id of whichever line it sees
//! first after a restart.
//!
//! # Bounds
//!
//! At most `max_templates` templates (default 10 000) across all services.
//! When a new template would exceed that, the least recently seen one is
//! evicted (an O(1) LRU list through the template slots) and its now-empty
//! tree branch pruned; evictions are counted (`templates_evicted_total`).
//! Per template: the tokens, counters, the last `trace_ids` trace ids of
//! records that matched it (default 5), and 24 buckets counting its records
//! over `window` (default 24 h) for the "rare" test. About 0.5–1 KiB per
//! template; see [`TemplateMiner::state_bytes`].
//!
//! The `template` criterion bench (`cargo bench -p argus-detector --bench
//! ingest -- drain`) measures lines per second on realistic lines.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ingest::TraceId;

pub mod mask;

use mask::{Tokens, WILDCARD};

/// Stable identity of a template (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateId(pub u64);

impl std::fmt::Display for TemplateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for TemplateId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(TemplateId)
    }
}

impl Serialize for TemplateId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TemplateId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Drain settings.
///
/// ```yaml
/// templates:
///   depth: 4             # tree depth incl. the length level and the leaf: 2 prefix tokens
///   similarity: 0.4      # share of equal tokens for a line to join a template
///   max_children: 100    # children per tree node before new tokens go to <*>
///   max_templates: 10000 # across all services; least recently seen evicted
///   max_tokens: 64       # tokens per line; the rest becomes one <*>
///   max_line_bytes: 2048 # of the first line of a record
///   trace_ids: 5         # recent trace ids kept per template
///   window: 24h          # the "rare" window (counted in 24 buckets)
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateConfig {
    pub depth: usize,
    pub similarity: f64,
    pub max_children: usize,
    pub max_templates: usize,
    pub max_tokens: usize,
    pub max_line_bytes: usize,
    pub trace_ids: usize,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            depth: 4,
            similarity: 0.4,
            max_children: 100,
            max_templates: 10_000,
            max_tokens: 64,
            max_line_bytes: 2048,
            trace_ids: 5,
            window: Duration::from_secs(24 * 3600),
        }
    }
}

impl TemplateConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(3..=16).contains(&self.depth) {
            p.push(format!(
                "{path}.depth: must be between 3 and 16, got {}",
                self.depth
            ));
        }
        if !(self.similarity > 0.0 && self.similarity <= 1.0) {
            p.push(format!(
                "{path}.similarity: must be in (0, 1], got {}",
                self.similarity
            ));
        }
        if self.max_children < 2 {
            p.push(format!("{path}.max_children: must be at least 2"));
        }
        if self.max_templates == 0 || self.max_templates > 1_000_000 {
            p.push(format!(
                "{path}.max_templates: must be between 1 and 1000000, got {}",
                self.max_templates
            ));
        }
        if !(2..=1024).contains(&self.max_tokens) {
            p.push(format!(
                "{path}.max_tokens: must be between 2 and 1024, got {}",
                self.max_tokens
            ));
        }
        if self.max_line_bytes < 16 {
            p.push(format!("{path}.max_line_bytes: must be at least 16"));
        }
        if self.trace_ids > 64 {
            p.push(format!(
                "{path}.trace_ids: at most 64, got {}",
                self.trace_ids
            ));
        }
        if self.window.as_secs() < WINDOW_BUCKETS as u64 {
            p.push(format!(
                "{path}.window: must be at least {WINDOW_BUCKETS}s (it is counted in {WINDOW_BUCKETS} buckets)"
            ));
        }
        p
    }
}

const NIL: u32 = u32::MAX;
const WINDOW_BUCKETS: usize = 24;

/// One mined template.
#[derive(Clone, Debug)]
pub struct Template {
    id: TemplateId,
    service: Arc<str>,
    tokens: Vec<Box<str>>,
    count: u64,
    first_seen: i64,
    last_seen: i64,
    /// Ring of recent trace ids; `trace_next` is the next write position.
    traces: Vec<TraceId>,
    trace_next: usize,
    window: [u32; WINDOW_BUCKETS],
    /// Bucket index (`ts / bucket width`) of the newest bucket.
    window_head: i64,
    leaf: u32,
    lru_prev: u32,
    lru_next: u32,
}

impl Template {
    pub fn id(&self) -> TemplateId {
        self.id
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// The template with `<*>` for variables, tokens joined by one space.
    pub fn text(&self) -> String {
        self.tokens.join(" ")
    }

    pub fn tokens(&self) -> impl Iterator<Item = &str> + '_ {
        self.tokens.iter().map(|t| &**t)
    }

    /// Records matched since the template was created.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Unix seconds (record time) of the first and the latest record.
    pub fn first_seen(&self) -> i64 {
        self.first_seen
    }

    pub fn last_seen(&self) -> i64 {
        self.last_seen
    }

    /// Trace ids of the most recent matching records that carried one,
    /// newest first.
    pub fn trace_ids(&self) -> Vec<TraceId> {
        let n = self.traces.len();
        (0..n)
            .map(|i| self.traces[(self.trace_next + n - 1 - i) % n])
            .collect()
    }

    fn add_trace(&mut self, t: TraceId, cap: usize) {
        if cap == 0 {
            return;
        }
        if self.traces.len() < cap {
            self.traces.push(t);
            self.trace_next = self.traces.len() % cap;
        } else {
            self.traces[self.trace_next] = t;
            self.trace_next = (self.trace_next + 1) % cap;
        }
    }

    fn window_add(&mut self, bucket: i64) {
        let n = WINDOW_BUCKETS as i64;
        if bucket > self.window_head {
            if bucket - self.window_head >= n {
                self.window = [0; WINDOW_BUCKETS];
            } else {
                for b in self.window_head + 1..=bucket {
                    self.window[b.rem_euclid(n) as usize] = 0;
                }
            }
            self.window_head = bucket;
        }
        if bucket > self.window_head - n {
            let w = &mut self.window[bucket.rem_euclid(n) as usize];
            *w = w.saturating_add(1);
        }
    }

    /// Records within the last window (to bucket granularity) ending at
    /// `bucket`.
    fn window_count(&self, bucket: i64) -> u64 {
        let n = WINDOW_BUCKETS as i64;
        let lo = (bucket - n + 1).max(self.window_head - n + 1);
        let hi = bucket.min(self.window_head);
        (lo..=hi)
            .map(|b| self.window[b.rem_euclid(n) as usize] as u64)
            .sum()
    }
}

/// What [`TemplateMiner::observe`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: TemplateId,
    /// The line created this template.
    pub created: bool,
    /// Records matched so far, this one included.
    pub count: u64,
    /// Unix seconds of the template's first record.
    pub first_seen: i64,
    /// Records within the window ending at this record, this one included.
    pub window_count: u64,
}

#[derive(Debug)]
struct Node {
    parent: u32,
    key: Box<str>,
    children: HashMap<Box<str>, u32>,
    templates: Vec<u32>,
}

/// The Drain tree and its templates.
#[derive(Debug)]
pub struct TemplateMiner {
    cfg: TemplateConfig,
    bucket_secs: i64,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    roots: HashMap<Arc<str>, u32>,
    templates: Vec<Option<Template>>,
    free_templates: Vec<u32>,
    by_id: HashMap<TemplateId, u32>,
    len: usize,
    lru_head: u32,
    lru_tail: u32,
    evicted: u64,
    tokens: Tokens,
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl TemplateMiner {
    pub fn new(cfg: TemplateConfig) -> Self {
        let bucket_secs = (cfg.window.as_secs() as i64 / WINDOW_BUCKETS as i64).max(1);
        TemplateMiner {
            cfg,
            bucket_secs,
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            roots: HashMap::new(),
            templates: Vec::new(),
            free_templates: Vec::new(),
            by_id: HashMap::new(),
            len: 0,
            lru_head: NIL,
            lru_tail: NIL,
            evicted: 0,
            tokens: Tokens::default(),
        }
    }

    pub fn config(&self) -> &TemplateConfig {
        &self.cfg
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Templates evicted since the miner was created.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn get(&self, id: TemplateId) -> Option<&Template> {
        let &slot = self.by_id.get(&id)?;
        self.templates[slot as usize].as_ref()
    }

    /// Every template, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Template> + '_ {
        self.templates.iter().flatten()
    }

    /// Records of template `id` within the window ending at `now`.
    pub fn window_count(&self, id: TemplateId, now: i64) -> u64 {
        self.get(id)
            .map_or(0, |t| t.window_count(now.div_euclid(self.bucket_secs)))
    }

    fn tpl(&self, slot: u32) -> &Template {
        self.templates[slot as usize]
            .as_ref()
            .expect("live template slot")
    }

    fn tpl_mut(&mut self, slot: u32) -> &mut Template {
        self.templates[slot as usize]
            .as_mut()
            .expect("live template slot")
    }

    /// Mines one record: finds or creates its template and updates the
    /// template's statistics. `ts` is the record's time (unix seconds).
    pub fn observe(
        &mut self,
        service: &str,
        line: &str,
        ts: i64,
        trace_id: Option<TraceId>,
    ) -> Observed {
        let mut toks = std::mem::take(&mut self.tokens);
        toks.fill(line, self.cfg.max_tokens, self.cfg.max_line_bytes);
        let found = self.search(service, &toks);
        let (slot, created) = match found {
            Some(slot) => {
                self.generalise(slot, &toks);
                (slot, false)
            }
            None => {
                if self.len >= self.cfg.max_templates {
                    self.evict_lru();
                }
                (self.create(service, &toks, ts), true)
            }
        };
        self.tokens = toks;
        self.lru_touch(slot);
        let bucket = ts.div_euclid(self.bucket_secs);
        let cap = self.cfg.trace_ids;
        let t = self.tpl_mut(slot);
        t.count += 1;
        t.first_seen = t.first_seen.min(ts);
        t.last_seen = t.last_seen.max(ts);
        if let Some(tr) = trace_id {
            t.add_trace(tr, cap);
        }
        t.window_add(bucket);
        Observed {
            id: t.id,
            created,
            count: t.count,
            first_seen: t.first_seen,
            window_count: t.window_count(bucket),
        }
    }

    fn levels(&self) -> usize {
        self.cfg.depth - 2
    }

    fn search(&self, service: &str, toks: &Tokens) -> Option<u32> {
        let &root = self.roots.get(service)?;
        let mut buf = [0u8; 20];
        let mut cur = *self.nodes[root as usize]
            .children
            .get(len_key(toks.len(), &mut buf))?;
        for i in 0..self.levels().min(toks.len()) {
            let node = &self.nodes[cur as usize];
            cur = match node.children.get(toks.get(i)) {
                Some(&c) => c,
                None => *node.children.get(WILDCARD)?,
            };
        }
        self.best_match(&self.nodes[cur as usize].templates, toks)
    }

    fn best_match(&self, candidates: &[u32], toks: &Tokens) -> Option<u32> {
        let n = toks.len();
        let mut best: Option<(u32, f64, usize)> = None;
        for &slot in candidates {
            let t = self.tpl(slot);
            if t.tokens.len() != n {
                continue;
            }
            let (mut same, mut params) = (0usize, 0usize);
            for (tt, lt) in t.tokens.iter().zip(toks.iter()) {
                if **tt == *lt {
                    same += 1;
                } else if &**tt == WILDCARD {
                    params += 1;
                }
            }
            let sim = if n == 0 { 1.0 } else { same as f64 / n as f64 };
            let better = match best {
                None => true,
                Some((_, bs, bp)) => sim > bs || (sim == bs && params > bp),
            };
            if better {
                best = Some((slot, sim, params));
            }
        }
        best.filter(|&(_, sim, _)| sim >= self.cfg.similarity)
            .map(|(s, _, _)| s)
    }

    fn generalise(&mut self, slot: u32, toks: &Tokens) {
        let t = self.tpl_mut(slot);
        for (tt, lt) in t.tokens.iter_mut().zip(toks.iter()) {
            if **tt != *lt && &**tt != WILDCARD {
                *tt = WILDCARD.into();
            }
        }
    }

    fn new_node(&mut self, parent: u32, key: &str) -> u32 {
        let node = Node {
            parent,
            key: key.into(),
            children: HashMap::new(),
            templates: Vec::new(),
        };
        match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn child_or_create(&mut self, parent: u32, key: &str) -> u32 {
        if let Some(&c) = self.nodes[parent as usize].children.get(key) {
            return c;
        }
        let c = self.new_node(parent, key);
        self.nodes[parent as usize].children.insert(key.into(), c);
        c
    }

    /// Drain's insertion path (Drain3's `add_seq_to_prefix_tree`).
    fn leaf_for_insert(&mut self, service: &str, toks: &Tokens) -> (u32, Arc<str>) {
        let (service_arc, root) = match self.roots.get_key_value(service) {
            Some((k, &r)) => (k.clone(), r),
            None => {
                let r = self.new_node(NIL, service);
                let k: Arc<str> = Arc::from(service);
                self.roots.insert(k.clone(), r);
                (k, r)
            }
        };
        let mut buf = [0u8; 20];
        let mut cur = self.child_or_create(root, len_key(toks.len(), &mut buf));
        let max_children = self.cfg.max_children;
        for i in 0..self.levels().min(toks.len()) {
            let tok = toks.get(i);
            if let Some(&c) = self.nodes[cur as usize].children.get(tok) {
                cur = c;
                continue;
            }
            if tok == WILDCARD || tok.bytes().any(|b| b.is_ascii_digit()) {
                cur = self.child_or_create(cur, WILDCARD);
                continue;
            }
            let node = &self.nodes[cur as usize];
            let n = node.children.len();
            let has_wild = node.children.contains_key(WILDCARD);
            cur = if (has_wild && n < max_children) || (!has_wild && n + 1 < max_children) {
                self.child_or_create(cur, tok)
            } else {
                self.child_or_create(cur, WILDCARD)
            };
        }
        (cur, service_arc)
    }

    fn create(&mut self, service: &str, toks: &Tokens, ts: i64) -> u32 {
        let (leaf, service_arc) = self.leaf_for_insert(service, toks);
        let mut h = fnv1a(FNV_OFFSET, service.as_bytes());
        h = fnv1a(h, &[0xff]);
        for (i, t) in toks.iter().enumerate() {
            if i > 0 {
                h = fnv1a(h, b" ");
            }
            h = fnv1a(h, t.as_bytes());
        }
        // A live template with the same id (a different branch created the
        // same text): derive a new, still deterministic, id.
        while self.by_id.contains_key(&TemplateId(h)) {
            h = fnv1a(h, b"+");
        }
        let id = TemplateId(h);
        let t = Template {
            id,
            service: service_arc,
            tokens: toks.iter().map(Box::from).collect(),
            count: 0,
            first_seen: ts,
            last_seen: ts,
            traces: Vec::new(),
            trace_next: 0,
            window: [0; WINDOW_BUCKETS],
            window_head: ts.div_euclid(self.bucket_secs),
            leaf,
            lru_prev: NIL,
            lru_next: NIL,
        };
        let slot = match self.free_templates.pop() {
            Some(s) => {
                self.templates[s as usize] = Some(t);
                s
            }
            None => {
                self.templates.push(Some(t));
                (self.templates.len() - 1) as u32
            }
        };
        self.nodes[leaf as usize].templates.push(slot);
        self.by_id.insert(id, slot);
        self.len += 1;
        slot
    }

    fn lru_unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let t = self.tpl(slot);
            (t.lru_prev, t.lru_next)
        };
        if prev != NIL {
            self.tpl_mut(prev).lru_next = next;
        } else if self.lru_head == slot {
            self.lru_head = next;
        }
        if next != NIL {
            self.tpl_mut(next).lru_prev = prev;
        } else if self.lru_tail == slot {
            self.lru_tail = prev;
        }
        let t = self.tpl_mut(slot);
        t.lru_prev = NIL;
        t.lru_next = NIL;
    }

    fn lru_touch(&mut self, slot: u32) {
        if self.lru_head == slot {
            return;
        }
        self.lru_unlink(slot);
        let head = self.lru_head;
        {
            let t = self.tpl_mut(slot);
            t.lru_next = head;
        }
        if head != NIL {
            self.tpl_mut(head).lru_prev = slot;
        }
        self.lru_head = slot;
        if self.lru_tail == NIL {
            self.lru_tail = slot;
        }
    }

    fn evict_lru(&mut self) {
        let slot = self.lru_tail;
        if slot == NIL {
            return;
        }
        self.lru_unlink(slot);
        let t = self.templates[slot as usize].take().expect("lru slot live");
        self.free_templates.push(slot);
        self.by_id.remove(&t.id);
        self.len -= 1;
        self.evicted += 1;
        let leaf = &mut self.nodes[t.leaf as usize].templates;
        if let Some(pos) = leaf.iter().position(|&s| s == slot) {
            leaf.swap_remove(pos);
        }
        self.prune(t.leaf);
    }

    /// Removes `node` and its ancestors while they hold nothing.
    fn prune(&mut self, mut node: u32) {
        loop {
            let n = &self.nodes[node as usize];
            if !n.templates.is_empty() || !n.children.is_empty() {
                return;
            }
            let parent = n.parent;
            let key = std::mem::take(&mut self.nodes[node as usize].key);
            self.free_nodes.push(node);
            if parent == NIL {
                self.roots.remove(&*key);
                return;
            }
            self.nodes[parent as usize].children.remove(&*key);
            node = parent;
        }
    }

    /// Tree nodes in use (for tests and the memory estimate).
    pub fn nodes(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// Approximate bytes held by the miner.
    pub fn state_bytes(&self) -> usize {
        let tpl: usize = self
            .iter()
            .map(|t| {
                std::mem::size_of::<Template>()
                    + t.tokens.capacity() * 16
                    + t.tokens.iter().map(|s| s.len().max(8)).sum::<usize>()
                    + t.traces.capacity() * 16
            })
            .sum();
        let nodes = self.nodes.len() * std::mem::size_of::<Node>()
            + self
                .nodes
                .iter()
                .map(|n| n.children.capacity() * 28 + n.templates.capacity() * 4 + n.key.len())
                .sum::<usize>();
        tpl + nodes + self.by_id.capacity() * 17
    }
}

fn len_key(n: usize, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("ascii digits")
}

#[cfg(test)]
mod tests;
