//! OTLP/gRPC as an SDK exporter meets it: tonic's generated OTLP clients,
//! plus raw frames for what a typed client cannot send.

use std::time::Duration;

use argus_common::otlp::grpc::{LOGS_METHOD, retry_delay};
use argus_common::otlp::{Accepted, AuthConfig, ConsumeError, Payload, Transport};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use super::support::{
    RawCodec, Recorder, Server, local_config, logs, metrics, start, start_with, traces,
};

async fn channel(s: &Server) -> Channel {
    Channel::from_shared(s.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A raw unary call on the logs method with `body` as the message bytes.
async fn raw_logs_call(
    ch: Channel,
    body: Vec<u8>,
    gzip: bool,
) -> Result<tonic::Response<Vec<u8>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(LOGS_METHOD),
        RawCodec,
    )
    .await
}

#[tokio::test]
async fn every_signal_is_accepted_and_reaches_the_consumer_intact() {
    let s = start(local_config()).await;
    let ch = channel(&s).await;
    let r = TraceServiceClient::new(ch.clone())
        .export(traces(3))
        .await
        .unwrap();
    assert_eq!(r.into_inner().partial_success, None);
    MetricsServiceClient::new(ch.clone())
        .export(metrics(4))
        .await
        .unwrap();
    LogsServiceClient::new(ch).export(logs(5)).await.unwrap();

    assert_eq!(
        s.consumer.payloads(),
        vec![
            Payload::Traces(traces(3)),
            Payload::Metrics(metrics(4)),
            Payload::Logs(logs(5))
        ]
    );
    let (_, ctx) = s.consumer.last();
    assert_eq!(ctx.transport, Transport::Grpc);
    assert!(ctx.peer.ip().is_loopback());
    assert!(ctx.client_certificate.is_none() && !ctx.token_authenticated);

    let ok = |sig: &str| {
        s.metric(&format!(
        r#"argus_agent_otlp_receiver_requests_total{{transport="grpc",signal="{sig}",outcome="ok"}}"#
    ))
    };
    assert_eq!((ok("traces"), ok("metrics"), ok("logs")), (1.0, 1.0, 1.0));
    assert_eq!(
        s.metric(
            r#"argus_agent_otlp_receiver_items_received_total{transport="grpc",signal="logs"}"#
        ),
        5.0
    );
    let wire = s.metric(
        r#"argus_agent_otlp_receiver_request_body_bytes_total{transport="grpc",signal="logs"}"#,
    );
    assert_eq!(
        wire,
        (logs(5).encoded_len() + 5) as f64,
        "message + 5-byte gRPC frame header"
    );
    s.stop().await;
}

