//! Graceful shutdown: new connections refused at once, in-flight requests
//! finished within the grace period, the rest cut after it.

use std::time::Duration;

use argus_common::otlp::Payload;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use prost::Message;

use super::support::{Recorder, local_config, logs, start_with};

#[tokio::test]
async fn in_flight_requests_finish_and_new_connections_are_refused() {
    let s = start_with(local_config(), Recorder::gated()).await;
    let http_url = s.http_url("/v1/logs");
    let grpc_url = s.grpc_url();

    // One request in flight on each transport, held inside the consumer.
    let arrived = s.consumer.arrived.notified();
    let http = tokio::spawn(
        reqwest::Client::new()
            .post(http_url.clone())
            .header("content-type", "application/x-protobuf")
            .body(logs(1).encode_to_vec())
            .send(),
    );
    arrived.await;
    let arrived = s.consumer.arrived.notified();
    let grpc = tokio::spawn(async move {
        LogsServiceClient::connect(grpc_url)
            .await
            .unwrap()
            .export(logs(2))
            .await
    });
    arrived.await;
    assert_eq!(s.consumer.count(), 2);

    s.shutdown.trigger();
    // The listening sockets close promptly: new clients are refused.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if tokio::net::TcpStream::connect(s.http.unwrap())
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "listener still accepting after shutdown");
    assert!(
        !s.task.is_finished(),
        "serve must wait for in-flight requests"
    );

    // Let the consumer finish: both clients get their answer.
    s.consumer.gate.as_ref().unwrap().add_permits(2);
    let r = http.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(grpc.await.unwrap().is_ok());
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .expect("serve returns once drained")
        .unwrap()
        .unwrap();
    assert_eq!(
        s.consumer.payloads(),
        vec![Payload::Logs(logs(1)), Payload::Logs(logs(2))]
    );
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown() {
    let mut cfg = local_config();
    cfg.shutdown_grace = Duration::from_millis(300);
    let s = start_with(cfg, Recorder::gated()).await;
    let arrived = s.consumer.arrived.notified();
    let client = tokio::spawn(
        reqwest::Client::new()
            .post(s.http_url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(logs(1).encode_to_vec())
            .send(),
    );
    arrived.await;
    s.shutdown.trigger();
    // The consumer never finishes; serve still returns, soon after the grace.
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .expect("serve returns after the grace period")
        .unwrap()
        .unwrap();
    // The client sees its connection cut (and will retry), not a success.
    let result = tokio::time::timeout(Duration::from_secs(5), client)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_err(), "{result:?}");
}
