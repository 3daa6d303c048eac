//! The OTLP source: what the agent's OTLP receivers (gRPC 4317, HTTP 4318)
//! do with a decoded request.
//!
//! [`OtlpSource`] implements [`OtlpConsumer`]. For each request it
//!
//! 1. reserves the request's encoded bytes from the [`MemoryLimiter`] with
//!    `try_acquire`: a full budget is answered at once with
//!    [`ConsumeError::Full`] (gRPC `RESOURCE_EXHAUSTED` + `RetryInfo`, HTTP
//!    429 + `Retry-After`), the Collector's `memory_limiter` behaviour, so
//!    the client backs off instead of the agent growing;
//! 2. sends an [`Envelope`] on its own channel to the signal's batcher,
//!    waiting for room at most `ack_timeout` (a full channel is answered
//!    `Full` too: same backpressure, one stage later);
//! 3. waits for the envelope's [`Ack`], which the batcher calls once the
//!    batch holding the request is in the disk queue, and only then answers
//!    `OK`: an `OK` from the agent means the data survives `kill -9`.
//!
//! If the ack does not come within `ack_timeout` (the queue is full and
//! blocking, the disk stalls), or is dropped uncalled (shutdown, a queue
//! error), the answer is `Unavailable` (gRPC `UNAVAILABLE`, HTTP 503): the
//! client retries. The request may still become durable after that answer,
//! so the retry can duplicate it — OTLP is at-least-once, as with the
//! Collector.
//!
//! Items that can never be stored — a single log record, span or metric
//! larger than a disk queue record (`queue.max_record_bytes`; the HTTP
//! receiver accepts bodies up to 20 MiB) — are refused up front with an
//! OTLP *partial success* naming them, and counted as dropped
//! (`too_large`); the rest of the request is taken.

use std::time::Duration;

