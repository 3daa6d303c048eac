//! The real `argus-agent` binary as a child process: started with a config
//! file, its addresses read from its "argus-agent started" log line (JSON
//! logs, ports bound as 0, so parallel tests never race for a port), stopped
//! with SIGTERM or killed with SIGKILL.
//!
//! Include with `#[path = "support/process.rs"] mod process;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// The agent binary cargo built for this test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_argus-agent"))
}

/// A running agent. Killed (SIGKILL) when dropped.
pub struct AgentProcess {
    child: Option<Child>,
    pub pid: u32,
    pub grpc: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub ops: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl AgentProcess {
    /// Writes `yaml` to `dir/agent.yaml` and starts `argus-agent run` on it
    /// with `env` added; waits (up to 60 s) for it to report its addresses.
    /// The config must set `logging.format: json`.
    pub fn start(dir: &Path, yaml: &str, env: &[(&str, &str)]) -> AgentProcess {
        let config = dir.join("agent.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("argus-agent starts");
        let pid = child.id();
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
        let started = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "argus-agent did not start (exit {status:?}); its log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(&started).unwrap();
        let addr = |k: &str| v[k].as_str().map(|s| s.parse::<SocketAddr>().unwrap());
        AgentProcess {
            child: Some(child),
            pid,
            grpc: addr("grpc"),
            http: addr("http"),
            ops: addr("ops").expect("ops address"),
            log,
        }
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then waits (up to `within`) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: signalling a child we spawned and have not reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "argus-agent did not exit within {within:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the agent logged so far (JSON lines).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `GET path` on the ops server: (status, body).
    pub fn ops_get(&self, path: &str) -> (u16, String) {
        http_get(self.ops, path)
    }

    /// One sample of `/metrics` (`name{labels}` exactly as exposed), 0 when
    /// absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.ops_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    /// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`).
    pub fn proc_status_bytes(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
            .map(|v| {
                v.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
                    * 1024
            })
            .unwrap()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal HTTP/1.0 GET (the ops server speaks HTTP/1.1; no client crate
/// needed for a test probe).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
