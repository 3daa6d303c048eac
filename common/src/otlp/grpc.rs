//! OTLP/gRPC: the three `Export` methods, with grpc-go's status codes.
//!
//! Framing, `grpc-encoding: gzip`, the message size limit and capped
//! decompression come from tonic's server machinery (`tonic::server::Grpc`),
//! driven by a hand-written router instead of the generated service traits,
//! for three reasons the Collector's behaviour demands:
//! - tonic's prost codec reports undecodable protobuf as `INTERNAL`; our
//!   [`OtlpCodec`] reports it as `INVALID_ARGUMENT` (permanent: the client
//!   must not retry garbage);
//! - tonic refuses an oversized message as `OUT_OF_RANGE`, grpc-go (hence
//!   every OTLP client's expectation) as `RESOURCE_EXHAUSTED`. Our handler
//!   never produces `OUT_OF_RANGE`, so any such response is tonic's size
//!   check and is rewritten (too large after decompression already is
//!   `RESOURCE_EXHAUSTED` in tonic);
//! - authentication and metrics need the raw HTTP/2 request.
//!
//! Request compression: `gzip` (what the SDKs and the Collector's exporter
//! send by default), `zstd` (what the Argus agent sends: a quarter of
//! gzip's CPU for a better ratio; the Collector's receivers take it too) and
//! none. `snappy` requests get tonic's `UNIMPLEMENTED` with a
//! `grpc-accept-encoding: gzip,zstd` header, which gRPC clients understand.
//! Decompression of either is capped at the message size limit. Responses
//! are sent uncompressed: they are a few bytes.
//!
//! Consumer refusals carry `google.rpc.RetryInfo`: always for
//! `RESOURCE_EXHAUSTED` (without it the OTLP spec makes the code
//! non-retryable), for `UNAVAILABLE` when the consumer gave a delay.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::time::Instant;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::auth::AuthOutcome;
use super::config::GrpcServerConfig;
use super::consumer::{
    Accepted, ConsumeError, DEFAULT_RETRY_AFTER, OtlpConsumer, RequestContext, Transport,
};
use super::listener::{ConnInfo, Handler};
use super::receiver::Shared;
use super::telemetry::{Outcome, RequestRecord};
use super::{Payload, Signal, validation};

pub const TRACES_METHOD: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS_METHOD: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub const LOGS_METHOD: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// A prost codec whose decode errors are `INVALID_ARGUMENT`.
pub struct OtlpCodec<Req, Resp>(PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Default for OtlpCodec<Req, Resp> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

pub struct OtlpEncoder<T>(PhantomData<fn(T)>);
pub struct OtlpDecoder<T>(PhantomData<fn() -> T>);

impl<Req, Resp> Codec for OtlpCodec<Req, Resp>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    type Encode = Resp;
    type Decode = Req;
    type Encoder = OtlpEncoder<Resp>;
    type Decoder = OtlpDecoder<Req>;

    fn encoder(&mut self) -> Self::Encoder {
        OtlpEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        OtlpDecoder(PhantomData)
    }
}

impl<T: prost::Message> Encoder for OtlpEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl<T: prost::Message + Default> Decoder for OtlpDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        T::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("malformed OTLP protobuf: {e}")))
    }
}

/// One of the three export RPCs.
trait Rpc: Send + 'static {
    type Req: prost::Message + Default + Send + 'static;
    type Resp: prost::Message + Default + Send + 'static;
    fn payload(req: Self::Req) -> Payload;
    fn response(accepted: &Accepted) -> Self::Resp;
}

struct TracesRpc;
struct MetricsRpc;
struct LogsRpc;

fn partial(a: &Accepted) -> bool {
    a.rejected != 0 || !a.message.is_empty()
}

impl Rpc for TracesRpc {
    type Req = ExportTraceServiceRequest;
    type Resp = ExportTraceServiceResponse;
    fn payload(req: Self::Req) -> Payload {
        Payload::Traces(req)
    }
    fn response(a: &Accepted) -> Self::Resp {
        ExportTraceServiceResponse {
            partial_success: partial(a).then(|| ExportTracePartialSuccess {
                rejected_spans: a.rejected,
                error_message: a.message.clone(),
            }),
        }
    }
}

