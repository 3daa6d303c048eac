//! Golden files pin the disk queue's on-disk format (version 1): the
//! committed, annotated hex dumps under `tests/golden/queue/` must decode to
//! the expected records, the encoder must reproduce them byte for byte, and
//! a queue opened on them must deliver exactly the records they leave
//! unacked. A format change breaks these tests on purpose: bump the version
//! and keep reading version 1, or users lose their queued data on upgrade.
//!
//! Regenerate (only for a deliberate format change) with
//! `ARGUS_BLESS=1 cargo test -p argus-agent --test queue_golden`.

use std::path::{Path, PathBuf};

use argus_agent::queue::format::{
    self, ACK_HEADER_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader,
};
use argus_agent::queue::{DiskQueueConfig, FsyncPolicy, WhenFull};
use prometheus_client::registry::Registry;

const CREATED: i64 = 1_700_000_000_000;

/// The records of the golden segment: (seq, appended, body).
fn expected_records() -> Vec<(u64, i64, Vec<u8>)> {
    vec![
        (0, CREATED + 1, b"hello, queue".to_vec()),
        (1, CREATED + 2, Vec::new()),
        // Every byte value, the sync marker C1 5E A7 FE among them: a body
        // may contain anything.
        (
            2,
            CREATED + 3,
            (0..=255u8).chain([0xC1, 0x5E, 0xA7, 0xFE]).collect(),
        ),
    ]
}

/// The seal after the records: the segment holds numbers below 3.
const SEALED: i64 = CREATED + 4;

/// Acks of the golden ack file, out of order as concurrent exports give them.
const ACKED: [u32; 2] = [1, 0];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/queue")
}

fn encode_segment() -> Vec<u8> {
    let mut out = SegmentHeader {
        first_seq: 0,
        created_unix_ms: CREATED,
    }
    .encode()
    .to_vec();
    for (seq, ts, body) in expected_records() {
        format::encode_record(seq, ts, &body, &mut out);
    }
    out.extend_from_slice(&format::encode_seal(3, SEALED));
    out
}

fn encode_acks() -> Vec<u8> {
    let mut out = format::encode_ack_header(0).to_vec();
    for i in ACKED {
        out.extend_from_slice(&format::encode_ack_entry(0, i));
    }
    out
}

/// Parses an annotated hex dump: `#` starts a comment; whitespace is ignored.
fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(digits).expect("golden file is hex")
}

fn hex_line(out: &mut String, bytes: &[u8], note: &str) {
    for chunk in bytes.chunks(16) {
        let h: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("{:<48}", h.join(" ")));
        if !note.is_empty() {
            out.push_str("# ");
            out.push_str(note);
        }
        out.push('\n');
    }
}

/// An annotated dump of a segment, one field per line.
fn annotate_segment(b: &[u8]) -> String {
    let mut s = String::from(
        "# Argus disk queue segment file, format version 1 (layout: agent/src/queue.rs).\n\
         # Little-endian integers; CRC-32 as zlib computes it.\n\
         # --- segment header (32 bytes)\n",
    );
    hex_line(&mut s, &b[0..6], "magic \"ARGUSQ\"");
    hex_line(&mut s, &b[6..8], "version 1");
    hex_line(&mut s, &b[8..16], "first_seq 0");
    hex_line(&mut s, &b[16..24], &format!("created {CREATED} ms"));
    hex_line(&mut s, &b[24..28], "reserved");
    hex_line(&mut s, &b[28..32], "header_crc = crc32(bytes 0..28)");
    let mut at = SEGMENT_HEADER_LEN;
    for (seq, ts, body) in expected_records() {
        s.push_str(&format!("# --- record seq {seq}\n"));
        hex_line(&mut s, &b[at..at + 4], "sync marker");
        hex_line(
            &mut s,
            &b[at + 4..at + 8],
            &format!("body_len {}", body.len()),
        );
        hex_line(&mut s, &b[at + 8..at + 16], &format!("seq {seq}"));
        hex_line(&mut s, &b[at + 16..at + 24], &format!("appended {ts} ms"));
        hex_line(&mut s, &b[at + 24..at + 28], "body_crc = crc32(body)");
        hex_line(
            &mut s,
            &b[at + 28..at + 32],
            "header_crc = crc32(header bytes 0..28)",
        );
        at += RECORD_HEADER_LEN;
        if !body.is_empty() {
            hex_line(&mut s, &b[at..at + body.len()], "");
        }
        at += body.len();
    }
    s.push_str("# --- seal: the segment is closed\n");
    hex_line(&mut s, &b[at..at + 4], "sync marker");
    hex_line(
        &mut s,
        &b[at + 4..at + 8],
        "seal flag (bit 31 of body_len), no body",
    );
    hex_line(
        &mut s,
        &b[at + 8..at + 16],
        "next_seq 3: the segment held numbers below 3",
    );
    hex_line(&mut s, &b[at + 16..at + 24], &format!("sealed {SEALED} ms"));
    hex_line(&mut s, &b[at + 24..at + 28], "body_crc = crc32(empty) = 0");
    hex_line(
        &mut s,
        &b[at + 28..at + 32],
        "header_crc = crc32(header bytes 0..28)",
    );
    s
}

