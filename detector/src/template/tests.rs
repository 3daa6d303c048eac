use super::*;

fn miner() -> TemplateMiner {
    TemplateMiner::new(TemplateConfig::default())
}

/// Mines `lines` for one service and returns `(template text, count)`
/// sorted by text.
fn mine(m: &mut TemplateMiner, lines: &[&str]) -> Vec<(String, u64)> {
    for (i, l) in lines.iter().enumerate() {
        m.observe("svc", l, 1_000 + i as i64, None);
    }
    let mut out: Vec<(String, u64)> = m.iter().map(|t| (t.text(), t.count())).collect();
    out.sort();
    out
}

fn owned(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut o: Vec<(String, u64)> = v.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    o.sort();
    o
}

/// Hand-written lines in the shape of the LogHub HDFS sample (full lines,
/// header included: the date, time and pid are masked like any number).
#[test]
fn hdfs_corpus() {
    let lines = [
        "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
        "081109 203807 222 INFO dfs.DataNode$PacketResponder: PacketResponder 0 for block blk_-6952295868487656571 terminating",
        "081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864",
        "081109 204015 308 INFO dfs.DataNode$PacketResponder: Received block blk_8229193803249955061 of size 67108864 from /10.251.107.19",
        "081109 204106 329 INFO dfs.DataNode$PacketResponder: Received block blk_-6670958622368987959 of size 67108864 from /10.251.71.16",
        "081109 204132 26 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.251.43.115:50010 is added to blk_3050920587428079149 size 67108864",
        "081109 204324 34 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /user/root/rand/_temporary/_task_200811092030_0001_m_000590_0/part-00590. blk_-1608999687919862906",
        "081109 204453 34 INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: /user/root/rand/_temporary/_task_200811092030_0001_m_000613_0/part-00613. blk_2096692261399680562",
        "081109 204525 512 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
        "081109 204655 556 INFO dfs.DataNode$DataXceiver: Receiving block blk_-1608999687919862906 src: /10.250.10.6:40524 dest: /10.250.10.6:50010",
        "081109 204722 567 INFO dfs.DataNode$DataXceiver: Receiving block blk_7503483334202473044 src: /10.251.71.16:51590 dest: /10.251.71.16:50010",
    ];
    let got = mine(&mut miner(), &lines);
    let want = owned(&[
        (
            "<*> <*> <*> INFO dfs.DataNode$PacketResponder: PacketResponder <*> for block <*> terminating",
            2,
        ),
        (
            "<*> <*> <*> INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: <*> is added to <*> size <*>",
            2,
        ),
        (
            "<*> <*> <*> INFO dfs.DataNode$PacketResponder: Received block <*> of size <*> from <*>",
            2,
        ),
        (
            "<*> <*> <*> INFO dfs.FSNamesystem: BLOCK* NameSystem.allocateBlock: <*> <*>",
            2,
        ),
        (
            "<*> <*> <*> INFO dfs.DataNode$DataXceiver: Receiving block <*> src: <*> dest: <*>",
            3,
        ),
    ]);
    assert_eq!(got, want);
}

/// The brief's example, as an OTLP body would carry it (no header).
#[test]
fn receiving_block_example() {
    let got = mine(
        &mut miner(),
        &[
            "Receiving block blk_123 src: /10.0.0.1:5000",
            "Receiving block blk_-987 src: /10.0.0.7:5001",
        ],
    );
    assert_eq!(got, owned(&[("Receiving block <*> src: <*>", 2)]));
}

/// Message parts of the LogHub Apache error-log sample.
#[test]
fn apache_corpus() {
    let lines = [
        "workerEnv.init() ok /etc/httpd/conf/workers2.properties",
        "mod_jk child workerEnv in error state 6",
        "jk2_init() Found child 6725 in scoreboard slot 10",
        "jk2_init() Found child 6726 in scoreboard slot 8",
        "mod_jk child workerEnv in error state 7",
        "workerEnv.init() ok /etc/httpd/conf/workers2.properties",
        "[client 81.199.21.119] Directory index forbidden by rule: /var/www/html/",
        "[client 222.166.160.184] Directory index forbidden by rule: /var/www/html/",
        "jk2_init() Can't find child 1566 in scoreboard",
        "jk2_init() Can't find child 1567 in scoreboard",
    ];
    let got = mine(&mut miner(), &lines);
    let want = owned(&[
        ("workerEnv.init() ok /etc/httpd/conf/workers2.properties", 2),
        ("mod_jk child workerEnv in error state <*>", 2),
        ("jk2_init() Found child <*> in scoreboard slot <*>", 2),
        (
            "[client <*> Directory index forbidden by rule: /var/www/html/",
            2,
        ),
        ("jk2_init() Can't find child <*> in scoreboard", 2),
    ]);
    assert_eq!(got, want);
}

/// Drain generalises a token masking missed, and keeps the id.
#[test]
fn generalisation_keeps_the_id() {
    let mut m = miner();
    let a = m.observe("svc", "Connection closed by peer alice", 1, None);
    let b = m.observe("svc", "Connection closed by peer bob", 2, None);
    assert!(a.created && !b.created);
    assert_eq!(a.id, b.id);
    assert_eq!(m.get(a.id).unwrap().text(), "Connection closed by peer <*>");
    // A fresh miner seeing the same first line assigns the same id.
    let mut m2 = miner();
    assert_eq!(
        m2.observe("svc", "Connection closed by peer alice", 9, None)
            .id,
        a.id
    );
    // ... but per service.
    assert_ne!(
        m2.observe("other", "Connection closed by peer alice", 9, None)
            .id,
        a.id
    );
}

