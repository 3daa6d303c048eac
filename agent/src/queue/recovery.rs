//! Opening a queue directory: scan, verify, repair, resume.
//!
//! Runs once, synchronously, before any handle exists. The rules are in the
//! module doc of [`crate::queue`] ("Recovery on open"); the decisions that
//! need care are commented where they are made.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::config::DiskQueueConfig;
use super::format::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader};
use super::metrics::Metrics;
use super::state::{RecordMeta, Segment, State, open_ack_file};
use super::writer::Head;
use super::{QueueError, WallClock, ack_path, segment_path};

pub(crate) struct Recovered {
    pub state: State,
    pub head: Head,
}

fn parse_name(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
        .then(|| stem.parse().ok())
        .flatten()
}

pub(crate) fn recover(
    cfg: &DiskQueueConfig,
    metrics: &Metrics,
    clock: &WallClock,
) -> Result<Recovered, QueueError> {
    let dir = cfg.dir.as_path();
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |e| QueueError::io(op, &path, e)
    };
    let mut segs = BTreeSet::new();
    let mut acks = BTreeSet::new();
    for entry in fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = parse_name(&name, ".seg") {
            segs.insert(seq);
        } else if let Some(seq) = parse_name(&name, ".ack") {
            acks.insert(seq);
        } else if name != "lock" {
            tracing::warn!(dir = %dir.display(), file = %name, "disk queue: ignoring a file that is not ours");
        }
    }

    let seqs: Vec<u64> = segs.iter().copied().collect();
    let mut segments = VecDeque::with_capacity(seqs.len());
    for (i, &first) in seqs.iter().enumerate() {
        let next_first = seqs.get(i + 1).copied();
        segments.push_back(recover_segment(
            dir,
            cfg.segment_bytes,
            metrics,
            clock,
            first,
            next_first,
        )?);
    }
    if segments.is_empty() {
        let path = segment_path(dir, 0);
        let f = File::create(&path).map_err(io("create", &path))?;
        let header = SegmentHeader {
            first_seq: 0,
            created_unix_ms: clock(),
        };
        f.write_all_at(&header.encode(), 0)
            .map_err(io("write", &path))?;
        segments.push_back(Segment::new(0, SEGMENT_HEADER_LEN as u64));
    }

    // Orphan ack files: their segment was deleted and the process died
    // before the ack file followed.
    for &seq in acks.iter().filter(|s| !segs.contains(s)) {
        let path = ack_path(dir, seq);
        fs::remove_file(&path).map_err(io("delete", &path))?;
    }
    // Segments with nothing left to deliver (the head stays: it carries the
    // next sequence number).
    let last = segments.len() - 1;
    let mut kept = VecDeque::with_capacity(segments.len());
    for (i, seg) in segments.into_iter().enumerate() {
        if i != last && seg.pending == 0 {
            for path in [
                segment_path(dir, seg.first_seq),
                ack_path(dir, seg.first_seq),
            ] {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(QueueError::io("delete", &path, e));
                    }
                    _ => {}
                }
            }
        } else {
            kept.push_back(seg);
        }
    }
    let segments = kept;

    let head_seg = segments.back().expect("never empty");
    // A head found sealed: the process died while starting the next one.
    let head_sealed = head_seg.readable_end < head_seg.file_len;
    let head_path = segment_path(dir, head_seg.first_seq);
    let head_file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&head_path)
        .map_err(io("open", &head_path))?;
    let head = Head {
        file: Arc::new(head_file),
        first_seq: head_seg.first_seq,
        size: head_seg.file_len,
        records: head_seg.records.len() as u64,
        broken: false,
        sealed: head_sealed,
    };
    let state = State {
        next_seq: head_seg.next_seq(),
        read_seq: segments.front().expect("never empty").first_seq,
        bytes: segments.iter().map(|s| s.file_len).sum(),
        pending: segments.iter().map(|s| s.pending).sum(),
        segments,
        ..State::default()
    };
    tracing::info!(
        dir = %dir.display(),
        segments = state.segments.len(),
        records = state.pending,
        bytes = state.bytes,
        next_seq = state.next_seq,
        "disk queue opened"
    );
    Ok(Recovered { state, head })
}

