//! An export request as the bytes that go on the wire, and the disk queue
//! record that holds it.
//!
//! # Record format
//!
//! A disk queue record's body (the queue frames and checksums it; see
//! `queue`) is one of:
//!
//! ```text
//! plain:  tag (1 logs, 2 traces, 3 metrics) | export request (protobuf)
//! zstd:   tag | 0x10 | varint items | varint protobuf length | zstd frame
//! ```
//!
//! The batcher writes `zstd` records by default (`queue.compression`): OTLP
//! logs shrink 10–20×, so the queue holds that much more of an outage in
//! the same `max_bytes`, and the bytes written to and deleted from the page
//! cache — which were a fifth of the agent's CPU per line as kernel time —
//! shrink with them. Plain records (older agents, `compression: none`) are
//! read as before.
//!
//! # Sending without decoding
//!
//! The exporter ships a record's bytes as they are: a zstd record goes out
//! as a gRPC message already compressed with `grpc-encoding: zstd` (when
//! the endpoint takes zstd; otherwise it is decompressed and sent the way
//! the endpoint accepts), a plain one through a pass-through codec. Before
//! this, every record was decoded into structs, cloned for each attempt and
//! encoded again: about a third of the agent's CPU per log line.
//!
//! What the exporter needs without decoding is the number of items (log
//! records, spans, metric data points) for its counters and for capping a
//! partial success's rejected count: a zstd record carries it; for a plain
//! one [`count_items`] reads it by walking the message's length-delimited
//! fields down to the items and skipping each item by its length (no
//! allocation, a few varints per item). The walk checks the structure it
//! passes through (tags, wire types, lengths within bounds); it does not
//! look inside an item, so a record whose damage sits inside a log record's
//! body reaches the endpoint, which rejects it (`INVALID_ARGUMENT`, counted
//! as dropped) — the queue's CRCs make such damage all but impossible.
//!
//! Only the rare paths decode: a request larger than `max_request_bytes`,
//! or one the endpoint refused as too large, is decoded, split along
//! resource/scope/item boundaries (`split`), and its parts encoded again.

use argus_common::otlp::{Payload, PayloadError, Signal};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How the batcher stores export requests in the disk queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordCompression {
    /// zstd level 1: about a tenth of the bytes, sent as they are to an
    /// endpoint that takes zstd.
    #[default]
    Zstd,
    None,
}

/// Set on the tag of a zstd record.
const ZSTD_FLAG: u8 = 0x10;
/// zstd's fastest regular level: on OTLP logs within a few percent of
/// level 3's ratio.
const ZSTD_LEVEL: i32 = 1;
/// Largest request a zstd record may claim to hold (a damaged length must
/// not become a huge allocation); far above any `queue.max_record_bytes`.
const MAX_PLAIN_BYTES: usize = 1 << 30;

/// Turns batches into queue records; one per batcher, so the zstd context
/// (about a megabyte of tables) is made once, not per record.
pub struct RecordEncoder {
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl std::fmt::Debug for RecordEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordEncoder")
            .field("zstd", &self.zstd.is_some())
            .finish()
    }
}

impl RecordEncoder {
    pub fn new(compression: RecordCompression) -> Self {
        let zstd = match compression {
            // Only fails on an out-of-range level, which ZSTD_LEVEL is not.
            RecordCompression::Zstd => zstd::bulk::Compressor::new(ZSTD_LEVEL).ok(),
            RecordCompression::None => None,
        };
        RecordEncoder { zstd }
    }

    /// The record body for `payload` (see the module docs' format).
    pub fn encode(&mut self, payload: &Payload) -> Vec<u8> {
        self.pack(payload.encode(), payload.item_count())
    }

    /// The record body for a plain record ([`Payload::encode`]'s format)
    /// holding `items` items.
    pub fn pack(&mut self, plain: Vec<u8>, items: usize) -> Vec<u8> {
        let Some(zstd) = &mut self.zstd else {
            return plain;
        };
        let body = &plain[1..];
        let Ok(frame) = zstd.compress(body) else {
            // zstd fails only on allocation; the plain record is as good.
            return plain;
        };
        let mut out = Vec::with_capacity(frame.len() + 12);
        out.push(plain[0] | ZSTD_FLAG);
        put_varint(&mut out, items as u64);
        put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(&frame);
        out
    }
}

/// How an [`EncodedRequest`]'s bytes are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    Plain,
    /// A zstd frame of `plain_len` protobuf bytes.
    Zstd {
        plain_len: usize,
    },
}

/// One export request, encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedRequest {
    signal: Signal,
    items: usize,
    packing: Packing,
    body: Bytes,
}

