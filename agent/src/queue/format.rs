//! The queue's on-disk formats as pure functions over byte slices.
//!
//! Everything here is free of I/O, clocks and crate-internal types (its only
//! dependency is `crc32fast`), so the same source file is what recovery runs,
//! what the golden and property tests pin down, and what the fuzz target in
//! `fuzz/fuzz_targets/queue_record.rs` includes verbatim. The byte layouts are
//! documented in [`crate::queue`]'s module doc; the constants below are the
//! single source of truth for them.
//!
//! All integers are little-endian. All checksums are CRC-32 (IEEE 802.3,
//! polynomial 0x04C11DB7 reflected, as zlib/gzip/PNG compute it; `crc32fast`
//! uses the CPU's carry-less multiply where present, so checksumming runs at
//! several GB/s and never limits appends).

use std::ops::Range;

/// First six bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 6] = *b"ARGUSQ";
/// First six bytes of every ack file.
pub const ACK_MAGIC: [u8; 6] = *b"ARGUSA";
/// Format version of both files; a reader refuses nothing but logs others.
pub const VERSION: u16 = 1;
/// Length of the segment file header.
pub const SEGMENT_HEADER_LEN: usize = FILE_HEADER_LEN;
/// Length of the per-record header that precedes every body.
pub const RECORD_HEADER_LEN: usize = 32;
/// Length of the ack file header.
pub const ACK_HEADER_LEN: usize = FILE_HEADER_LEN;
/// Both file headers share one layout (see `seal_file_header`).
const FILE_HEADER_LEN: usize = 32;
/// Length of one ack file entry.
pub const ACK_ENTRY_LEN: usize = 8;
/// Starts every record header. `0xC1` and `0xFE` never occur in UTF-8 and
/// the pattern is not all-zero, so neither log text nor a zero-filled block
/// (what a power loss leaves in unwritten extents) looks like a record; a
/// false match is still rejected by the header checksum.
pub const SYNC_MARKER: [u8; 4] = [0xC1, 0x5E, 0xA7, 0xFE];
/// Hard ceiling on a body, independent of configuration: a header claiming
/// more is damaged even if its checksum matches, so no decoder ever sizes a
/// buffer from a hostile length.
pub const MAX_BODY_LEN: u32 = 1 << 30;
/// Flag in the length field of a seal frame (see [`encode_seal`]).
pub const SEAL_FLAG: u32 = 1 << 31;

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Why a segment or ack file header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header.
    Short,
    /// The magic bytes are wrong: not one of our files.
    Magic,
    /// The header checksum does not match: the header is damaged.
    Checksum,
    /// A version this build does not know.
    Version(u16),
    /// Reserved bytes are not zero (version 1 writes zeros; a format that
    /// uses them gets a new version).
    Reserved,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Short => f.write_str("shorter than a header"),
            HeaderError::Magic => f.write_str("bad magic bytes"),
            HeaderError::Checksum => f.write_str("header checksum mismatch"),
            HeaderError::Version(v) => write!(f, "unknown format version {v}"),
            HeaderError::Reserved => f.write_str("reserved bytes not zero"),
        }
    }
}

/// The fixed header at offset 0 of a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the segment's first record (also its file name).
    pub first_seq: u64,
    /// When the segment was created, Unix milliseconds.
    pub created_unix_ms: i64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut fields = [0u8; 16];
        fields[0..8].copy_from_slice(&self.first_seq.to_le_bytes());
        fields[8..16].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        seal_file_header(&SEGMENT_MAGIC, &fields)
    }

    pub fn decode(buf: &[u8]) -> Result<Self, HeaderError> {
        let b = open_file_header(buf, &SEGMENT_MAGIC, 16)?;
        Ok(SegmentHeader {
            first_seq: u64_at(b, 8),
            created_unix_ms: u64_at(b, 16) as i64,
        })
    }
}

