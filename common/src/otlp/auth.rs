//! Bearer-token authentication for both transports.
//!
//! Tokens are never stored, compared, logged or counted in the clear: the
//! store keeps their SHA-256 digests, a presented token is hashed, and the
//! digests are compared with `subtle`'s constant-time equality against
//! *every* configured token (no early exit), so neither the position of a
//! mismatch nor which token matched leaks through timing. Hashing first also
//! hides the tokens' lengths.
//!
//! A token file is re-read every `token_reload_interval` while the receiver serves; a
//! failed or empty re-read keeps the previous tokens and says so in the log,
//! because refusing every client over a half-written Secret would be an
//! outage made by the auth layer itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::AuthConfig;
use crate::shutdown::Shutdown;

/// The current token digests; the lock is held for an `Arc` clone only.
struct Current(std::sync::RwLock<Digests>);

impl Current {
    fn new(v: Digests) -> Self {
        Self(std::sync::RwLock::new(v))
    }
    fn get(&self) -> Digests {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set(&self, v: Digests) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = v;
    }
}

type Digests = Arc<Vec<[u8; 32]>>;

/// The verdict on one request's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A configured token matched.
    Valid,
    /// No `authorization` header, or not a `Bearer` one.
    Missing,
    /// A bearer token that matches none of ours.
    Invalid,
}

impl AuthOutcome {
    /// Text for the client (never contains the token).
    pub fn message(self) -> &'static str {
        match self {
            AuthOutcome::Valid => "authenticated",
            AuthOutcome::Missing => "missing bearer token (authorization: Bearer <token>)",
            AuthOutcome::Invalid => "invalid bearer token",
        }
    }
}

enum Source {
    File(PathBuf),
    Env,
}

/// The configured tokens, checked per request.
pub struct BearerAuth {
    digests: Current,
    source: Source,
    reload_interval: Duration,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the digests either.
        f.debug_struct("BearerAuth")
            .field("tokens", &self.digests.get().len())
            .finish()
    }
}

impl BearerAuth {
    /// Loads the tokens, or says which field is wrong (`{path}.token_file: …`).
    pub fn load(cfg: &AuthConfig, path: &str) -> Result<Self, String> {
        let (source, digests) = match (&cfg.token_file, &cfg.token_env) {
            (Some(file), None) => {
                let d = read_file(file).map_err(|e| format!("{path}.token_file: {e}"))?;
                (Source::File(file.clone()), d)
            }
            (None, Some(var)) => {
                let value = std::env::var(var)
                    .map_err(|e| format!("{path}.token_env: environment variable {var}: {e}"))?;
                let token = value.trim();
                if token.is_empty() {
                    return Err(format!(
                        "{path}.token_env: environment variable {var} is empty"
                    ));
                }
                validate_token(token).map_err(|e| format!("{path}.token_env: {var}: {e}"))?;
                (Source::Env, vec![digest(token.as_bytes())])
            }
            _ => return Err(format!("{path}: set exactly one of token_file, token_env")),
        };
        Ok(Self {
            digests: Current::new(Arc::new(digests)),
            source,
            reload_interval: cfg.token_reload_interval,
        })
    }

    /// Checks an `authorization` header value.
    pub fn check(&self, header: Option<&HeaderValue>) -> AuthOutcome {
        let Some(token) = header.and_then(|h| bearer_token(h.as_bytes())) else {
            return AuthOutcome::Missing;
        };
        let presented = digest(token);
        let mut matched = subtle::Choice::from(0u8);
        for d in self.digests.get().iter() {
            matched |= d.ct_eq(&presented);
        }
        if bool::from(matched) {
            AuthOutcome::Valid
        } else {
            AuthOutcome::Invalid
        }
    }

    /// Re-reads a token file; returns how many tokens it now holds. Keeps the
    /// old tokens on failure.
    pub fn reload(&self) -> Result<usize, String> {
        match &self.source {
            Source::Env => Ok(self.digests.get().len()),
            Source::File(file) => {
                let d = read_file(file)?;
                let n = d.len();
                self.digests.set(Arc::new(d));
                Ok(n)
            }
        }
    }

    /// Re-reads the token file every `token_reload_interval` until shutdown.
    pub(crate) async fn run_reloader(self: Arc<Self>, shutdown: Shutdown, failures: Counter) {
        let Source::File(file) = &self.source else {
            return;
        };
        let mut tick = tokio::time::interval(self.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reload() {
                failures.inc();
                tracing::warn!(
                    file = %file.display(),
                    error = %e,
                    "could not re-read the bearer token file; keeping the previous tokens"
                );
            }
        }
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// `Bearer <token>`: scheme case-insensitive (RFC 7235), one or more spaces.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn validate_token(token: &str) -> Result<(), String> {
    // A token with control characters or inner whitespace could never be sent
    // in a header; refusing it at load beats refusing every client later.
    if token
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii())
    {
        return Err("token must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn read_file(file: &std::path::Path) -> Result<Vec<[u8; 32]>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        validate_token(line).map_err(|e| format!("{} line {}: {e}", file.display(), i + 1))?;
        out.push(digest(line.as_bytes()));
    }
    if out.is_empty() {
        return Err(format!("{}: no token in file", file.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn bearer_header_is_parsed_like_rfc_6750() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }

    #[test]
    fn any_token_in_the_file_is_accepted_and_reload_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "# rotation in progress\nold-token\n\nnew-token\n").unwrap();
        let auth = BearerAuth::load(&AuthConfig::from_file(&file), "auth").unwrap();
        assert_eq!(
            auth.check(Some(&hv("Bearer old-token"))),
            AuthOutcome::Valid
        );
        assert_eq!(
            auth.check(Some(&hv("Bearer new-token"))),
            AuthOutcome::Valid
        );
        assert_eq!(
            auth.check(Some(&hv("Bearer new-token2"))),
            AuthOutcome::Invalid
        );
        assert_eq!(auth.check(None), AuthOutcome::Missing);
        assert_eq!(
            auth.check(Some(&hv("Basic bmV3LXRva2Vu"))),
            AuthOutcome::Missing
        );

        std::fs::write(&file, "new-token\n").unwrap();
        assert_eq!(auth.reload(), Ok(1));
        assert_eq!(
            auth.check(Some(&hv("Bearer old-token"))),
            AuthOutcome::Invalid
        );
        // A broken re-read keeps what worked.
        std::fs::write(&file, "\n# nothing\n").unwrap();
        assert!(auth.reload().is_err());
        assert_eq!(
            auth.check(Some(&hv("Bearer new-token"))),
            AuthOutcome::Valid
        );
    }

    #[test]
    fn load_errors_name_the_field_and_never_the_token() {
        let e = BearerAuth::load(&AuthConfig::from_file("/nonexistent/argus-token"), "x.auth")
            .unwrap_err();
        assert!(e.starts_with("x.auth.token_file: cannot read"), "{e}");
        let e = BearerAuth::load(
            &AuthConfig::from_env("ARGUS_TEST_SURELY_UNSET_VAR"),
            "x.auth",
        )
        .unwrap_err();
        assert!(e.starts_with("x.auth.token_env:"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret with-space\n").unwrap();
        let e = BearerAuth::load(&AuthConfig::from_file(&file), "a").unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        let auth = BearerAuth::load(
            &AuthConfig::from_file({
                std::fs::write(&file, "s3cret\n").unwrap();
                &file
            }),
            "a",
        )
        .unwrap();
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