impl EncodedRequest {
    /// From a disk queue record, without copying or decompressing.
    pub fn from_record(record: Bytes) -> Result<Self, PayloadError> {
        let (&tag, _) = record.split_first().ok_or(PayloadError::Empty)?;
        let signal = Signal::from_tag(tag & !ZSTD_FLAG).ok_or(PayloadError::UnknownSignal(tag))?;
        let bad = |reason: &str| PayloadError::Protobuf {
            signal: signal.as_str(),
            reason: reason.to_owned(),
        };
        if tag & ZSTD_FLAG == 0 {
            let body = record.slice(1..);
            let items = count_items(signal, &body).map_err(bad)?;
            return Ok(EncodedRequest {
                signal,
                items,
                packing: Packing::Plain,
                body,
            });
        }
        let mut rest = &record[1..];
        let items = varint(&mut rest).map_err(bad)?;
        let plain_len = varint(&mut rest).map_err(bad)?;
        let items = usize::try_from(items).map_err(|_| bad("item count out of range"))?;
        let plain_len = usize::try_from(plain_len)
            .ok()
            .filter(|n| *n <= MAX_PLAIN_BYTES)
            .ok_or_else(|| bad("request length out of range"))?;
        let body = record.slice(record.len() - rest.len()..);
        Ok(EncodedRequest {
            signal,
            items,
            packing: Packing::Zstd { plain_len },
            body,
        })
    }

    pub fn from_payload(payload: &Payload) -> Self {
        let record = Bytes::from(payload.encode());
        EncodedRequest {
            signal: payload.signal(),
            items: payload.item_count(),
            packing: Packing::Plain,
            body: record.slice(1..),
        }
    }

    /// The protobuf encoding, decompressed if need be.
    pub fn plain_body(&self) -> Result<Bytes, PayloadError> {
        match self.packing {
            Packing::Plain => Ok(self.body.clone()),
            Packing::Zstd { plain_len } => {
                let plain = zstd::bulk::decompress(&self.body, plain_len).map_err(|e| {
                    PayloadError::Protobuf {
                        signal: self.signal.as_str(),
                        reason: format!("zstd: {e}"),
                    }
                })?;
                if plain.len() != plain_len {
                    return Err(PayloadError::Protobuf {
                        signal: self.signal.as_str(),
                        reason: format!(
                            "zstd frame holds {} bytes, the record says {plain_len}",
                            plain.len()
                        ),
                    });
                }
                Ok(Bytes::from(plain))
            }
        }
    }