#[tokio::test]
async fn partial_success_is_relayed_to_the_client() {
    let s = start(local_config()).await;
    s.consumer
        .answer(Ok(Accepted::partial(2, "2 spans older than 24h dropped")));
    let r = TraceServiceClient::new(channel(&s).await)
        .export(traces(5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.partial_success,
        Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "2 spans older than 24h dropped".into()
        })
    );
    assert_eq!(
        s.metric(r#"argus_agent_otlp_receiver_requests_total{transport="grpc",signal="traces",outcome="partial"}"#),
        1.0
    );
    assert_eq!(
        s.metric(
            r#"argus_agent_otlp_receiver_items_refused_total{transport="grpc",signal="traces"}"#
        ),
        2.0
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_and_the_server_keeps_serving() {
    let s = start(local_config()).await;
    let ch = channel(&s).await;
    // Field 1, wire type 2 (length-delimited) claiming 100 bytes, then 1.
    let err = raw_logs_call(ch.clone(), vec![0x0a, 0x64, 0x01], false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("malformed"), "{err:?}");
    assert_eq!(s.consumer.count(), 0);

    // Valid protobuf, invalid OTLP: a 3-byte trace ID.
    let mut bad = logs(1);
    bad.resource_logs[0].scope_logs[0].log_records[0].trace_id = vec![1, 2, 3];
    let err = LogsServiceClient::new(ch.clone())
        .export(bad)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("logRecords[0].traceId"), "{err:?}");

    LogsServiceClient::new(ch).export(logs(1)).await.unwrap();
    assert_eq!(s.consumer.count(), 1);
    assert_eq!(
        s.metric(r#"argus_agent_otlp_receiver_requests_total{transport="grpc",signal="logs",outcome="invalid"}"#),
        2.0
    );
    s.stop().await;
}

#[tokio::test]
async fn oversized_message_is_resource_exhausted_like_grpc_go() {
    let mut cfg = local_config();
    cfg.grpc.as_mut().unwrap().max_recv_msg_size_mib = 1;
    let s = start(cfg).await;
    let ch = channel(&s).await;
    let mut big = logs(1);
    big.resource_logs[0].scope_logs[0].log_records[0].body = Some(AnyValue {
        value: Some(any_value::Value::StringValue("x".repeat(1_100_000))),
    });
    let err = LogsServiceClient::new(ch.clone())
        .export(big.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Compressed below the limit, but 8 MiB once inflated: refused without
    // inflating past the limit.
    let err = raw_logs_call(ch.clone(), vec![0u8; 8 << 20], true)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    LogsServiceClient::new(ch).export(logs(2)).await.unwrap();
    assert_eq!(s.consumer.count(), 1);
    assert_eq!(
        s.metric(r#"argus_agent_otlp_receiver_requests_total{transport="grpc",signal="logs",outcome="too_large"}"#),
        2.0
    );
    s.stop().await;
}

#[tokio::test]
async fn gzip_and_zstd_compressed_requests_are_accepted() {
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let s = start(local_config()).await;
        let r = LogsServiceClient::new(channel(&s).await)
            .send_compressed(encoding)
            .export(logs(50))
            .await;
        assert!(r.is_ok(), "{encoding:?}: {r:?}");
        assert_eq!(s.consumer.payloads(), vec![Payload::Logs(logs(50))]);
        let wire = s.metric(
            r#"argus_agent_otlp_receiver_request_body_bytes_total{transport="grpc",signal="logs"}"#,
        );
        assert!(
            wire < logs(50).encoded_len() as f64 / 2.0,
            "{encoding:?} on the wire: {wire} bytes"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn missing_or_wrong_token_is_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cr3t-agent-token\n").unwrap();
    let mut cfg = local_config();
    cfg.auth = Some(AuthConfig::from_file(&token));
    let s = start(cfg).await;
    let ch = channel(&s).await;

    let err = LogsServiceClient::new(ch.clone())
        .export(logs(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(logs(1));
    req.metadata_mut()
        .insert("authorization", "Bearer wrong".parse().unwrap());
    let err = LogsServiceClient::new(ch.clone())
        .export(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(!err.message().contains("s3cr3t"));
    assert_eq!(s.consumer.count(), 0);

    let mut req = tonic::Request::new(logs(1));
    req.metadata_mut().insert(
        "authorization",
        "Bearer s3cr3t-agent-token".parse().unwrap(),
    );
    LogsServiceClient::new(ch).export(req).await.unwrap();
    assert!(s.consumer.last().1.token_authenticated);
    assert_eq!(
        s.metric(r#"argus_agent_otlp_receiver_requests_total{transport="grpc",signal="logs",outcome="unauthenticated"}"#),
        2.0
    );
    assert!(!s.metrics().contains("s3cr3t"));
    s.stop().await;
}

#[tokio::test]
async fn backpressure_is_retryable_with_retry_info() {
    let s = start(local_config()).await;
    let mut client = LogsServiceClient::new(channel(&s).await);

    s.consumer.answer(Err(ConsumeError::Full {
        retry_after: Some(Duration::from_secs(3)),
    }));
    let err = client.export(logs(4)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(retry_delay(&err), Some(Duration::from_secs(3)));

    // No hint from the consumer still means "retry", never "drop".
    s.consumer
        .answer(Err(ConsumeError::Full { retry_after: None }));
    let err = client.export(logs(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(retry_delay(&err), Some(Duration::from_secs(1)));

    s.consumer.answer(Err(ConsumeError::Unavailable {
        retry_after: Some(Duration::from_millis(2500)),
        reason: "disk queue replaying".into(),
    }));
    let err = client.export(logs(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("disk queue replaying"));
    assert_eq!(retry_delay(&err), Some(Duration::from_millis(2500)));

    s.consumer
        .answer(Err(ConsumeError::Invalid("timestamps from 1970".into())));
    let err = client.export(logs(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(retry_delay(&err), None);

    client.export(logs(1)).await.unwrap();
    let m = |o: &str| {
        s.metric(&format!(
        r#"argus_agent_otlp_receiver_requests_total{{transport="grpc",signal="logs",outcome="{o}"}}"#
    ))
    };
    assert_eq!(
        (m("refused"), m("unavailable"), m("invalid"), m("ok")),
        (2.0, 1.0, 1.0, 1.0)
    );
    assert_eq!(
        s.metric(
            r#"argus_agent_otlp_receiver_items_refused_total{transport="grpc",signal="logs"}"#
        ),
        7.0
    );
    s.stop().await;
}

#[tokio::test]
async fn unknown_methods_are_unimplemented() {
    let s = start(local_config()).await;
    let mut grpc = tonic::client::Grpc::new(channel(&s).await);
    grpc.ready().await.unwrap();
    let err = grpc
        .unary(
            tonic::Request::new(logs(1).encode_to_vec()),
            http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
            ),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    s.stop().await;
}

#[tokio::test]
async fn a_panicking_consumer_becomes_unavailable_not_a_dead_server() {
    struct Panics;
    impl argus_common::otlp::OtlpConsumer for Panics {
        async fn consume(
            &self,
            _: Payload,
            _: argus_common::otlp::RequestContext,
        ) -> Result<Accepted, ConsumeError> {
            panic!("consumer bug")
        }
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let bound = local_config()
        .build(Panics, &mut registry)
        .unwrap()
        .bind()
        .await
        .unwrap();
    let url = format!("http://{}", bound.grpc_addr().unwrap());
    let shutdown = argus_common::shutdown::Shutdown::new();
    let task = tokio::spawn(bound.serve(shutdown.clone()));
    let mut client = LogsServiceClient::connect(url).await.unwrap();
    for _ in 0..2 {
        let err = client.export(logs(1)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
    shutdown.trigger();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn grpc_only_receiver_has_no_http_port() {
    let mut cfg = local_config();
    cfg.http = None;
    let s = start_with(cfg, Recorder::default()).await;
    assert!(s.http.is_none() && s.grpc.is_some());
    s.stop().await;
}