/// Segment and ack files start with the same 32-byte layout: magic (6) ·
/// version (u16) · the file's fields from byte 8 · zero reserved bytes up
/// to 28 · CRC-32C of bytes 0..28 at 28.
fn seal_file_header(magic: &[u8; 6], fields: &[u8]) -> [u8; FILE_HEADER_LEN] {
    let mut b = [0u8; FILE_HEADER_LEN];
    b[0..6].copy_from_slice(magic);
    b[6..8].copy_from_slice(&VERSION.to_le_bytes());
    b[8..8 + fields.len()].copy_from_slice(fields);
    let c = crc(&[&b[0..28]]);
    b[28..32].copy_from_slice(&c.to_le_bytes());
    b
}

/// Checks a [`seal_file_header`] layout with `fields_len` bytes of fields;
/// the header's bytes.
fn open_file_header<'b>(
    buf: &'b [u8],
    magic: &[u8; 6],
    fields_len: usize,
) -> Result<&'b [u8], HeaderError> {
    let b = buf.get(..FILE_HEADER_LEN).ok_or(HeaderError::Short)?;
    if b[0..6] != magic[..] {
        return Err(HeaderError::Magic);
    }
    if crc(&[&b[0..28]]) != u32_at(b, 28) {
        return Err(HeaderError::Checksum);
    }
    let version = u16_at(b, 6);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    if b[8 + fields_len..28].iter().any(|&x| x != 0) {
        return Err(HeaderError::Reserved);
    }
    Ok(b)
}

/// Encodes the 32-byte header of a record holding `body`.
///
/// # Panics
/// If `body` is longer than [`MAX_BODY_LEN`]; the queue refuses such records
/// before they get here.
pub fn encode_record_header(
    seq: u64,
    appended_unix_ms: i64,
    body: &[u8],
) -> [u8; RECORD_HEADER_LEN] {
    assert!(body.len() <= MAX_BODY_LEN as usize, "record body too long");
    let mut b = [0u8; RECORD_HEADER_LEN];
    b[0..4].copy_from_slice(&SYNC_MARKER);
    b[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b[16..24].copy_from_slice(&appended_unix_ms.to_le_bytes());
    b[24..28].copy_from_slice(&crc(&[body]).to_le_bytes());
    let c = crc(&[&b[0..28]]);
    b[28..32].copy_from_slice(&c.to_le_bytes());
    b
}

/// Encodes the seal that closes a segment: a record header with
/// [`SEAL_FLAG`] set in the length field, no body, and as sequence number
/// the first one of the next segment. A sealed segment states exactly which
/// sequence numbers it held, so damage that cuts its end (even at a record
/// boundary) is still counted.
pub fn encode_seal(next_seq: u64, sealed_unix_ms: i64) -> [u8; RECORD_HEADER_LEN] {
    let mut b = encode_record_header(next_seq, sealed_unix_ms, &[]);
    b[4..8].copy_from_slice(&SEAL_FLAG.to_le_bytes());
    let c = crc(&[&b[0..28]]);
    b[28..32].copy_from_slice(&c.to_le_bytes());
    b
}

/// Appends one whole record (header then body) to `out`.
pub fn encode_record(seq: u64, appended_unix_ms: i64, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&encode_record_header(seq, appended_unix_ms, body));
    out.extend_from_slice(body);
}

/// A record header whose own checksum matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// A seal rather than a record.
    pub seal: bool,
    pub body_len: u32,
    pub seq: u64,
    pub appended_unix_ms: i64,
    pub body_crc: u32,
}

impl RecordHeader {
    /// Header plus body.
    pub fn total_len(&self) -> usize {
        RECORD_HEADER_LEN + self.body_len as usize
    }

    /// `None` unless `buf` starts with an intact record header.
    pub fn decode(buf: &[u8]) -> Option<RecordHeader> {
        let b = buf.get(..RECORD_HEADER_LEN)?;
        if b[0..4] != SYNC_MARKER || crc(&[&b[0..28]]) != u32_at(b, 28) {
            return None;
        }
        let raw_len = u32_at(b, 4);
        let seal = raw_len & SEAL_FLAG != 0;
        let body_len = raw_len & !SEAL_FLAG;
        if body_len > MAX_BODY_LEN || (seal && body_len != 0) {
            return None;
        }
        Some(RecordHeader {
            seal,
            body_len,
            seq: u64_at(b, 8),
            appended_unix_ms: u64_at(b, 16) as i64,
            body_crc: u32_at(b, 24),
        })
    }
}

