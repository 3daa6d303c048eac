//! Log line decoding on arbitrary bytes: CRI / docker / plain / auto, with
//! and without multiline, read in arbitrary chunks, stopped and resumed at
//! an arbitrary byte. Checks what must hold for any file content:
//! no panic; reads are fully used; marks are ordered; messages respect
//! `max_line_bytes`; chunking does not change the records; resuming from a
//! mark yields exactly the records of an uninterrupted read.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use argus_agent::sources::file::{
    Decoder, DecoderSettings, Format, MultilineConfig, MultilineMode, Output, parse_line,
    parse_rfc3339_nanos,
};
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

const MAX: usize = 2048;

fn decode(settings: &Arc<DecoderSettings>, data: &[u8], chunk: usize) -> (Decoder, Output) {
    let mut d = Decoder::new(Arc::clone(settings), "/f".into(), 0);
    let mut out = Output::new(1);
    let now = Instant::now();
    for c in data.chunks(chunk.max(1)) {
        assert_eq!(d.feed(c, now, &mut out), c.len());
        let m = d.mark();
        assert!(m.offset <= m.delivered && m.delivered <= d.position());
    }
    (d, out)
}

fuzz_target!(|input: &[u8]| {
    let Some((&[sel, chunk, cut_hi, cut_lo], data)) = input.split_first_chunk::<4>() else {
        return;
    };
    let _ = parse_rfc3339_nanos(data);
    let mut last = Format::Auto;
    let _ = parse_line(Format::Auto, &mut last, data);

    let format = [Format::Auto, Format::Cri, Format::Docker, Format::Plain][sel as usize % 4];
    let multiline = MultilineConfig {
        start_pattern: r"^\S".into(),
        condition_pattern: r"^\s".into(),
        mode: [
            MultilineMode::ContinueThrough,
            MultilineMode::ContinuePast,
            MultilineMode::HaltBefore,
            MultilineMode::HaltWith,
        ][(sel as usize / 4) % 4],
        timeout: Duration::from_secs(1),
    };
    let with_ml = sel & 0x10 != 0;
    let settings = Arc::new(
        DecoderSettings::new(
            format,
            with_ml.then_some(&multiline),
            MAX,
            Duration::from_secs(5),
            true,
        )
        .unwrap(),
    );

    let (mut whole, mut all) = decode(&settings, data, data.len());
    let (chunked, many) = decode(&settings, data, chunk as usize % 64 + 1);
    assert_eq!(all.records, many.records, "chunking changed the records");
    assert_eq!(whole.mark(), chunked.mark());
    let now = Instant::now();
    whole.flush_all(now, &mut all);
    for r in &all.records {
        if let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) =
            r.body.as_ref().and_then(|b| b.value.as_ref())
        {
            // Lossy UTF-8 may widen a cut byte into U+FFFD (3 bytes).
            assert!(s.len() <= MAX * 3, "message over max_line_bytes");
        }
    }

    // Stop anywhere, resume from the mark: exactly the same records.
    let cut = (usize::from(cut_hi) << 8 | usize::from(cut_lo)) % (data.len() + 1);
    let (before, first) = decode(&settings, &data[..cut], chunk as usize % 64 + 1);
    let mark = before.mark();
    let mut after = Decoder::resume(Arc::clone(&settings), "/f".into(), mark);
    let mut second = Output::new(1);
    after.feed(&data[mark.offset as usize..], now, &mut second);
    after.flush_all(now, &mut second);
    let mut joined = first.records;
    joined.extend(second.records);
    assert_eq!(joined, all.records, "resume from {mark:?} differs");
});
