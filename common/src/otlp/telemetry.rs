//! The receivers' self-metrics and logs: one call per occurrence.
//!
//! Metrics (under the prefix the caller's registry carries, e.g.
//! `argus_agent_`, then `otlp_receiver_`):
//! - `requests_total{transport,signal,outcome}` — every request, once.
//! - `items_received_total{transport,signal}` — spans / log records / data
//!   points decoded, refused ones included.
//! - `items_refused_total{transport,signal}` — of those, not taken (consumer
//!   error: all of them; partial success: the rejected count).
//! - `request_body_bytes_total{transport,signal}` — bytes on the wire.
//! - `request_duration_seconds{transport,signal}` — histogram, receipt to
//!   response.
//! - `connections{transport}` — open connections (gauge).
//! - `tls_handshake_failures_total{transport}` — e.g. an mTLS client without
//!   a certificate; the only trace such a client leaves.
//! - `auth_token_reload_failures_total`.
//!
//! Labels are bounded: `transport` ∈ {grpc, http}, `signal` ∈ {logs, traces,
//! metrics, unknown}, `outcome` ∈ {ok, partial, invalid, unauthenticated,
//! too_large, refused, unavailable}. Never a peer address, a path a client
//! made up, or anything from the token.
//!
//! Client mistakes are logged at `warn`, refusals at `info`, but each outcome
//! at most once per [`LOG_EVERY`], with the number of similar events
//! suppressed in between: a misconfigured fleet must not turn the receiver's
//! log into the problem.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::time::Instant;

use super::Signal;
use super::consumer::Transport;

/// How often one kind of client error may be logged.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// How a request ended, as counted and logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Outcome {
    Ok,
    Partial,
    Invalid,
    Unauthenticated,
    TooLarge,
    Refused,
    Unavailable,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Ok,
        Outcome::Partial,
        Outcome::Invalid,
        Outcome::Unauthenticated,
        Outcome::TooLarge,
        Outcome::Refused,
        Outcome::Unavailable,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Invalid => "invalid",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::TooLarge => "too_large",
            Outcome::Refused => "refused",
            Outcome::Unavailable => "unavailable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    transport: &'static str,
    signal: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    transport: &'static str,
    signal: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

type HistogramFamily = Family<SignalLabels, Histogram, fn() -> Histogram>;

/// One finished request, as the transports report it.
pub(crate) struct RequestRecord<'a> {
    pub transport: Transport,
    pub signal: Option<Signal>,
    pub outcome: Outcome,
    pub items: u64,
    pub refused_items: u64,
    pub body_bytes: u64,
    pub started: Instant,
    pub peer: SocketAddr,
    /// What went wrong, for the log (never secrets).
    pub detail: &'a str,
}

