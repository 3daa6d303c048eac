//! Property tests of the disk queue against a model.
//!
//! 1. Any sequence of appends, reads, out-of-order acks and reopens delivers
//!    every appended record, in order, none lost, re-delivering (after a
//!    reopen) exactly the unacked ones.
//! 2. Arbitrary damage to one segment file (bit flips, zeroed runs,
//!    truncation) never panics and loses only the records whose bytes were
//!    damaged; every loss is counted (`queue_corrupt_records_total`, or for
//!    the head's cut-off end `queue_truncated_bytes_total`).
//! 3. The pure segment decoder is total on arbitrary bytes and everything
//!    it returns re-encodes to exactly the bytes it came from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use argus_agent::queue::format::{self, RECORD_HEADER_LEN};
use argus_agent::queue::{
    DiskQueueConfig, Entry, EntryId, FsyncPolicy, QueueReader, QueueWriter, WhenFull,
};
use prometheus_client::registry::Registry;
use proptest::prelude::*;
use proptest::sample::Index;

const SEGMENT_BYTES: u64 = 1024;

fn cfg(dir: &Path, fsync: FsyncPolicy) -> DiskQueueConfig {
    DiskQueueConfig {
        dir: dir.to_path_buf(),
        max_bytes: 64 << 20,
        segment_bytes: SEGMENT_BYTES,
        max_record_bytes: 900,
        fsync,
        when_full: WhenFull::Block,
        ..Default::default()
    }
}

fn open(c: &DiskQueueConfig) -> (QueueWriter, QueueReader, Registry) {
    let mut reg = Registry::with_prefix("argus_agent");
    let (w, r) = c.build(&mut reg).expect("queue opens");
    (w, r, reg)
}

fn metric(reg: &Registry, sample: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, reg).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {sample}"))
        .parse()
        .unwrap()
}

/// Record `seq`'s content: recognisable, and different for every record.
fn content(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(131).wrapping_add(i as u64 * 7) % 256) as u8)
        .collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn next(r: &mut QueueReader) -> Option<Entry> {
    tokio::time::timeout(Duration::from_secs(10), r.next())
        .await
        .expect("reader answers within 10 s")
}

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    Read,
    Ack(Index),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..900).prop_map(Op::Append),
        4 => Just(Op::Read),
        3 => any::<Index>().prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

fn fsync_policy() -> impl Strategy<Value = FsyncPolicy> {
    prop_oneof![
        Just(FsyncPolicy::Never),
        Just(FsyncPolicy::Always),
        Just(FsyncPolicy::Interval(Duration::from_millis(5))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn delivery_is_in_order_at_least_once_and_acked_means_gone(
        ops in prop::collection::vec(op(), 1..120),
        fsync in fsync_policy(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), fsync);
        rt().block_on(async {
            let (mut w, mut r, _) = open(&c);
            // Model: lengths of appended records (seq = index), acked seqs,
            // records taken and not acked in this session, and the reader's
            // position (next seq it may deliver).
            let mut appended: Vec<usize> = Vec::new();
            let mut acked = BTreeSet::new();
            let mut in_flight: Vec<EntryId> = Vec::new();
            let mut cursor = 0u64;
            for op in ops {
                match op {
                    Op::Append(len) => {
                        w.append(&content(appended.len() as u64, len)).await.unwrap();
                        appended.push(len);
                    }
                    Op::Read => {
                        let expect = (cursor..appended.len() as u64).find(|s| !acked.contains(s));
                        let Some(seq) = expect else { continue };
                        let e = next(&mut r).await.expect("open");
                        prop_assert_eq!(e.id.seq(), seq, "next unacked record, in order");
                        prop_assert_eq!(&e.data[..], &content(seq, appended[seq as usize])[..]);
                        cursor = seq + 1;
                        in_flight.push(e.id);
                    }
                    Op::Ack(i) => {
                        if in_flight.is_empty() { continue }
                        let id = in_flight.swap_remove(i.index(in_flight.len()));
                        r.ack(id);
                        acked.insert(id.seq());
                    }
                    Op::Reopen => {
                        drop((w, r));
                        (w, r, _) = open(&c);
                        in_flight.clear();
                        cursor = 0;
                        prop_assert_eq!(
                            r.stats().records,
                            appended.len() as u64 - acked.len() as u64,
                            "pending after reopen = appended - acked"
                        );
                    }
                }
            }
            // Reopen once more and drain: exactly the unacked, in order.
            drop((w, r));
            let (w, mut r, reg) = open(&c);
            drop(w);
            let mut rest = Vec::new();
            while let Some(e) = next(&mut r).await {
                prop_assert_eq!(&e.data[..], &content(e.id.seq(), appended[e.id.seq() as usize])[..]);
                rest.push(e.id.seq());
            }
            let unacked: Vec<u64> = (0..appended.len() as u64).filter(|s| !acked.contains(s)).collect();
            prop_assert_eq!(rest, unacked);
            prop_assert_eq!(metric(&reg, "argus_agent_queue_corrupt_records_total"), 0.0);
            // Disk space of settled segments came back: at most the segments
            // holding unacked records, plus the head.
            let segs = std::fs::read_dir(tmp.path()).unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".seg"))
                .count();
            prop_assert!(segs as u64 <= appended.len() as u64 - acked.len() as u64 + 1);
            Ok(())
        })?;
    }
}