#[test]
fn similarity_threshold_decides_merging() {
    let lines = [
        "cache miss for key alpha",
        "cache miss rate above threshold",
    ];
    // 2 of 5 tokens agree: 0.4 merges at the default threshold...
    let got = mine(&mut miner(), &lines);
    assert_eq!(got, owned(&[("cache miss <*> <*> <*>", 2)]));
    // ...and not at 0.5.
    let mut strict = TemplateMiner::new(TemplateConfig {
        similarity: 0.5,
        ..Default::default()
    });
    assert_eq!(mine(&mut strict, &lines).len(), 2);
    // Lines of different lengths never share a template.
    assert_eq!(
        mine(&mut miner(), &["disk full", "disk full again"]).len(),
        2
    );
}

#[test]
fn lines_that_are_all_variables_share_one_template() {
    let got = mine(&mut miner(), &["42 17", "1.5s 3", "0xff 12ms"]);
    assert_eq!(got, owned(&[("<*> <*>", 3)]));
}

#[test]
fn bounded_by_lru_with_pruning() {
    let mut m = TemplateMiner::new(TemplateConfig {
        max_templates: 3,
        ..Default::default()
    });
    let a = m.observe("svc", "alpha event happened", 1, None).id;
    let b = m.observe("svc", "beta thing occurred now", 2, None).id;
    let c = m.observe("svc", "gamma", 3, None).id;
    let nodes = m.nodes();
    // Touch a: b is now the least recently seen.
    m.observe("svc", "alpha event happened", 4, None);
    let d = m.observe("svc", "delta x", 5, None).id;
    assert_eq!(m.len(), 3);
    assert_eq!(m.evicted(), 1);
    assert!(m.get(b).is_none());
    assert!(m.get(a).is_some() && m.get(c).is_some() && m.get(d).is_some());
    // b's branch was pruned; d's was added: the tree does not grow.
    assert_eq!(m.nodes(), nodes);
    // b comes back as a new template, under the same id.
    let b2 = m.observe("svc", "beta thing occurred now", 6, None);
    assert!(b2.created);
    assert_eq!(b2.id, b);
    assert_eq!(b2.count, 1);
    assert_eq!(m.evicted(), 2);
    // Many templates churning through a small bound keep the tree small.
    for i in 0..500 {
        m.observe(
            &format!("svc{}", i % 7),
            &format!("word{} other{} thing", i % 50, i % 3),
            i,
            None,
        );
    }
    assert_eq!(m.len(), 3);
    assert!(m.nodes() < 40, "{} nodes", m.nodes());
}

#[test]
fn trace_ids_newest_first_and_bounded() {
    let mut m = TemplateMiner::new(TemplateConfig {
        trace_ids: 3,
        ..Default::default()
    });
    let mut id = None;
    for i in 1..=5u8 {
        id = Some(
            m.observe("svc", "payment declined", i as i64, Some([i; 16]))
                .id,
        );
    }
    m.observe("svc", "payment declined", 6, None);
    let t = m.get(id.unwrap()).unwrap();
    assert_eq!(t.trace_ids(), vec![[5; 16], [4; 16], [3; 16]]);
    assert_eq!((t.count(), t.first_seen(), t.last_seen()), (6, 1, 6));
}

#[test]
fn window_counts_forget_after_the_window() {
    let mut m = miner(); // 24 h window, 1 h buckets
    let h = 3600;
    let o = m.observe("svc", "rare error", 0, None);
    assert_eq!(o.window_count, 1);
    m.observe("svc", "rare error", 2 * h, None);
    let o = m.observe("svc", "rare error", 23 * h, None);
    assert_eq!(o.window_count, 3);
    // Hour 0 leaves the window at hour 24.
    let o = m.observe("svc", "rare error", 24 * h, None);
    assert_eq!(o.window_count, 3);
    assert_eq!(m.window_count(o.id, 25 * h + 1), 3);
    assert_eq!(m.window_count(o.id, 26 * h + 1), 2);
    assert_eq!(m.window_count(o.id, 60 * h), 0);
    // A late record counts within the window ending at its own time (the
    // hour-24 record is after it); one older than any window counts 0.
    let o = m.observe("svc", "rare error", 23 * h + 5, None);
    assert_eq!(o.window_count, 3);
    assert_eq!(m.window_count(o.id, 24 * h), 4);
    let o = m.observe("svc", "rare error", -10 * h, None);
    assert_eq!(o.window_count, 0);
    assert_eq!(o.first_seen, -10 * h);
}

#[test]
fn config_problems_name_fields() {
    let c = TemplateConfig {
        depth: 2,
        similarity: 1.5,
        max_children: 1,
        max_templates: 0,
        max_tokens: 1,
        max_line_bytes: 1,
        trace_ids: 100,
        window: Duration::from_secs(1),
    };
    let fields: Vec<String> = c
        .problems("t")
        .iter()
        .map(|p| p.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(
        fields,
        [
            "t.depth",
            "t.similarity",
            "t.max_children",
            "t.max_templates",
            "t.max_tokens",
            "t.max_line_bytes",
            "t.trace_ids",
            "t.window"
        ]
    );
    assert!(TemplateConfig::default().problems("t").is_empty());
    assert_eq!(
        "00000000000000ff".parse::<TemplateId>().unwrap(),
        TemplateId(255)
    );
}