pub(crate) struct ReceiverMetrics {
    requests: Family<RequestLabels, Counter>,
    items_received: Family<SignalLabels, Counter>,
    items_refused: Family<SignalLabels, Counter>,
    body_bytes: Family<SignalLabels, Counter>,
    duration: HistogramFamily,
    connections: Family<TransportLabels, Gauge>,
    handshake_failures: Family<TransportLabels, Counter>,
    pub(crate) token_reload_failures: Counter,
    limiter: [LogSlot; 7],
    epoch: Instant,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl ReceiverMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            items_received: Family::default(),
            items_refused: Family::default(),
            body_bytes: Family::default(),
            duration: HistogramFamily::new_with_constructor(duration_histogram),
            connections: Family::default(),
            handshake_failures: Family::default(),
            token_reload_failures: Counter::default(),
            limiter: Default::default(),
            epoch: Instant::now(),
        };
        let r = registry.sub_registry_with_prefix("otlp_receiver");
        r.register(
            "requests",
            "OTLP export requests by transport, signal and outcome",
            m.requests.clone(),
        );
        r.register(
            "items_received",
            "Spans, log records and metric data points decoded from requests",
            m.items_received.clone(),
        );
        r.register(
            "items_refused",
            "Decoded items the consumer did not take (refused, unavailable, invalid or rejected in a partial success)",
            m.items_refused.clone(),
        );
        r.register_with_unit(
            "request_body",
            "Request bytes received on the wire (before decompression)",
            Unit::Bytes,
            m.body_bytes.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from request receipt to response",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed (no or untrusted client certificate, protocol mismatch, timeout)",
            m.handshake_failures.clone(),
        );
        r.register(
            "auth_token_reload_failures",
            "Failed re-reads of the bearer token file (previous tokens kept)",
            m.token_reload_failures.clone(),
        );
        // Pre-create the series users alert on, so `rate()` works from the
        // first scrape rather than from the first failure.
        for t in [Transport::Grpc, Transport::Http] {
            for s in Signal::ALL {
                for o in Outcome::ALL {
                    let _ = m.requests.get_or_create(&RequestLabels {
                        transport: t.as_str(),
                        signal: s.as_str(),
                        outcome: o.as_str(),
                    });
                }
            }
        }
        m
    }

    /// A request finished: count it and, if notable, log it (rate-limited).
    pub(crate) fn request(&self, r: RequestRecord<'_>) {
        let transport = r.transport.as_str();
        let signal = r.signal.map_or("unknown", Signal::as_str);
        self.requests
            .get_or_create(&RequestLabels {
                transport,
                signal,
                outcome: r.outcome.as_str(),
            })
            .inc();
        let labels = SignalLabels { transport, signal };
        if r.items > 0 {
            self.items_received.get_or_create(&labels).inc_by(r.items);
        }
        if r.refused_items > 0 {
            self.items_refused
                .get_or_create(&labels)
                .inc_by(r.refused_items);
        }
        self.body_bytes.get_or_create(&labels).inc_by(r.body_bytes);
        self.duration
            .get_or_create(&labels)
            .observe(r.started.elapsed().as_secs_f64());

        let Some(suppressed) = self.limiter[r.outcome.index()].allow(self.epoch) else {
            return;
        };
        let peer = r.peer;
        let detail = r.detail;
        let outcome = r.outcome.as_str();
        match r.outcome {
            Outcome::Ok => {}
            Outcome::Partial => tracing::info!(
                transport, signal, %peer, rejected = r.refused_items, detail, suppressed,
                "OTLP request partially accepted"
            ),
            Outcome::Invalid | Outcome::Unauthenticated | Outcome::TooLarge => tracing::warn!(
                transport, signal, %peer, outcome, detail, suppressed,
                "OTLP request refused: client error"
            ),
            Outcome::Refused | Outcome::Unavailable => tracing::info!(
                transport, signal, %peer, outcome, items = r.items, detail, suppressed,
                "OTLP request refused: client told to retry"
            ),
        }
    }

    pub(crate) fn connection_opened(&self, t: Transport) {
        self.connections
            .get_or_create(&TransportLabels {
                transport: t.as_str(),
            })
            .inc();
    }

    pub(crate) fn connection_closed(&self, t: Transport) {
        self.connections
            .get_or_create(&TransportLabels {
                transport: t.as_str(),
            })
            .dec();
    }

    pub(crate) fn handshake_failed(&self, t: Transport, peer: SocketAddr, error: &str) {
        self.handshake_failures
            .get_or_create(&TransportLabels {
                transport: t.as_str(),
            })
            .inc();
        // Shares the "unauthenticated" log slot: a cert-less client is that.
        if let Some(suppressed) = self.limiter[Outcome::Unauthenticated.index()].allow(self.epoch) {
            tracing::warn!(transport = t.as_str(), %peer, error, suppressed, "TLS handshake failed");
        }
    }
}

/// At most one log line per [`LOG_EVERY`]; counts what it swallowed.
#[derive(Default)]
struct LogSlot {
    /// Milliseconds since `epoch` before which nothing is logged.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogSlot {
    /// `Some(suppressed since last time)` when this event may be logged.
    fn allow(&self, epoch: Instant) -> Option<u64> {
        let now = epoch.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + LOG_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn log_slot_lets_one_through_per_period_and_counts_the_rest() {
        let epoch = Instant::now();
        let slot = LogSlot::default();
        assert_eq!(slot.allow(epoch), Some(0));
        assert_eq!(slot.allow(epoch), None);
        assert_eq!(slot.allow(epoch), None);
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(slot.allow(epoch), Some(2));
        assert_eq!(slot.allow(epoch), None);
    }

    #[test]
    fn requests_are_counted_with_bounded_labels() {
        let mut registry = Registry::with_prefix("argus_agent");
        let m = ReceiverMetrics::register(&mut registry);
        m.request(RequestRecord {
            transport: Transport::Http,
            signal: Some(Signal::Logs),
            outcome: Outcome::Partial,
            items: 10,
            refused_items: 3,
            body_bytes: 512,
            started: Instant::now(),
            peer: "127.0.0.1:1".parse().unwrap(),
            detail: "x",
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"argus_agent_otlp_receiver_requests_total{transport="http",signal="logs",outcome="partial"} 1"#,
            r#"argus_agent_otlp_receiver_requests_total{transport="grpc",signal="traces",outcome="refused"} 0"#,
            r#"argus_agent_otlp_receiver_items_received_total{transport="http",signal="logs"} 10"#,
            r#"argus_agent_otlp_receiver_items_refused_total{transport="http",signal="logs"} 3"#,
            r#"argus_agent_otlp_receiver_request_body_bytes_total{transport="http",signal="logs"} 512"#,
            r#"argus_agent_otlp_receiver_request_duration_seconds_count{transport="http",signal="logs"} 1"#,
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
