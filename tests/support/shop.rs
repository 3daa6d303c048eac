//! The payments system the scenarios observe: `support/python/payments.py`
//! on the real OpenTelemetry Python SDK, sending OTLP/gRPC to the agent,
//! driven one phase at a time over its stdin (see the script's docs).
//!
//! Include with `#[path = "support/shop.rs"] mod shop;` (needs `peers`).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// What one phase emitted, as the script reports it after flushing.
#[derive(Debug)]
pub struct Emitted {
    /// Unix seconds of the first incident step (first incident phase only).
    pub injection_step: Option<i64>,
    /// Trace ids (hex) of every request of the phase.
    pub trace_ids: BTreeSet<String>,
    /// Totals since the script started.
    pub spans_total: u64,
    pub logs_total: u64,
}

pub struct Shop {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: PathBuf,
    /// Unix seconds of step 0.
    pub t0: i64,
}

impl Shop {
    /// Starts the script against `endpoint` with step 0 at `history_secs`
    /// before now; waits for it to be ready.
    pub async fn start(dir: &Path, endpoint: &str, history_secs: i64) -> Shop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let t0 = now - history_secs;
        let stderr = dir.join("payments.stderr");
        let mut child = tokio::process::Command::new(crate::peers::python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/python/payments.py"))
            .arg(endpoint)
            .arg(t0.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("python starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut shop = Shop {
            child,
            stdin: Some(stdin),
            stdout,
            stderr,
            t0,
        };
        let ready = shop.answer(Duration::from_secs(60)).await;
        assert_eq!(ready["ready"], true, "{ready}");
        shop
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn answer(&mut self, within: Duration) -> Json {
        let line = match tokio::time::timeout(within, self.stdout.next_line()).await {
            Ok(Ok(Some(l))) => l,
            Ok(r) => panic!("payments.py ended ({r:?}):\n{}", self.stderr()),
            Err(_) => panic!("payments.py silent for {within:?}:\n{}", self.stderr()),
        };
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("payments.py said {line:?} ({e})"))
    }

    /// Emits steps `from..to` of `phase` (`normal` or `incident`) and waits
    /// until the SDK flushed them to the agent.
    pub async fn run(&mut self, phase: &str, from: i64, to: i64) -> Emitted {
        let cmd = serde_json::json!({ "phase": phase, "from": from, "to": to });
        self.stdin
            .as_mut()
            .expect("the script is still running")
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.as_mut().unwrap().flush().await.unwrap();
        let a = self.answer(Duration::from_secs(90)).await;
        assert_eq!(
            a["ok"],
            true,
            "the SDK failed to flush {cmd}:\n{}",
            self.stderr()
        );
        Emitted {
            injection_step: a["injection_step"].as_i64(),
            trace_ids: a["trace_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect(),
            spans_total: a["spans_total"].as_u64().unwrap(),
            logs_total: a["logs_total"].as_u64().unwrap(),
        }
    }

    /// Closes stdin; the script shuts its providers down and exits.
    pub async fn finish(&mut self) {
        drop(self.stdin.take());
        let st = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("payments.py exits")
            .unwrap();
        assert!(st.success(), "payments.py: {st}\n{}", self.stderr());
    }
}