/// What [`decode_record`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordDecode<'a> {
    /// A whole record whose header and body checksums both match.
    Record {
        seq: u64,
        appended_unix_ms: i64,
        body: &'a [u8],
        /// Bytes the record occupies (header + body).
        total_len: usize,
    },
    /// The header is intact but the body fails its checksum: record `seq` is
    /// lost, and the next record starts exactly `total_len` bytes on.
    BadBody { seq: u64, total_len: usize },
    /// The segment's seal: it held sequence numbers below `next_seq`.
    Seal { next_seq: u64 },
    /// The buffer ends before the record does; `needed` bytes from the start
    /// of the buffer would tell. (Fewer than a header's worth of bytes gives
    /// `needed == RECORD_HEADER_LEN` without judging them.)
    Incomplete { needed: usize },
    /// No intact record header starts here.
    NoHeader,
}

/// Decodes the record at the start of `buf`. Pure, total, never panics.
pub fn decode_record(buf: &[u8]) -> RecordDecode<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return RecordDecode::Incomplete {
            needed: RECORD_HEADER_LEN,
        };
    }
    let Some(h) = RecordHeader::decode(buf) else {
        return RecordDecode::NoHeader;
    };
    if h.seal {
        return RecordDecode::Seal { next_seq: h.seq };
    }
    let total_len = h.total_len();
    let Some(body) = buf.get(RECORD_HEADER_LEN..total_len) else {
        return RecordDecode::Incomplete { needed: total_len };
    };
    if crc(&[body]) != h.body_crc {
        return RecordDecode::BadBody {
            seq: h.seq,
            total_len,
        };
    }
    RecordDecode::Record {
        seq: h.seq,
        appended_unix_ms: h.appended_unix_ms,
        body,
        total_len,
    }
}

/// Offset of the first intact record header at or after `from` whose
/// sequence number is greater than `after` (when given). This is the resync
/// step: past a damaged region, a record is recognised by marker + header
/// checksum, and the sequence check refuses a stale or embedded record that
/// would go backwards.
pub fn find_next_header(buf: &[u8], from: usize, after: Option<u64>) -> Option<usize> {
    let mut at = from;
    while at + RECORD_HEADER_LEN <= buf.len() {
        let rel = buf[at..buf.len() - RECORD_HEADER_LEN + 1]
            .iter()
            .position(|&b| b == SYNC_MARKER[0])?;
        at += rel;
        if let Some(h) = RecordHeader::decode(&buf[at..])
            && after.is_none_or(|a| h.seq > a)
        {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// One verified record found by [`scan_segment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Offset of the record header in the file.
    pub offset: usize,
    /// Header plus body.
    pub total_len: usize,
    pub seq: u64,
    pub appended_unix_ms: i64,
}

impl ScannedRecord {
    pub fn body_range(&self) -> Range<usize> {
        self.offset + RECORD_HEADER_LEN..self.offset + self.total_len
    }
}

/// Everything recovery needs to know about one segment file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// The file header, or why it was rejected.
    pub header: Result<SegmentHeader, HeaderError>,
    /// Verified records in file order, sequence numbers strictly increasing.
    pub records: Vec<ScannedRecord>,
    /// Byte ranges between verified records that hold no verified record
    /// (damage). Sorted, disjoint, all below `valid_end`.
    pub damaged: Vec<Range<usize>>,
    /// The seal, if the segment was closed and its seal is intact. The scan
    /// stops there.
    pub seal: Option<ScannedSeal>,
    /// End of the last verified record or seal (or of the header when there
    /// is none; 0 when even the header is unusable and nothing follows).
    /// Bytes from here to the end of the file are the tail: a torn write
    /// after `kill -9`, or damage that no later record bounds.
    pub valid_end: usize,
}

/// Where a segment's seal is and what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedSeal {
    pub offset: usize,
    /// One past the last sequence number the segment held.
    pub next_seq: u64,
}

