//! The ops server as Prometheus, a kubelet and a person with curl see it.

use std::sync::Arc;
use std::time::Duration;

use argus_common::ops::{
    OPENMETRICS_CONTENT_TYPE, OpsServerConfig, PROMETHEUS_CONTENT_TYPE, Readiness,
};
use argus_common::shutdown::Shutdown;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::{Registry, Unit};

struct Running {
    base: String,
    readiness: Readiness,
    counter: Counter,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), argus_common::ops::OpsError>>,
}

async fn start() -> Running {
    let mut registry = Registry::with_prefix("argus_detector");
    let counter = Counter::default();
    registry.register_with_unit("ingested", "Bytes ingested", Unit::Bytes, counter.clone());
    let readiness = Readiness::new();
    let cfg = OpsServerConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    };
    let api = axum::Router::new().route("/api/v1/incidents", axum::routing::get(|| async { "[]" }));
    let server = cfg
        .build(Arc::new(registry), readiness.clone())
        .unwrap()
        .merge(api)
        .bind()
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.serve(shutdown.clone()));
    Running {
        base,
        readiness,
        counter,
        shutdown,
        task,
    }
}

#[tokio::test]
async fn metrics_are_scraped_in_the_format_asked_for() {
    let r = start().await;
    r.counter.inc_by(42);
    let client = reqwest::Client::new();

    let prom_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let resp = client
        .get(format!("{}/metrics", r.base))
        .header("accept", prom_accept)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("# TYPE argus_detector_ingested_bytes counter\n"),
        "{body}"
    );
    assert!(
        body.contains("argus_detector_ingested_bytes_total 42\n"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"));

    let resp = client
        .get(format!("{}/metrics", r.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], PROMETHEUS_CONTENT_TYPE);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("# TYPE argus_detector_ingested_bytes_total counter\n"),
        "{body}"
    );
    assert!(
        body.contains("argus_detector_ingested_bytes_total 42\n"),
        "{body}"
    );
    assert!(
        !body.contains("# EOF") && !body.contains("# UNIT"),
        "{body}"
    );

    r.counter.inc();
    let body = client
        .get(format!("{}/metrics", r.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("argus_detector_ingested_bytes_total 43\n"),
        "a scrape reads live values"
    );
    r.shutdown.trigger();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn readyz_follows_readiness_and_healthz_stays_up() {
    let r = start().await;
    let get = |path: &'static str| {
        let url = format!("{}{path}", r.base);
        async move {
            let resp = reqwest::get(url).await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(
        get("/readyz").await.0,
        200,
        "no component: nothing to wait for"
    );
    let queue = r.readiness.register("disk_queue");
    assert_eq!(
        get("/readyz").await,
        (503, "not ready: disk_queue: starting\n".into())
    );
    queue.not_ready("replaying 3 segments");
    assert_eq!(
        get("/readyz").await,
        (503, "not ready: disk_queue: replaying 3 segments\n".into())
    );
    queue.ready();
    assert_eq!(get("/readyz").await, (200, "ready\n".into()));
    r.readiness.shutting_down();
    assert_eq!(get("/readyz").await.0, 503);
    assert_eq!(
        get("/healthz").await,
        (200, "ok\n".into()),
        "liveness ignores readiness"
    );
    assert_eq!(
        get("/api/v1/incidents").await,
        (200, "[]".into()),
        "merged routes are served"
    );
    assert_eq!(get("/nope").await.0, 404);
    r.shutdown.trigger();
    r.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_is_bounded_even_with_an_idle_keep_alive_connection() {
    let r = start().await;
    // A scraper's pooled keep-alive connection stays open after its request.
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{}/healthz", r.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    r.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), r.task)
        .await
        .expect("ops server stops within its grace period")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("{}/healthz", r.base)).await.is_err(),
        "port closed"
    );
}
