//! The Python OpenTelemetry SDK peer: the interpreter of the project's venv
//! (`.peers/venv`, made by `scripts/setup-peers.sh`) and the scripts that
//! drive the SDK (`support/python/*.py`).
//!
//! Include with `#[path = "support/python.rs"] mod python;`. A missing venv
//! or SDK fails the test with the instruction to run the set-up script; it
//! never skips.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The Python that has the OpenTelemetry SDK: `ARGUS_PYTHON` if set, else
/// `<repo>/.peers/venv/bin/python`.
pub fn interpreter() -> PathBuf {
    let python = match std::env::var_os("ARGUS_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.peers/venv/bin/python"),
    };
    let check = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
        ])
        .output();
    match check {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "{} cannot import the OpenTelemetry SDK and OTLP exporters: {}\n\
             run scripts/setup-peers.sh (installs them into .peers/venv)",
            python.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "no Python at {}: {e}\nrun scripts/setup-peers.sh (creates .peers/venv with the OpenTelemetry SDK)",
            python.display()
        ),
    }
}

/// A script shipped with the tests.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/python")
        .join(name)
}
