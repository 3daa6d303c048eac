//! The metadata every request carries: configured headers and the bearer
//! token, resolved from literals, environment variables or files.
//!
//! Files are re-read when their modification time or size changes (checked
//! with one `stat` per request attempt, cheap next to a gRPC call), because
//! the common token files rotate under a running agent: Kubernetes projected
//! service-account tokens are replaced about hourly, Vault agents re-render.
//! A failed re-read keeps the last good value and says so once per change,
//! rather than failing exports over a transient rename.
//!
//! Values never reach logs or metrics: they are held only as
//! [`AsciiMetadataValue`]s marked *sensitive*, which also tells HTTP/2 never
//! to put them in its header compression table.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};

use super::config::{ExporterConfig, FromEnv, FromFile, HeaderValueSource};

/// All metadata of a request.
#[derive(Debug)]
pub(crate) struct Credentials {
    entries: Vec<(AsciiMetadataKey, Source)>,
}

#[derive(Debug)]
enum Source {
    Fixed(AsciiMetadataValue),
    File(FileValue),
}

/// A value read from a file and refreshed when the file changes.
#[derive(Debug)]
struct FileValue {
    path: PathBuf,
    /// `Bearer ` for the token, empty for plain headers.
    prefix: &'static str,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    stamp: Option<(SystemTime, u64)>,
    value: AsciiMetadataValue,
    /// The stamp whose re-read failed, so one bad version is reported once.
    failed_stamp: Option<(SystemTime, u64)>,
}

impl Credentials {
    /// Resolves every source now, so a missing file or unset variable fails
    /// the build instead of the first export. Problems name their field.
    pub(crate) fn resolve(cfg: &ExporterConfig, path: &str) -> Result<Self, Vec<String>> {
        let mut entries = Vec::new();
        let mut problems = Vec::new();

        let token_key = AsciiMetadataKey::from_static("authorization");
        if let Some(file) = &cfg.bearer_token_file {
            match FileValue::load(file, "Bearer ") {
                Ok(v) => entries.push((token_key.clone(), Source::File(v))),
                Err(e) => problems.push(format!("{path}.bearer_token_file: {e}")),
            }
        }
        if let Some(var) = &cfg.bearer_token_env {
            match read_env(var).and_then(|t| value(&format!("Bearer {t}"))) {
                Ok(v) => entries.push((token_key, Source::Fixed(v))),
                Err(e) => problems.push(format!("{path}.bearer_token_env: {e}")),
            }
        }

        for (name, source) in &cfg.headers {
            let field = format!("{path}.headers.{name}");
            let Ok(key) = AsciiMetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                problems.push(format!("{field}: not a valid gRPC metadata name"));
                continue;
            };
            let resolved = match source {
                HeaderValueSource::Literal(v) => value(v).map(Source::Fixed),
                HeaderValueSource::Env(FromEnv { env }) => read_env(env)
                    .and_then(|v| value(&v))
                    .map(Source::Fixed)
                    .map_err(|e| format!("env: {e}")),
                HeaderValueSource::File(FromFile { file }) => FileValue::load(file, "")
                    .map(Source::File)
                    .map_err(|e| format!("file: {e}")),
            };
            match resolved {
                Ok(s) => entries.push((key, s)),
                Err(e) => problems.push(format!("{field}: {e}")),
            }
        }

        if problems.is_empty() {
            Ok(Credentials { entries })
        } else {
            Err(problems)
        }
    }

    /// Puts the current values into a request's metadata.
    pub(crate) fn apply(&self, md: &mut MetadataMap) {
        for (key, source) in &self.entries {
            let v = match source {
                Source::Fixed(v) => v.clone(),
                Source::File(f) => f.current(),
            };
            md.insert(key.clone(), v);
        }
    }
}

fn read_env(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(v) if v.trim().is_empty() => Err(format!("variable {var} is empty")),
        Ok(v) => Ok(v.trim().to_owned()),
        Err(std::env::VarError::NotPresent) => Err(format!("variable {var} is not set")),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("variable {var} is not UTF-8")),
    }
}

/// A sensitive metadata value, or why the text cannot be one (without
/// quoting the text: it may be a secret).
fn value(text: &str) -> Result<AsciiMetadataValue, String> {
    let mut v = AsciiMetadataValue::try_from(text)
        .map_err(|_| "value must be visible ASCII (no control characters)".to_owned())?;
    v.set_sensitive(true);
    Ok(v)
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let md = std::fs::metadata(path)?;
    Ok((md.modified()?, md.len()))
}

fn read_value(path: &Path, prefix: &str) -> Result<AsciiMetadataValue, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    value(&format!("{prefix}{text}")).map_err(|e| format!("{}: {e}", path.display()))
}

impl FileValue {
    fn load(path: &Path, prefix: &'static str) -> Result<Self, String> {
        let st = stamp(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value = read_value(path, prefix)?;
        Ok(FileValue {
            path: path.to_owned(),
            prefix,
            state: Mutex::new(FileState {
                stamp: Some(st),
                value,
                failed_stamp: None,
            }),
        })
    }

    /// The value to send now: re-read if the file changed since last time.
    fn current(&self) -> AsciiMetadataValue {
        let mut st = self.state.lock();
        let now = stamp(&self.path).ok();
        if now.is_some() && now != st.stamp && now != st.failed_stamp {
            match read_value(&self.path, self.prefix) {
                Ok(v) => {
                    st.value = v;
                    st.stamp = now;
                    st.failed_stamp = None;
                    tracing::info!(file = %self.path.display(), "exporter credential file changed; reloaded");
                }
                Err(e) => {
                    st.failed_stamp = now;
                    tracing::warn!(error = %e, "exporter credential file changed but could not be reloaded; still sending the previous value");
                }
            }
        }
        st.value.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(c: &Credentials) -> MetadataMap {
        let mut m = MetadataMap::new();
        c.apply(&mut m);
        m
    }

    #[test]
    fn token_file_is_reloaded_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "first\n").unwrap();
        let mut cfg = ExporterConfig::new("http://d:4317");
        cfg.bearer_token_file = Some(token.clone());
        let c = Credentials::resolve(&cfg, "exporter").unwrap();
        assert_eq!(md(&c).get("authorization").unwrap(), "Bearer first");

        // A rotation changes the size here; mtime granularity alone could
        // hide a same-second rewrite on some filesystems.
        std::fs::write(&token, "second-token").unwrap();
        assert_eq!(md(&c).get("authorization").unwrap(), "Bearer second-token");

        // A broken rewrite keeps the last good token.
        std::fs::write(&token, "").unwrap();
        assert_eq!(md(&c).get("authorization").unwrap(), "Bearer second-token");
        assert!(md(&c).get("authorization").unwrap().is_sensitive());
    }

    #[test]
    fn unresolvable_sources_name_their_field() {
        let mut cfg = ExporterConfig::new("http://d:4317");
        cfg.bearer_token_file = Some("/nonexistent/argus-token".into());
        cfg.headers.insert(
            "x-key".into(),
            HeaderValueSource::Env(FromEnv {
                env: "ARGUS_TEST_SURELY_UNSET_VARIABLE".into(),
            }),
        );
        let p = Credentials::resolve(&cfg, "exporter").unwrap_err();
        assert!(
            p[0].starts_with("exporter.bearer_token_file: cannot read"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("exporter.headers.x-key: env: variable"),
            "{p:?}"
        );
    }
}
