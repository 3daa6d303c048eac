//! The scrape source against real HTTP endpoints on 127.0.0.1: success,
//! gzip, every failure reason with `up = 0`, limits, and the run loop.

use std::io::Write;
use std::time::Duration;

use argus_agent::pipeline::{MemoryLimiter, Payload};
use argus_agent::sources::scrape::{ScrapeConfig, TargetConfig};
use argus_common::shutdown::Shutdown;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use prometheus_client::registry::Registry;

const BODY: &str = "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total{code=\"200\"} 42\n# TYPE temp gauge\ntemp 21.5\n";

async fn serve() -> String {
    let app = Router::new()
        .route("/metrics", get(|| async { BODY }))
        .route(
            "/gzip",
            get(|h: HeaderMap| async move {
                assert_eq!(h.get(header::ACCEPT_ENCODING).unwrap(), "gzip");
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(BODY.as_bytes()).unwrap();
                ([(header::CONTENT_ENCODING, "gzip")], enc.finish().unwrap())
            }),
        )
        .route(
            "/openmetrics",
            get(|| async {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    "# TYPE jobs counter\njobs_total 3 1800000000.5\n# EOF\n",
                )
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                BODY
            }),
        )
        .route("/big", get(|| async { "x 1\n".repeat(2000) }))
        .route(
            "/many",
            get(|| async {
                (0..50)
                    .map(|i| format!("s{{i=\"{i}\"}} 1\n"))
                    .collect::<String>()
            }),
        )
        .route("/binary", get(|| async { vec![0xffu8, 0xfe, 0x00] }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn target(url: String) -> TargetConfig {
    TargetConfig {
        url,
        interval: None,
        timeout: None,
        labels: [
            ("job".to_string(), "node".to_string()),
            ("team".to_string(), "pay".to_string()),
        ]
        .into_iter()
        .collect(),
    }
}

fn config(targets: Vec<TargetConfig>) -> ScrapeConfig {
    ScrapeConfig {
        targets,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        ..Default::default()
    }
}

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)
}

fn gauge_value(req: &ExportMetricsServiceRequest, name: &str) -> f64 {
    match &metric(req, name).unwrap_or_else(|| panic!("{name}")).data {
        Some(Data::Gauge(g)) => match g.data_points[0].value {
            Some(number_data_point::Value::AsDouble(d)) => d,
            _ => panic!(),
        },
        _ => panic!("{name} not a gauge"),
    }
}

fn resource_attr<'a>(req: &'a ExportMetricsServiceRequest, key: &str) -> Option<&'a str> {
    req.resource_metrics[0]
        .resource
        .as_ref()?
        .attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn has_attr(attrs: &[KeyValue], key: &str, value: &str) -> bool {
    attrs.iter().any(|a| {
        a.key == key
            && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()), Some(any_value::Value::StringValue(s)) if s == value)
    })
}

fn encode(reg: &Registry) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, reg).unwrap();
    s
}

#[tokio::test]
async fn successful_scrape_names_the_target_and_reports_up() {
    let base = serve().await;
    let port = base.rsplit(':').next().unwrap().to_string();
    let scrape = config(vec![target(format!("{base}/metrics"))])
        .build("scrape", &mut Registry::default())
        .unwrap();
    let req = scrape.scrape_target(0).await;
    assert_eq!(resource_attr(&req, "service.name"), Some("node"));
    assert_eq!(
        resource_attr(&req, "service.instance.id"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(resource_attr(&req, "server.port"), Some(port.as_str()));
    assert_eq!(resource_attr(&req, "url.scheme"), Some("http"));
    assert_eq!(gauge_value(&req, "up"), 1.0);
    assert_eq!(gauge_value(&req, "scrape_samples_scraped"), 2.0);
    let Some(Data::Sum(s)) = &metric(&req, "requests_total").unwrap().data else {
        panic!()
    };
    assert!(s.is_monotonic);
    let p = &s.data_points[0];
    assert!(has_attr(&p.attributes, "code", "200"));
    assert!(
        has_attr(&p.attributes, "team", "pay"),
        "target labels on every point"
    );
    assert!(
        !p.attributes.iter().any(|a| a.key == "job"),
        "job is a resource attribute"
    );
    assert_eq!(gauge_value(&req, "temp"), 21.5);
}

#[tokio::test]
async fn gzip_and_openmetrics_bodies() {
    let base = serve().await;
    let scrape = config(vec![
        target(format!("{base}/gzip")),
        target(format!("{base}/openmetrics")),
    ])
    .build("scrape", &mut Registry::default())
    .unwrap();
    let req = scrape.scrape_target(0).await;
    assert_eq!(gauge_value(&req, "up"), 1.0);
    assert_eq!(gauge_value(&req, "temp"), 21.5);

    let req = scrape.scrape_target(1).await;
    let Some(Data::Sum(s)) = &metric(&req, "jobs_total").unwrap().data else {
        panic!()
    };
    assert_eq!(
        s.data_points[0].time_unix_nano, 1_800_000_000_500_000_000,
        "OpenMetrics timestamps are seconds"
    );
}

#[tokio::test]
async fn every_failure_reports_up_zero_and_is_counted_by_reason() {
    let base = serve().await;
    // A port with nothing listening: bind, note, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = config(vec![
        target(format!("{base}/fail")),
        target(format!("{base}/slow")),
        target(format!("http://{closed}/metrics")),
        target(format!("{base}/big")),
        target(format!("{base}/many")),
        target(format!("{base}/binary")),
    ]);
    cfg.max_body_bytes = 4096;
    cfg.sample_limit = 20;
    let mut reg = Registry::default();
    let scrape = cfg.build("scrape", &mut reg).unwrap();
    for i in 0..scrape.target_count() {
        let req = scrape.scrape_target(i).await;
        assert_eq!(gauge_value(&req, "up"), 0.0, "target {i}");
        assert_eq!(resource_attr(&req, "service.name"), Some("node"));
    }
    let text = encode(&reg);
    for reason in [
        "http_status",
        "timeout",
        "connect",
        "body_too_large",
        "sample_limit",
        "invalid_utf8",
    ] {
        assert!(
            text.contains(&format!("scrape_failures_total{{reason=\"{reason}\"}} 1")),
            "{reason} in\n{text}"
        );
    }
}