impl SegmentScan {
    /// Bytes after `valid_end` in a file of `file_len` bytes.
    pub fn tail_len(&self, file_len: usize) -> usize {
        file_len.saturating_sub(self.valid_end)
    }
}

/// Scans a whole segment file. Pure and total: any input, however damaged,
/// yields a scan and never a panic. Records are accepted only with both
/// checksums matching and sequence numbers strictly increasing; damage is
/// skipped by resyncing on the next intact header, so one damaged record
/// costs only itself.
pub fn scan_segment(buf: &[u8]) -> SegmentScan {
    let header = SegmentHeader::decode(buf);
    let mut scan = SegmentScan {
        header,
        records: Vec::new(),
        damaged: Vec::new(),
        seal: None,
        valid_end: if header.is_ok() {
            SEGMENT_HEADER_LEN
        } else {
            0
        },
    };
    if buf.len() <= SEGMENT_HEADER_LEN {
        return scan;
    }
    let mut pos = SEGMENT_HEADER_LEN;
    let mut last_seq: Option<u64> = None;
    // Start of a damaged run not yet closed by a verified record.
    let mut damage_from: Option<usize> = None;
    while pos < buf.len() {
        let step = match decode_record(&buf[pos..]) {
            RecordDecode::Record {
                seq,
                appended_unix_ms,
                total_len,
                ..
            } if last_seq.is_none_or(|l| seq > l) => {
                if let Some(from) = damage_from.take() {
                    scan.damaged.push(from..pos);
                }
                scan.records.push(ScannedRecord {
                    offset: pos,
                    total_len,
                    seq,
                    appended_unix_ms,
                });
                last_seq = Some(seq);
                pos += total_len;
                scan.valid_end = pos;
                continue;
            }
            RecordDecode::Seal { next_seq } if last_seq.is_none_or(|l| next_seq > l) => {
                if let Some(from) = damage_from.take() {
                    scan.damaged.push(from..pos);
                }
                scan.seal = Some(ScannedSeal {
                    offset: pos,
                    next_seq,
                });
                scan.valid_end = pos + RECORD_HEADER_LEN;
                break;
            }
            // The length is trustworthy (header checksum matched), so skip
            // exactly this record; anything else resyncs byte by byte.
            RecordDecode::BadBody { seq, total_len } if last_seq.is_none_or(|l| seq > l) => {
                Some(total_len)
            }
            _ => None,
        };
        damage_from.get_or_insert(pos);
        match step {
            Some(n) => pos += n,
            None => match find_next_header(buf, pos + 1, last_seq) {
                Some(next) => pos = next,
                None => break,
            },
        }
    }
    scan
}

/// Encodes an ack file header for the segment starting at `first_seq`.
pub fn encode_ack_header(first_seq: u64) -> [u8; ACK_HEADER_LEN] {
    seal_file_header(&ACK_MAGIC, &first_seq.to_le_bytes())
}

/// Decodes an ack file header, returning the segment's first sequence number.
pub fn decode_ack_header(buf: &[u8]) -> Result<u64, HeaderError> {
    open_file_header(buf, &ACK_MAGIC, 8).map(|b| u64_at(b, 8))
}

/// Encodes the ack entry "record `first_seq + index` is settled". The
/// checksum covers the segment's first sequence number too, so an entry is
/// only ever valid in the ack file of its own segment.
pub fn encode_ack_entry(first_seq: u64, index: u32) -> [u8; ACK_ENTRY_LEN] {
    let mut b = [0u8; ACK_ENTRY_LEN];
    b[0..4].copy_from_slice(&index.to_le_bytes());
    let c = crc(&[&first_seq.to_le_bytes(), &b[0..4]]);
    b[4..8].copy_from_slice(&c.to_le_bytes());
    b
}

