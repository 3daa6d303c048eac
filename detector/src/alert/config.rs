//! What an operator writes under `alerting.alertmanager:`, and every way it
//! can be wrong.
//!
//! ```yaml
//! alertmanager:
//!   urls:                         # every replica; each gets every alert
//!     - http://alertmanager-0.alertmanager:9093
//!     - http://alertmanager-1.alertmanager:9093
//!   resend_interval: 1m           # Prometheus' --rules.alert.resend-delay
//!   resolved_retention: 15m       # how long a resolved alert keeps being resent
//!   timeout: 10s                  # one POST attempt
//!   retry: { initial_interval: 500ms, max_interval: 30s, multiplier: 2 }
//!   queue_capacity: 10000         # distinct alerts waiting per replica
//!   max_batch_size: 64            # alerts per POST
//!   bearer_token_file: /var/run/secrets/argus/am-token
//!   # or: basic_auth: { username: argus, password_file: /etc/argus/am-password }
//!   tls: { ca_file: /etc/argus/tls/am-ca.crt }
//! ```
//!
//! A URL is an Alertmanager's base (what `amtool --alertmanager.url` takes,
//! including any `--web.route-prefix`); the client appends `api/v2/alerts`.
//! Credentials are files, re-read on every request so a rotated secret is
//! picked up, and never logged; a URL carrying `user:password@` is refused
//! because URLs end up in logs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use argus_common::backoff::BackoffConfig;
use reqwest::Url;
use serde::{Deserialize, Serialize};

/// Most alerts a single POST carries (Prometheus' notifier uses the same).
pub const DEFAULT_MAX_BATCH_SIZE: usize = 64;

/// Distinct alerts waiting per replica before the oldest is dropped
/// (Prometheus' `--alertmanager.notification-queue-capacity`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// How the detector talks to Alertmanager.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL of every Alertmanager replica. Replicas do not forward alerts
    /// to each other (their gossip shares silences and notification logs
    /// only), so each must receive every alert itself.
    #[serde(with = "url_list")]
    pub urls: Vec<Url>,
    /// Firing (and recently resolved) alerts are re-sent this often, with
    /// `endsAt = now + 4 × resend_interval`: an Alertmanager that restarted
    /// and forgot them learns them back within one interval, and one that
    /// stops hearing from the detector resolves them by itself after four.
    #[serde(default = "default_resend_interval", with = "humantime_serde")]
    pub resend_interval: Duration,
    /// A resolved alert keeps being re-sent (with its fixed `endsAt`) this
    /// long, so a replica that missed the resolution still learns it.
    #[serde(default = "default_resolved_retention", with = "humantime_serde")]
    pub resolved_retention: Duration,
    /// Deadline of one POST attempt.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Backoff between attempts to a replica that failed. Retries go on
    /// until the replica answers: only the newest state of each alert waits,
    /// so an outage costs no memory beyond `queue_capacity` alerts.
    #[serde(default)]
    pub retry: BackoffConfig,
    /// Distinct alerts waiting per replica; beyond it the oldest waiting
    /// alert is dropped (counted; it comes back with its next resend).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Alerts per POST.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// File holding a bearer token, sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// TLS for `https://` replicas.
    #[serde(default)]
    pub tls: TlsConfig,
}

/// Basic authentication; the password is read from a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password_file: PathBuf,
}

/// TLS settings. Without `ca_file` the bundled public web roots are used.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM bundle of the CAs that may sign the replicas' certificates;
    /// replaces the public roots (a private CA should not also trust the web).
    pub ca_file: Option<PathBuf>,
}

fn default_resend_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_resolved_retention() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_queue_capacity() -> usize {
    DEFAULT_QUEUE_CAPACITY
}

fn default_max_batch_size() -> usize {
    DEFAULT_MAX_BATCH_SIZE
}

impl Default for AlertmanagerConfig {
    /// No replica (alerting off) and Prometheus' timings.
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            resend_interval: default_resend_interval(),
            resolved_retention: default_resolved_retention(),
            timeout: default_timeout(),
            retry: BackoffConfig::default(),
            queue_capacity: default_queue_capacity(),
            max_batch_size: default_max_batch_size(),
            basic_auth: None,
            bearer_token_file: None,
            tls: TlsConfig::default(),
        }
    }
}

