//! Feeds arbitrary bytes to the disk queue's record, segment and ack-file
//! decoders (`agent/src/queue/format.rs`, included verbatim). They must
//! never panic, and whatever they accept must re-encode to exactly the
//! bytes it was decoded from.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../agent/src/queue/format.rs"]
#[allow(dead_code)]
mod format;

fuzz_target!(|data: &[u8]| {
    // One record at the start of the buffer.
    if let format::RecordDecode::Record {
        seq,
        appended_unix_ms,
        body,
        total_len,
    } = format::decode_record(data)
    {
        let mut again = Vec::new();
        format::encode_record(seq, appended_unix_ms, body, &mut again);
        assert_eq!(&again[..], &data[..total_len]);
    }

    // A whole segment file.
    let scan = format::scan_segment(data);
    assert!(scan.valid_end <= data.len());
    let mut prev_end = format::SEGMENT_HEADER_LEN;
    let mut prev_seq: Option<u64> = None;
    for r in &scan.records {
        assert!(r.offset >= prev_end, "records overlap");
        assert!(r.offset + r.total_len <= scan.valid_end);
        assert!(
            prev_seq.is_none_or(|p| r.seq > p),
            "sequence numbers must increase"
        );
        let mut again = Vec::new();
        format::encode_record(r.seq, r.appended_unix_ms, &data[r.body_range()], &mut again);
        assert_eq!(&again[..], &data[r.offset..r.offset + r.total_len]);
        prev_end = r.offset + r.total_len;
        prev_seq = Some(r.seq);
    }
    for d in &scan.damaged {
        assert!(d.start < d.end && d.end <= scan.valid_end);
    }
    if let Some(s) = scan.seal {
        assert_eq!(s.offset + format::RECORD_HEADER_LEN, scan.valid_end);
    }
    if let Ok(h) = scan.header {
        assert_eq!(&h.encode()[..], &data[..format::SEGMENT_HEADER_LEN]);
    }

    // The same bytes as an ack file.
    let first_seq = data
        .get(8..16)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let acks = format::scan_acks(data, first_seq);
    if let Ok(s) = acks.header {
        assert_eq!(
            &format::encode_ack_header(s)[..],
            &data[..format::ACK_HEADER_LEN]
        );
    }
    // Accepted entries are exactly the aligned 8-byte groups that encode
    // themselves.
    let entries = data.get(format::ACK_HEADER_LEN..).unwrap_or(&[]);
    let exact: Vec<u32> = entries
        .chunks_exact(format::ACK_ENTRY_LEN)
        .map(|e| u32::from_le_bytes(e[..4].try_into().unwrap()))
        .zip(entries.chunks_exact(format::ACK_ENTRY_LEN))
        .filter(|(i, e)| format::encode_ack_entry(first_seq, *i) == *e)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(exact, acks.indices);
    assert!(acks.whole_len <= data.len());
    assert_eq!(
        acks.indices.len() + acks.bad_entries,
        data.len().saturating_sub(format::ACK_HEADER_LEN) / format::ACK_ENTRY_LEN
    );
});