    /// The structs, for the paths that must look inside (splitting).
    pub fn decode(&self) -> Result<Payload, PayloadError> {
        Payload::decode_request(self.signal, &self.plain_body()?)
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Log records, spans or metric data points.
    pub fn items(&self) -> usize {
        self.items
    }

    /// Protobuf bytes, before any compression.
    pub fn len(&self) -> usize {
        match self.packing {
            Packing::Plain => self.body.len(),
            Packing::Zstd { plain_len } => plain_len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn packing(&self) -> Packing {
        self.packing
    }

    /// The bytes as packed; cloning them is a reference count.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

impl From<Payload> for EncodedRequest {
    fn from(payload: Payload) -> Self {
        EncodedRequest::from_payload(&payload)
    }
}

impl From<&Payload> for EncodedRequest {
    fn from(payload: &Payload) -> Self {
        EncodedRequest::from_payload(payload)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Items in an export request's encoding, by walking its structure.
///
/// The field numbers are OTLP's (`opentelemetry/proto/collector/*/v1`):
/// request.1 = resource_*, resource_*.2 = scope_*, scope_*.2 = items (log
/// records, spans) or metrics; for a metric, the data field present last
/// (protobuf's rule for a `oneof` seen twice) counts its `data_points` (1).
pub fn count_items(signal: Signal, request: &[u8]) -> Result<usize, &'static str> {
    let mut items = 0;
    for_each_len_field(request, 1, |resource| {
        for_each_len_field(resource, 2, |scope| match signal {
            Signal::Logs | Signal::Traces => for_each_len_field(scope, 2, |_| {
                items += 1;
                Ok(())
            }),
            Signal::Metrics => for_each_len_field(scope, 2, |metric| {
                items += metric_points(metric)?;
                Ok(())
            }),
        })
    })?;
    Ok(items)
}

/// `Metric.data`: gauge 5, sum 7, histogram 9, exponential_histogram 10,
/// summary 11; each keeps its points in field 1.
fn metric_points(metric: &[u8]) -> Result<usize, &'static str> {
    let mut last = None;
    walk(metric, |field, value| {
        if matches!(field, 5 | 7 | 9 | 10 | 11)
            && let Value::Len(data) = value
        {
            last = Some(data);
        }
        Ok(())
    })?;
    let Some(data) = last else { return Ok(0) };
    let mut points = 0;
    for_each_len_field(data, 1, |_| {
        points += 1;
        Ok(())
    })?;
    Ok(points)
}

enum Value<'a> {
    Scalar,
    Len(&'a [u8]),
}

/// Calls `f` with every length-delimited occurrence of field `number`.
fn for_each_len_field<'a>(
    message: &'a [u8],
    number: u32,
    mut f: impl FnMut(&'a [u8]) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    walk(message, |field, value| match value {
        Value::Len(bytes) if field == number => f(bytes),
        Value::Scalar if field == number => Err("a message field has a scalar wire type"),
        _ => Ok(()),
    })
}

/// Visits each field of `message`: its number and value.
fn walk<'a>(
    mut message: &'a [u8],
    mut f: impl FnMut(u32, Value<'a>) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    while !message.is_empty() {
        let key = varint(&mut message)?;
        if key > u64::from(u32::MAX) {
            return Err("field number out of range");
        }
        let field = (key >> 3) as u32;
        if field == 0 {
            return Err("field number 0");
        }
        let value = match (key & 7) as u8 {
            VARINT => {
                varint(&mut message)?;
                Value::Scalar
            }
            FIXED64 => {
                message = message.get(8..).ok_or("truncated fixed64")?;
                Value::Scalar
            }
            FIXED32 => {
                message = message.get(4..).ok_or("truncated fixed32")?;
                Value::Scalar
            }
            LEN => {
                let len = usize::try_from(varint(&mut message)?).map_err(|_| "length overflow")?;
                if len > message.len() {
                    return Err("length beyond the end of the message");
                }
                let (bytes, rest) = message.split_at(len);
                message = rest;
                Value::Len(bytes)
            }
            START_GROUP => {
                skip_group(&mut message, u64::from(field), 0)?;
                Value::Scalar
            }
            _ => return Err("invalid wire type"),
        };
        f(field, value)?;
    }
    Ok(())
}

/// Skips a (deprecated, never OTLP's own) group up to its end tag, as
/// prost skips one in an unknown field, so both accept the same bytes.
fn skip_group(message: &mut &[u8], number: u64, depth: u32) -> Result<(), &'static str> {
    if depth >= 100 {
        return Err("groups nested too deep");
    }
    loop {
        let key = varint(message)?;
        if key >> 3 == 0 || key > u64::from(u32::MAX) {
            return Err("invalid field number");
        }
        match (key & 7) as u8 {
            VARINT => {
                varint(message)?;
            }
            FIXED64 => *message = message.get(8..).ok_or("truncated fixed64")?,
            FIXED32 => *message = message.get(4..).ok_or("truncated fixed32")?,
            LEN => {
                let len = usize::try_from(varint(message)?).map_err(|_| "length overflow")?;
                *message = message
                    .get(len..)
                    .ok_or("length beyond the end of the message")?;
            }
            START_GROUP => skip_group(message, key >> 3, depth + 1)?,
            END_GROUP if key >> 3 == number => return Ok(()),
            _ => return Err("invalid wire type or unmatched end group"),
        }
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, metric::Data,
    };
    use proptest::prelude::*;

