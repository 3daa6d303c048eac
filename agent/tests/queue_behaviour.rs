//! What a user of the disk queue notices: order, at-least-once across
//! reopen, disk usage coming back, the full policies, damage counted and
//! never silent, metrics.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use argus_agent::queue::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use argus_agent::queue::{
    DiskQueueConfig, Entry, FsyncPolicy, QueueError, QueueReader, QueueWriter, WhenFull,
};
use prometheus_client::registry::Registry;

fn cfg(dir: &Path) -> DiskQueueConfig {
    DiskQueueConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 20,
        segment_bytes: 16 << 10,
        max_record_bytes: 8 << 10,
        fsync: FsyncPolicy::Never,
        when_full: WhenFull::Block,
        ..Default::default()
    }
}

fn open(c: &DiskQueueConfig) -> (QueueWriter, QueueReader, Registry) {
    let mut reg = Registry::with_prefix("argus_agent");
    let (w, r) = c.build(&mut reg).expect("queue opens");
    (w, r, reg)
}

/// The value of one sample in the registry's text exposition.
fn metric(reg: &Registry, sample: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, reg).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
        .parse()
        .unwrap()
}

fn body(i: u64, len: usize) -> Vec<u8> {
    let mut b = i.to_le_bytes().to_vec();
    b.resize(len.max(8), (i % 251) as u8);
    b
}

fn num(e: &Entry) -> u64 {
    u64::from_le_bytes(e.data[..8].try_into().unwrap())
}

async fn next(r: &mut QueueReader) -> Entry {
    tokio::time::timeout(Duration::from_secs(10), r.next())
        .await
        .expect("a record within 10 s")
        .expect("queue open")
}

fn files(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(ext)
        })
        .count()
}

#[tokio::test]
async fn restart_redelivers_exactly_the_unacked_records_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let (w, mut r, _) = open(&c);
    for i in 0..10 {
        w.append(&body(i, 100)).await.unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..10 {
        let e = next(&mut r).await;
        assert_eq!(num(&e), i);
        ids.push(e.id);
    }
    // Out of order, as concurrent export requests finish.
    for i in [8, 2, 6, 0, 4] {
        r.ack(ids[i]);
    }
    drop((w, r));

    let (w, mut r, _) = open(&c);
    assert_eq!(r.stats().records, 5);
    for i in [1, 3, 5, 7, 9] {
        assert_eq!(num(&next(&mut r).await), i);
    }
    drop(w);
    assert!(r.next().await.is_none(), "nothing else, and closed");
}

#[tokio::test]
async fn acked_segments_are_deleted_and_disk_usage_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let (w, mut r, reg) = open(&c);
    for i in 0..100 {
        w.append(&body(i, 1000)).await.unwrap();
    }
    assert!(
        files(tmp.path(), ".seg") >= 6,
        "1 KiB records in 16 KiB segments"
    );
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(next(&mut r).await.id);
    }
    assert_eq!(metric(&reg, "argus_agent_queue_records"), 100.0);
    for id in ids.into_iter().rev() {
        r.ack(id);
    }
    r.sync().await; // deletions run on the I/O thread, in order before this
    assert_eq!(files(tmp.path(), ".seg"), 1, "only the write head is left");
    assert!(files(tmp.path(), ".ack") <= 1);
    let s = r.stats();
    assert_eq!((s.records, s.segments), (0, 1));
    assert!(s.bytes < 16 << 10, "{s:?}");
    assert_eq!(metric(&reg, "argus_agent_queue_acked_records_total"), 100.0);
    assert_eq!(metric(&reg, "argus_agent_queue_records"), 0.0);
    assert_eq!(metric(&reg, "argus_agent_queue_bytes"), s.bytes as f64);
}

