//! Properties of the log decoder that hold for any input:
//!
//! 1. Any split of CRI messages into `P`/`F` chunks, with stdout and stderr
//!    interleaved in any order, reassembles the original messages per stream.
//! 2. Any chunking of the file into reads of any sizes yields the same
//!    records and the same checkpoint mark as reading it at once.
//! 3. Stopping at any byte, checkpointing the decoder's mark and resuming a
//!    fresh decoder from it yields exactly the records a single uninterrupted
//!    read yields: nothing lost, nothing twice (partials and multiline
//!    groups of interleaved streams included).

use std::sync::Arc;
use std::time::Duration;

use argus_agent::sources::file::{
    Decoder, DecoderSettings, Format, MultilineConfig, MultilineMode, Output,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use proptest::prelude::*;
use tokio::time::Instant;

const TIME: &str = "2024-01-15T10:30:00.123456789Z";

fn settings(format: Format, multiline: bool, max: usize) -> Arc<DecoderSettings> {
    let ml = MultilineConfig {
        start_pattern: "^[A-Z]".into(),
        condition_pattern: r"^\s".into(),
        mode: MultilineMode::ContinueThrough,
        timeout: Duration::from_secs(1),
    };
    Arc::new(
        DecoderSettings::new(
            format,
            multiline.then_some(&ml),
            max,
            Duration::from_secs(5),
            true,
        )
        .unwrap(),
    )
}

/// One message's CRI lines: `P` chunks at the cut points, then `F`.
fn cri_lines(stream: &str, msg: &str, cuts: &[usize]) -> Vec<String> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (msg.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts {
        if c > from && c < msg.len() {
            out.push(format!("{TIME} {stream} P {}\n", &msg[from..c]));
            from = c;
        }
    }
    out.push(format!("{TIME} {stream} F {}\n", &msg[from..]));
    out
}

/// Messages of two streams, chunked, interleaved by `order`.
fn interleave(streams: &[Vec<(String, Vec<usize>)>; 2], other: &[String], order: &[u8]) -> String {
    let mut queues: Vec<std::collections::VecDeque<String>> = vec![
        streams[0]
            .iter()
            .flat_map(|(m, c)| cri_lines("stdout", m, c))
            .collect(),
        streams[1]
            .iter()
            .flat_map(|(m, c)| cri_lines("stderr", m, c))
            .collect(),
        other.iter().map(|l| format!("{l}\n")).collect(),
    ];
    let mut out = String::new();
    let mut i = 0;
    while queues.iter().any(|q| !q.is_empty()) {
        let pick = order.get(i).copied().unwrap_or(0) as usize % 3;
        i += 1;
        let q = (0..3)
            .map(|k| (pick + k) % 3)
            .find(|&k| !queues[k].is_empty())
            .unwrap();
        out.push_str(&queues[q].pop_front().unwrap());
    }
    out
}

fn decode_chunked(d: &mut Decoder, input: &[u8], sizes: &[usize], out: &mut Output) {
    let now = Instant::now();
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let n = sizes.get(i).copied().unwrap_or(usize::MAX).max(1);
        i += 1;
        let end = at.saturating_add(n).min(input.len());
        assert_eq!(d.feed(&input[at..end], now, out), end - at);
        at = end;
    }
}

