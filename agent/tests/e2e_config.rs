//! The binary's command line and configuration: `validate-config` lists
//! every problem with its path and exits 1 (0 when valid), `run` refuses an
//! invalid file the same way, an `ARGUS_AGENT__…` variable overrides the
//! file, and `--version` answers.

#[path = "support/process.rs"]
mod process;
#[path = "support/sink.rs"]
mod sink;

use std::process::Command;
use std::time::Duration;

use process::{AgentProcess, binary};
use sink::Sink;

#[test]
fn validate_config_lists_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        r#"
receiver:
  grpc: { endpoint: "localhost" }
file:
  include: ["/var/log/["]
  poll_intervall: 1s
exporter:
  endpoint: detector:4317
  concurrency: 0
queue:
  max_bytes: 1MiB
memory:
  limit: lots
"#,
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("validate-config")
        .arg(&file)
        .env_remove("ARGUS_AGENT__EXPORTER__ENDPOINT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "receiver.grpc.endpoint: expected host:port",
        "file.poll_intervall: unknown field `poll_intervall`",
        "exporter.endpoint: missing scheme",
        "exporter.concurrency: must be between 1 and 1024",
        "queue.max_bytes: must be at least twice segment_bytes",
        "memory.limit: invalid size \"lots\"",
    ] {
        assert!(stderr.contains(want), "{want:?} missing from:\n{stderr}");
    }
    assert!(stderr.contains("6 problems"), "{stderr}");

    // `run` refuses the same file, listing the same problems, and never starts.
    let out = Command::new(binary())
        .args(["run", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("file.poll_intervall: unknown field"),
        "{stderr}"
    );
    assert!(!stderr.contains("started"), "{stderr}");
}

#[test]
fn validate_config_accepts_a_good_file_and_checks_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("good.yaml");
    std::fs::write(
        &file,
        "exporter:\n  endpoint: https://detector.observability:4317\nfile:\n  include: [\"/var/log/pods/*/*/*.log\"]\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("validate-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));

    let out = Command::new(binary())
        .arg("validate-config")
        .arg(&file)
        .env("ARGUS_AGENT__BATCH__TIMEOUT", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("batch.timeout:")
            && stderr.contains("(set by ARGUS_AGENT__BATCH__TIMEOUT)"),
        "{stderr}"
    );
}

#[test]
fn version_is_printed() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("argus-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_variable_overrides_the_file() {
    let sink = Sink::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    // The file points the exporter at a port nobody listens on; the
    // environment points it at the sink.
    let yaml = format!(
        r#"
receiver:
  grpc: null
  http: {{ endpoint: "127.0.0.1:0" }}
file: null
host: null
batch: {{ timeout: 50ms }}
queue: {{ dir: "{}" }}
exporter: {{ endpoint: "http://127.0.0.1:9" }}
ops: {{ listen: "127.0.0.1:0" }}
logging: {{ format: json }}
"#,
        dir.path().join("queue").display()
    );
    let mut agent = AgentProcess::start(
        dir.path(),
        &yaml,
        &[("ARGUS_AGENT__EXPORTER__ENDPOINT", &sink.endpoint())],
    );
    assert!(
        agent.grpc.is_none(),
        "grpc: null turns the gRPC receiver off"
    );
    assert_eq!(agent.ops_get("/readyz").0, 200);
    let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"routed by the environment"}}]}]}]}"#;
    let status = reqwest::Client::new()
        .post(format!("http://{}/v1/logs", agent.http.unwrap()))
        .header("content-type", "application/json")
        .body(json.to_vec())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    sink.wait_for(Duration::from_secs(30), "the record", |r| {
        r.bodies() == ["routed by the environment"]
    })
    .await;
    assert!(agent.terminate(Duration::from_secs(30)).success());
}