    fn logs(shape: &[&[usize]]) -> Payload {
        Payload::Logs(ExportLogsServiceRequest {
            resource_logs: shape
                .iter()
                .map(|scopes| ResourceLogs {
                    scope_logs: scopes
                        .iter()
                        .map(|&n| ScopeLogs {
                            log_records: (0..n)
                                .map(|i| LogRecord {
                                    time_unix_nano: i as u64,
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        })
    }

    #[test]
    fn counts_what_decoding_counts() {
        for shape in [
            &[][..],
            &[&[][..]],
            &[&[0][..]],
            &[&[3, 0, 2][..], &[1]],
            &[&[1000][..]],
        ] {
            let p = logs(shape);
            let r = EncodedRequest::from_record(Bytes::from(p.encode())).unwrap();
            assert_eq!(r.items(), p.item_count(), "{shape:?}");
            assert_eq!(r.decode().unwrap(), p);
            assert_eq!(EncodedRequest::from_payload(&p), r);
        }
    }

    #[test]
    fn zstd_records_carry_count_and_length_and_decode_to_the_payload() {
        let p = logs(&[&[3, 0, 2], &[1]]);
        let record = RecordEncoder::new(RecordCompression::Zstd).encode(&p);
        // Header: logs tag with the zstd flag, 6 items, the protobuf length.
        let len = p.encoded_len();
        assert_eq!(record[..2], [0x11, 6]);
        let mut rest = &record[2..];
        assert_eq!(varint(&mut rest).unwrap(), len as u64);
        let r = EncodedRequest::from_record(Bytes::from(record.clone())).unwrap();
        assert_eq!((r.items(), r.len()), (6, len));
        assert!(matches!(r.packing(), Packing::Zstd { plain_len } if plain_len == len));
        assert_eq!(r.plain_body().unwrap(), Bytes::from(p.encode()).slice(1..));
        assert_eq!(r.decode().unwrap(), p);
        // Plain records are Payload::encode, as older agents wrote them.
        let plain = RecordEncoder::new(RecordCompression::None).encode(&p);
        assert_eq!(plain, p.encode());
        assert_eq!(
            EncodedRequest::from_record(Bytes::from(plain))
                .unwrap()
                .items(),
            6
        );
    }

    #[test]
    fn repetitive_logs_shrink_in_the_queue() {
        // Records that differ only in their timestamps: a third at most.
        let p = logs(&[&[2000]]);
        let record = RecordEncoder::new(RecordCompression::Zstd).encode(&p);
        assert!(
            record.len() * 3 < p.encoded_len(),
            "{} of {} bytes",
            record.len(),
            p.encoded_len()
        );
    }

    #[test]
    fn a_damaged_zstd_record_is_an_error_when_opened() {
        let p = logs(&[&[50]]);
        let mut record = RecordEncoder::new(RecordCompression::Zstd).encode(&p);
        let n = record.len();
        record[n - 8] ^= 0xff;
        record.truncate(n - 3);
        let r = EncodedRequest::from_record(Bytes::from(record)).unwrap();
        assert!(r.plain_body().is_err());
        assert!(r.decode().is_err());
        // A length beyond any sane record is refused before allocating.
        let huge = [
            vec![0x11, 1],
            vec![0xff, 0xff, 0xff, 0xff, 0x7f],
            vec![0; 8],
        ]
        .concat();
        assert!(EncodedRequest::from_record(Bytes::from(huge)).is_err());
    }

    #[test]
    fn metrics_count_data_points_of_every_type() {
        let metric = |data| Metric {
            name: "m".into(),
            data: Some(data),
            ..Default::default()
        };
        let p = Payload::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); 2],
                        })),
                        metric(Data::Sum(Sum {
                            data_points: vec![NumberDataPoint::default(); 3],
                            ..Default::default()
                        })),
                        metric(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint::default(); 4],
                            ..Default::default()
                        })),
                        Metric {
                            name: "no data".into(),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let r = EncodedRequest::from_record(Bytes::from(p.encode())).unwrap();
        assert_eq!(p.item_count(), 9);
        assert_eq!(r.items(), 9);
    }

    #[test]
    fn damaged_structure_is_an_error_not_a_guess() {
        let good = logs(&[&[2]]).encode();
        for (what, record) in [
            ("empty", vec![]),
            ("unknown tag", vec![9, 0x0a, 0x00]),
            ("length past the end", vec![1, 0x0a, 0x64, 0x01]),
            ("truncated", good[..good.len() - 1].to_vec()),
            ("scalar where a message is", vec![1, 0x08, 0x01]),
            ("field zero", vec![1, 0x02, 0x00]),
            ("unterminated group", vec![1, 0x0b]),
            ("endless varint", [vec![1, 0x08], vec![0xff; 11]].concat()),
        ] {
            assert!(
                EncodedRequest::from_record(Bytes::from(record)).is_err(),
                "{what}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever bytes a record holds: no panic, and wherever prost
        /// decodes it, the walk agrees on the count.
        #[test]
        fn agrees_with_prost_on_any_bytes(
            tag in 1u8..4,
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let record = [vec![tag], body].concat();
            let walked = EncodedRequest::from_record(Bytes::from(record.clone()));
            if let Ok(p) = Payload::decode(&record) {
                prop_assert_eq!(walked.map(|r| r.items()), Ok(p.item_count()));
            }
        }

        /// Real requests of any shape: the walk counts what decoding counts.
        #[test]
        fn counts_any_shape(
            shape in prop::collection::vec(prop::collection::vec(0usize..40, 0..4), 0..4),
        ) {
            let shape: Vec<&[usize]> = shape.iter().map(Vec::as_slice).collect();
            let p = logs(&shape);
            let r = EncodedRequest::from_record(Bytes::from(p.encode())).unwrap();
            prop_assert_eq!(r.items(), p.item_count());
        }
    }
}