#[derive(Clone, Debug)]
enum Damage {
    /// XOR these bytes at these positions.
    Flips(Vec<(Index, u8)>),
    /// Zero a run of bytes (what a power loss leaves in unwritten blocks).
    Zero(Index, usize),
    /// Cut the file.
    Truncate(Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec((any::<Index>(), 1u8..=255), 1..6).prop_map(Damage::Flips),
        (any::<Index>(), 1usize..400).prop_map(|(i, n)| Damage::Zero(i, n)),
        any::<Index>().prop_map(Damage::Truncate),
    ]
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn damage_loses_only_the_damaged_records_and_counts_them(
        sizes in prop::collection::vec(0usize..400, 1..30),
        which in any::<Index>(),
        dmg in damage(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path(), FsyncPolicy::Never);
        rt().block_on(async {
            let (w, r, _) = open(&c);
            for (seq, &len) in sizes.iter().enumerate() {
                w.append(&content(seq as u64, len)).await.unwrap();
            }
            drop((w, r));
            let files = segment_files(tmp.path());
            let victim = which.get(&files).clone();
            let is_head = victim == *files.last().unwrap();
            let before = std::fs::read(&victim).unwrap();
            let records = format::scan_segment(&before).records;
            let mut after = before.clone();
            match &dmg {
                Damage::Flips(f) => for (i, x) in f { after[i.index(before.len())] ^= x },
                Damage::Zero(i, n) => {
                    let at = i.index(before.len());
                    let end = (at + n).min(before.len());
                    after[at..end].fill(0);
                }
                Damage::Truncate(i) => after.truncate(i.index(before.len())),
            }
            std::fs::write(&victim, &after).unwrap();
            // A record is damaged if any of its bytes changed or went missing.
            let damaged: BTreeSet<u64> = records.iter().filter(|r| {
                let span = r.offset..r.offset + r.total_len;
                span.end > after.len() || span.clone().any(|i| before[i] != after[i])
            }).map(|r| r.seq).collect();

            let (w, mut r, reg) = open(&c);
            drop(w);
            let mut got = Vec::new();
            while let Some(e) = next(&mut r).await {
                let seq = e.id.seq();
                prop_assert_eq!(&e.data[..], &content(seq, sizes[seq as usize])[..], "intact content");
                got.push(seq);
            }
            prop_assert!(got.windows(2).all(|p| p[0] < p[1]), "in order, no duplicates");
            let all: BTreeSet<u64> = (0..sizes.len() as u64).collect();
            let got: BTreeSet<u64> = got.into_iter().collect();
            let missing: BTreeSet<u64> = all.difference(&got).copied().collect();
            prop_assert!(missing.is_subset(&damaged), "lost {:?}, damaged only {:?}", missing, damaged);
            // Every loss is counted: as corrupt, except the head's cut-off end
            // (after its last surviving record), which is a truncated tail.
            let head_survivors = records.iter().filter(|r| got.contains(&r.seq)).map(|r| r.seq).max();
            let tail_lost: BTreeSet<u64> = if is_head {
                records.iter().map(|r| r.seq)
                    .filter(|s| missing.contains(s) && head_survivors.is_none_or(|h| *s > h))
                    .collect()
            } else {
                BTreeSet::new()
            };
            let corrupt = metric(&reg, "argus_agent_queue_corrupt_records_total");
            prop_assert_eq!(corrupt as usize, missing.len() - tail_lost.len());
            // A head cut cleanly (to nothing, or exactly between records) is
            // indistinguishable from a head that never held more: what a
            // power loss under fsync != always may do, the documented bound.
            // Any other cut leaves a torn tail, which is counted.
            let clean_cut = match &dmg {
                Damage::Truncate(_) => after.is_empty()
                    || records.iter().any(|r| r.offset == after.len() || r.offset + r.total_len == after.len()),
                _ => false,
            };
            if !tail_lost.is_empty() && !clean_cut {
                prop_assert!(metric(&reg, "argus_agent_queue_truncated_bytes_total") > 0.0);
            }
            Ok(())
        })?;
    }

