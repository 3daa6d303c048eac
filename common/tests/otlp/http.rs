//! OTLP/HTTP with reqwest (as the SDKs' HTTP exporters send it) and raw
//! HTTP/1.1 where a well-behaved client cannot misbehave enough.

use std::io::Write as _;
use std::time::Duration;

use argus_common::otlp::{Accepted, AuthConfig, ConsumeError, Payload, Transport};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::{Server, local_config, logs, metrics, peak_rss, start, traces};

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl Reply {
    fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    /// The `google.rpc.Status` error body, in whichever encoding it came.
    fn status_body(&self) -> (i32, String) {
        if self.content_type() == JSON {
            let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
            (
                v["code"].as_i64().unwrap() as i32,
                v["message"].as_str().unwrap().to_string(),
            )
        } else {
            assert_eq!(self.content_type(), PB);
            let s = tonic_types::Status::decode(&self.body[..]).unwrap();
            (s.code, s.message)
        }
    }
}

async fn post(url: &str, content_type: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
    let mut req = reqwest::Client::new().post(url).body(body);
    if !content_type.is_empty() {
        req = req.header(CONTENT_TYPE, content_type);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.unwrap(),
    }
}

fn json_of(p: &Payload) -> Vec<u8> {
    // opentelemetry-proto's serializer: a second, independent OTLP/JSON
    // implementation for our decoder to agree with.
    match p {
        Payload::Logs(r) => serde_json::to_vec(r),
        Payload::Traces(r) => serde_json::to_vec(r),
        Payload::Metrics(r) => serde_json::to_vec(r),
    }
    .unwrap()
}

fn path_of(p: &Payload) -> &'static str {
    match p {
        Payload::Logs(_) => "/v1/logs",
        Payload::Traces(_) => "/v1/traces",
        Payload::Metrics(_) => "/v1/metrics",
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn assert_still_serving(s: &Server) {
    let r = post(&s.http_url("/v1/logs"), PB, logs(1).encode_to_vec(), &[]).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "server stopped serving good requests"
    );
}

#[tokio::test]
async fn protobuf_and_json_for_every_signal() {
    let s = start(local_config()).await;
    let payloads = [
        Payload::Traces(traces(3)),
        Payload::Metrics(metrics(4)),
        Payload::Logs(logs(5)),
    ];
    for p in &payloads {
        let url = s.http_url(path_of(p));
        let pb = match p {
            Payload::Logs(r) => r.encode_to_vec(),
            Payload::Traces(r) => r.encode_to_vec(),
            Payload::Metrics(r) => r.encode_to_vec(),
        };
        let r = post(&url, PB, pb, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{p:?}");
        assert_eq!(r.content_type(), PB);
        match p {
            Payload::Logs(_) => assert_eq!(
                ExportLogsServiceResponse::decode(&r.body[..])
                    .unwrap()
                    .partial_success,
                None
            ),
            Payload::Traces(_) => assert_eq!(
                ExportTraceServiceResponse::decode(&r.body[..])
                    .unwrap()
                    .partial_success,
                None
            ),
            Payload::Metrics(_) => assert_eq!(
                ExportMetricsServiceResponse::decode(&r.body[..])
                    .unwrap()
                    .partial_success,
                None
            ),
        }

        let r = post(&url, "application/json; charset=utf-8", json_of(p), &[]).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.content_type(), JSON);
        assert_eq!(&r.body[..], b"{}");
    }
    let got = s.consumer.payloads();
    assert_eq!(got.len(), 6);
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(&got[2 * i], p, "protobuf");
        assert_eq!(
            &got[2 * i + 1],
            p,
            "JSON decodes to the same request as protobuf"
        );
    }
    assert_eq!(s.consumer.last().1.transport, Transport::Http);
    assert_eq!(
        s.metric(r#"argus_agent_otlp_receiver_requests_total{transport="http",signal="metrics",outcome="ok"}"#),
        2.0
    );
    assert_eq!(
        s.metric(
            r#"argus_agent_otlp_receiver_items_received_total{transport="http",signal="logs"}"#
        ),
        10.0
    );
    s.stop().await;
}

