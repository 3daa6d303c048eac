//! What a failed attempt means, per the OTLP specification's exporter rules
//! (`otlp.md`, "Failures" and "OTLP/gRPC Throttling"):
//!
//! | gRPC code | verdict |
//! |---|---|
//! | CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS | retry |
//! | RESOURCE_EXHAUSTED with `google.rpc.RetryInfo` | retry, not before its delay |
//! | RESOURCE_EXHAUSTED without it | permanent (the server is out of something retries will not bring back) |
//! | everything else (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, …) | permanent |
//!
//! A `RetryInfo` delay is honoured on any retryable code, as the spec allows.
//!
//! Two refinements keep a misconfiguration from becoming data loss, each
//! recognised narrowly:
//! - **Message too large.** gRPC servers refuse an oversized message with
//!   OUT_OF_RANGE (tonic) or RESOURCE_EXHAUSTED (grpc-go, grpc-java). Retrying
//!   the same bytes forever, or dropping them, are both wrong: the exporter
//!   splits the request in halves instead ([`Verdict::TooLarge`]).
//! - **Compression refused.** A server that cannot decompress what was sent
//!   answers UNIMPLEMENTED, with a `grpc-accept-encoding` that lacks the
//!   encoding (tonic) or a message naming it (grpc-go: "Decompressor is not
//!   installed for grpc-encoding \"zstd\""); the exporter then steps down
//!   to the next compression ([`Verdict::CompressionRefused`]).
//!
//! Failures raised on our side of the wire (connect refused, DNS, TLS
//! handshake or alert, HTTP/2 connection error) arrive as statuses that carry
//! a local error source instead of a server's `grpc-status`. They are
//! retryable whatever code tonic gave them (a TLS alert such as
//! "certificate required" comes out as UNKNOWN): no server judged the data,
//! so dropping it would turn a connection problem — usually a config being
//! fixed — into loss. They count with outcome `unreachable`, so an operator
//! can tell "cannot connect" from "the server said no", and each retry logs
//! the cause.

use std::error::Error as _;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The classification of one failed attempt.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Try the same request again, not sooner than `hint` if given.
    Retryable {
        hint: Option<Duration>,
        outcome: Outcome,
    },
    /// The endpoint will never take this request.
    Permanent,
    /// The request is larger than the endpoint accepts.
    TooLarge,
    /// The endpoint cannot decompress the encoding the attempt used.
    CompressionRefused,
}

/// Bounded `outcome` label values of `export_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    Success,
    PartialSuccess,
    /// The server answered with a retryable status.
    RetryableError,
    /// RESOURCE_EXHAUSTED with RetryInfo: the server asked us to slow down.
    Throttled,
    /// Connect, TLS or HTTP/2 failure on our side of the wire.
    Unreachable,
    /// No answer within `timeout`.
    Timeout,
    PermanentError,
    TooLarge,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::PartialSuccess => "partial_success",
            Outcome::RetryableError => "retryable_error",
            Outcome::Throttled => "throttled",
            Outcome::Unreachable => "unreachable",
            Outcome::Timeout => "timeout",
            Outcome::PermanentError => "permanent_error",
            Outcome::TooLarge => "too_large",
        }
    }
}

impl Verdict {
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            Verdict::Retryable { outcome, .. } => *outcome,
            Verdict::Permanent | Verdict::CompressionRefused => Outcome::PermanentError,
            Verdict::TooLarge => Outcome::TooLarge,
        }
    }
}

/// Message fragments with which gRPC servers refuse an oversized message.
const TOO_LARGE_MESSAGES: &[&str] = &[
    "message length too large",             // tonic, uncompressed
    "exceeded while decompressing",         // tonic, gzip
    "larger than max",                      // grpc-go (also "after decompression")
    "message exceeds maximum size",         // grpc-java
    "received message exceeds the maximum", // grpc-java, older
];

/// `sent_encoding`: the attempt's `grpc-encoding`, if it compressed.
pub(crate) fn classify(status: &Status, sent_encoding: Option<&str>) -> Verdict {
    let code = status.code();
    let local = status.source().is_some();
    if matches!(code, Code::OutOfRange | Code::ResourceExhausted) && !local {
        let msg = status.message().to_ascii_lowercase();
        if TOO_LARGE_MESSAGES.iter().any(|m| msg.contains(m)) {
            return Verdict::TooLarge;
        }
    }
    let hint = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let outcome = if code == Code::DeadlineExceeded || timed_out_locally(status) {
        Outcome::Timeout
    } else if local {
        Outcome::Unreachable
    } else {
        Outcome::RetryableError
    };
    if local {
        return Verdict::Retryable {
            hint: None,
            outcome,
        };
    }
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Verdict::Retryable { hint, outcome },
        Code::ResourceExhausted => match status.get_details_retry_info() {
            Some(_) => Verdict::Retryable {
                hint,
                outcome: Outcome::Throttled,
            },
            None => Verdict::Permanent,
        },
        Code::Unimplemented if sent_encoding.is_some_and(|e| refuses(status, e)) => {
            Verdict::CompressionRefused
        }
        _ => Verdict::Permanent,
    }
}