    #[test]
    fn segment_decoder_is_total_and_exact(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_scan(&bytes)?;
    }

    #[test]
    fn segment_decoder_survives_damaged_real_segments(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..12),
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 0..8),
        cut in any::<Index>(),
    ) {
        let mut buf = format::SegmentHeader { first_seq: 5, created_unix_ms: 0 }.encode().to_vec();
        for (i, b) in bodies.iter().enumerate() {
            format::encode_record(5 + i as u64, i as i64, b, &mut buf);
        }
        buf.extend_from_slice(&format::encode_seal(5 + bodies.len() as u64, 0));
        let n = buf.len();
        for (i, x) in flips {
            buf[i.index(n)] ^= x;
        }
        buf.truncate(cut.index(n + 1));
        check_scan(&buf)?;
    }
}

/// Invariants of `scan_segment` on any input.
fn check_scan(bytes: &[u8]) -> Result<(), TestCaseError> {
    let scan = format::scan_segment(bytes);
    prop_assert!(scan.valid_end <= bytes.len());
    let mut prev_end = format::SEGMENT_HEADER_LEN;
    let mut prev_seq = None;
    for r in &scan.records {
        prop_assert!(r.offset >= prev_end, "records do not overlap");
        prop_assert!(r.offset + r.total_len <= scan.valid_end);
        prop_assert!(
            prev_seq.is_none_or(|p| r.seq > p),
            "sequence numbers increase"
        );
        // Re-encoding what was decoded gives back exactly the bytes.
        let mut again = Vec::new();
        format::encode_record(
            r.seq,
            r.appended_unix_ms,
            &bytes[r.body_range()],
            &mut again,
        );
        prop_assert_eq!(&again[..], &bytes[r.offset..r.offset + r.total_len]);
        prev_end = r.offset + r.total_len;
        prev_seq = Some(r.seq);
    }
    for d in &scan.damaged {
        prop_assert!(d.start < d.end && d.end <= scan.valid_end);
    }
    if let Some(s) = scan.seal {
        prop_assert_eq!(s.offset + RECORD_HEADER_LEN, scan.valid_end);
        prop_assert_eq!(
            &format::encode_seal(s.next_seq, 0)[..8],
            &bytes[s.offset..s.offset + 8]
        );
    }
    Ok(())
}
