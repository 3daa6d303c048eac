//! The whole transform chain on real payloads of each signal, and its
//! configuration.

use argus_agent::pipeline::Payload;
use argus_agent::transform::{EnrichConfig, TransformConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prometheus_client::registry::Registry;

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: string(v),
        ..Default::default()
    }
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn config() -> TransformConfig {
    serde_yaml::from_str(
        r#"
enrich:
  host_name: node-7
  node_name: node-7.k8s
  attributes:
    deployment.environment: prod
mask:
  rules:
    - name: email
      pattern: '[a-z]+@[a-z]+\.com'
      replacement: '<email>'
"#,
    )
    .unwrap()
}

#[test]
fn logs_are_enriched_correlated_and_masked() {
    let mut reg = Registry::default();
    let t = config().build("transform", &mut reg).unwrap();
    let body = r#"{"msg":"charged 4111111111111111 for bob@shop.com","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","request_id":"r-4111111111111111"}"#;
    let mut p = Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv("host.name", "set-by-sdk"),
                    kv("service.name", "payments"),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    body: string(body),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    t.apply(&mut p);
    let Payload::Logs(req) = &p else {
        unreachable!()
    };
    let rl = &req.resource_logs[0];
    let res = &rl.resource.as_ref().unwrap().attributes;
    assert_eq!(
        get(res, "host.name"),
        Some("set-by-sdk"),
        "never overwrite the source's attribute"
    );
    assert_eq!(get(res, "k8s.node.name"), Some("node-7.k8s"));
    assert_eq!(get(res, "deployment.environment"), Some("prod"));
    let record = &rl.scope_logs[0].log_records[0];
    assert_eq!(
        hex::encode(&record.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let Some(Value::StringValue(b)) = record.body.as_ref().unwrap().value.as_ref() else {
        panic!()
    };
    assert!(b.contains("charged 411111******1111 for <email>"), "{b}");
    assert!(!b.contains("4111111111111111"), "{b}");
    // correlation.id was copied before masking, and is masked like its original.
    assert_eq!(
        get(&record.attributes, "correlation.id"),
        Some("r-411111******1111")
    );
}

#[test]
fn traces_and_metrics_get_resource_attributes_and_spans_are_masked() {
    let t = config()
        .build("transform", &mut Registry::default())
        .unwrap();
    let mut traces = Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    attributes: vec![kv("card", "5555 5555 5555 4444")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    t.apply(&mut traces);
    let Payload::Traces(req) = &traces else {
        unreachable!()
    };
    let res = &req.resource_spans[0]
        .resource
        .as_ref()
        .expect("resource created")
        .attributes;
    assert_eq!(get(res, "host.name"), Some("node-7"));
    assert_eq!(
        get(
            &req.resource_spans[0].scope_spans[0].spans[0].attributes,
            "card"
        ),
        Some("5555 55** **** 4444")
    );

    let mut metrics = Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics::default()],
    });
    t.apply(&mut metrics);
    let Payload::Metrics(req) = &metrics else {
        unreachable!()
    };
    let res = &req.resource_metrics[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(get(res, "host.name"), Some("node-7"));
    assert_eq!(get(res, "k8s.node.name"), Some("node-7.k8s"));
}

#[test]
fn enrich_detects_node_and_host_names() {
    let e = EnrichConfig::default().build_with(
        |k| match k {
            "NODE_NAME" => Some("from-node-name".into()),
            _ => None,
        },
        || Some("kernel-host".into()),
    );
    assert_eq!(get(e.attributes(), "host.name"), Some("kernel-host"));
    assert_eq!(get(e.attributes(), "k8s.node.name"), Some("from-node-name"));

    let e = EnrichConfig::default().build_with(
        |k| match k {
            "K8S_NODE_NAME" => Some("preferred".into()),
            "NODE_NAME" => Some("fallback".into()),
            _ => None,
        },
        || None,
    );
    assert_eq!(get(e.attributes(), "k8s.node.name"), Some("preferred"));
    assert_eq!(
        get(e.attributes(), "host.name"),
        None,
        "unknown host: not invented"
    );

    // The real lookup finds this machine's hostname.
    let e = EnrichConfig::default().build();
    let want = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(get(e.attributes(), "host.name"), Some(want.trim()));
}

#[test]
fn disabled_steps_do_nothing_and_bad_config_names_fields() {
    let cfg: TransformConfig = serde_yaml::from_str(
        "enrich: {enabled: false}\ncorrelate: {enabled: false}\nmask: {enabled: false}\n",
    )
    .unwrap();
    let t = cfg.build("transform", &mut Registry::default()).unwrap();
    let record = LogRecord {
        body: string(
            "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 4111111111111111",
        ),
        ..Default::default()
    };
    let original = Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    });
    let mut p = original.clone();
    t.apply(&mut p);
    assert_eq!(p, original);

    let err = serde_yaml::from_str::<TransformConfig>("mask: {rulez: []}\n").unwrap_err();
    assert!(err.to_string().contains("rulez"), "{err}");
    let bad: TransformConfig =
        serde_yaml::from_str("enrich: {host_name: ''}\nmask: {rules: [{name: x, pattern: '('}]}\n")
            .unwrap();
    let err = bad
        .build("transform", &mut Registry::default())
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("transform.enrich.host_name:"), "{msg}");
    assert!(
        msg.contains("transform.mask.rules[0].pattern: invalid regex"),
        "{msg}"
    );
}