/// Scans one segment and its ack file; repairs what must be repaired.
/// `next_first` is the next segment's first sequence number (`None` for
/// the head).
fn recover_segment(
    dir: &Path,
    segment_bytes: u64,
    metrics: &Metrics,
    clock: &WallClock,
    first: u64,
    next_first: Option<u64>,
) -> Result<Segment, QueueError> {
    let path = segment_path(dir, first);
    let is_head = next_first.is_none();
    let data = fs::read(&path).map_err(|e| QueueError::io("read", &path, e))?;
    let scan = format::scan_segment(&data);
    match scan.header {
        Ok(h) if h.first_seq != first => tracing::warn!(
            segment = first,
            header_first_seq = h.first_seq,
            "disk queue: segment header disagrees with its file name; trusting the name and the records"
        ),
        // A head shorter than its header was being created when the
        // process died: rewritten below.
        Err(format::HeaderError::Short) if is_head => {}
        Err(e) => tracing::warn!(
            segment = first,
            error = %e,
            "disk queue: segment header damaged; reading its records anyway"
        ),
        Ok(_) => {}
    }

    // A record belongs here only if its number is in this segment's range
    // and no larger than its offset allows (record k of a segment starts at
    // or after byte 32 + 32·k). Others are stale: e.g. the remains of a
    // failed append whose number went to the next segment.
    let plausible = |r: &format::ScannedRecord| {
        let max_index = ((r.offset - SEGMENT_HEADER_LEN) / RECORD_HEADER_LEN) as u64;
        r.seq >= first && r.seq - first <= max_index && next_first.is_none_or(|n| r.seq < n)
    };
    let records: Vec<_> = scan
        .records
        .iter()
        .filter(|r| plausible(r))
        .copied()
        .collect();
    let stale = scan.records.len() - records.len();
    if stale > 0 {
        tracing::warn!(
            segment = first,
            records = stale,
            "disk queue: ignoring records whose sequence numbers do not belong to this segment"
        );
    }

    let tail = data.len() - scan.valid_end;
    let base_end = records.last().map_or(first, |r| r.seq + 1);
    // Plausible like a record: not before the records it closes, within this
    // segment's range, and no more numbers than bytes before it allow.
    let seal = scan.seal.filter(|s| {
        s.next_seq >= base_end
            && s.next_seq - first <= ((s.offset - SEGMENT_HEADER_LEN) / RECORD_HEADER_LEN) as u64
            && next_first.is_none_or(|n| s.next_seq <= n)
    });
    let end_seq = match (seal, next_first) {
        // The seal says exactly which numbers the segment held.
        (Some(s), _) => s.next_seq,
        // A closed segment without its seal: its end is damaged (cut, even at
        // a record boundary, or overwritten). The next segment bounds what
        // it held; so does the most records a segment file can hold. (If the
        // segments right after it were deleted meanwhile, records of theirs,
        // all settled, are counted as lost here too: damage plus a gap is
        // the one case where the count overstates.)
        (None, Some(n)) => {
            let most = (data.len().max(segment_bytes as usize) / RECORD_HEADER_LEN) as u64;
            n.min(first + most).max(base_end)
        }
        // The head's damaged end is a torn write instead, cut off below.
        (None, None) => base_end,
    };
    let n = (end_seq - first) as usize;
    let mut metas = vec![RecordMeta::SETTLED; n];
    let mut present = vec![false; n];
    for r in &records {
        let i = (r.seq - first) as usize;
        present[i] = true;
        metas[i] = RecordMeta {
            appended_unix_ms: r.appended_unix_ms,
            len: (r.total_len - RECORD_HEADER_LEN) as u32,
            pending: true,
        };
    }

    let mut acked = vec![false; n];
    let apath = ack_path(dir, first);
    match fs::read(&apath) {
        Ok(buf) => {
            let scan = format::scan_acks(&buf, first);
            match scan.header {
                Ok(s) if s != first => tracing::warn!(
                    segment = first,
                    header_first_seq = s,
                    "disk queue: ack file header disagrees with its name; using its entries"
                ),
                Ok(_) | Err(format::HeaderError::Short) => {}
                Err(e) => {
                    tracing::warn!(segment = first, error = %e, "disk queue: ack file header damaged; using its entries")
                }
            }
            if scan.bad_entries > 0 {
                tracing::warn!(
                    segment = first,
                    entries = scan.bad_entries,
                    "disk queue: damaged ack entries ignored; those records will be delivered again"
                );
            }
            for i in scan.indices {
                if let Some(a) = acked.get_mut(i as usize) {
                    *a = true;
                    metas[i as usize].pending = false;
                }
            }
            if buf.len() < format::ACK_HEADER_LEN {
                // Torn while being created: start it again.
                fs::remove_file(&apath).map_err(|e| QueueError::io("delete", &apath, e))?;
            } else if scan.whole_len < buf.len() {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&apath)
                    .map_err(|e| QueueError::io("open", &apath, e))?;
                f.set_len(scan.whole_len as u64)
                    .map_err(|e| QueueError::io("truncate", &apath, e))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(QueueError::io("read", &apath, e)),
    }

    // Numbers neither found intact nor settled before are lost to damage:
    // count them once and settle them, so the next open does not count them
    // again.
    let lost: Vec<u32> = (0..n)
        .filter(|&i| !present[i] && !acked[i])
        .map(|i| i as u32)
        .collect();
    if !lost.is_empty() {
        let mut f = open_ack_file(dir, first).map_err(|e| QueueError::io("open", &apath, e))?;
        let mut buf = Vec::with_capacity(lost.len() * format::ACK_ENTRY_LEN);
        for &i in &lost {
            buf.extend_from_slice(&format::encode_ack_entry(first, i));
        }
        f.write_all(&buf)
            .map_err(|e| QueueError::io("write", &apath, e))?;
    }
    let damaged: usize =
        scan.damaged.iter().map(|r| r.len()).sum::<usize>() + if is_head { 0 } else { tail };
    if lost.is_empty() && damaged > 0 {
        tracing::warn!(
            segment = first,
            damaged_bytes = damaged,
            "disk queue: skipped damaged bytes that held no undelivered record"
        );
    }
    metrics.corrupt(first, lost.len() as u64, damaged as u64, "open");

    let mut file_len = data.len() as u64;
    // The reader stops before the seal.
    let mut readable_end = seal.map_or(scan.valid_end, |s| s.offset) as u64;
    if is_head && (scan.valid_end < SEGMENT_HEADER_LEN || tail > 0) {
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| QueueError::io("open", &path, e))?;
        if scan.valid_end < SEGMENT_HEADER_LEN {
            // No usable header and no record: rewrite the header; whatever
            // was there is discarded.
            if !data.is_empty() {
                metrics.truncated(first, data.len() as u64);
            }
            let header = SegmentHeader {
                first_seq: first,
                created_unix_ms: clock(),
            };
            f.set_len(0)
                .and_then(|()| f.write_all_at(&header.encode(), 0))
                .map_err(|e| QueueError::io("write", &path, e))?;
            file_len = SEGMENT_HEADER_LEN as u64;
        } else {
            metrics.truncated(first, tail as u64);
            f.set_len(scan.valid_end as u64)
                .map_err(|e| QueueError::io("truncate", &path, e))?;
            file_len = scan.valid_end as u64;
        }
        readable_end = seal.map_or(file_len, |s| s.offset as u64);
    }

    let pending = metas.iter().filter(|m| m.pending).count() as u64;
    Ok(Segment {
        records: metas,
        file_len,
        readable_end,
        pending,
        ..Segment::new(first, 0)
    })
}
