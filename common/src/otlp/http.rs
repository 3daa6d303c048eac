//! OTLP/HTTP: `POST /v1/{traces,metrics,logs}`, protobuf or JSON.
//!
//! A request is checked in the order that makes refusing it cheapest, and
//! answered with the status the OTLP spec and the Collector use:
//!
//! | check                                   | refusal                          |
//! |-----------------------------------------|----------------------------------|
//! | path is one of the three signal paths   | 404                              |
//! | method is `POST`                        | 405 + `Allow: POST`              |
//! | bearer token (when configured)          | 401 + `WWW-Authenticate: Bearer` |
//! | `Content-Type` protobuf or JSON         | 415                              |
//! | `Content-Encoding` known                | 415                              |
//! | `Content-Length` within the limit       | 413 (body never read)            |
//! | body read within the limit              | 413 (read stops at the limit)    |
//! | decompressed within the limit           | 413 (inflation stops there)      |
//! | decodes, IDs well-formed                | 400                              |
//! | consumer: `Full` / `Unavailable`        | 429 / 503 + `Retry-After`        |
//! | consumer: `Invalid`                     | 400                              |
//!
//! Success is 200 with the `Export*ServiceResponse` (partial success
//! included) in the request's encoding. Errors after the content type is
//! known carry a `google.rpc.Status` in that encoding; earlier ones (404,
//! 405, 415) are plain text, since there is no encoding to answer in.
//!
//! Decompression and decoding of bodies above [`BLOCKING_THRESHOLD`] run on
//! the blocking pool: inflating and parsing 20 MiB takes tens of
//! milliseconds, which would stall every other connection on that worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
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
use prost::Message;
use tokio::time::Instant;

use super::auth::AuthOutcome;
pub use super::compression::ContentCoding;
use super::compression::{DecompressError, decompress};
use super::config::HttpServerConfig;
use super::consumer::{
    Accepted, ConsumeError, DEFAULT_RETRY_AFTER, OtlpConsumer, RequestContext, Transport,
};
use super::listener::{ConnInfo, Handler};
use super::receiver::Shared;
use super::telemetry::{Outcome, RequestRecord};
use super::{Payload, Signal, json, validation};

/// Bodies larger than this are decompressed and decoded off the async
/// workers.
pub const BLOCKING_THRESHOLD: usize = 64 * 1024;

/// The two OTLP/HTTP body encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEncoding {
    Protobuf,
    Json,
}

impl BodyEncoding {
    /// From a `Content-Type` value (parameters such as `charset` ignored).
    pub fn from_content_type(value: &str) -> Option<BodyEncoding> {
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/protobuf")
        {
            Some(BodyEncoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(BodyEncoding::Json)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            BodyEncoding::Protobuf => "application/x-protobuf",
            BodyEncoding::Json => "application/json",
        }
    }
}

/// Why a request body was refused (before the consumer saw it).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// → 413.
    #[error("request body too large: {0}")]
    TooLarge(String),
    /// → 400.
    #[error("{0}")]
    Invalid(String),
}

/// Decompresses, decodes and validates one OTLP/HTTP request body: all the
/// receiver does with client bytes before the consumer, as a pure function
/// (property tests and the `otlp_http` fuzz target call it directly).
pub fn decode_body(
    signal: Signal,
    encoding: BodyEncoding,
    coding: ContentCoding,
    body: &[u8],
    limit: usize,
) -> Result<Payload, BodyError> {
    let raw = decompress(coding, body, limit).map_err(|e| match e {
        DecompressError::TooLarge { .. } => BodyError::TooLarge(e.to_string()),
        DecompressError::Corrupt { .. } => BodyError::Invalid(e.to_string()),
    })?;
    let payload = match encoding {
        BodyEncoding::Json => json::decode(signal, &raw).map_err(|e| {
            BodyError::Invalid(format!(
                "invalid OTLP/JSON {} request: {e}",
                signal.as_str()
            ))
        })?,
        BodyEncoding::Protobuf => {
            let bad = |e: prost::DecodeError| {
                BodyError::Invalid(format!(
                    "invalid OTLP/protobuf {} request: {e}",
                    signal.as_str()
                ))
            };
            match signal {
                Signal::Traces => {
                    Payload::Traces(ExportTraceServiceRequest::decode(&raw[..]).map_err(bad)?)
                }
                Signal::Logs => {
                    Payload::Logs(ExportLogsServiceRequest::decode(&raw[..]).map_err(bad)?)
                }
                Signal::Metrics => {
                    Payload::Metrics(ExportMetricsServiceRequest::decode(&raw[..]).map_err(bad)?)
                }
            }
        }
    };
    validation::validate(&payload).map_err(BodyError::Invalid)?;
    Ok(payload)
}