impl Rpc for MetricsRpc {
    type Req = ExportMetricsServiceRequest;
    type Resp = ExportMetricsServiceResponse;
    fn payload(req: Self::Req) -> Payload {
        Payload::Metrics(req)
    }
    fn response(a: &Accepted) -> Self::Resp {
        ExportMetricsServiceResponse {
            partial_success: partial(a).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: a.rejected,
                error_message: a.message.clone(),
            }),
        }
    }
}

impl Rpc for LogsRpc {
    type Req = ExportLogsServiceRequest;
    type Resp = ExportLogsServiceResponse;
    fn payload(req: Self::Req) -> Payload {
        Payload::Logs(req)
    }
    fn response(a: &Accepted) -> Self::Resp {
        ExportLogsServiceResponse {
            partial_success: partial(a).then(|| ExportLogsPartialSuccess {
                rejected_log_records: a.rejected,
                error_message: a.message.clone(),
            }),
        }
    }
}

/// The gRPC status for a consumer refusal.
pub fn status_for(e: &ConsumeError) -> Status {
    let message = e.to_string();
    match e {
        ConsumeError::Full { retry_after } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER))),
        ),
        ConsumeError::Unavailable {
            retry_after: Some(d),
            ..
        } => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(*d)),
        ),
        ConsumeError::Unavailable { .. } => Status::unavailable(message),
        ConsumeError::Invalid(_) => Status::invalid_argument(message),
    }
}

/// What the RPC handler reports back to the request's bookkeeping.
#[derive(Default)]
struct Report {
    outcome: Option<Outcome>,
    items: u64,
    refused: u64,
    detail: String,
}

pub(crate) struct GrpcHandler<C> {
    shared: Arc<Shared<C>>,
    max_recv: usize,
}

impl<C> GrpcHandler<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, cfg: &GrpcServerConfig) -> Self {
        Self {
            shared,
            max_recv: cfg.max_recv_msg_size_bytes(),
        }
    }
}

/// Counts request body bytes as tonic reads them.
struct Counted<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
}

impl<B: hyper::body::Body<Data = bytes::Bytes> + Unpin> hyper::body::Body for Counted<B> {
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, B::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl<C: OtlpConsumer> Handler for GrpcHandler<C> {
    type Body = tonic::body::Body;

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<tonic::body::Body> {
        let started = Instant::now();
        let bytes = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(Report::default()));
        let signal = match req.uri().path() {
            TRACES_METHOD => Some(Signal::Traces),
            METRICS_METHOD => Some(Signal::Metrics),
            LOGS_METHOD => Some(Signal::Logs),
            _ => None,
        };
        let response = self.route(req, signal, &conn, &bytes, &report).await;
        let mut response = response;

        let mut report = std::mem::take(&mut *report.lock().unwrap_or_else(|p| p.into_inner()));
        if report.outcome.is_none() {
            // Refused before our handler ran: by tonic's framing, or by
            // routing/auth below (which filled `detail`).
            let status = response.extensions().get::<Status>().cloned();
            let (outcome, status) = match status {
                Some(s) if s.code() == Code::OutOfRange => (
                    Outcome::TooLarge,
                    Some(Status::resource_exhausted(s.message().to_string())),
                ),
                Some(s) if s.code() == Code::ResourceExhausted => (Outcome::TooLarge, None),
                Some(s) if s.code() == Code::Unauthenticated => (Outcome::Unauthenticated, None),
                _ => (Outcome::Invalid, None),
            };
            if let Some(status) = status {
                response = status.into_http();
            }
            if report.detail.is_empty() {
                report.detail = response
                    .extensions()
                    .get::<Status>()
                    .map(|s| s.message().to_string())
                    .unwrap_or_default();
            }
            report.outcome = Some(outcome);
        }
        self.shared.metrics.request(RequestRecord {
            transport: Transport::Grpc,
            signal,
            outcome: report.outcome.unwrap_or(Outcome::Invalid),
            items: report.items,
            refused_items: report.refused,
            body_bytes: bytes.load(Ordering::Relaxed),
            started,
            peer: conn.peer,
            detail: &report.detail,
        });
        response
    }
}

