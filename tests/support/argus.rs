//! The real Argus binaries as child processes, started through the `argus`
//! CLI the way an operator would (`argus agent run --config F`, `argus
//! detector run --config F`), plus the HTTP and polling helpers the
//! end-to-end scenarios share.
//!
//! Include with `#[path = "support/argus.rs"] mod argus;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// The `argus` binary cargo built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_argus"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 100 ms until it returns Some; fails after `secs` naming
/// `what` and whatever `context` says then (logs of the processes).
pub async fn eventually<T, F, Fut>(
    secs: u64,
    what: &str,
    context: impl Fn() -> String,
    mut f: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            panic!(
                "timed out after {secs} s waiting for: {what}\n{}",
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn get_json(url: &str) -> Json {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

pub async fn get_text(url: &str) -> String {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    r.text().await.unwrap()
}

/// Sum of every sample of `name` in a Prometheus text exposition whose
/// labels include all of `labels` (`k="v"` pairs), None when none matches.
pub fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let got: Vec<(&str, &str)> = l
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if labels.iter().all(|w| got.contains(w)) {
            *total.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    total
}

fn kill_child(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn sigterm_and_wait(
    c: &mut Child,
    within: Duration,
    what: &str,
    log: &dyn Fn() -> String,
) -> ExitStatus {
    // SAFETY: signalling a child we spawned and have not reaped.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            kill_child(c);
            panic!(
                "{what} did not exit within {within:?} of SIGTERM; log:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `argus agent run`: ports bound as 0, its addresses read from its JSON
/// "argus-agent started" line. Killed when dropped.
pub struct Agent {
    child: Option<Child>,
    pub grpc: SocketAddr,
    pub ops: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// Writes `yaml` (which must set `logging.format: json` and bind the
    /// gRPC receiver and ops server to port 0) to `dir/agent.yaml`, starts
    /// the agent, waits for it to report its addresses.
    pub fn start(dir: &Path, yaml: &str) -> Agent {
        let config = dir.join("agent.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(binary())
            .args(["agent", "run", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .env("K8S_NODE_NAME", "node-e2e")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("argus agent starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("\"argus-agent started\"")
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(line.clone());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let Ok(started) = rx.recv_timeout(Duration::from_secs(60)) else {
            kill_child(&mut child);
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "argus agent did not start; its log:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        let v: Json = serde_json::from_str(&started).unwrap();
        let addr = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("no {k} address in {started}"))
                .parse::<SocketAddr>()
                .unwrap()
        };
        Agent {
            grpc: addr("grpc"),
            ops: addr("ops"),
            child: Some(child),
            log,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub async fn metrics(&self) -> String {
        get_text(&format!("http://{}/metrics", self.ops)).await
    }

    /// SIGTERM and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let log = self.log.clone();
        sigterm_and_wait(&mut c, Duration::from_secs(30), "argus agent", &move || {
            log.lock().unwrap().join("\n")
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            kill_child(c);
        }
    }
}

/// `argus detector run` on fixed free ports, logging to `dir/detector.log`.
/// Killed when dropped.
pub struct Detector {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    pub grpc_port: u16,
    pub ops_port: u16,
}

impl Detector {
    /// Free ports for a detector's gRPC receiver, HTTP receiver and ops
    /// server (the config is written by the caller with them).
    pub fn ports() -> (u16, u16, u16) {
        (free_port(), free_port(), free_port())
    }

    /// Writes `yaml` to `dir/detector.yaml`, starts the detector, waits for
    /// `/readyz`.
    pub async fn start(dir: &Path, yaml: &str, grpc_port: u16, ops_port: u16) -> Detector {
        let config = dir.join("detector.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut d = Detector {
            child: None,
            config,
            log: dir.join("detector.log"),
            grpc_port,
            ops_port,
        };
        d.spawn().await;
        d
    }

    /// (Re)starts the process on the same config, ports and state.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(binary())
            .args(["detector", "run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("argus detector starts");
        self.child = Some(child);
        let url = format!("{}/readyz", self.ops());
        let start = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("argus detector exited with {st}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "argus detector not ready in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn ops(&self) -> String {
        format!("http://127.0.0.1:{}", self.ops_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        get_text(&format!("{}/metrics", self.ops())).await
    }

    pub async fn api(&self, path: &str) -> Json {
        get_json(&format!("{}{path}", self.ops())).await
    }

    /// `kill -9`: no shutdown code runs, no final snapshot.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c);
        }
    }

    /// SIGTERM and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let log = self.log.clone();
        sigterm_and_wait(
            &mut c,
            Duration::from_secs(30),
            "argus detector",
            &move || std::fs::read_to_string(&log).unwrap_or_default(),
        )
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            kill_child(c);
        }
    }
}
