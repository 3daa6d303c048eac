//! End to end with the real OpenTelemetry SDK: a Python program using
//! `opentelemetry-sdk` and the OTLP exporters from PyPI sends spans, logs
//! (emitted inside those spans) and metrics to the real `argus-agent`
//! binary, over gRPC and then over HTTP/protobuf; the agent ships them to an
//! OTLP endpoint run by this test. Everything must arrive, logs must carry
//! the trace and span IDs of the span that emitted them, resources must be
//! enriched with the node's identity, and the card number in the log line
//! must arrive masked.

#[path = "support/process.rs"]
mod process;
#[path = "support/python.rs"]
mod python;
#[path = "support/sink.rs"]
mod sink;

use std::time::Duration;

use argus_common::otlp::Payload;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use process::AgentProcess;
use sink::{Sink, body_text};

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn service(r: &Option<Resource>) -> String {
    r.as_ref()
        .and_then(|r| attr(&r.attributes, "service.name"))
        .unwrap_or_default()
        .to_string()
}

/// Checks the enrichment every resource from the SDK must have gained.
fn assert_enriched(r: &Option<Resource>, what: &str) {
    let attrs = &r.as_ref().expect("resource").attributes;
    assert_eq!(
        attr(attrs, "k8s.node.name"),
        Some("node-e2e"),
        "{what}: k8s.node.name from K8S_NODE_NAME missing: {attrs:?}"
    );
    assert!(
        attr(attrs, "host.name").is_some_and(|h| !h.is_empty()),
        "{what}: host.name missing: {attrs:?}"
    );
    assert!(
        attr(attrs, "telemetry.sdk.language") == Some("python"),
        "{what}: the SDK's own attributes must be kept: {attrs:?}"
    );
}

#[derive(Debug)]
struct Seen {
    /// (span name, trace id hex, span id hex)
    spans: Vec<(String, String, String)>,
    /// (body, trace id hex, span id hex)
    logs: Vec<(String, String, String)>,
    /// Sum of the `payments` counter's points.
    payments: Vec<i64>,
}

/// What the sink got from service `checkout-<protocol>`, checking each
/// resource's enrichment on the way.
fn seen(payloads: &[Payload], protocol: &str) -> Seen {
    let want = format!("checkout-{protocol}");
    let mut s = Seen {
        spans: Vec::new(),
        logs: Vec::new(),
        payments: Vec::new(),
    };
    for p in payloads {
        match p {
            Payload::Traces(r) => {
                for rs in r
                    .resource_spans
                    .iter()
                    .filter(|rs| service(&rs.resource) == want)
                {
                    assert_enriched(&rs.resource, "spans");
                    for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                        s.spans.push((
                            span.name.clone(),
                            hex::encode(&span.trace_id),
                            hex::encode(&span.span_id),
                        ));
                    }
                }
            }
            Payload::Logs(r) => {
                for rl in r
                    .resource_logs
                    .iter()
                    .filter(|rl| service(&rl.resource) == want)
                {
                    assert_enriched(&rl.resource, "logs");
                    for lr in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
                        s.logs.push((
                            body_text(&lr.body),
                            hex::encode(&lr.trace_id),
                            hex::encode(&lr.span_id),
                        ));
                    }
                }
            }
            Payload::Metrics(r) => {
                for rm in r
                    .resource_metrics
                    .iter()
                    .filter(|rm| service(&rm.resource) == want)
                {
                    assert_enriched(&rm.resource, "metrics");
                    for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                        if m.name != "payments" {
                            continue;
                        }
                        let Some(metric::Data::Sum(sum)) = &m.data else {
                            panic!("payments must be a sum: {m:?}")
                        };
                        assert!(sum.is_monotonic, "a counter is monotonic");
                        for dp in &sum.data_points {
                            if let Some(number_data_point::Value::AsInt(v)) = dp.value {
                                s.payments.push(v);
                            }
                        }
                    }
                }
            }
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_spans_logs_and_metrics_arrive_over_grpc_and_http_correlated() {
    let python = python::interpreter();
    let sink = Sink::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:0" }}
  http: {{ endpoint: "127.0.0.1:0" }}
file: null
host: null
batch: {{ timeout: 50ms }}
queue: {{ dir: "{}" }}
exporter: {{ endpoint: "{}" }}
ops: {{ listen: "127.0.0.1:0" }}
logging: {{ format: json }}
"#,
        dir.path().join("queue").display(),
        sink.endpoint()
    );
    let mut agent = AgentProcess::start(dir.path(), &yaml, &[("K8S_NODE_NAME", "node-e2e")]);
    let grpc = format!("http://{}", agent.grpc.unwrap());
    let http = format!("http://{}", agent.http.unwrap());

    for (protocol, url) in [("grpc", grpc), ("http", http)] {
        let out = tokio::process::Command::new(&python)
            .arg(python::script("emit_otel.py"))
            .args([protocol, &url, "run-1"])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the SDK program failed over {protocol} ({}):\n{stderr}\nagent log:\n{}",
            out.status,
            agent.log()
        );
        let emitted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let emitted = emitted.as_array().unwrap();
        assert_eq!(emitted.len(), 3);

        sink.wait_for(
            Duration::from_secs(30),
            &format!("{protocol}: 3 spans, 3 logs, the counter"),
            |r| {
                let s = seen(&r.payloads(), protocol);
                s.spans.len() >= 3 && s.logs.len() >= 3 && !s.payments.is_empty()
            },
        )
        .await;
        let s = seen(&sink.received.payloads(), protocol);
        assert_eq!(s.spans.len(), 3, "{protocol}: {s:?}");
        assert_eq!(s.logs.len(), 3, "{protocol}: {s:?}");
        assert_eq!(s.payments.iter().max(), Some(&3), "{protocol}: {s:?}");

        for e in emitted {
            let i = e["i"].as_u64().unwrap();
            let (trace_id, span_id) = (
                e["trace_id"].as_str().unwrap(),
                e["span_id"].as_str().unwrap(),
            );
            assert!(
                s.spans
                    .iter()
                    .any(|(n, t, sp)| *n == format!("pay-{i}") && t == trace_id && sp == span_id),
                "{protocol}: span pay-{i} ({trace_id}/{span_id}) missing: {:?}",
                s.spans
            );
            let (body, t, sp) = s
                .logs
                .iter()
                .find(|(b, _, _)| b.starts_with(&format!("payment {i} declined")))
                .unwrap_or_else(|| panic!("{protocol}: log {i} missing: {:?}", s.logs));
            assert_eq!(
                (t.as_str(), sp.as_str()),
                (trace_id, span_id),
                "{protocol}: log {i} must carry the IDs of the span it was emitted in"
            );
            assert_eq!(
                body,
                &format!("payment {i} declined for card 4111 11** **** 1111"),
                "{protocol}: the card number must arrive masked"
            );
        }
    }

    // The agent counted what it took in and sent.
    for signal in ["logs", "traces", "metrics"] {
        let received = agent.metric(&format!(
            "argus_agent_records_received_total{{source=\"otlp\",signal=\"{signal}\"}}"
        ));
        assert!(received >= 2.0, "{signal}: received {received}");
        let sent = agent.metric(&format!(
            "argus_agent_records_sent_total{{signal=\"{signal}\"}}"
        ));
        assert!(
            sent >= received,
            "{signal}: sent {sent} < received {received}"
        );
    }
    assert!(agent.terminate(Duration::from_secs(30)).success());
}
