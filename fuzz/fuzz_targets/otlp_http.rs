//! OTLP/HTTP request bodies: everything the receiver does with client bytes
//! before the consumer sees them (decompression with a cap, protobuf or
//! OTLP/JSON decoding, ID validation), under every signal, encoding and
//! content coding.
//!
//! The first input byte picks the signal, encoding and coding; the rest is
//! the body. Besides "never panics", an accepted body must round-trip:
//! what was decoded re-encodes as protobuf and decodes to the same bytes.

#![no_main]

use argus_common::otlp::Signal;
use argus_common::otlp::http::{BodyEncoding, ContentCoding, decode_body};
use libfuzzer_sys::fuzz_target;

const SIGNALS: [Signal; 3] = [Signal::Logs, Signal::Traces, Signal::Metrics];
const CODINGS: [ContentCoding; 4] = [
    ContentCoding::Identity,
    ContentCoding::Gzip,
    ContentCoding::Deflate,
    ContentCoding::Zstd,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let signal = SIGNALS[usize::from(selector % 3)];
    let encoding = if selector & 0x04 == 0 {
        BodyEncoding::Protobuf
    } else {
        BodyEncoding::Json
    };
    let coding = CODINGS[usize::from((selector >> 3) % 4)];
    // 1 MiB output cap keeps each run fast while still exercising the cap.
    if let Ok(payload) = decode_body(signal, encoding, coding, body, 1 << 20) {
        assert_eq!(payload.signal(), signal);
        let record = payload.encode();
        let again = decode_body(
            signal,
            BodyEncoding::Protobuf,
            ContentCoding::Identity,
            &record[1..],
            usize::MAX,
        )
        .expect("a decoded request re-encodes to valid protobuf");
        // Compare encodings, not values: NaN != NaN.
        assert_eq!(again.encode(), record);
    }
});