#[tokio::test]
async fn block_policy_waits_for_acks_then_proceeds() {
    let tmp = tempfile::tempdir().unwrap();
    let c = DiskQueueConfig {
        max_bytes: 64 << 10,
        ..cfg(tmp.path())
    };
    let (w, mut r, _) = open(&c);
    // 4 KiB records, 3 per 16 KiB segment: 12 fill 64 KiB minus headers.
    let mut n = 0;
    while w.stats().bytes + (4096 + RECORD_HEADER_LEN + SEGMENT_HEADER_LEN) as u64 <= c.max_bytes {
        w.append(&body(n, 4096)).await.unwrap();
        n += 1;
    }
    let before = w.stats();
    let w2 = w.clone();
    let blocked = tokio::spawn(async move { w2.append(&body(999, 4096)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !blocked.is_finished(),
        "append must wait while the queue is full"
    );
    assert_eq!(w.stats().records, before.records, "and write nothing");

    // Taking records without acking frees nothing.
    let first: Vec<Entry> = vec![next(&mut r).await, next(&mut r).await, next(&mut r).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!blocked.is_finished());
    // Acking the first segment's records frees it.
    for e in &first {
        r.ack(e.id);
    }
    tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("append proceeds once a segment is freed")
        .unwrap()
        .unwrap();
    // Nothing was lost on the way: the rest arrive in order, then 999.
    for i in 3..n {
        assert_eq!(num(&next(&mut r).await), i);
    }
    assert_eq!(num(&next(&mut r).await), 999);
}

#[tokio::test]
async fn drop_oldest_drops_the_oldest_segment_and_counts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let c = DiskQueueConfig {
        max_bytes: 64 << 10,
        when_full: WhenFull::DropOldest,
        ..cfg(tmp.path())
    };
    let (w, mut r, reg) = open(&c);
    for i in 0..40 {
        tokio::time::timeout(Duration::from_secs(5), w.append(&body(i, 4096)))
            .await
            .expect("drop_oldest never blocks")
            .unwrap();
    }
    assert!(w.stats().bytes <= c.max_bytes);
    let dropped = metric(
        &reg,
        "argus_agent_queue_dropped_records_total{reason=\"queue_full\"}",
    );
    assert!(dropped > 0.0);
    assert_eq!(
        metric(
            &reg,
            "argus_agent_queue_dropped_bytes_total{reason=\"queue_full\"}"
        ),
        dropped * 4096.0
    );
    drop(w);
    let mut got = Vec::new();
    while let Some(e) = r.next().await {
        got.push(num(&e));
    }
    // The newest survive, contiguous; exactly the counted ones are missing.
    assert_eq!(got.len() as f64, 40.0 - dropped);
    let first = *got.first().unwrap();
    assert_eq!(got, (first..40).collect::<Vec<_>>());
}

#[tokio::test]
async fn drop_oldest_does_not_count_records_already_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let c = DiskQueueConfig {
        max_bytes: 64 << 10,
        when_full: WhenFull::DropOldest,
        ..cfg(tmp.path())
    };
    let (w, mut r, reg) = open(&c);
    // 15 records of 4 KiB, 3 per segment: the next append needs a new
    // segment, which no longer fits.
    for i in 0..15 {
        w.append(&body(i, 4096)).await.unwrap();
    }
    assert_eq!(w.stats().segments, 5);
    // The exporter holds the first segment's three records (in flight).
    let held = [next(&mut r).await, next(&mut r).await, next(&mut r).await];
    w.append(&body(15, 4096)).await.unwrap();
    assert_eq!(
        w.stats().segments,
        5,
        "segment 0 was dropped for the new one"
    );
    // Its records were taken already: not counted as undelivered.
    let dropped = metric(
        &reg,
        "argus_agent_queue_dropped_records_total{reason=\"queue_full\"}",
    );
    assert_eq!(dropped, 0.0);
    // Their acks are harmless no-ops, and the reader goes on after them.
    for e in &held {
        r.ack(e.id);
    }
    assert_eq!(num(&next(&mut r).await), 3);
}

#[tokio::test]
async fn torn_tail_is_cut_and_counted_and_appends_resume_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let (w, r, _) = open(&c);
    for i in 0..5 {
        w.append(&body(i, 300)).await.unwrap();
    }
    drop((w, r));
    // What kill -9 in the middle of a write leaves: part of a record.
    let head = tmp.path().join("00000000000000000000.seg");
    let mut torn = Vec::new();
    format::encode_record(5, 0, &body(5, 300), &mut torn);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&head)
        .unwrap();
    std::io::Write::write_all(&mut f, &torn[..100]).unwrap();
    drop(f);

    let (w, mut r, reg) = open(&c);
    assert_eq!(
        metric(&reg, "argus_agent_queue_truncated_bytes_total"),
        100.0
    );
    assert_eq!(metric(&reg, "argus_agent_queue_corrupt_records_total"), 0.0);
    w.append(&body(5, 300)).await.unwrap();
    for i in 0..6 {
        let e = next(&mut r).await;
        assert_eq!((num(&e), e.id.seq()), (i, i));
    }
}

/// Flips one byte of record `seq`'s body in the segment file.
fn damage_body(seg: &Path, seq: u64) {
    let mut bytes = std::fs::read(seg).unwrap();
    let rec = format::scan_segment(&bytes)
        .records
        .into_iter()
        .find(|r| r.seq == seq)
        .unwrap();
    bytes[rec.body_range().start + 10] ^= 0x40;
    std::fs::write(seg, bytes).unwrap();
}