/// The `Export*ServiceResponse` protobuf for an accepted request.
pub(crate) fn response_protobuf(signal: Signal, a: &Accepted) -> Vec<u8> {
    let partial = a.rejected != 0 || !a.message.is_empty();
    let message = a.message.clone();
    match signal {
        Signal::Traces => ExportTraceServiceResponse {
            partial_success: partial.then_some(ExportTracePartialSuccess {
                rejected_spans: a.rejected,
                error_message: message,
            }),
        }
        .encode_to_vec(),
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: partial.then_some(ExportLogsPartialSuccess {
                rejected_log_records: a.rejected,
                error_message: message,
            }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: partial.then_some(ExportMetricsPartialSuccess {
                rejected_data_points: a.rejected,
                error_message: message,
            }),
        }
        .encode_to_vec(),
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

pub(crate) struct HttpHandler<C> {
    shared: Arc<Shared<C>>,
    limit: usize,
    routes: [(String, Signal); 3],
}

impl<C> HttpHandler<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, cfg: &HttpServerConfig) -> Self {
        Self {
            shared,
            limit: usize::try_from(cfg.max_request_body_size).unwrap_or(usize::MAX),
            routes: [
                (cfg.traces_url_path.clone(), Signal::Traces),
                (cfg.metrics_url_path.clone(), Signal::Metrics),
                (cfg.logs_url_path.clone(), Signal::Logs),
            ],
        }
    }
}

/// A refusal being built: status, gRPC-equivalent code, message, extras.
struct Refusal {
    status: StatusCode,
    outcome: Outcome,
    code: tonic::Code,
    message: String,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn new(
        status: StatusCode,
        outcome: Outcome,
        code: tonic::Code,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            outcome,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

fn text(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(message)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn encoded(status: StatusCode, encoding: BodyEncoding, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    r
}

fn refusal_response(f: &Refusal, encoding: Option<BodyEncoding>) -> Response<Full<Bytes>> {
    let mut r = match encoding {
        None => text(f.status, format!("{} {}\n", f.status.as_u16(), f.message)),
        Some(BodyEncoding::Json) => encoded(
            f.status,
            BodyEncoding::Json,
            json::status(f.code, &f.message),
        ),
        Some(BodyEncoding::Protobuf) => encoded(
            f.status,
            BodyEncoding::Protobuf,
            tonic_types::pb::Status {
                code: f.code as i32,
                message: f.message.clone(),
                details: Vec::new(),
            }
            .encode_to_vec(),
        ),
    };
    if let Some(d) = f.retry_after {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(d)));
    }
    r
}

/// Counts body bytes as they are read, so even a refused body is counted.
struct ReadProgress(AtomicU64);

impl<C: OtlpConsumer> Handler for HttpHandler<C> {
    type Body = Full<Bytes>;

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let signal = self
            .routes
            .iter()
            .find(|(p, _)| p == req.uri().path())
            .map(|(_, s)| *s);
        let progress = ReadProgress(AtomicU64::new(0));
        let mut items = 0u64;
        let mut encoding = None;
        let result = self
            .process(req, signal, &conn, &progress, &mut items, &mut encoding)
            .await;
        let (response, outcome, refused, detail) = match result {
            Ok((response, accepted)) => {
                let outcome = if accepted.rejected > 0 {
                    Outcome::Partial
                } else {
                    Outcome::Ok
                };
                let refused = u64::try_from(accepted.rejected).unwrap_or(0).min(items);
                (response, outcome, refused, accepted.message)
            }
            Err(refusal) => {
                let refused = match refusal.outcome {
                    Outcome::Refused | Outcome::Unavailable | Outcome::Invalid => items,
                    _ => 0,
                };
                let mut response = refusal_response(&refusal, encoding);
                if refusal.status == StatusCode::METHOD_NOT_ALLOWED {
                    response
                        .headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("POST"));
                }
                if refusal.status == StatusCode::UNAUTHORIZED {
                    let challenge = if refusal.message == AuthOutcome::Invalid.message() {
                        r#"Bearer error="invalid_token""#
                    } else {
                        "Bearer"
                    };
                    response
                        .headers_mut()
                        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                }
                (response, refusal.outcome, refused, refusal.message)
            }
        };
        self.shared.metrics.request(RequestRecord {
            transport: Transport::Http,
            signal,
            outcome,
            items,
            refused_items: refused,
            body_bytes: progress.0.load(Ordering::Relaxed),
            started,
            peer: conn.peer,
            detail: &detail,
        });
        response
    }
}

