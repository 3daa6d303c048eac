//! The drain: disk queue → exporter → queue ack.
//!
//! One task reads records in order, checks each is an export request
//! ([`EncodedRequest::from_record`]: its structure, and its item count,
//! without decoding it) and hands its bytes to an export task; at most `concurrency` exports run at
//! once (the exporter's own limit on requests in flight is the same number,
//! so reading further ahead would only hold records in memory). Each export
//! task settles its record:
//!
//! | export result                     | record                    | counted in |
//! |-----------------------------------|---------------------------|------------|
//! | `Ok(Delivered)`                   | acked (deleted)           | `records_sent_total{signal}` (+ dropped for rejected items, by the exporter) |
//! | permanent error (not retryable)   | acked: it can never go    | `records_dropped_total{reason}` (by the exporter) |
//! | `Shutdown`                        | **not** acked: sent again after restart | — |
//! | record is not an export request   | acked (it never will)     | `records_dropped_total{reason="undecodable"}` |
//!
//! Retryable failures never come back here: the exporter retries them in
//! place, forever by default, so an outage parks `concurrency` records in
//! retry and leaves the rest in the queue, where `when_full` decides what
//! an outage longer than the queue costs.
//!
//! # Shutdown
//! When `shutdown` fires, no record is read any more; exports already
//! started are told by the same signal to stop waiting (retry delays end at
//! once) while an attempt on the wire may finish, bounded by the exporter's
//! `timeout`. The task returns when every export task has settled.

use std::sync::Arc;

use argus_common::shutdown::{Shutdown, TaskTracker};
use tokio::sync::Semaphore;

use super::PipelineTelemetry;
use crate::exporter::{EncodedRequest, Exporter};
use crate::queue::{Entry, QueueAcker, QueueReader};

/// Reads the queue and exports until `shutdown` (or until the queue is
/// closed and empty). `concurrency` is `exporter.concurrency`.
pub async fn run(
    mut reader: QueueReader,
    exporter: Exporter,
    concurrency: usize,
    telemetry: PipelineTelemetry,
    shutdown: Shutdown,
) {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let exports = TaskTracker::new();
    let acker = reader.acker();
    loop {
        let slot = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            s = slots.clone().acquire_owned() => s.expect("never closed"),
        };
        let entry = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            e = reader.next() => match e {
                Some(e) => e,
                None => break,
            },
        };
        let Some(request) = decode(&entry, &acker, &telemetry) else {
            continue;
        };
        let (exporter, acker, telemetry, shutdown) = (
            exporter.clone(),
            acker.clone(),
            telemetry.clone(),
            shutdown.clone(),
        );
        exports.spawn(async move {
            let signal = request.signal();
            match exporter.export(request, &shutdown).await {
                Ok(delivered) => {
                    acker.ack(entry.id);
                    telemetry.sent(signal, delivered.items);
                }
                // Kept: delivered after the restart.
                Err(e) if e.is_retryable() => {
                    tracing::debug!(seq = entry.id.seq(), error = %e, "export interrupted by shutdown; record stays queued");
                }
                // Given up for good; the exporter logged and counted it.
                Err(_) => acker.ack(entry.id),
            }
            drop(slot);
        });
    }
    exports.close();
    exports.wait().await;
    // Flush the acks of the last exports now rather than at the next fsync
    // tick (a power loss right after a clean stop would otherwise resend
    // them).
    reader.sync().await;
    tracing::debug!("drain stopped");
}

/// The record's request, or `None` after writing off a record that is not
/// one (damage the queue's checksums did not catch, or a record written by
/// an incompatible version).
fn decode(
    entry: &Entry,
    acker: &QueueAcker,
    telemetry: &PipelineTelemetry,
) -> Option<EncodedRequest> {
    match EncodedRequest::from_record(entry.data.clone()) {
        Ok(p) => Some(p),
        Err(e) => {
            telemetry.dropped.add("undecodable", 1);
            tracing::error!(
                seq = entry.id.seq(),
                bytes = entry.data.len(),
                error = %e,
                "a disk queue record does not decode as an OTLP payload; dropped (counted as one item: its size is unknown)"
            );
            acker.ack(entry.id);
            None
        }
    }
}