#[tokio::test]
async fn http2_cleartext_clients_are_served_too() {
    let s = start(local_config()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(s.http_url("/v1/traces"))
        .header("content-type", PB)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            traces(1).encode_to_vec(),
        )))
        .unwrap();
    let r = client.request(req).await.unwrap();
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), http::StatusCode::OK);
    assert_eq!(s.consumer.payloads(), vec![Payload::Traces(traces(1))]);
    s.stop().await;
}

#[tokio::test]
async fn partial_success_in_the_request_encoding() {
    let s = start(local_config()).await;
    s.consumer.answer(Ok(Accepted::partial(1, "span too old")));
    let r = post(
        &s.http_url("/v1/traces"),
        PB,
        traces(2).encode_to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        ExportTraceServiceResponse::decode(&r.body[..])
            .unwrap()
            .partial_success,
        Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "span too old".into()
        })
    );
    s.consumer
        .answer(Ok(Accepted::partial(2, "points dropped")));
    let r = post(
        &s.http_url("/v1/metrics"),
        JSON,
        json_of(&Payload::Metrics(metrics(3))),
        &[],
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], 2);
    assert_eq!(v["partialSuccess"]["errorMessage"], "points dropped");
    // What the Rust SDK's types make of it.
    let parsed: ExportMetricsServiceResponse = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(
        parsed.partial_success.unwrap().rejected_data_points,
        2,
        "{v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn compressed_bodies_are_accepted() {
    let s = start(local_config()).await;
    let body = logs(20).encode_to_vec();
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&body).unwrap();
    for (coding, compressed) in [
        ("gzip", gzip(&body)),
        ("deflate", zlib.finish().unwrap()),
        ("zstd", zstd::encode_all(&body[..], 3).unwrap()),
    ] {
        let r = post(
            &s.http_url("/v1/logs"),
            PB,
            compressed,
            &[("content-encoding", coding)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{coding}: {:?}", r.body);
    }
    let r = post(
        &s.http_url("/v1/logs"),
        JSON,
        gzip(&json_of(&Payload::Logs(logs(2)))),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        s.consumer.payloads(),
        vec![
            Payload::Logs(logs(20)),
            Payload::Logs(logs(20)),
            Payload::Logs(logs(20)),
            Payload::Logs(logs(2))
        ]
    );

    let r = post(
        &s.http_url("/v1/logs"),
        PB,
        body,
        &[("content-encoding", "br")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        r.status_body().1.contains("Content-Encoding"),
        "{:?}",
        r.status_body()
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_status_in_the_request_encoding() {
    let s = start(local_config()).await;
    let r = post(&s.http_url("/v1/logs"), PB, vec![0x0a, 0x64, 0x01], &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let (code, message) = r.status_body();
    assert_eq!(code, tonic::Code::InvalidArgument as i32);
    assert!(message.contains("protobuf"), "{message}");

    let r = post(
        &s.http_url("/v1/traces"),
        JSON,
        br#"{"resourceSpans": [{"scopeSpans": "#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.content_type(), JSON);
    let (code, message) = r.status_body();
    assert_eq!(code, 3);
    assert!(message.contains("line 1"), "{message}");

    // Well-formed JSON, malformed OTLP: a 15-byte trace ID.
    let r = post(
        &s.http_url("/v1/traces"),
        JSON,
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc6"}]}]}]}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.status_body().1.contains("spans[0].traceId"),
        "{:?}",
        r.status_body()
    );

    // Corrupt gzip.
    let r = post(
        &s.http_url("/v1/logs"),
        PB,
        b"\x1f\x8b\x08garbage".to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    assert_eq!(s.consumer.count(), 0);
    assert_still_serving(&s).await;
    assert_eq!(
        s.metric(r#"argus_agent_otlp_receiver_requests_total{transport="http",signal="traces",outcome="invalid"}"#),
        2.0
    );
    s.stop().await;
}

#[tokio::test]
async fn unknown_media_types_paths_and_methods() {
    let s = start(local_config()).await;
    let body = logs(1).encode_to_vec();
    for ct in ["text/plain", ""] {
        let r = post(&s.http_url("/v1/logs"), ct, body.clone(), &[]).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            text.contains("application/x-protobuf") && text.contains("application/json"),
            "{text}"
        );
    }
    let r = post(&s.http_url("/v1/log"), PB, body.clone(), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&r.body).contains("/v1/logs"));

    let client = reqwest::Client::new();
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let r = client
            .request(method.clone(), s.http_url("/v1/logs"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.headers()["allow"], "POST");
    }
    assert_eq!(s.consumer.count(), 0);
    assert_still_serving(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn custom_paths_replace_the_defaults() {
    let mut cfg = local_config();
    cfg.http.as_mut().unwrap().traces_url_path = "/otlp/v1/traces".into();
    let s = start(cfg).await;
    let body = traces(1).encode_to_vec();
    assert_eq!(
        post(&s.http_url("/otlp/v1/traces"), PB, body.clone(), &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(&s.http_url("/v1/traces"), PB, body, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_however_they_arrive() {
    let mut cfg = local_config();
    cfg.http.as_mut().unwrap().max_request_body_size = 4096;
    let s = start(cfg).await;
    let big = logs(200).encode_to_vec();
    assert!(big.len() > 4096);

    // Declared too large: refused from the headers.
    let r = post(&s.http_url("/v1/logs"), PB, big.clone(), &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.status_body().0, tonic::Code::ResourceExhausted as i32);

    // Small on the wire, too large inflated.
    let compressed = gzip(&big);
    assert!(compressed.len() < 4096);
    let r = post(
        &s.http_url("/v1/logs"),
        PB,
        compressed,
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    // No Content-Length (chunked): refused once the read passes the limit.
    let mut tcp = tokio::net::TcpStream::connect(s.http.unwrap())
        .await
        .unwrap();
    let mut req = format!(
        "POST /v1/logs HTTP/1.1\r\nhost: x\r\ncontent-type: {PB}\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in big.chunks(1000) {
        req.extend(format!("{:x}\r\n", chunk.len()).bytes());
        req.extend(chunk);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    tcp.write_all(&req).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    assert_eq!(s.consumer.count(), 0);
    assert_eq!(
        s.metric(r#"argus_agent_otlp_receiver_requests_total{transport="http",signal="logs",outcome="too_large"}"#),
        3.0
    );
    assert_still_serving(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_without_inflating_it() {
    let s = start(local_config()).await; // default limit: 20 MiB
    // 1 GiB of zeros → about 1 MiB of gzip.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    drop(zeros);
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());

    let before = peak_rss();
    let r = post(
        &s.http_url("/v1/logs"),
        PB,
        bomb,
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let grown = peak_rss().saturating_sub(before);
    // The cap is 20 MiB of output; allow for allocator slack and the other
    // tests of this binary running alongside, but not for a gigabyte.
    assert!(grown < 200 << 20, "peak RSS grew by {} MiB", grown >> 20);
    assert_still_serving(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn refusals_tell_the_client_when_to_retry() {
    let s = start(local_config()).await;
    let url = s.http_url("/v1/logs");
    let body = logs(3).encode_to_vec();
    for (answer, status, retry_after) in [
        (
            ConsumeError::Full {
                retry_after: Some(Duration::from_secs(3)),
            },
            StatusCode::TOO_MANY_REQUESTS,
            Some("3"),
        ),
        (
            ConsumeError::Full { retry_after: None },
            StatusCode::TOO_MANY_REQUESTS,
            Some("1"),
        ),
        (
            ConsumeError::Unavailable {
                retry_after: Some(Duration::from_millis(1500)),
                reason: "replaying".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            Some("2"),
        ),
        (
            ConsumeError::Unavailable {
                retry_after: None,
                reason: "stopping".into(),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            None,
        ),
        (
            ConsumeError::Invalid("bad".into()),
            StatusCode::BAD_REQUEST,
            None,
        ),
    ] {
        s.consumer.answer(Err(answer.clone()));
        let r = post(&url, PB, body.clone(), &[]).await;
        assert_eq!(r.status, status, "{answer:?}");
        assert_eq!(r.header("retry-after"), retry_after, "{answer:?}");
        assert_eq!(r.status_body().1, answer.to_string());
    }
    assert_eq!(
        s.metric(
            r#"argus_agent_otlp_receiver_items_refused_total{transport="http",signal="logs"}"#
        ),
        15.0
    );
    assert_still_serving(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn bearer_token_is_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "node-7-token\n").unwrap();
    let mut cfg = local_config();
    cfg.auth = Some(AuthConfig::from_file(&token));
    let s = start(cfg).await;
    let url = s.http_url("/v1/logs");
    let body = logs(1).encode_to_vec();

    let r = post(&url, JSON, json_of(&Payload::Logs(logs(1))), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(r.status_body().0, tonic::Code::Unauthenticated as i32);

    let r = post(
        &url,
        PB,
        body.clone(),
        &[("authorization", "Bearer node-8-token")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("node-7"));

    let r = post(&url, PB, body, &[("authorization", "bearer node-7-token")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(s.consumer.last().1.token_authenticated);
    assert_eq!(s.consumer.count(), 1);
    s.stop().await;
}

#[tokio::test]
async fn request_bytes_are_counted_even_when_refused() {
    let s = start(local_config()).await;
    let body = logs(4).encode_to_vec();
    let n = body.len() as f64;
    s.consumer
        .answer(Err(ConsumeError::Full { retry_after: None }));
    post(&s.http_url("/v1/logs"), PB, body.clone(), &[]).await;
    post(&s.http_url("/v1/logs"), PB, body, &[]).await;
    assert_eq!(
        s.metric(
            r#"argus_agent_otlp_receiver_request_body_bytes_total{transport="http",signal="logs"}"#
        ),
        2.0 * n
    );
    assert_eq!(
        s.metric(r#"argus_agent_otlp_receiver_request_duration_seconds_count{transport="http",signal="logs"}"#),
        2.0
    );
    s.stop().await;
}

#[tokio::test]
async fn a_rotated_token_file_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "old-token\n").unwrap();
    let mut cfg = local_config();
    let mut auth = AuthConfig::from_file(&token);
    auth.token_reload_interval = Duration::from_secs(1);
    cfg.auth = Some(auth);
    let s = start(cfg).await;
    let send = |t: &'static str| {
        let url = s.http_url("/v1/logs");
        async move {
            let bearer = format!("Bearer {t}");
            post(
                &url,
                PB,
                logs(1).encode_to_vec(),
                &[("authorization", bearer.as_str())],
            )
            .await
            .status
        }
    };
    assert_eq!(send("old-token").await, StatusCode::OK);
    assert_eq!(send("new-token").await, StatusCode::UNAUTHORIZED);

    // Kubernetes updates a mounted Secret by swapping the file.
    let staged = dir.path().join("token.new");
    std::fs::write(&staged, "new-token\n").unwrap();
    std::fs::rename(&staged, &token).unwrap();
    let rotated = tokio::time::timeout(Duration::from_secs(10), async {
        while send("new-token").await != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(rotated.is_ok(), "new token never accepted");
    assert_eq!(send("old-token").await, StatusCode::UNAUTHORIZED);

    // A broken file keeps the last good tokens and is counted.
    std::fs::write(&token, "# emptied by mistake\n").unwrap();
    let counted = tokio::time::timeout(Duration::from_secs(10), async {
        while s.metric("argus_agent_otlp_receiver_auth_token_reload_failures_total") < 1.0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "reload failure not counted");
    assert_eq!(send("new-token").await, StatusCode::OK);
    s.stop().await;
}
