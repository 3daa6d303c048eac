//! The real tools, as `scripts/setup-peers.sh` installs them: `promtool`
//! and `amtool` from Debian (on `PATH`), `kubernetes-validate` in the
//! project venv `.peers/venv/bin` (or on `PATH`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The tool's path; panics with the install command when it is missing.
pub fn find(name: &str) -> PathBuf {
    let venv = crate::root().join(".peers/venv/bin").join(name);
    if venv.is_file() {
        return venv;
    }
    on_path(name).unwrap_or_else(|| {
        panic!(
            "{name} not found (looked in .peers/venv/bin and PATH): run scripts/setup-peers.sh, \
             which installs promtool, amtool and kubernetes-validate"
        )
    })
}

/// Runs `tool args…` and returns (success, stdout + stderr).
pub fn run(tool: &str, args: &[&str]) -> (bool, String) {
    run_in(tool, args, &crate::root())
}

/// [`run`] with a working directory.
pub fn run_in(tool: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out: Output = Command::new(find(tool))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{tool} could not be started: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
