//! Bad OTLP input against the running `argus-agent` binary, over gRPC and
//! HTTP: malformed protobuf, a truncated body, an oversized body, a gzip
//! bomb, the wrong content type. Each gets the status an OpenTelemetry
//! Collector would answer, the agent's memory does not balloon, and valid
//! requests afterwards are still taken and delivered.

#[path = "support/process.rs"]
mod process;
#[path = "support/sink.rs"]
mod sink;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use process::AgentProcess;
use prost::Message;
use sink::Sink;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

const LOGS_METHOD: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

fn logs(body: &str) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends pre-encoded bytes as the gRPC message.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

async fn raw_grpc(
    ch: tonic::transport::Channel,
    body: Vec<u8>,
    compression: Option<CompressionEncoding>,
) -> Result<tonic::Response<Vec<u8>>, Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    if let Some(encoding) = compression {
        grpc = grpc.send_compressed(encoding);
    }
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(LOGS_METHOD),
        RawCodec,
    )
    .await
}

/// `n` bytes of zeros, gzip-compressed (a bomb: ~1000:1).
fn gzip_zeros(n: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        e.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    e.finish().unwrap()
}

fn agent_config(dir: &std::path::Path, endpoint: &str) -> String {
    format!(
        r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:0" }}
  http: {{ endpoint: "127.0.0.1:0" }}
file: null
host: null
batch: {{ timeout: 50ms }}
queue: {{ dir: "{}" }}
exporter: {{ endpoint: "{endpoint}" }}
ops: {{ listen: "127.0.0.1:0" }}
logging: {{ format: json }}
"#,
        dir.join("queue").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_requests_get_the_right_codes_and_the_agent_keeps_serving() {
    let sink = Sink::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent =
        AgentProcess::start(dir.path(), &agent_config(dir.path(), &sink.endpoint()), &[]);
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", agent.grpc.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Malformed: field 1, length-delimited, claiming 100 bytes; 1 follows.
    let err = raw_grpc(ch.clone(), vec![0x0a, 0x64, 0x01], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Truncated: a valid request cut in the middle.
    let whole = logs("truncated request").encode_to_vec();
    let err = raw_grpc(ch.clone(), whole[..whole.len() / 2].to_vec(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Oversized: above the 4 MiB gRPC default.
    let big = logs(&"x".repeat(5 << 20)).encode_to_vec();
    let err = raw_grpc(ch.clone(), big, None).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // Gzip bomb: 64 MiB of zeros, which the client's gRPC compression
    // turns into ~64 KiB on the wire; 16 times the limit once inflated.
    // The same as zstd (which the agent's own receiver takes too).
    let hwm_before = agent.proc_status_bytes("VmHWM");
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let err = raw_grpc(ch.clone(), vec![0u8; 64 << 20], Some(encoding))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{encoding:?}: {err:?}");
    }
    let grown = agent.proc_status_bytes("VmHWM").saturating_sub(hwm_before);
    assert!(
        grown < 64 << 20,
        "the bombs cost the agent {} MiB",
        grown >> 20
    );

    // Still serving: a valid request is taken and delivered.
    LogsServiceClient::new(ch)
        .export(logs("after the bad ones (grpc)"))
        .await
        .expect("a valid request still succeeds");
    sink.wait_for(Duration::from_secs(30), "the valid request", |r| {
        r.bodies().iter().any(|b| b == "after the bad ones (grpc)")
    })
    .await;
    assert_eq!(
        sink.received.body_count(),
        1,
        "only the valid request arrives"
    );
    assert_eq!(agent.ops_get("/healthz").0, 200);
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

/// A raw HTTP/1.1 exchange: writes `head` and `body` (then half-closes when
/// `close_early`), returns the status code (0 when no response came).
fn raw_http(addr: std::net::SocketAddr, head: &str, body: &[u8], close_early: bool) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    if close_early {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_get_the_right_statuses_and_the_agent_keeps_serving() {
    let sink = Sink::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent =
        AgentProcess::start(dir.path(), &agent_config(dir.path(), &sink.endpoint()), &[]);
    let addr = agent.http.unwrap();
    let url = format!("http://{addr}/v1/logs");
    let client = reqwest::Client::new();
    let post = |ct: &'static str, body: Vec<u8>, gzip: bool| {
        let mut r = client.post(&url).header("content-type", ct).body(body);
        if gzip {
            r = r.header("content-encoding", "gzip");
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    const PB: &str = "application/x-protobuf";

    assert_eq!(
        post(PB, vec![0x0a, 0x64, 0x01], false).await,
        400,
        "malformed protobuf"
    );
    let whole = logs("truncated request").encode_to_vec();
    assert_eq!(
        post(PB, whole[..whole.len() / 2].to_vec(), false).await,
        400,
        "truncated protobuf"
    );
    assert_eq!(
        post("application/json", b"{\"resourceLogs\": [".to_vec(), false).await,
        400,
        "truncated JSON"
    );
    // The body ends before its Content-Length: never a 200.
    let status = tokio::task::spawn_blocking(move || {
        raw_http(
            addr,
            &format!(
                "POST /v1/logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {PB}\r\nContent-Length: 1000\r\n\r\n"
            ),
            &whole[..10],
            true,
        )
    })
    .await
    .unwrap();
    assert!(
        status == 0 || (400..500).contains(&status),
        "a body cut short got {status}"
    );
    // A body the agent refuses before reading it all: it answers 413 and
    // closes, and the client, still writing, may see the connection break
    // before it reads the answer (any HTTP/1.1 client does, depending on
    // timing). So: a 413, or a broken write — and either way the agent
    // counted exactly one `too_large` refusal.
    let too_large = "argus_agent_otlp_receiver_requests_total{transport=\"http\",signal=\"logs\",outcome=\"too_large\"}";
    let refused_too_large = |body: Vec<u8>, gzip: bool, what: &'static str| {
        let before = agent.metric(too_large);
        let mut r = client.post(&url).header("content-type", PB).body(body);
        if gzip {
            r = r.header("content-encoding", "gzip");
        }
        let agent = &agent;
        async move {
            match r.send().await {
                Ok(resp) => assert_eq!(resp.status().as_u16(), 413, "{what}"),
                Err(e) => assert!(
                    e.is_request() || e.is_body(),
                    "{what}: neither a 413 nor a write cut short by it: {e:?}"
                ),
            }
            assert_eq!(
                agent.metric(too_large) - before,
                1.0,
                "{what}: one too_large refusal"
            );
        }
    };
    // Oversized: above the 20 MiB default (refused from Content-Length).
    refused_too_large(vec![0u8; 21 << 20], false, "oversized").await;
    // Gzip bomb: 1 GiB of zeros in ~1 MiB.
    let hwm_before = agent.proc_status_bytes("VmHWM");
    refused_too_large(gzip_zeros(1 << 30), true, "gzip bomb").await;
    let grown = agent.proc_status_bytes("VmHWM").saturating_sub(hwm_before);
    assert!(
        grown < 100 << 20,
        "the bomb cost the agent {} MiB",
        grown >> 20
    );
    assert_eq!(
        post("text/plain", b"hello".to_vec(), false).await,
        415,
        "wrong content type"
    );
    assert_eq!(
        post(PB, logs("x").encode_to_vec(), true).await,
        400,
        "claims gzip, is not"
    );

    // Still serving: protobuf and JSON both taken and delivered.
    assert_eq!(
        post(PB, logs("after the bad ones (http)").encode_to_vec(), false).await,
        200
    );
    let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"after the bad ones (json)"}}]}]}]}"#;
    assert_eq!(post("application/json", json.to_vec(), false).await, 200);
    sink.wait_for(Duration::from_secs(30), "the valid requests", |r| {
        r.body_count() >= 2
    })
    .await;
    let mut bodies = sink.received.bodies();
    bodies.sort();
    assert_eq!(
        bodies,
        ["after the bad ones (http)", "after the bad ones (json)"],
        "only the valid requests arrive"
    );
    assert_eq!(agent.ops_get("/healthz").0, 200);
    assert!(agent.terminate(Duration::from_secs(30)).success());
}