/// tonic's own deadline (from `grpc-timeout`) surfaces as CANCELLED with a
/// `TimeoutExpired` cause.
fn timed_out_locally(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// UNIMPLEMENTED together with a `grpc-accept-encoding` that does not list
/// `encoding` (the gRPC spec's way of saying "I cannot decompress that"),
/// or without one but with a message about decompressing `encoding`.
fn refuses(status: &Status, encoding: &str) -> bool {
    match status
        .metadata()
        .get("grpc-accept-encoding")
        .and_then(|v| v.to_str().ok())
    {
        Some(accepted) => !accepted.split(',').any(|e| e.trim() == encoding),
        None => {
            let msg = status.message().to_ascii_lowercase();
            msg.contains("compress") && msg.contains(encoding)
        }
    }
}

/// A one-line description for logs and errors: code, message, and the local
/// cause chain (where "certificate not valid for name" hides). Never the
/// metadata: it is the server's, but we don't echo headers.
pub(crate) fn describe(status: &Status) -> String {
    let mut out = format!("{:?}", status.code());
    if !status.message().is_empty() {
        out.push_str(": ");
        out.push_str(status.message());
    }
    let mut source = status.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn retry_info(code: Code, secs: u64) -> Status {
        Status::with_error_details(
            code,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(secs))),
        )
    }

    #[test]
    fn codes_classify_exactly_as_the_otlp_spec_says() {
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(
                matches!(
                    classify(&Status::new(code, "x"), Some("gzip")),
                    Verdict::Retryable { hint: None, .. }
                ),
                "{code:?} must be retryable"
            );
        }
        for code in [
            Code::Unknown,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Unimplemented,
            Code::Internal,
            Code::Unauthenticated,
        ] {
            assert_eq!(
                classify(&Status::new(code, "x"), Some("gzip")),
                Verdict::Permanent,
                "{code:?} must be permanent"
            );
        }
    }

    #[test]
    fn resource_exhausted_is_retryable_only_with_retry_info() {
        assert_eq!(
            classify(&retry_info(Code::ResourceExhausted, 2), Some("gzip")),
            Verdict::Retryable {
                hint: Some(Duration::from_secs(2)),
                outcome: Outcome::Throttled
            }
        );
        assert_eq!(
            classify(&Status::resource_exhausted("quota"), Some("gzip")),
            Verdict::Permanent
        );
        // RetryInfo on another retryable code is honoured too…
        assert!(matches!(
            classify(&retry_info(Code::Unavailable, 7), Some("gzip")),
            Verdict::Retryable { hint: Some(d), .. } if d == Duration::from_secs(7)
        ));
        // …but never makes a permanent code retryable.
        assert_eq!(
            classify(&retry_info(Code::InvalidArgument, 1), Some("gzip")),
            Verdict::Permanent
        );
    }

    #[test]
    fn failures_on_our_side_of_the_wire_are_retried_whatever_their_code() {
        // What tonic yields for a TLS alert: UNKNOWN with the transport error as source.
        let io = std::io::Error::other("received fatal alert: CertificateRequired");
        let st = Status::from_error(Box::new(io));
        assert_eq!(st.code(), Code::Unknown);
        assert_eq!(
            classify(&st, Some("gzip")),
            Verdict::Retryable {
                hint: None,
                outcome: Outcome::Unreachable
            }
        );
        assert!(
            describe(&st).contains("CertificateRequired"),
            "{}",
            describe(&st)
        );
    }

    #[test]
    fn oversized_and_compression_refusals_are_recognised() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        assert_eq!(classify(&tonic, Some("gzip")), Verdict::TooLarge);
        let go = Status::resource_exhausted(
            "grpc: received message larger than max (5000000 vs. 4194304)",
        );
        assert_eq!(classify(&go, Some("gzip")), Verdict::TooLarge);
        let gz = Status::resource_exhausted(
            "Error decompressing: size limit, of 40960 bytes, exceeded while decompressing message",
        );
        assert_eq!(classify(&gz, Some("gzip")), Verdict::TooLarge);

        let mut st =
            Status::unimplemented("Content is compressed with `gzip` which isn't supported");
        st.metadata_mut()
            .insert("grpc-accept-encoding", "identity".parse().unwrap());
        assert_eq!(classify(&st, Some("gzip")), Verdict::CompressionRefused);
        let mut st = Status::unimplemented("no such method");
        st.metadata_mut()
            .insert("grpc-accept-encoding", "identity, gzip".parse().unwrap());
        assert_eq!(classify(&st, Some("gzip")), Verdict::Permanent);
    }
}