#[tokio::test]
async fn corrupt_record_is_skipped_counted_once_and_neighbours_survive() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let (w, r, _) = open(&c);
    for i in 0..5 {
        w.append(&body(i, 300)).await.unwrap();
    }
    drop((w, r));
    damage_body(&tmp.path().join("00000000000000000000.seg"), 2);

    let (w, mut r, reg) = open(&c);
    assert_eq!(metric(&reg, "argus_agent_queue_corrupt_records_total"), 1.0);
    drop(w);
    let mut got = Vec::new();
    while let Some(e) = r.next().await {
        got.push(num(&e));
    }
    assert_eq!(got, [0, 1, 3, 4]);
    drop(r);
    // Reopened: the loss is not counted again, the survivors (unacked) are
    // delivered again.
    let (w, mut r, reg) = open(&c);
    assert_eq!(metric(&reg, "argus_agent_queue_corrupt_records_total"), 0.0);
    drop(w);
    let mut again = Vec::new();
    while let Some(e) = r.next().await {
        again.push(num(&e));
    }
    assert_eq!(again, [0, 1, 3, 4]);
}

#[tokio::test]
async fn damage_appearing_after_open_is_found_by_the_reader_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let (w, mut r, reg) = open(&c);
    for i in 0..4 {
        w.append(&body(i, 300)).await.unwrap();
    }
    // The disk rots record 1 before the exporter reads it.
    damage_body(&tmp.path().join("00000000000000000000.seg"), 1);
    drop(w);
    let mut got = Vec::new();
    while let Some(e) = r.next().await {
        got.push(num(&e));
    }
    assert_eq!(got, [0, 2, 3]);
    assert_eq!(metric(&reg, "argus_agent_queue_corrupt_records_total"), 1.0);
    assert_eq!(
        r.stats().records,
        3,
        "the lost record is settled, not pending forever"
    );
}

#[tokio::test]
async fn a_second_agent_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let (_w, _r, _) = open(&c);
    let err = c.build(&mut Registry::default()).unwrap_err();
    assert!(matches!(err, QueueError::Locked(_)), "{err}");
}

#[tokio::test]
async fn invalid_config_is_refused_with_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let c = DiskQueueConfig {
        max_bytes: 1,
        max_record_bytes: 0,
        ..cfg(tmp.path())
    };
    match c.build(&mut Registry::default()) {
        Err(QueueError::Config(p)) => assert_eq!(p.len(), 2, "{p:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_record_is_refused_as_permanent() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, _r, _) = open(&cfg(tmp.path()));
    let err = w.append(&vec![0; (8 << 10) + 1]).await.unwrap_err();
    assert!(matches!(err, QueueError::RecordTooLarge { .. }));
    assert!(!err.is_retryable());
    w.append(&vec![0; 8 << 10])
        .await
        .expect("the limit itself fits");
}

#[tokio::test]
async fn oldest_record_age_follows_the_append_time() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(1_000_000));
    let clock = now.clone();
    let mut reg = Registry::with_prefix("argus_agent");
    let (w, mut r) = cfg(tmp.path())
        .build_with_clock(&mut reg, Arc::new(move || clock.load(Ordering::SeqCst)))
        .unwrap();
    assert_eq!(
        metric(&reg, "argus_agent_queue_oldest_record_age_seconds"),
        0.0
    );
    w.append(b"first").await.unwrap();
    now.store(1_030_000, Ordering::SeqCst);
    w.append(b"second").await.unwrap();
    now.store(1_090_000, Ordering::SeqCst);
    assert_eq!(
        metric(&reg, "argus_agent_queue_oldest_record_age_seconds"),
        90.0
    );
    let a = next(&mut r).await;
    let b = next(&mut r).await;
    assert_eq!(a.appended_unix_ms, 1_000_000);
    // Taken but unacked still counts: it is not delivered yet.
    assert_eq!(
        metric(&reg, "argus_agent_queue_oldest_record_age_seconds"),
        90.0
    );
    r.ack(a.id);
    assert_eq!(
        metric(&reg, "argus_agent_queue_oldest_record_age_seconds"),
        60.0
    );
    r.ack(b.id);
    assert_eq!(
        metric(&reg, "argus_agent_queue_oldest_record_age_seconds"),
        0.0
    );
    assert_eq!(
        metric(&reg, "argus_agent_queue_appended_records_total"),
        2.0
    );
    assert_eq!(metric(&reg, "argus_agent_queue_appended_bytes_total"), 11.0);
}