use argus_common::otlp::{Accepted, ConsumeError, OtlpConsumer, Payload, RequestContext, Signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::exporter::split::split;
use crate::pipeline::{Ack, Envelope, MemoryLimiter, PipelineTelemetry};

/// `source` label of the envelopes this source emits.
pub const SOURCE_NAME: &str = "otlp";

/// How long a request may wait for its data to be durable before the
/// client is told to retry. OTLP exporters default to a 10 s deadline.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Retry hint sent with a `Full` answer.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The agent's consumer of OTLP requests; see the module docs.
#[derive(Debug)]
pub struct OtlpSource {
    logs: mpsc::Sender<Envelope>,
    traces: mpsc::Sender<Envelope>,
    metrics: mpsc::Sender<Envelope>,
    limiter: MemoryLimiter,
    telemetry: PipelineTelemetry,
    /// Largest payload one queue record holds.
    max_payload_bytes: usize,
    ack_timeout: Duration,
}

impl OtlpSource {
    /// `senders` are this source's channels to the logs, traces and metrics
    /// batchers; `max_record_bytes` is `queue.max_record_bytes`.
    pub fn new(
        senders: [mpsc::Sender<Envelope>; 3],
        limiter: MemoryLimiter,
        telemetry: PipelineTelemetry,
        max_record_bytes: u64,
        ack_timeout: Duration,
    ) -> Self {
        let [logs, traces, metrics] = senders;
        OtlpSource {
            logs,
            traces,
            metrics,
            limiter,
            telemetry,
            max_payload_bytes: (max_record_bytes.saturating_sub(1) as usize).max(1),
            ack_timeout,
        }
    }

    fn sender(&self, signal: Signal) -> &mpsc::Sender<Envelope> {
        match signal {
            Signal::Logs => &self.logs,
            Signal::Traces => &self.traces,
            Signal::Metrics => &self.metrics,
        }
    }

    fn refuse(&self, reason: &'static str, error: ConsumeError) -> ConsumeError {
        self.telemetry.refused(reason);
        tracing::debug!(reason, error = %error, "OTLP request refused; the client will retry");
        error
    }

    /// Takes out items that can never fit in a queue record.
    fn drop_oversized(&self, payload: Payload) -> (Option<Payload>, u64) {
        let mut kept: Option<Payload> = None;
        let mut rejected = 0u64;
        for part in split(payload, self.max_payload_bytes) {
            if part.encoded_len() > self.max_payload_bytes {
                rejected += part.item_count() as u64;
                continue;
            }
            match &mut kept {
                None => kept = Some(part),
                Some(k) => append(k, part),
            }
        }
        if rejected > 0 {
            self.telemetry.dropped.add("too_large", rejected);
            tracing::warn!(
                rejected,
                max_bytes = self.max_payload_bytes,
                "OTLP request holds items larger than a disk queue record (queue.max_record_bytes); refused them with a partial success"
            );
        }
        (kept, rejected)
    }
}

fn append(into: &mut Payload, from: Payload) {
    match (into, from) {
        (Payload::Logs(a), Payload::Logs(b)) => a.resource_logs.extend(b.resource_logs),
        (Payload::Traces(a), Payload::Traces(b)) => a.resource_spans.extend(b.resource_spans),
        (Payload::Metrics(a), Payload::Metrics(b)) => a.resource_metrics.extend(b.resource_metrics),
        _ => unreachable!("split keeps the signal"),
    }
}

impl OtlpConsumer for OtlpSource {
    async fn consume(
        &self,
        payload: Payload,
        _ctx: RequestContext,
    ) -> Result<Accepted, ConsumeError> {
        if payload.item_count() == 0 {
            return Ok(Accepted::all());
        }
        let signal = payload.signal();
        let mut bytes = payload.encoded_len();
        let (payload, rejected) = if bytes > self.max_payload_bytes {
            let (kept, rejected) = self.drop_oversized(payload);
            match kept {
                Some(p) => {
                    bytes = p.encoded_len();
                    (p, rejected)
                }
                None => {
                    return Ok(Accepted::partial(
                        rejected as i64,
                        "every item is larger than the agent can store (queue.max_record_bytes)",
                    ));
                }
            }
        } else {
            (payload, 0)
        };
        let answer = || {
            if rejected > 0 {
                Accepted::partial(
                    rejected as i64,
                    format!(
                        "{rejected} items larger than the agent can store (queue.max_record_bytes) were dropped"
                    ),
                )
            } else {
                Accepted::all()
            }
        };

        let Some(permit) = self.limiter.try_acquire(bytes) else {
            return Err(self.refuse(
                "memory_limit",
                ConsumeError::Full {
                    retry_after: Some(RETRY_AFTER),
                },
            ));
        };
        let (tx, rx) = oneshot::channel();
        let envelope = Envelope {
            payload: payload.into(),
            source: SOURCE_NAME,
            acks: vec![Ack::new(move || {
                let _ = tx.send(());
            })],
            permit,
        };
        let deadline = Instant::now() + self.ack_timeout;
        match tokio::time::timeout_at(deadline, self.sender(signal).reserve()).await {
            Ok(Ok(slot)) => slot.send(envelope),
            Ok(Err(_)) => {
                return Err(self.refuse(
                    "stopping",
                    ConsumeError::Unavailable {
                        retry_after: None,
                        reason: "the agent is shutting down".into(),
                    },
                ));
            }
            Err(_) => {
                return Err(self.refuse(
                    "pipeline_full",
                    ConsumeError::Full {
                        retry_after: Some(RETRY_AFTER),
                    },
                ));
            }
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(())) => Ok(answer()),
            Ok(Err(_)) => Err(self.refuse(
                "not_durable",
                ConsumeError::Unavailable {
                    retry_after: Some(RETRY_AFTER),
                    reason: "the data could not be stored (the agent is stopping or its disk queue failed)".into(),
                },
            )),
            Err(_) => Err(self.refuse(
                "not_durable",
                ConsumeError::Unavailable {
                    retry_after: Some(RETRY_AFTER),
                    reason: format!(
                        "the data was not stored within {:?} (the disk queue is full or slow)",
                        self.ack_timeout
                    ),
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use argus_common::otlp::Transport;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::pipeline::DroppedRecords;

    fn logs(bodies: &[usize]) -> Payload {
        Payload::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: bodies
                        .iter()
                        .map(|&n| LogRecord {
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("x".repeat(n))),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn ctx() -> RequestContext {
        RequestContext {
            transport: Transport::Grpc,
            peer: "127.0.0.1:1".parse().unwrap(),
            client_certificate: None,
            token_authenticated: false,
        }
    }

    struct Kit {
        source: Arc<OtlpSource>,
        rx: Vec<mpsc::Receiver<Envelope>>,
        limiter: MemoryLimiter,
        telemetry: PipelineTelemetry,
    }

    fn kit(memory: usize, channel: usize, max_record: u64) -> Kit {
        let mut reg = Registry::default();
        let limiter = MemoryLimiter::new(memory);
        let dropped = DroppedRecords::register(&mut reg);
        let telemetry = PipelineTelemetry::register(&mut reg, &limiter, dropped);
        let (mut txs, mut rx) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (t, r) = mpsc::channel(channel);
            txs.push(t);
            rx.push(r);
        }
        let senders: [mpsc::Sender<Envelope>; 3] = txs.try_into().unwrap();
        let source = Arc::new(OtlpSource::new(
            senders,
            limiter.clone(),
            telemetry.clone(),
            max_record,
            Duration::from_secs(5),
        ));
        Kit {
            source,
            rx,
            limiter,
            telemetry,
        }
    }

    fn call(
        source: &Arc<OtlpSource>,
        p: Payload,
    ) -> tokio::task::JoinHandle<Result<Accepted, ConsumeError>> {
        let s = source.clone();
        tokio::spawn(async move { s.consume(p, ctx()).await })
    }

    #[tokio::test(start_paused = true)]
    async fn ok_only_once_the_batch_is_durable_and_memory_is_reserved_meanwhile() {
        let mut k = kit(1 << 20, 4, 1 << 20);
        let c = call(&k.source, logs(&[100, 100]));
        let env = k.rx[0].recv().await.expect("sent to the logs batcher");
        assert_eq!(env.source, SOURCE_NAME);
        assert_eq!(env.payload.item_count(), 2);
        assert!(k.limiter.used_bytes() > 0, "bytes reserved while in flight");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!c.is_finished(), "no answer before the ack");
        env.acks.into_iter().for_each(Ack::ack);
        assert_eq!(c.await.unwrap(), Ok(Accepted::all()));
        drop(env.permit);
        assert_eq!(k.limiter.used_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_is_refused_at_once_with_a_retry_hint() {
        let mut k = kit(8 * 1024, 4, 1 << 20);
        let _held = k.limiter.try_acquire(8 * 1024).unwrap();
        let r = k.source.consume(logs(&[100]), ctx()).await;
        assert_eq!(
            r,
            Err(ConsumeError::Full {
                retry_after: Some(RETRY_AFTER)
            })
        );
        assert!(k.rx[0].try_recv().is_err(), "nothing entered the pipeline");
        let _ = &k.telemetry;
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_channel_is_refused_after_the_ack_timeout() {
        let k = kit(1 << 20, 1, 1 << 20);
        let first = call(&k.source, logs(&[10]));
        tokio::task::yield_now().await;
        let started = Instant::now();
        let second = k.source.consume(logs(&[10]), ctx()).await;
        assert!(
            matches!(second, Err(ConsumeError::Full { .. })),
            "{second:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // The first one was sent but never acknowledged: Unavailable.
        assert!(matches!(
            first.await.unwrap(),
            Err(ConsumeError::Unavailable { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_ack_means_unavailable_so_the_client_retries() {
        let mut k = kit(1 << 20, 4, 1 << 20);
        let c = call(&k.source, logs(&[10]));
        let env = k.rx[0].recv().await.unwrap();
        drop(env);
        let r = c.await.unwrap();
        assert!(
            matches!(&r, Err(ConsumeError::Unavailable { reason, .. }) if reason.contains("could not be stored")),
            "{r:?}"
        );
        // Closed channels (shutdown) are unavailable too.
        k.rx.clear();
        let r = k.source.consume(logs(&[10]), ctx()).await;
        assert!(matches!(r, Err(ConsumeError::Unavailable { .. })), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn items_larger_than_a_queue_record_are_refused_as_partial_success() {
        let mut k = kit(1 << 20, 4, 4096);
        let c = call(&k.source, logs(&[100, 10_000, 200]));
        let env = k.rx[0].recv().await.unwrap();
        assert_eq!(env.payload.item_count(), 2, "the two that fit are kept");
        env.acks.into_iter().for_each(Ack::ack);
        let r = c.await.unwrap().unwrap();
        assert_eq!(r.rejected, 1);
        assert!(r.message.contains("max_record_bytes"), "{r:?}");
        assert_eq!(k.telemetry.dropped.get("too_large"), 1);
        // Nothing storable at all: partial success, nothing sent.
        let r = k.source.consume(logs(&[10_000]), ctx()).await.unwrap();
        assert_eq!(r.rejected, 1);
        assert!(k.rx[0].try_recv().is_err());
        // An empty request is fine and costs nothing.
        assert_eq!(
            k.source.consume(logs(&[]), ctx()).await,
            Ok(Accepted::all())
        );
    }
}