#[tokio::test]
async fn run_sends_one_envelope_per_scrape_and_stops_on_shutdown() {
    let base = serve().await;
    let scrape = config(vec![target(format!("{base}/metrics"))])
        .build("scrape", &mut Registry::default())
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let shutdown = Shutdown::new();
    let limiter = MemoryLimiter::new(1 << 20);
    let task = tokio::spawn(scrape.run(tx, limiter.clone(), shutdown.clone()));
    let started = tokio::time::Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "one interval between scrapes"
    );
    for env in [&first, &second] {
        assert_eq!(env.source, "scrape");
        assert!(env.permit.bytes() > 0);
        let Payload::Metrics(req) = &env.payload.to_payload().unwrap() else {
            panic!()
        };
        assert_eq!(gauge_value(req, "up"), 1.0);
    }
    // Start times carry over between scrapes of one target.
    let start = |p: &Payload| {
        let Payload::Metrics(req) = p else { panic!() };
        let Some(Data::Sum(s)) = &metric(req, "requests_total").unwrap().data else {
            panic!()
        };
        s.data_points[0].start_time_unix_nano
    };
    assert_eq!(
        start(&first.payload.to_payload().unwrap()),
        start(&second.payload.to_payload().unwrap())
    );
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

#[test]
fn config_problems_name_every_bad_field() {
    let cfg = ScrapeConfig {
        targets: vec![
            TargetConfig {
                url: "ftp://x/metrics".into(),
                interval: Some(Duration::from_secs(5)),
                timeout: Some(Duration::from_secs(10)),
                labels: [("__bad".to_string(), "x".to_string())]
                    .into_iter()
                    .collect(),
            },
            TargetConfig {
                url: "not a url".into(),
                interval: None,
                timeout: None,
                labels: Default::default(),
            },
        ],
        max_body_bytes: 10,
        ..Default::default()
    };
    let p = cfg.problems("sources.scrape");
    let has = |prefix: &str| p.iter().any(|m| m.starts_with(prefix));
    assert!(
        has("sources.scrape.targets[0].url: must be an http(s) URL"),
        "{p:?}"
    );
    assert!(has("sources.scrape.targets[0].timeout:"), "{p:?}");
    assert!(has("sources.scrape.targets[0].labels:"), "{p:?}");
    assert!(
        has("sources.scrape.targets[1].url: not a valid URL"),
        "{p:?}"
    );
    assert!(has("sources.scrape.max_body_bytes:"), "{p:?}");
    assert!(
        ScrapeConfig::default()
            .problems("s")
            .iter()
            .any(|m| m.starts_with("s.targets: no target"))
    );

    let cfg: ScrapeConfig = serde_yaml::from_str(
        "interval: 15s\ntargets:\n  - url: http://127.0.0.1:9100/metrics\n    timeout: 5s\n    labels: {job: node}\n",
    )
    .unwrap();
    assert!(cfg.problems("s").is_empty(), "{:?}", cfg.problems("s"));
    assert_eq!(cfg.targets[0].timeout, Some(Duration::from_secs(5)));
    assert!(
        serde_yaml::from_str::<ScrapeConfig>("targets: [{url: 'http://x', lables: {}}]").is_err()
    );
}