impl<C: OtlpConsumer> HttpHandler<C> {
    async fn process(
        &self,
        req: Request<Incoming>,
        signal: Option<Signal>,
        conn: &ConnInfo,
        progress: &ReadProgress,
        items: &mut u64,
        encoding_out: &mut Option<BodyEncoding>,
    ) -> Result<(Response<Full<Bytes>>, Accepted), Refusal> {
        use tonic::Code;
        let Some(signal) = signal else {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                Outcome::Invalid,
                Code::Unimplemented,
                format!(
                    "no OTLP endpoint at {}; use {}, {} or {}",
                    req.uri().path(),
                    self.routes[0].0,
                    self.routes[1].0,
                    self.routes[2].0
                ),
            ));
        };
        if req.method() != Method::POST {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Outcome::Invalid,
                Code::Unimplemented,
                format!("method {} not allowed, use POST", req.method()),
            ));
        }
        let headers = req.headers();
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let encoding = BodyEncoding::from_content_type(content_type);
        // Known before auth, so a 401 can answer in the request's encoding.
        *encoding_out = encoding;

        let token_authenticated = match &self.shared.auth {
            None => false,
            Some(auth) => match auth.check(headers.get(AUTHORIZATION)) {
                AuthOutcome::Valid => true,
                other => {
                    return Err(Refusal::new(
                        StatusCode::UNAUTHORIZED,
                        Outcome::Unauthenticated,
                        Code::Unauthenticated,
                        other.message(),
                    ));
                }
            },
        };
        let Some(encoding) = encoding else {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Outcome::Invalid,
                Code::InvalidArgument,
                format!(
                    "unsupported Content-Type {content_type:?}; use application/x-protobuf or application/json"
                ),
            ));
        };
        let coding_header = headers
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("(not text)"));
        let Some(coding) = ContentCoding::from_header(coding_header) else {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Outcome::Invalid,
                Code::InvalidArgument,
                format!(
                    "unsupported Content-Encoding {:?}; use gzip, deflate, zstd or none",
                    coding_header.unwrap_or_default()
                ),
            ));
        };
        let too_large = |what: String| {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Outcome::TooLarge,
                Code::ResourceExhausted,
                what,
            )
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(n) = declared
            && n > self.limit as u64
        {
            return Err(too_large(format!(
                "Content-Length {n} exceeds the limit of {} bytes",
                self.limit
            )));
        }

        // Read at most `limit` bytes, counting as we go.
        let body = req.into_body().map_frame(|f| {
            if let Some(d) = f.data_ref() {
                progress.0.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
            f
        });
        let body = match Limited::new(body, self.limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(too_large(format!(
                    "body exceeds the limit of {} bytes",
                    self.limit
                )));
            }
            Err(e) => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    Outcome::Invalid,
                    Code::InvalidArgument,
                    format!("could not read the request body: {e}"),
                ));
            }
        };

        let limit = self.limit;
        let decoded = if body.len() > BLOCKING_THRESHOLD {
            tokio::task::spawn_blocking(move || decode_body(signal, encoding, coding, &body, limit))
                .await
                .unwrap_or_else(|e| Err(BodyError::Invalid(format!("decoder failed: {e}"))))
        } else {
            decode_body(signal, encoding, coding, &body, limit)
        };
        let payload = decoded.map_err(|e| match e {
            BodyError::TooLarge(m) => too_large(m),
            BodyError::Invalid(m) => Refusal::new(
                StatusCode::BAD_REQUEST,
                Outcome::Invalid,
                Code::InvalidArgument,
                m,
            ),
        })?;
        *items = payload.item_count() as u64;

        let ctx = RequestContext {
            transport: Transport::Http,
            peer: conn.peer,
            client_certificate: conn.client_cert.clone(),
            token_authenticated,
        };
        match self.shared.consume(payload, ctx).await {
            Ok(accepted) => {
                let body = match encoding {
                    BodyEncoding::Json => json::response(signal, &accepted),
                    BodyEncoding::Protobuf => response_protobuf(signal, &accepted),
                };
                Ok((encoded(StatusCode::OK, encoding, body), accepted))
            }
            Err(e) => Err(refusal_for(e)),
        }
    }
}

