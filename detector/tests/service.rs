//! The detector service in-process, over its real sockets: OTLP in over
//! gRPC and HTTP (event clock, real timestamps), the HTTP API out.
//!
//! Proves: a latency regression in spans becomes an incident with the
//! documented explanation (expected/observed/band, top series, exemplar
//! trace ids, the error log template whose records share those traces);
//! `/api/v1/series`, `/api/v1/anomalies` and `/metrics` show it;
//! maintenance windows and feedback work through the API (with the API
//! token); malformed OTLP gets INVALID_ARGUMENT / 400, missing or wrong
//! tokens UNAUTHENTICATED / 401, and the service keeps serving.

#[path = "support/detector.rs"]
mod kit;

use argus_common::shutdown::Shutdown;
use argus_detector::config::DetectorConfig;
use serde_json::json;

const TOKEN: &str = "s3cr3t-token-for-tests";

fn config(dir: &std::path::Path) -> DetectorConfig {
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let yaml = format!(
        r#"
receiver:
  grpc: {{ endpoint: "127.0.0.1:0" }}
  http: {{ endpoint: "127.0.0.1:0" }}
  auth: {{ token_file: "{t}" }}
scoring: {{ step: 1s, clock: event, recent_points: 20 }}
incidents: {{ window: 5s }}
outputs:
  max_series: 50
  dashboard_url: "https://grafana.example/d/argus?var-service={{{{service}}}}&from={{{{from_ms}}}}&to={{{{to_ms}}}}"
  runbook_url: "https://runbooks.example/argus/{{{{signal}}}}"
api: {{ auth: {{ token_file: "{t}" }} }}
ops: {{ listen: "127.0.0.1:0" }}
"#,
        t = token.display()
    );
    DetectorConfig::from_yaml_with_env(&yaml, std::iter::empty()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_in_incidents_out_and_the_api_around_them() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = Shutdown::new();
    let running = argus_detector::service::start(config(dir.path()), shutdown.clone())
        .await
        .unwrap();
    let api = format!("http://{}", running.ops_addr);
    let otlp = kit::Otlp::new(
        format!("http://{}", running.grpc_addr.unwrap()),
        Some(TOKEN),
    );
    let http_otlp = format!("http://{}", running.http_addr.unwrap());
    let client = reqwest::Client::new();

    // --- warm history: 300 s of two services, timestamps ending near now ---
    let t0 = kit::now_secs() - 600;
    for k in 0..300 {
        otlp.traces(kit::spans(
            "checkout",
            "prod",
            "POST /pay",
            t0 + k,
            20,
            50.0,
            1,
        ))
        .await
        .unwrap();
        otlp.traces(kit::spans("search", "prod", "GET /q", t0 + k, 20, 20.0, 1))
            .await
            .unwrap();
    }
    let sel = r#"span.latency.p99{service="checkout"}"#;
    let series = kit::get_json(&format!("{api}/api/v1/series?match={}", urlenc(sel))).await;
    assert_eq!(series["matched"], 1, "{series}");
    let s = &series["series"][0];
    assert_eq!(s["learning"], false, "300 steps > warm-up: {s}");
    assert!(s["points_seen"].as_u64().unwrap() > 250, "{s}");
    assert_eq!(
        s["points"].as_array().unwrap().len(),
        20,
        "recent_points bounds the history"
    );
    let last = &s["last"];
    let (lo, v, hi) = (
        last["lower"].as_f64().unwrap(),
        last["value"].as_f64().unwrap(),
        last["upper"].as_f64().unwrap(),
    );
    assert!(
        lo <= v && v <= hi,
        "a normal point sits in its band: {last}"
    );
    assert_eq!(s["series_id"].as_str().unwrap().len(), 16);

    // --- regression: checkout 10× slower, with error logs on the slow traces ---
    for k in 300..320 {
        otlp.traces(kit::spans(
            "checkout",
            "prod",
            "POST /pay",
            t0 + k,
            20,
            500.0,
            2,
        ))
        .await
        .unwrap();
        otlp.traces(kit::spans("search", "prod", "GET /q", t0 + k, 20, 20.0, 1))
            .await
            .unwrap();
        // The slowest requests log an error with their trace id.
        let slow = kit::slowest(t0 + k, 20, 3, 2);
        otlp.logs(kit::error_logs(
            "checkout",
            "prod",
            t0 + k,
            "payment gateway timeout after 5023 ms",
            &slow,
        ))
        .await
        .unwrap();
    }
    let inc = kit::eventually(20, "a checkout incident", || {
        let api = api.clone();
        async move {
            let v = kit::get_json(&format!("{api}/api/v1/incidents?state=open")).await;
            v["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| {
                    i["entity"]["value"] == "checkout"
                        && i["trace_ids"].as_array().is_some_and(|t| !t.is_empty())
                })
                .cloned()
        }
    })
    .await;
    let id = inc["id"].as_str().unwrap().to_string();
    assert_eq!(inc["entity"]["scope"], json!([["namespace", "prod"]]));
    assert!(
        inc["started_at"].as_i64().unwrap() >= t0 + 300,
        "onset not before the regression: {inc}"
    );
    let labels = &inc["alert"]["labels"];
    assert_eq!(labels["alertname"], "ArgusAnomaly");
    assert_eq!(labels["service"], "checkout");
    assert_eq!(labels["namespace"], "prod");
    assert_eq!(labels["signal"], "traces");
    assert!(["warning", "critical"].contains(&labels["severity"].as_str().unwrap()));
    let ann = &inc["alert"]["annotations"];
    for k in [
        "summary",
        "description",
        "expected",
        "observed",
        "band",
        "top_series",
        "trace_ids",
        "incident_id",
        "dashboard_url",
        "runbook_url",
        "models",
    ] {
        assert!(
            ann[k].as_str().is_some_and(|s| !s.is_empty()),
            "annotation {k} missing: {ann}"
        );
    }
    assert_eq!(ann["incident_id"], id.as_str());
    assert!(
        ann["top_series"].as_str().unwrap().contains("span.latency"),
        "{ann}"
    );
    assert!(
        ann["dashboard_url"]
            .as_str()
            .unwrap()
            .starts_with("https://grafana.example/d/argus?var-service=checkout&from="),
        "{ann}"
    );
    assert!(
        ann["dashboard_url"].as_str().unwrap().ends_with("&to=now"),
        "{ann}"
    );
    assert_eq!(ann["runbook_url"], "https://runbooks.example/argus/traces");
    // Exemplars: the slow spans' trace ids (tag 2).
    let traces: Vec<&str> = inc["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        traces.iter().all(|t| t.starts_with("02")),
        "exemplars are the slow spans: {traces:?}"
    );
    let observed: f64 = ann["observed"].as_str().unwrap().parse().unwrap();
    let expected: f64 = ann["expected"].as_str().unwrap().parse().unwrap();
    assert!(
        observed > 0.3 && expected < 0.1,
        "observed {observed} s vs expected {expected} s"
    );
    // The error log template shares trace ids with the incident.
    let templates = kit::eventually(20, "the log template in the incident", || {
        let api = api.clone();
        let id = id.clone();
        async move {
            let v = kit::get_json(&format!("{api}/api/v1/incidents/{id}")).await;
            let t = v["alert"]["annotations"]["log_templates"]
                .as_str()
                .unwrap_or("")
                .to_string();
            t.contains("payment gateway timeout").then_some(t)
        }
    })
    .await;
    assert!(templates.starts_with('['), "[id] text: {templates}");

    let anomalies = kit::get_json(&format!("{api}/api/v1/anomalies")).await;
    let a = anomalies["anomalies"].as_array().unwrap();
    assert!(
        a.iter()
            .any(|x| x["name"].as_str().unwrap().starts_with("span.latency")
                && x["incident_id"] == id.as_str()),
        "{anomalies}"
    );

    let metrics = kit::get_text(&format!("{api}/metrics")).await;
    assert!(metrics.contains("argus_detector_series_anomaly_score{series=\"span.latency.p99\",service=\"checkout\",namespace=\"prod\",signal=\"traces\",series_id="), "{metrics}");
    for m in [
        "argus_detector_series_expected{",
        "argus_detector_series_upper{",
        "argus_detector_series_value{",
    ] {
        assert!(metrics.contains(m), "{m} missing");
    }
    assert!(kit::sample(&metrics, "argus_detector_incidents_open ").unwrap() >= 1.0);
    assert!(kit::sample(&metrics, "argus_detector_scoring_points_total ").unwrap() > 1000.0);
    assert!(
        metrics.contains("argus_detector_build_info{version="),
        "build info"
    );
    assert!(
        metrics.contains("argus_detector_ingest_items_total{signal=\"traces\"}"),
        "ingest rate"
    );
    assert!(!metrics.contains(&id), "no incident id as a label");

    // --- maintenance through the API (writes need the token) ---
    let body = json!({"match": "{service=\"search\"}", "duration": "1h", "comment": "reindex"});
    let r = client
        .post(format!("{api}/api/v1/maintenance"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = client
        .post(format!("{api}/api/v1/maintenance"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let w: serde_json::Value = r.json().await.unwrap();
    let wid = w["id"].as_str().unwrap().to_string();
    assert_eq!(w["active"], true);
    let r = client
        .post(format!("{api}/api/v1/maintenance"))
        .bearer_auth(TOKEN)
        .json(&json!({"match": "{", "duration": "1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for k in 320..330 {
        otlp.traces(kit::spans(
            "search",
            "prod",
            "GET /q",
            t0 + k,
            20,
            2000.0,
            3,
        ))
        .await
        .unwrap();
        otlp.traces(kit::spans(
            "checkout",
            "prod",
            "POST /pay",
            t0 + k,
            20,
            500.0,
            2,
        ))
        .await
        .unwrap();
    }
    let s = kit::eventually(20, "search points under maintenance", || {
        let api = api.clone();
        async move {
            let v = kit::get_json(&format!(
                "{api}/api/v1/series?match={}",
                urlenc(r#"span.latency.p99{service="search"}"#)
            ))
            .await;
            let s = v["series"][0].clone();
            (s["last"]["maintenance"] == true).then_some(s)
        }
    })
    .await;
    let before = s["points_seen"].as_u64().unwrap();
    let list = kit::get_json(&format!("{api}/api/v1/maintenance")).await;
    assert_eq!(list["windows"][0]["id"], wid.as_str());
    // A 100× slower search under maintenance opens nothing …
    let open = kit::get_json(&format!("{api}/api/v1/incidents?state=open")).await;
    assert!(
        open["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["entity"]["value"] != "search"),
        "{open}"
    );
    // … and was not learnt.
    otlp.traces(kit::spans(
        "search",
        "prod",
        "GET /q",
        t0 + 330,
        20,
        2000.0,
        3,
    ))
    .await
    .unwrap();
    otlp.traces(kit::spans(
        "search",
        "prod",
        "GET /q",
        t0 + 331,
        20,
        2000.0,
        3,
    ))
    .await
    .unwrap();
    let v = kit::get_json(&format!(
        "{api}/api/v1/series?match={}",
        urlenc(r#"span.latency.p99{service="search"}"#)
    ))
    .await;
    assert_eq!(
        v["series"][0]["points_seen"].as_u64().unwrap(),
        before,
        "peeked, not learnt"
    );
    let r = client
        .delete(format!("{api}/api/v1/maintenance/{wid}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .delete(format!("{api}/api/v1/maintenance/{wid}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // --- feedback: "not an anomaly" dismisses the incident ---
    let r = client
        .post(format!("{api}/api/v1/feedback"))
        .bearer_auth(TOKEN)
        .json(&json!({"incident_id": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .post(format!("{api}/api/v1/feedback"))
        .bearer_auth(TOKEN)
        .json(&json!({"incident_id": id, "series": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "exactly one target");
    let r = client
        .post(format!("{api}/api/v1/feedback"))
        .bearer_auth(TOKEN)
        .json(&json!({"incident_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fb: serde_json::Value = r.json().await.unwrap();
    assert!(fb["series"].as_u64().unwrap() >= 1, "{fb}");
    let inc = kit::get_json(&format!("{api}/api/v1/incidents/{id}")).await;
    assert_eq!(inc["state"], "resolved");
    assert_eq!(inc["dismissed"], true);
    let v = kit::get_json(&format!("{api}/api/v1/series?match={}", urlenc(sel))).await;
    assert!(
        v["series"][0]["desensitized_decades"].as_f64().unwrap() > 0.0,
        "engine feedback applied: {v}"
    );
    let r = client
        .post(format!("{api}/api/v1/feedback"))
        .bearer_auth(TOKEN)
        .json(&json!({"series": "span.requests{service=\"search\"}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // --- bad input: status codes as the Collector's, and service goes on ---
    let r = client
        .post(format!("{http_otlp}/v1/traces"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-protobuf")
        .body(vec![0x0a, 0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "malformed protobuf");
    let r = client
        .post(format!("{http_otlp}/v1/traces"))
        .header("content-type", "application/json")
        .body("{\"resourceSpans\": 7}")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "malformed JSON");
    let r = client
        .post(format!("{http_otlp}/v1/traces"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    let r = client
        .post(format!("{http_otlp}/v1/traces"))
        .header("content-type", "application/json")
        .bearer_auth("wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "wrong token");
    let anon = kit::Otlp::new(otlp.endpoint.clone(), None);
    let e = anon
        .traces(kit::spans(
            "checkout",
            "prod",
            "POST /pay",
            t0 + 340,
            1,
            50.0,
            1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let wrong = kit::Otlp::new(otlp.endpoint.clone(), Some("wrong"));
    let e = wrong
        .traces(kit::spans(
            "checkout",
            "prod",
            "POST /pay",
            t0 + 340,
            1,
            50.0,
            1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = bad_grpc(&otlp.endpoint).await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    otlp.traces(kit::spans(
        "checkout",
        "prod",
        "POST /pay",
        t0 + 340,
        20,
        50.0,
        1,
    ))
    .await
    .unwrap();
    assert_eq!(
        client
            .get(format!("{api}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{api}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{api}/api/v1/series"))
            .send()
            .await
            .unwrap()
            .status(),
        400,
        "match is required"
    );
    assert_eq!(
        client
            .get(format!("{api}/api/v1/incidents?state=maybe"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    shutdown.trigger();
    running.wait().await.unwrap();
}

/// A gRPC export whose body is not a valid ExportTraceServiceRequest: the
/// raw bytes go through a pass-through codec.
async fn bad_grpc(endpoint: &str) -> tonic::Status {
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    #[derive(Default)]
    struct Raw;
    struct RawEnc;
    struct RawDec;
    impl Encoder for RawEnc {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            use bytes::BufMut;
            dst.put_slice(&item);
            Ok(())
        }
    }
    impl Decoder for RawDec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            use bytes::Buf;
            let v = src.chunk().to_vec();
            src.advance(v.len());
            Ok(Some(v))
        }
    }
    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEnc;
        type Decoder = RawDec;
        fn encoder(&mut self) -> RawEnc {
            RawEnc
        }
        fn decoder(&mut self) -> RawDec {
            RawDec
        }
    }
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut req = tonic::Request::new(vec![0x0a, 0xff, 0xff, 0xff]);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary::<Vec<u8>, Vec<u8>, Raw>(req, path, Raw)
        .await
        .unwrap_err()
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The wall clock (the default): live data is scored within a few steps of
/// its timestamps, with nothing but time passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_scores_live_data_within_a_few_steps() {
    let yaml = r#"
receiver:
  grpc: { endpoint: "127.0.0.1:0" }
  http: { endpoint: "127.0.0.1:0" }
scoring: { step: 1s }
ops: { listen: "127.0.0.1:0" }
"#;
    let cfg = DetectorConfig::from_yaml_with_env(yaml, std::iter::empty()).unwrap();
    let shutdown = Shutdown::new();
    let running = argus_detector::service::start(cfg, shutdown.clone())
        .await
        .unwrap();
    let api = format!("http://{}", running.ops_addr);
    let otlp = kit::Otlp::new(format!("http://{}", running.grpc_addr.unwrap()), None);
    let sel = urlenc(r#"span.requests{service="live"}"#);
    let started = std::time::Instant::now();
    let s = loop {
        otlp.traces(kit::spans(
            "live",
            "prod",
            "GET /",
            kit::now_secs(),
            5,
            10.0,
            1,
        ))
        .await
        .unwrap();
        let v = kit::get_json(&format!("{api}/api/v1/series?match={sel}")).await;
        if v["series"][0]["points_seen"].as_u64().unwrap_or(0) >= 3 {
            break v["series"][0].clone();
        }
        assert!(started.elapsed().as_secs() < 15, "no live scoring: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // Steps close at end + grace (1 s + 1 s): the newest scored step is
    // only a few seconds old.
    let newest = s["last"]["ts"].as_i64().unwrap();
    assert!(
        kit::now_secs() - newest <= 5,
        "scored step {newest} too old"
    );
    let metrics = kit::get_text(&format!("{api}/metrics")).await;
    let lag = kit::sample(&metrics, "argus_detector_scoring_lag_seconds ").unwrap();
    assert!((0.0..=5.0).contains(&lag), "lag {lag}");
    shutdown.trigger();
    running.wait().await.unwrap();
}