#[tokio::test]
async fn reader_ends_only_when_every_writer_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, mut r, _) = open(&cfg(tmp.path()));
    let w2 = w.clone();
    w.append(b"x").await.unwrap();
    drop(w);
    assert_eq!(next(&mut r).await.data.as_ref(), b"x");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), r.next())
            .await
            .is_err(),
        "one writer left: the reader waits"
    );
    w2.append(b"y").await.unwrap();
    drop(w2);
    assert_eq!(next(&mut r).await.data.as_ref(), b"y");
    assert!(r.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_each_land_exactly_once_in_their_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, mut r, _) = open(&DiskQueueConfig {
        max_bytes: 64 << 20,
        ..cfg(tmp.path())
    });
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let w = w.clone();
            tokio::spawn(async move {
                for i in 0..200u64 {
                    w.append(&body(t * 1000 + i, 700)).await.unwrap();
                }
            })
        })
        .collect();
    drop(w);
    for t in tasks {
        t.await.unwrap();
    }
    let mut last = [None::<u64>; 8];
    let mut n = 0;
    while let Some(e) = r.next().await {
        let v = num(&e);
        let t = (v / 1000) as usize;
        assert!(
            last[t].is_none_or(|p| v == p + 1),
            "writer {t}: {v} after {:?}",
            last[t]
        );
        last[t] = Some(v);
        n += 1;
    }
    assert_eq!(n, 1600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_next_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, mut r, _) = open(&cfg(tmp.path()));
    let writer = tokio::spawn(async move {
        for i in 0..300 {
            w.append(&body(i, 2000)).await.unwrap();
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut got = Vec::new();
    loop {
        // A very short deadline cancels `next` at every possible await point.
        match tokio::time::timeout(Duration::from_micros(50), r.next()).await {
            Ok(Some(e)) => got.push(num(&e)),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    writer.await.unwrap();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
}

#[tokio::test]
async fn fsync_always_and_interval_keep_the_same_contract() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(10)),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let c = DiskQueueConfig {
            fsync,
            ..cfg(tmp.path())
        };
        let (w, mut r, _) = open(&c);
        for i in 0..30 {
            w.append(&body(i, 1500)).await.unwrap();
        }
        let first = next(&mut r).await;
        r.ack(first.id);
        w.sync().await;
        drop((w, r));
        let (w, mut r, _) = open(&c);
        drop(w);
        let mut got = Vec::new();
        while let Some(e) = r.next().await {
            got.push(num(&e));
        }
        assert_eq!(got, (1..30).collect::<Vec<_>>(), "{fsync}");
    }
}

#[tokio::test]
async fn all_metric_names_are_exposed_with_the_agent_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let (_w, _r, reg) = open(&cfg(tmp.path()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for name in [
        "argus_agent_queue_bytes",
        "argus_agent_queue_records",
        "argus_agent_queue_segments",
        "argus_agent_queue_oldest_record_age_seconds",
        "argus_agent_queue_max_bytes",
        "argus_agent_queue_appended_records_total",
        "argus_agent_queue_appended_bytes_total",
        "argus_agent_queue_acked_records_total",
        "argus_agent_queue_corrupt_records_total",
        "argus_agent_queue_truncated_bytes_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing from:\n{text}"
        );
    }
    let max = cfg(tmp.path()).max_bytes;
    assert!(
        text.contains(&format!("argus_agent_queue_max_bytes {max}\n")),
        "the configured bound, {max}:\n{text}"
    );
    for family in [
        "argus_agent_queue_dropped_records",
        "argus_agent_queue_dropped_bytes",
        "argus_agent_queue_io_errors",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} counter")),
            "{family}\n{text}"
        );
    }
}

#[tokio::test]
async fn closed_segment_cut_at_a_record_boundary_still_counts_its_lost_records() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path());
    let (w, r, _) = open(&c);
    // 5 KiB records, 3 per 16 KiB segment: segments 0, 3, 6.
    for i in 0..9 {
        w.append(&body(i, 5000)).await.unwrap();
    }
    drop((w, r));
    let seg0 = tmp.path().join("00000000000000000000.seg");
    let bytes = std::fs::read(&seg0).unwrap();
    let scan = format::scan_segment(&bytes);
    assert!(scan.seal.is_some(), "a closed segment is sealed");
    // What a power loss can leave: the file ends cleanly after record 0;
    // records 1 and 2 and the seal are gone, nothing looks torn.
    let r0 = scan.records[0];
    std::fs::write(&seg0, &bytes[..r0.offset + r0.total_len]).unwrap();

    let (w, mut r, reg) = open(&c);
    assert_eq!(metric(&reg, "argus_agent_queue_corrupt_records_total"), 2.0);
    drop(w);
    let mut got = Vec::new();
    while let Some(e) = r.next().await {
        got.push(num(&e));
    }
    assert_eq!(got, [0, 3, 4, 5, 6, 7, 8]);
}