fn body(r: &LogRecord) -> String {
    match r.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn stream(r: &LogRecord) -> Option<String> {
    r.attributes
        .iter()
        .find(|kv| kv.key == "log.iostream")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

fn messages() -> impl Strategy<Value = Vec<(String, Vec<usize>)>> {
    prop::collection::vec(
        ("[a-z0-9 ]{0,40}", prop::collection::vec(0usize..64, 0..5)),
        0..8,
    )
}

/// Lines without a stream: plain text, JSON, continuation lines, CRLF,
/// and lines longer than the cap.
fn other_lines() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            "[A-Za-z][a-z ]{0,30}",
            " +at [a-z.]{1,20}",
            r#"\{"level":"(info|warn)","msg":"[a-z ]{0,10}","n":[0-9]{1,3}\}"#,
            "[a-z]{1,10}\r",
            (1200usize..2500).prop_map(|n| "L".repeat(n)),
        ],
        0..10,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_of_cri_messages_reassembles_per_stream(
        stdout in messages(),
        stderr in messages(),
        order in prop::collection::vec(0u8..2, 0..200),
        sizes in prop::collection::vec(1usize..200, 0..100),
    ) {
        let streams = [stdout, stderr];
        let input = interleave(&streams, &[], &order);
        let mut d = Decoder::new(settings(Format::Cri, false, 1 << 20), "/f".into(), 0);
        let mut out = Output::new(1);
        decode_chunked(&mut d, input.as_bytes(), &sizes, &mut out);
        for (k, name) in ["stdout", "stderr"].into_iter().enumerate() {
            let got: Vec<String> = out
                .records
                .iter()
                .filter(|r| stream(r).as_deref() == Some(name))
                .map(body)
                .collect();
            let want: Vec<String> = streams[k].iter().map(|(m, _)| m.clone()).collect();
            prop_assert_eq!(got, want, "{}", name);
        }
        prop_assert_eq!(d.resume_offset(), input.len() as u64, "nothing pending");
    }

    #[test]
    fn any_chunking_yields_the_same_records(
        stdout in messages(),
        stderr in messages(),
        other in other_lines(),
        order in prop::collection::vec(0u8..3, 0..200),
        tail in "[a-z]{0,20}",
        sizes in prop::collection::vec(1usize..400, 0..200),
        multiline in any::<bool>(),
    ) {
        let input = interleave(&[stdout, stderr], &other, &order) + &tail;
        let s = settings(Format::Auto, multiline, 1024);
        let mut whole = Decoder::new(Arc::clone(&s), "/f".into(), 0);
        let mut one = Output::new(1);
        whole.feed(input.as_bytes(), Instant::now(), &mut one);
        let mut chunked = Decoder::new(s, "/f".into(), 0);
        let mut many = Output::new(1);
        decode_chunked(&mut chunked, input.as_bytes(), &sizes, &mut many);
        prop_assert_eq!(&one.records, &many.records);
        prop_assert_eq!(one.lines, many.lines);
        prop_assert_eq!(one.truncated, many.truncated);
        prop_assert_eq!(whole.mark(), chunked.mark());
        prop_assert_eq!(whole.position(), input.len() as u64);
    }

    #[test]
    fn resuming_from_any_mark_is_exactly_once(
        stdout in messages(),
        stderr in messages(),
        other in other_lines(),
        order in prop::collection::vec(0u8..3, 0..200),
        cut in any::<prop::sample::Index>(),
        sizes in prop::collection::vec(1usize..400, 0..200),
        multiline in any::<bool>(),
    ) {
        let input = interleave(&[stdout, stderr], &other, &order);
        let bytes = input.as_bytes();
        let s = settings(Format::Auto, multiline, 1024);
        let now = Instant::now();

        let mut whole = Decoder::new(Arc::clone(&s), "/f".into(), 0);
        let mut all = Output::new(1);
        whole.feed(bytes, now, &mut all);
        whole.flush_all(now, &mut all);

        // Stop anywhere, checkpoint, restart.
        let cut = cut.index(bytes.len() + 1);
        let mut before = Decoder::new(Arc::clone(&s), "/f".into(), 0);
        let mut first = Output::new(1);
        decode_chunked(&mut before, &bytes[..cut], &sizes, &mut first);
        let mark = before.mark();
        prop_assert!(mark.offset <= mark.delivered && mark.delivered <= cut as u64);
        let mut after = Decoder::resume(s, "/f".into(), mark);
        let mut second = Output::new(1);
        decode_chunked(&mut after, &bytes[mark.offset as usize..], &sizes, &mut second);
        after.flush_all(now, &mut second);

        let mut joined = first.records;
        joined.extend(second.records);
        prop_assert_eq!(joined.iter().map(body).collect::<Vec<_>>(), all.records.iter().map(body).collect::<Vec<_>>());
        prop_assert_eq!(joined, all.records);
    }
}
