//! A real Alertmanager for tests: finds the binary, starts it on a free
//! loopback port with a throw-away config and storage directory, kills and
//! restarts it, and reads its alerts back through `GET /api/v2/alerts`.
//!
//! Include with `#[path = "support/alertmanager.rs"] mod alertmanager;`. The
//! binary comes from `scripts/setup-peers.sh` (Debian's
//! `prometheus-alertmanager`); a missing binary fails the test with that
//! instruction, never skips it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Alertmanager binary: `prometheus-alertmanager` (Debian's name) or
/// `alertmanager` on `PATH` or in the repository's `.peers/bin`.
pub fn binary() -> PathBuf {
    let repo_peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers/bin");
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(repo_peers);
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for d in &dirs {
            let p = d.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no Alertmanager binary (prometheus-alertmanager or alertmanager) on PATH: \
         run scripts/setup-peers.sh, which installs Debian's prometheus-alertmanager"
    );
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Alertmanager. Killed when dropped.
pub struct Alertmanager {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Routes everything to a receiver that notifies nobody; the tests look at
/// Alertmanager's alert store, not at notifications.
const CONFIG: &str = r#"
route:
  receiver: blackhole
  group_by: ['...']
receivers:
  - name: blackhole
"#;

impl Alertmanager {
    /// Starts on a free port and waits until it is ready.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alertmanager.yml"), CONFIG).unwrap();
        let mut am = Alertmanager {
            child: None,
            port: free_port(),
            dir,
        };
        am.spawn().await;
        am
    }

    /// Base URL, as the notifier's `urls` take it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("alertmanager.log"))
            .unwrap();
        let child = Command::new(binary())
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            // Empty: no gossip port, no cluster (a lone test instance).
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits for `/-/ready`, failing with Alertmanager's own log after 30 s.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let url = format!("{}/-/ready", self.url());
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("Alertmanager exited with {status}:\n{}", self.log());
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("Alertmanager not ready after 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Alertmanager's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// `kill -9`: no graceful shutdown, in-memory alerts are lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same storage directory.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager holds as active
    /// (resolved ones are not listed).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("{}/api/v2/alerts", self.url()))
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.kill();
    }
}
