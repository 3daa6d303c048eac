//! The real peers of the end-to-end suite, installed by
//! `scripts/setup-peers.sh`: Alertmanager and Prometheus (Debian packages;
//! each test runs its own instance on a free loopback port with a
//! throw-away config and storage directory) and the Python OpenTelemetry
//! SDK (the project's venv `.peers/venv`).
//!
//! A missing peer fails the test with the command that installs it; it
//! never skips.
//!
//! Include with `#[path = "support/peers.rs"] mod peers;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const SETUP: &str = "run scripts/setup-peers.sh (installs every peer the tests use)";

/// The first of `names` on `PATH` or in the repository's `.peers/bin`.
fn find(names: &[&str], what: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/bin"));
    for name in names {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{what} not found (looked for {names:?} on PATH and in .peers/bin): {SETUP}");
}

/// The Python with the OpenTelemetry SDK: `ARGUS_PYTHON`, else
/// `<repo>/.peers/venv/bin/python`.
pub fn python() -> PathBuf {
    let python = match std::env::var_os("ARGUS_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/venv/bin/python"),
    };
    let check = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc",
        ])
        .output();
    match check {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "{} cannot import the OpenTelemetry SDK: {}\n{SETUP}",
            python.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("no Python at {}: {e}\n{SETUP}", python.display()),
    }
}

/// A peer process with its own temp directory; killed when dropped.
struct Peer {
    name: &'static str,
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Peer {
    fn spawn(&mut self, binary: &Path, args: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("peer.log"))
            .unwrap();
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/-/ready", self.url());
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited with {st}:\n{}", self.name, self.log());
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("{} not ready after 30 s:\n{}", self.name, self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A real Alertmanager whose route notifies nobody: tests read its alert
/// store through `GET /api/v2/alerts`.
pub struct Alertmanager(Peer);

impl Alertmanager {
    pub async fn start() -> Self {
        Self::start_on(crate::argus::free_port()).await
    }

    /// On a given port (a client may be configured before it starts).
    pub async fn start_on(port: u16) -> Self {
        let bin = find(
            &["prometheus-alertmanager", "alertmanager"],
            "Alertmanager (Debian package prometheus-alertmanager)",
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route: { receiver: blackhole, group_by: ['...'] }\nreceivers: [{ name: blackhole }]\n",
        )
        .unwrap();
        let mut p = Peer {
            name: "Alertmanager",
            child: None,
            port,
            dir,
        };
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", p.dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", p.port),
            // A lone instance: no gossip port.
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ];
        p.spawn(&bin, &args);
        p.wait_ready().await;
        Alertmanager(p)
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub fn log(&self) -> String {
        self.0.log()
    }

    /// The active alerts it holds.
    pub async fn alerts(&self) -> Vec<Json> {
        let v = crate::argus::get_json(&format!("{}/api/v2/alerts", self.url())).await;
        v.as_array().cloned().unwrap_or_default()
    }
}

/// A real Prometheus scraping the given targets every second.
pub struct Prometheus(Peer);

impl Prometheus {
    /// `targets`: (job name, `host:port`), each scraped at `/metrics`.
    pub async fn start(targets: &[(&str, String)]) -> Self {
        let bin = find(&["prometheus"], "Prometheus (Debian package prometheus)");
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from(
            "global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{ targets: ['{addr}'] }}]\n"
            ));
        }
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let mut p = Peer {
            name: "Prometheus",
            child: None,
            port: crate::argus::free_port(),
            dir,
        };
        let args = vec![
            format!("--config.file={}", path.display()),
            format!(
                "--storage.tsdb.path={}",
                p.dir.path().join("tsdb").display()
            ),
            format!("--web.listen-address=127.0.0.1:{}", p.port),
            "--log.level=warn".into(),
        ];
        p.spawn(&bin, &args);
        p.wait_ready().await;
        Prometheus(p)
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    pub fn log(&self) -> String {
        self.0.log()
    }

    /// `GET /api/v1/targets`: (job, health) of every active target.
    pub async fn targets(&self) -> Vec<(String, String)> {
        let v = crate::argus::get_json(&format!("{}/api/v1/targets", self.url())).await;
        v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| {
                (
                    t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                    t["health"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// An instant query: (labels, value) of each result.
    pub async fn query(&self, promql: &str) -> Vec<(Json, f64)> {
        let r = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", promql)])
            .send()
            .await
            .unwrap();
        let v: Json = r.json().await.unwrap();
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|s| {
                let value = s["value"][1].as_str().unwrap().parse().unwrap();
                (s["metric"].clone(), value)
            })
            .collect()
    }
}