fn refusal_for(e: ConsumeError) -> Refusal {
    use tonic::Code;
    let message = e.to_string();
    match e {
        ConsumeError::Full { retry_after } => Refusal {
            retry_after: Some(retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
            ..Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                Outcome::Refused,
                Code::ResourceExhausted,
                message,
            )
        },
        ConsumeError::Unavailable { retry_after, .. } => Refusal {
            retry_after,
            ..Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Unavailable,
                Code::Unavailable,
                message,
            )
        },
        ConsumeError::Invalid(_) => Refusal::new(
            StatusCode::BAD_REQUEST,
            Outcome::Invalid,
            Code::InvalidArgument,
            message,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_matched_like_media_types() {
        use BodyEncoding::*;
        assert_eq!(
            BodyEncoding::from_content_type("application/x-protobuf"),
            Some(Protobuf)
        );
        assert_eq!(
            BodyEncoding::from_content_type("application/protobuf"),
            Some(Protobuf)
        );
        assert_eq!(
            BodyEncoding::from_content_type("Application/JSON; charset=utf-8"),
            Some(Json)
        );
        assert_eq!(BodyEncoding::from_content_type("text/plain"), None);
        assert_eq!(BodyEncoding::from_content_type(""), None);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn partial_success_only_when_there_is_something_to_say() {
        assert!(response_protobuf(Signal::Traces, &Accepted::all()).is_empty());
        let r = ExportLogsServiceResponse::decode(
            &response_protobuf(Signal::Logs, &Accepted::partial(2, "dup"))[..],
        )
        .unwrap();
        assert_eq!(
            r.partial_success,
            Some(ExportLogsPartialSuccess {
                rejected_log_records: 2,
                error_message: "dup".into()
            })
        );
    }

    #[test]
    fn decode_body_classifies_failures() {
        let e = decode_body(
            Signal::Logs,
            BodyEncoding::Protobuf,
            ContentCoding::Identity,
            &[0xff, 0xff],
            100,
        )
        .unwrap_err();
        assert!(
            matches!(e, BodyError::Invalid(ref m) if m.contains("protobuf")),
            "{e}"
        );
        let e = decode_body(
            Signal::Logs,
            BodyEncoding::Json,
            ContentCoding::Identity,
            &[b' '; 101],
            100,
        )
        .unwrap_err();
        assert!(matches!(e, BodyError::TooLarge(_)), "{e}");
        let e = decode_body(
            Signal::Logs,
            BodyEncoding::Json,
            ContentCoding::Gzip,
            b"nope",
            100,
        )
        .unwrap_err();
        assert!(
            matches!(e, BodyError::Invalid(ref m) if m.contains("gzip")),
            "{e}"
        );
        let e = decode_body(
            Signal::Traces,
            BodyEncoding::Json,
            ContentCoding::Identity,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abcd"}]}]}]}"#,
            1000,
        )
        .unwrap_err();
        assert!(
            matches!(e, BodyError::Invalid(ref m) if m.contains("traceId")),
            "{e}"
        );
        let p = decode_body(
            Signal::Metrics,
            BodyEncoding::Protobuf,
            ContentCoding::Identity,
            &[],
            100,
        )
        .unwrap();
        assert_eq!(p.signal(), Signal::Metrics);
    }
}