impl<C: OtlpConsumer> GrpcHandler<C> {
    async fn route(
        &self,
        req: Request<Incoming>,
        signal: Option<Signal>,
        conn: &Arc<ConnInfo>,
        bytes: &Arc<AtomicU64>,
        report: &Arc<Mutex<Report>>,
    ) -> Response<tonic::body::Body> {
        let Some(signal) = signal else {
            return Status::unimplemented(format!(
                "unknown method {}; this server implements the OTLP Export methods",
                req.uri().path()
            ))
            .into_http();
        };
        let token_authenticated = match &self.shared.auth {
            None => false,
            Some(auth) => match auth.check(req.headers().get(http::header::AUTHORIZATION)) {
                AuthOutcome::Valid => true,
                other => return Status::unauthenticated(other.message()).into_http(),
            },
        };
        let ctx = RequestContext {
            transport: Transport::Grpc,
            peer: conn.peer,
            client_certificate: conn.client_cert.clone(),
            token_authenticated,
        };
        let req = req.map(|inner| Counted {
            inner,
            bytes: bytes.clone(),
        });
        match signal {
            Signal::Traces => self.unary::<TracesRpc, _>(req, ctx, report).await,
            Signal::Metrics => self.unary::<MetricsRpc, _>(req, ctx, report).await,
            Signal::Logs => self.unary::<LogsRpc, _>(req, ctx, report).await,
        }
    }

    async fn unary<R: Rpc, B>(
        &self,
        req: Request<B>,
        ctx: RequestContext,
        report: &Arc<Mutex<Report>>,
    ) -> Response<tonic::body::Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    {
        let mut grpc = tonic::server::Grpc::new(OtlpCodec::<R::Req, R::Resp>::default())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(self.max_recv);
        let shared = self.shared.clone();
        let report = report.clone();
        let service = tower::service_fn(move |req: tonic::Request<R::Req>| {
            let shared = shared.clone();
            let report = report.clone();
            let ctx = ctx.clone();
            async move {
                let payload = R::payload(req.into_inner());
                let items = payload.item_count() as u64;
                let set = |outcome, refused, detail: String| {
                    *report.lock().unwrap_or_else(|p| p.into_inner()) = Report {
                        outcome: Some(outcome),
                        items,
                        refused,
                        detail,
                    };
                };
                if let Err(e) = validation::validate(&payload) {
                    set(Outcome::Invalid, items, e.clone());
                    return Err(Status::invalid_argument(e));
                }
                match shared.consume(payload, ctx).await {
                    Ok(accepted) => {
                        let refused = u64::try_from(accepted.rejected).unwrap_or(0).min(items);
                        let outcome = if accepted.rejected > 0 {
                            Outcome::Partial
                        } else {
                            Outcome::Ok
                        };
                        set(outcome, refused, accepted.message.clone());
                        Ok(tonic::Response::new(R::response(&accepted)))
                    }
                    Err(e) => {
                        let outcome = match e {
                            ConsumeError::Full { .. } => Outcome::Refused,
                            ConsumeError::Unavailable { .. } => Outcome::Unavailable,
                            ConsumeError::Invalid(_) => Outcome::Invalid,
                        };
                        set(outcome, items, e.to_string());
                        Err(status_for(&e))
                    }
                }
            }
        });
        grpc.unary(service, req).await
    }
}

/// The gRPC `RetryInfo` delay a status carries, if any (for tests and
/// exporters reading our answers).
pub fn retry_delay(status: &Status) -> Option<Duration> {
    status.get_details_retry_info().and_then(|r| r.retry_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_always_carries_retry_info() {
        let s = status_for(&ConsumeError::Full { retry_after: None });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(retry_delay(&s), Some(DEFAULT_RETRY_AFTER));
        let s = status_for(&ConsumeError::Full {
            retry_after: Some(Duration::from_secs(7)),
        });
        assert_eq!(retry_delay(&s), Some(Duration::from_secs(7)));
    }

    #[test]
    fn unavailable_carries_retry_info_only_when_given() {
        let s = status_for(&ConsumeError::Unavailable {
            retry_after: None,
            reason: "draining".into(),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("draining"));
        assert_eq!(retry_delay(&s), None);
        let s = status_for(&ConsumeError::Unavailable {
            retry_after: Some(Duration::from_millis(1500)),
            reason: "x".into(),
        });
        assert_eq!(retry_delay(&s), Some(Duration::from_millis(1500)));
        assert_eq!(
            status_for(&ConsumeError::Invalid("x".into())).code(),
            Code::InvalidArgument
        );
    }
}