fn annotate_acks(b: &[u8]) -> String {
    let mut s = String::from(
        "# Argus disk queue ack file, format version 1 (layout: agent/src/queue.rs).\n\
         # --- ack header (32 bytes)\n",
    );
    hex_line(&mut s, &b[0..6], "magic \"ARGUSA\"");
    hex_line(&mut s, &b[6..8], "version 1");
    hex_line(&mut s, &b[8..16], "first_seq 0 (of the segment)");
    hex_line(&mut s, &b[16..28], "reserved");
    hex_line(&mut s, &b[28..32], "header_crc = crc32(bytes 0..28)");
    for (k, i) in ACKED.iter().enumerate() {
        let at = ACK_HEADER_LEN + 8 * k;
        s.push_str(&format!("# --- entry: record seq {i} settled\n"));
        hex_line(&mut s, &b[at..at + 4], &format!("index {i}"));
        hex_line(
            &mut s,
            &b[at + 4..at + 8],
            "crc32(first_seq u64 ++ index u32)",
        );
    }
    s
}

fn golden(name: &str, encoded: &[u8], annotate: fn(&[u8]) -> String) -> Vec<u8> {
    let path = golden_dir().join(name);
    if std::env::var_os("ARGUS_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, annotate(encoded)).unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (ARGUS_BLESS=1 writes it)", path.display()));
    parse_hex(&text)
}

#[test]
fn golden_segment_decodes_to_the_expected_records() {
    let bytes = golden("segment-v1.hex", &encode_segment(), annotate_segment);
    let scan = format::scan_segment(&bytes);
    assert_eq!(
        scan.header,
        Ok(SegmentHeader {
            first_seq: 0,
            created_unix_ms: CREATED
        })
    );
    assert!(scan.damaged.is_empty());
    assert_eq!(scan.valid_end, bytes.len());
    assert_eq!(
        scan.seal,
        Some(format::ScannedSeal {
            offset: bytes.len() - RECORD_HEADER_LEN,
            next_seq: 3
        })
    );
    let got: Vec<(u64, i64, Vec<u8>)> = scan
        .records
        .iter()
        .map(|r| (r.seq, r.appended_unix_ms, bytes[r.body_range()].to_vec()))
        .collect();
    assert_eq!(got, expected_records());
}

#[test]
fn encoder_reproduces_the_golden_segment_byte_for_byte() {
    let bytes = golden("segment-v1.hex", &encode_segment(), annotate_segment);
    assert_eq!(hex::encode(encode_segment()), hex::encode(bytes));
}

#[test]
fn golden_ack_file_decodes_and_is_reproduced() {
    let bytes = golden("acks-v1.hex", &encode_acks(), annotate_acks);
    let scan = format::scan_acks(&bytes, 0);
    assert_eq!(scan.header, Ok(0));
    assert_eq!(scan.indices, ACKED);
    assert_eq!(scan.bad_entries, 0);
    assert_eq!(hex::encode(encode_acks()), hex::encode(&bytes));
}

#[tokio::test]
async fn queue_opened_on_golden_files_delivers_only_the_unacked_record() {
    let seg = golden("segment-v1.hex", &encode_segment(), annotate_segment);
    let acks = golden("acks-v1.hex", &encode_acks(), annotate_acks);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("00000000000000000000.seg"), &seg).unwrap();
    std::fs::write(tmp.path().join("00000000000000000000.ack"), &acks).unwrap();
    let cfg = DiskQueueConfig {
        dir: tmp.path().to_path_buf(),
        max_bytes: 1 << 20,
        segment_bytes: 64 << 10,
        max_record_bytes: 32 << 10,
        fsync: FsyncPolicy::Never,
        when_full: WhenFull::Block,
        ..Default::default()
    };
    let (writer, mut reader) = cfg.build(&mut Registry::default()).unwrap();
    let e = reader.next().await.expect("record 2 is unacked");
    assert_eq!(e.id.seq(), 2);
    assert_eq!(e.appended_unix_ms, CREATED + 3);
    assert_eq!(e.data.as_ref(), expected_records()[2].2.as_slice());
    // The sealed segment takes nothing more: the next record starts
    // segment 3, and numbering continues.
    writer.append(b"after the seal").await.unwrap();
    assert!(tmp.path().join("00000000000000000003.seg").exists());
    drop(writer);
    let e = reader.next().await.unwrap();
    assert_eq!((e.id.seq(), e.data.as_ref()), (3, &b"after the seal"[..]));
    assert!(reader.next().await.is_none());
}
