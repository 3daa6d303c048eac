//! OTLP as both binaries receive it.
//!
//! [`Payload`] is one export request of any signal; it is what the receivers
//! hand to their consumer and, on the agent, what the disk queue stores.
//!
//! # Receivers
//!
//! [`OtlpReceiverConfig`] builds an [`OtlpReceiver`]: an OTLP/gRPC server
//! (default `0.0.0.0:4317`) and an OTLP/HTTP server (default `0.0.0.0:4318`,
//! protobuf and JSON) that behave like the OpenTelemetry Collector's
//! `otlpreceiver`, so any SDK or Collector exporter can send to Argus
//! unchanged. Every decoded request goes to one [`OtlpConsumer`] (the agent's
//! pipeline or the detector's ingest); its answer becomes the status the
//! client sees:
//!
//! | consumer says                 | gRPC                                  | HTTP                      |
//! |-------------------------------|---------------------------------------|---------------------------|
//! | `Ok(Accepted{rejected: 0})`   | `OK`                                  | 200                       |
//! | `Ok(Accepted{rejected: n>0})` | `OK` + `partial_success`              | 200 + `partialSuccess`    |
//! | `Err(Full{..})`               | `RESOURCE_EXHAUSTED` + `RetryInfo`    | 429 + `Retry-After`       |
//! | `Err(Unavailable{..})`        | `UNAVAILABLE` (+ `RetryInfo`)         | 503 (+ `Retry-After`)     |
//! | `Err(Invalid(_))`             | `INVALID_ARGUMENT`                    | 400                       |
//!
//! and the receiver itself refuses, before the consumer sees anything,
//! malformed data (`INVALID_ARGUMENT` / 400), oversized messages
//! (`RESOURCE_EXHAUSTED` / 413), missing or wrong bearer tokens
//! (`UNAUTHENTICATED` / 401), unknown paths (404), wrong methods (405) and
//! unsupported media types or content codings (415). Every error body is a
//! `google.rpc.Status`, encoded like the request.
//!
//! Submodules, in the order a request meets them:
//! - [`config`]: what users write (`OtlpReceiverConfig` and its parts).
//! - `listener` (private): TCP accept loop, TLS/mTLS handshake, HTTP/1 and
//!   HTTP/2 connections, graceful shutdown.
//! - [`auth`]: bearer tokens, compared in constant time, reloaded from disk.
//! - [`grpc`] and [`http`]: the two transports' request handling;
//!   [`compression`]: HTTP body decompression with an output cap.
//! - [`json`]: the OTLP/JSON decoder (Collector-compatible; see its docs for
//!   why the `opentelemetry-proto` serde derive is not used).
//! - [`validation`]: the checks both transports apply after decoding.
//! - [`consumer`]: the contract with the code that takes the data.
//! - [`receiver`]: `build` → `bind` → `serve`.
//! - `telemetry` (private): self-metrics and rate-limited logs.

pub mod auth;
pub mod compression;
pub mod config;
pub mod consumer;
pub mod grpc;
pub mod http;
pub mod json;
mod listener;
pub mod receiver;
mod telemetry;
mod tls;
pub mod validation;

pub use config::{
    AuthConfig, GrpcServerConfig, HttpServerConfig, OtlpReceiverConfig, TlsServerConfig,
};
pub use consumer::{Accepted, ConsumeError, OtlpConsumer, RequestContext, Transport};
pub use receiver::{BoundReceiver, OtlpReceiver, ReceiverError};

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;

/// The three OTLP signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Logs,
    Traces,
    Metrics,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Logs, Signal::Traces, Signal::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
        }
    }

    /// The queue record's signal tag byte (see [`Payload::encode`]).
    pub fn tag(self) -> u8 {
        match self {
            Signal::Logs => 1,
            Signal::Traces => 2,
            Signal::Metrics => 3,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.tag() == tag)
    }
}

/// One OTLP export request's worth of data, as it will leave the node.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Logs(ExportLogsServiceRequest),
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

/// Why a queued record could not be turned back into a payload.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("empty record")]
    Empty,
    #[error("unknown signal tag {0}")]
    UnknownSignal(u8),
    #[error("invalid protobuf for {signal}: {reason}")]
    Protobuf {
        signal: &'static str,
        reason: String,
    },
}

impl Payload {
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Logs(_) => Signal::Logs,
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
        }
    }

    /// Log records, spans, or metric data points: what users count.
    pub fn item_count(&self) -> usize {
        match self {
            Payload::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
            Payload::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            Payload::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(metric_point_count)
                .sum(),
        }
    }

    /// Size of the protobuf encoding: what memory budgets and batch sizes use.
    pub fn encoded_len(&self) -> usize {
        match self {
            Payload::Logs(r) => r.encoded_len(),
            Payload::Traces(r) => r.encoded_len(),
            Payload::Metrics(r) => r.encoded_len(),
        }
    }

    /// Queue record body: one signal tag byte, then the export request's
    /// protobuf encoding (so a record is exactly what goes on the wire).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.encoded_len());
        out.push(self.signal().tag());
        // Encoding into a Vec cannot run out of capacity.
        let _ = match self {
            Payload::Logs(r) => r.encode(&mut out),
            Payload::Traces(r) => r.encode(&mut out),
            Payload::Metrics(r) => r.encode(&mut out),
        };
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Payload, PayloadError> {
        let (&tag, body) = bytes.split_first().ok_or(PayloadError::Empty)?;
        let signal = Signal::from_tag(tag).ok_or(PayloadError::UnknownSignal(tag))?;
        Payload::decode_request(signal, body)
    }

    /// An export request's protobuf (a record without its tag byte).
    pub fn decode_request(signal: Signal, body: &[u8]) -> Result<Payload, PayloadError> {
        let bad = |e: prost::DecodeError| PayloadError::Protobuf {
            signal: signal.as_str(),
            reason: e.to_string(),
        };
        match signal {
            Signal::Logs => ExportLogsServiceRequest::decode(body).map(Payload::Logs),
            Signal::Traces => ExportTraceServiceRequest::decode(body).map(Payload::Traces),
            Signal::Metrics => ExportMetricsServiceRequest::decode(body).map(Payload::Metrics),
        }
        .map_err(bad)
    }
}

/// Data points in one metric, whatever its type.
pub fn metric_point_count(m: &opentelemetry_proto::tonic::metrics::v1::Metric) -> usize {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn logs(n: usize) -> Payload {
        Payload::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: (0..n)
                        .map(|i| LogRecord {
                            time_unix_nano: i as u64,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn payload_roundtrips_through_its_record_encoding() {
        let p = logs(3);
        assert_eq!(p.item_count(), 3);
        assert_eq!(Payload::decode(&p.encode()).unwrap(), p);
        assert_eq!(Payload::decode(&[]), Err(PayloadError::Empty));
        assert_eq!(
            Payload::decode(&[9, 1]),
            Err(PayloadError::UnknownSignal(9))
        );
        assert!(matches!(
            Payload::decode(&[2, 0xff, 0xff]),
            Err(PayloadError::Protobuf {
                signal: "traces",
                ..
            })
        ));
    }
}