impl AlertmanagerConfig {
    /// The defaults with these replicas.
    pub fn new(urls: impl IntoIterator<Item = Url>) -> Self {
        Self {
            urls: urls.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Every static problem (no I/O), each naming its field under `path`.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.urls.is_empty() {
            out.push(format!(
                "{path}.urls: at least one Alertmanager URL is required"
            ));
        }
        for (i, url) in self.urls.iter().enumerate() {
            let field = format!("{path}.urls[{i}]");
            if !matches!(url.scheme(), "http" | "https") {
                out.push(format!(
                    "{field}: scheme must be http or https, not {:?}",
                    url.scheme()
                ));
            }
            if url.host_str().is_none() {
                out.push(format!("{field}: has no host"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                out.push(format!(
                    "{field}: credentials in the URL would be logged; use basic_auth.password_file"
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                out.push(format!(
                    "{field}: must be the Alertmanager's base URL, without query or fragment"
                ));
            }
        }
        if self.resend_interval.is_zero() {
            out.push(format!("{path}.resend_interval: must be greater than 0"));
        }
        if self.resolved_retention.is_zero() {
            out.push(format!("{path}.resolved_retention: must be greater than 0"));
        }
        if self.timeout.is_zero() {
            out.push(format!("{path}.timeout: must be greater than 0"));
        }
        out.extend(self.retry.problems(&format!("{path}.retry")));
        if self.queue_capacity == 0 {
            out.push(format!("{path}.queue_capacity: must be greater than 0"));
        }
        if self.max_batch_size == 0 {
            out.push(format!("{path}.max_batch_size: must be greater than 0"));
        }
        if self.basic_auth.is_some() && self.bearer_token_file.is_some() {
            out.push(format!(
                "{path}.bearer_token_file: set either basic_auth or bearer_token_file, not both"
            ));
        }
        if let Some(b) = &self.basic_auth
            && (b.username.is_empty() || b.username.contains(':'))
        {
            out.push(format!(
                "{path}.basic_auth.username: must be non-empty and contain no ':'"
            ));
        }
        out
    }

    /// What only the machine can tell: unreadable credential and CA files.
    pub(crate) fn file_problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(b) = &self.basic_auth
            && let Err(e) = read_secret(&b.password_file)
        {
            out.push(format!("{path}.basic_auth.password_file: {e}"));
        }
        if let Some(f) = &self.bearer_token_file
            && let Err(e) = read_secret(f)
        {
            out.push(format!("{path}.bearer_token_file: {e}"));
        }
        if let Some(ca) = &self.tls.ca_file {
            match std::fs::read(ca) {
                Ok(pem) => {
                    if reqwest::Certificate::from_pem_bundle(&pem).map_or(true, |c| c.is_empty()) {
                        out.push(format!(
                            "{path}.tls.ca_file: no PEM certificate in {}",
                            ca.display()
                        ));
                    }
                }
                Err(e) => out.push(format!(
                    "{path}.tls.ca_file: cannot read {}: {e}",
                    ca.display()
                )),
            }
        }
        out
    }
}

/// `Vec<Url>` as a list of strings (the `url` crate's serde feature is not
/// enabled in this workspace). A string that is not an absolute URL fails
/// deserialisation with the parser's reason and the list position.
mod url_list {
    use reqwest::Url;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(urls: &[Url], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(urls.iter().map(Url::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Url>, D::Error> {
        let raw: Vec<String> = Vec::deserialize(d)?;
        raw.iter()
            .enumerate()
            .map(|(i, s)| {
                Url::parse(s).map_err(|e| {
                    serde::de::Error::custom(format!("urls[{i}]: not an absolute URL: {e}"))
                })
            })
            .collect()
    }
}

/// A credential file's content, trimmed; the error never quotes the content.
pub(crate) fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_defaults_parses() {
        let cfg: AlertmanagerConfig =
            serde_yaml::from_str("urls: [http://am-0:9093, http://am-1:9093/prefix/]").unwrap();
        assert_eq!(cfg.urls.len(), 2);
        assert_eq!(cfg.resend_interval, Duration::from_secs(60));
        assert_eq!(cfg.resolved_retention, Duration::from_secs(900));
        assert!(cfg.problems("alertmanager").is_empty());
        let err = serde_yaml::from_str::<AlertmanagerConfig>("urls: []\nresend: 1m").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let cfg = AlertmanagerConfig {
            urls: vec![
                Url::parse("ftp://am:21").unwrap(),
                Url::parse("http://user:pw@am:9093").unwrap(),
                Url::parse("http://am:9093/?x=1").unwrap(),
            ],
            resend_interval: Duration::ZERO,
            resolved_retention: Duration::ZERO,
            timeout: Duration::ZERO,
            retry: BackoffConfig {
                initial_interval: Duration::ZERO,
                ..BackoffConfig::default()
            },
            queue_capacity: 0,
            max_batch_size: 0,
            basic_auth: Some(BasicAuth {
                username: String::new(),
                password_file: "/x".into(),
            }),
            bearer_token_file: Some("/y".into()),
            tls: TlsConfig::default(),
        };
        let p = cfg.problems("am");
        for field in [
            "am.urls[0]: scheme",
            "am.urls[1]: credentials",
            "am.urls[2]: must be",
            "am.resend_interval",
            "am.resolved_retention",
            "am.timeout",
            "am.retry.initial_interval",
            "am.queue_capacity",
            "am.max_batch_size",
            "am.bearer_token_file: set either",
            "am.basic_auth.username",
        ] {
            assert!(p.iter().any(|m| m.starts_with(field)), "{field} in {p:#?}");
        }
        assert!(
            !p.iter().any(|m| m.contains("pw")),
            "a URL password must never be echoed: {p:?}"
        );
        assert!(
            AlertmanagerConfig::default()
                .problems("am")
                .iter()
                .any(|m| m.starts_with("am.urls: at least one"))
        );
    }

    #[test]
    fn unreadable_files_are_named_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let mut cfg = AlertmanagerConfig::new([Url::parse("http://am:9093").unwrap()]);
        cfg.basic_auth = Some(BasicAuth {
            username: "argus".into(),
            password_file: empty,
        });
        cfg.tls.ca_file = Some(ca);
        let p = cfg.file_problems("am");
        assert!(p[0].starts_with("am.basic_auth.password_file: ") && p[0].ends_with("is empty"));
        assert!(
            p[1].starts_with("am.tls.ca_file: no PEM certificate"),
            "{p:?}"
        );
    }
}