/// What an ack file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckScan {
    /// The file header, or why it was rejected (entries are read either way:
    /// each carries its own checksum bound to the segment).
    pub header: Result<u64, HeaderError>,
    /// Indices (sequence number minus the segment's first) of settled
    /// records, in file order, possibly repeated.
    pub indices: Vec<u32>,
    /// Entries whose checksum failed (each is an ack forgotten: that record
    /// will be delivered again, never lost).
    pub bad_entries: usize,
    /// Length covering the header and every whole entry; anything beyond is
    /// a torn write, to truncate before appending again.
    pub whole_len: usize,
}

/// Scans an ack file of the segment starting at `first_seq`. Pure and total.
pub fn scan_acks(buf: &[u8], first_seq: u64) -> AckScan {
    let mut scan = AckScan {
        header: decode_ack_header(buf),
        indices: Vec::new(),
        bad_entries: 0,
        whole_len: buf.len().min(ACK_HEADER_LEN),
    };
    let Some(entries) = buf.get(ACK_HEADER_LEN..) else {
        return scan;
    };
    for e in entries.chunks_exact(ACK_ENTRY_LEN) {
        let index = u32_at(e, 0);
        if encode_ack_entry(first_seq, index) == e {
            scan.indices.push(index);
        } else {
            scan.bad_entries += 1;
        }
        scan.whole_len += ACK_ENTRY_LEN;
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first_seq: u64, bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = SegmentHeader {
            first_seq,
            created_unix_ms: 1_700_000_000_000,
        }
        .encode()
        .to_vec();
        for (i, b) in bodies.iter().enumerate() {
            encode_record(
                first_seq + i as u64,
                1_700_000_000_000 + i as i64,
                b,
                &mut out,
            );
        }
        out
    }

    #[test]
    fn clean_segment_scans_to_all_records() {
        let buf = segment(7, &[b"a", b"", b"hello world"]);
        let scan = scan_segment(&buf);
        assert_eq!(scan.header.unwrap().first_seq, 7);
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [7, 8, 9]);
        assert_eq!(&buf[scan.records[2].body_range()], b"hello world");
        assert!(scan.damaged.is_empty());
        assert_eq!(scan.valid_end, buf.len());
    }

    #[test]
    fn flipped_body_bit_loses_only_that_record() {
        let mut buf = segment(0, &[b"one", b"two", b"three"]);
        let second = scan_segment(&buf).records[1];
        buf[second.offset + RECORD_HEADER_LEN] ^= 0x01;
        let scan = scan_segment(&buf);
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 2]);
        assert_eq!(
            scan.damaged,
            vec![second.offset..second.offset + second.total_len]
        );
        assert_eq!(
            decode_record(&buf[second.offset..]),
            RecordDecode::BadBody {
                seq: 1,
                total_len: second.total_len
            }
        );
    }

    #[test]
    fn damaged_length_resyncs_on_the_next_header() {
        let mut buf = segment(0, &[b"one", b"two", b"three"]);
        let second = scan_segment(&buf).records[1];
        // A length pointing far past the end must not swallow record 2.
        buf[second.offset + 6] = 0x7f;
        let scan = scan_segment(&buf);
        let seqs: Vec<u64> = scan.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 2]);
        assert_eq!(scan.valid_end, buf.len());
    }

    #[test]
    fn torn_tail_is_left_out_of_valid_end() {
        let buf = segment(0, &[b"one", b"two"]);
        let cut = buf.len() - 2;
        let scan = scan_segment(&buf[..cut]);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(
            scan.valid_end,
            scan.records[0].offset + scan.records[0].total_len
        );
        assert_eq!(scan.tail_len(cut), cut - scan.valid_end);
        assert!(matches!(
            decode_record(&buf[scan.valid_end..cut]),
            RecordDecode::Incomplete { .. }
        ));
    }

    #[test]
    fn zero_filled_region_is_damage_not_records() {
        let mut buf = segment(0, &[b"one", &[0u8; 100], b"three"]);
        let second = scan_segment(&buf).records[1];
        buf[second.offset..second.offset + RECORD_HEADER_LEN].fill(0);
        let scan = scan_segment(&buf);
        assert_eq!(
            scan.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(scan.damaged.len(), 1);
    }

    #[test]
    fn record_embedded_in_a_body_is_not_mistaken_after_damage() {
        // Record 1's body is itself a valid record with seq 0; damage record
        // 1's header: resync must refuse the embedded seq 0 (not > last seq).
        let mut inner = Vec::new();
        encode_record(0, 0, b"fake", &mut inner);
        let mut buf = segment(0, &[b"real0", &inner, b"real2"]);
        let second = scan_segment(&buf).records[1];
        buf[second.offset + 29] ^= 0xff;
        let scan = scan_segment(&buf);
        assert_eq!(
            scan.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [0, 2]
        );
    }

    #[test]
    fn seal_ends_the_scan_and_states_the_next_sequence_number() {
        let mut buf = segment(10, &[b"a", b"b"]);
        let seal_at = buf.len();
        buf.extend_from_slice(&encode_seal(12, 5));
        buf.extend_from_slice(b"garbage after the seal");
        let scan = scan_segment(&buf);
        assert_eq!(scan.records.len(), 2);
        assert_eq!(
            scan.seal,
            Some(ScannedSeal {
                offset: seal_at,
                next_seq: 12
            })
        );
        assert_eq!(scan.valid_end, seal_at + RECORD_HEADER_LEN);
        assert_eq!(
            decode_record(&encode_seal(12, 5)),
            RecordDecode::Seal { next_seq: 12 }
        );
        // A seal flag on a header with a body is not a valid header.
        let mut bad = encode_record_header(1, 0, b"xyz");
        bad[7] |= 0x80;
        let c = crc(&[&bad[0..28]]);
        bad[28..32].copy_from_slice(&c.to_le_bytes());
        assert_eq!(RecordHeader::decode(&bad), None);
    }

    #[test]
    fn header_damage_is_reported_but_records_still_read() {
        let mut buf = segment(3, &[b"x"]);
        buf[10] ^= 1;
        let scan = scan_segment(&buf);
        assert_eq!(scan.header, Err(HeaderError::Checksum));
        assert_eq!(scan.records.len(), 1);
        assert_eq!(SegmentHeader::decode(b"ARGUSQ"), Err(HeaderError::Short));
        // Found by the fuzzer: reserved bytes set under a matching checksum.
        let mut h = SegmentHeader {
            first_seq: 0,
            created_unix_ms: 0,
        }
        .encode();
        h[25] = 1;
        let c = crc(&[&h[0..28]]);
        h[28..32].copy_from_slice(&c.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&h), Err(HeaderError::Reserved));
        let mut a = encode_ack_header(7);
        a[20] = 1;
        let c = crc(&[&a[0..28]]);
        a[28..32].copy_from_slice(&c.to_le_bytes());
        assert_eq!(decode_ack_header(&a), Err(HeaderError::Reserved));
        assert_eq!(SegmentHeader::decode(&[0u8; 32]), Err(HeaderError::Magic));
    }

    #[test]
    fn ack_entries_are_bound_to_their_segment_and_torn_tail_is_cut() {
        let mut buf = encode_ack_header(100).to_vec();
        buf.extend_from_slice(&encode_ack_entry(100, 3));
        buf.extend_from_slice(&encode_ack_entry(999, 4)); // another segment's
        buf.extend_from_slice(&encode_ack_entry(100, 5));
        buf.extend_from_slice(&encode_ack_entry(100, 6)[..3]); // torn
        let scan = scan_acks(&buf, 100);
        assert_eq!(scan.header, Ok(100));
        assert_eq!(scan.indices, [3, 5]);
        assert_eq!(scan.bad_entries, 1);
        assert_eq!(scan.whole_len, ACK_HEADER_LEN + 3 * ACK_ENTRY_LEN);
        assert_eq!(scan_acks(&buf[..10], 100).whole_len, 10);
    }
}
