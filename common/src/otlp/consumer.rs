//! The contract between the receivers and the code that takes the data.
//!
//! The receiver decodes and validates a request, then calls
//! [`OtlpConsumer::consume`] once per request. The consumer's answer decides
//! what the client is told (see the table in [`crate::otlp`]), and with it
//! whether the client retries: the consumer never has to know gRPC or HTTP.
//!
//! A `consume` call that has started always runs to completion, even when the
//! client disconnects or the receiver shuts down: the receiver runs it as its
//! own task and only stops *waiting* for it. Consumers therefore never see a
//! half-finished call dropped at an `.await` (which would be a torn write
//! into a queue); the price is that a client that gave up may retry data that
//! was in fact taken — OTLP is at-least-once, the same as the Collector.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::Payload;

/// Takes decoded OTLP requests. Implemented by the agent's pipeline and the
/// detector's ingest; the receiver is generic over it (no boxing per call).
/// `Arc<T>` implements it too, so the caller can keep a handle on its
/// consumer after handing it to `build`.
pub trait OtlpConsumer: Send + Sync + 'static {
    /// Take one export request. Return quickly: the client waits for the
    /// answer. Backpressure is an error ([`ConsumeError::Full`]), not a wait.
    fn consume(
        &self,
        payload: Payload,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<Accepted, ConsumeError>> + Send;
}

/// The consumer took the request, possibly minus some items (OTLP "partial
/// success": the client must not retry the rejected items, and logs the
/// message).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items (spans, log records, metric data points) that were dropped.
    pub rejected: i64,
    /// Why, for the client's log. May be set with `rejected == 0` as a
    /// warning (the OTLP spec allows it).
    pub message: String,
}

impl Accepted {
    /// Everything taken, nothing to say.
    pub fn all() -> Self {
        Self::default()
    }

    /// `rejected` items dropped, for `message`.
    pub fn partial(rejected: i64, message: impl Into<String>) -> Self {
        Self {
            rejected,
            message: message.into(),
        }
    }
}

/// Why the consumer did not take a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// Out of room (memory budget, queue). Throttled: the client retries
    /// after `retry_after`. gRPC `RESOURCE_EXHAUSTED` with `RetryInfo`;
    /// HTTP 429 with `Retry-After`. Without a hint the receiver still sends
    /// [`DEFAULT_RETRY_AFTER`]: the OTLP spec makes `RESOURCE_EXHAUSTED`
    /// retryable only when `RetryInfo` is present, and backpressure must never
    /// turn into data loss at the client.
    #[error("receiver is full, retry later")]
    Full { retry_after: Option<Duration> },
    /// Temporarily unable (shutting down, downstream down). Retryable: gRPC
    /// `UNAVAILABLE`, HTTP 503; `Retry-After`/`RetryInfo` only when given.
    #[error("receiver unavailable: {reason}")]
    Unavailable {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// The data itself is unacceptable; retrying cannot help. gRPC
    /// `INVALID_ARGUMENT`, HTTP 400.
    #[error("invalid data: {0}")]
    Invalid(String),
}

/// Retry delay sent with [`ConsumeError::Full`] when the consumer gave none.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ConsumeError {
    /// Whether the client should send the same data again.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ConsumeError::Invalid(_))
    }
}

/// Which server a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    /// Bounded metric label / log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Who sent a request and how, for the consumer's routing and audit.
///
/// There is no tenant or header pass-through yet: Argus is single-tenant.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub transport: Transport,
    /// The TCP peer (a node's agent, an SDK, a Collector — or a proxy).
    pub peer: SocketAddr,
    /// The client's certificate (leaf, DER) when the server requires mTLS and
    /// the handshake verified it against `client_ca_file`: the strongest
    /// identity the receiver knows. Parse it with an X.509 library to get
    /// the subject; the receiver itself does not need to.
    pub client_certificate: Option<Arc<CertificateDer<'static>>>,
    /// True when `auth` is configured and the request carried a valid bearer
    /// token. A token is a shared secret, not an identity: it says "one of
    /// ours", not "which one".
    pub token_authenticated: bool,
}
