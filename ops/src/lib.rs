//! Support for the checks of the operations bundle: every file a user
//! deploys (`dashboards/`, `alerts/`, `deploy/`) is proven by the tool that
//! will read it, and every metric those files name must be exposed by the
//! binaries as built.
//!
//! - [`tools`]: finds `promtool`, `amtool`, `kubernetes-validate` (installed
//!   by `scripts/setup-peers.sh`); a missing tool fails the test, never skips it.
//! - [`promql`]: the metric names one PromQL expression reads, and Grafana's
//!   variables replaced so `promtool` can parse the expression.
//! - [`grafana`]: every PromQL expression of a dashboard (panel targets and
//!   query variables).
//! - [`helm`]: renders the chart (the subset of Go templates it uses).
//! - [`binaries`]: starts `argus-agent` and `argus-detector` on free ports
//!   and collects the metric names their `/metrics` expose.
//!
//! The binaries are found next to the test executable's `deps/` directory
//! (`target/<profile>/argus-agent`). `cargo test --workspace` (the README's
//! test command) builds them before any test runs; a binary older than its
//! sources fails the test with the command to rebuild it, so a stale binary
//! can never make a check pass.

pub mod binaries;
pub mod grafana;
pub mod helm;
pub mod promql;
pub mod tools;

use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ops/ is inside the workspace")
        .to_path_buf()
}
