//! What an operator writes under `exporter:`, and every way it can be wrong.
//!
//! Static checks live in [`ExporterConfig::problems`] (no I/O, so a config
//! check can run them on any machine); [`ExporterConfig::build`]
//! adds what only the node can tell (unreadable certificate, unset token
//! variable) and reports all of it at once, each problem naming its field.
//!
//! ```yaml
//! exporter:
//!   endpoint: https://argus-detector.observability:4317
//!   compression: zstd            # (default) or gzip, none
//!   bearer_token_file: /var/run/secrets/argus/token
//!   headers:
//!     x-scope-orgid: payments     # literal
//!     x-api-key: { env: DETECTOR_API_KEY }
//!     x-tenant: { file: /etc/argus/tenant }
//!   tls:
//!     ca_file: /etc/argus/tls/ca.crt
//!     cert_file: /etc/argus/tls/tls.crt   # mTLS: both or neither
//!     key_file: /etc/argus/tls/tls.key
//!     server_name: argus-detector         # when the certificate names another host
//!   timeout: 10s
//!   retry: { initial_interval: 500ms, max_interval: 30s, multiplier: 2 }
//!   concurrency: 4
//!   max_request_bytes: 4194304
//! ```
//!
//! There is deliberately no `insecure_skip_verify`: an `https://` endpoint is
//! always verified (against `ca_file`, or the node's CA store), and a
//! plaintext hop is spelled `http://` where everyone can see it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use argus_common::backoff::BackoffConfig;
use serde::{Deserialize, Serialize};
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

/// The default of `max_request_bytes`: the gRPC default receive limit (4 MiB)
/// of the detector, the OTel Collector and most gRPC servers. The limit is
/// inclusive and our size accounting only over-estimates, so requests built
/// to this bound are accepted.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Below this a request could not even hold a typical resource's attributes.
const MIN_MAX_REQUEST_BYTES: usize = 1024;

/// Above this many in-flight requests a single HTTP/2 connection stops
/// helping and starts hurting the endpoint.
const MAX_CONCURRENCY: usize = 1024;

/// How the agent ships OTLP to the detector or any OTLP/gRPC endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// `http://host:port` (plaintext) or `https://host:port` (TLS). No path:
    /// OTLP/gRPC routes by service name.
    pub endpoint: String,
    /// Request compression. zstd or gzip shrink OTLP 5–10×; an endpoint
    /// that cannot decompress the one chosen is detected and the exporter
    /// steps down (zstd → gzip → none) by itself (logged), rather than
    /// dropping data.
    #[serde(default)]
    pub compression: Compression,
    /// Extra gRPC metadata on every request (tenant IDs, API keys). Values
    /// are literals, `{ env: NAME }` or `{ file: PATH }` (re-read when the
    /// file changes). Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValueSource>,
    /// File holding a bearer token, sent as `authorization: Bearer …`.
    /// Re-read when it changes, so rotated Kubernetes projected tokens work.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Environment variable holding a bearer token (read once at start).
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// TLS settings for an `https://` endpoint.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Deadline of one request attempt (also sent as `grpc-timeout`).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// When and how long to retry retryable failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Requests in flight at once, across all signals.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Largest request sent, in protobuf bytes before compression; larger
    /// payloads are split by resource, scope and item.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_concurrency() -> usize {
    4
}

fn default_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}

/// Request compression (gRPC message compression).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Cheapest per byte for the best ratio; the OpenTelemetry Collector's
    /// receivers and the detector take it.
    #[default]
    Zstd,
    /// What every OTLP receiver takes.
    Gzip,
    None,
}

impl Compression {
    pub fn encoding(self) -> Option<tonic::codec::CompressionEncoding> {
        match self {
            Compression::Zstd => Some(tonic::codec::CompressionEncoding::Zstd),
            Compression::Gzip => Some(tonic::codec::CompressionEncoding::Gzip),
            Compression::None => None,
        }
    }

    /// The `grpc-encoding` value, if any.
    pub fn encoding_name(self) -> Option<&'static str> {
        match self {
            Compression::Zstd => Some("zstd"),
            Compression::Gzip => Some("gzip"),
            Compression::None => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.encoding_name().unwrap_or("none")
    }
}

/// Where a header value comes from. Its `Debug` never shows a literal value:
/// header values are routinely API keys.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValueSource {
    Literal(String),
    Env(FromEnv),
    File(FromFile),
}

/// `{ env: NAME }`: the value of an environment variable, read at start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromEnv {
    pub env: String,
}

/// `{ file: PATH }`: a file's content (surrounding whitespace trimmed),
/// re-read whenever the file changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromFile {
    pub file: PathBuf,
}

impl std::fmt::Debug for HeaderValueSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderValueSource::Literal(_) => f.write_str("Literal(<redacted>)"),
            HeaderValueSource::Env(e) => e.fmt(f),
            HeaderValueSource::File(p) => p.fmt(f),
        }
    }
}

/// TLS for `https://` endpoints. Every field is optional: with none set the
/// server is verified against the node's CA store (`SSL_CERT_FILE` /
/// `SSL_CERT_DIR` are honoured).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM bundle of the CAs that may sign the server's certificate; replaces
    /// the node's CA store (a private detector CA should not also trust the
    /// public web).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mTLS (needs `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name to verify the server's certificate against (and send as SNI)
    /// instead of the endpoint's host.
    pub server_name: Option<String>,
}

impl TlsConfig {
    fn is_empty(&self) -> bool {
        *self == TlsConfig::default()
    }
}

/// Retry timing (as the OTel Collector's `retry_on_failure`) and its limit.
///
/// The default retries retryable failures **forever**: a durable disk queue
/// stands behind the exporter, so giving up would turn a detector outage into
/// data loss while the queue still has room; the queue's own size cap is what
/// bounds an outage. Permanent failures are never retried. Set `max_elapsed`
/// only for an exporter without a durable queue behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First retry's delay ceiling.
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Ceiling of any single delay, also of a server's RetryInfo hint.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Growth of the ceiling per attempt.
    pub multiplier: f64,
    /// Give up (and count the data as dropped, reason `retries_exhausted`)
    /// when the next retry would start later than this after the first
    /// attempt. Unset: retry forever.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Option<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let b = BackoffConfig::default();
        RetryConfig {
            initial_interval: b.initial_interval,
            max_interval: b.max_interval,
            multiplier: b.multiplier,
            max_elapsed: None,
        }
    }
}

impl RetryConfig {
    pub fn backoff(&self) -> BackoffConfig {
        BackoffConfig {
            initial_interval: self.initial_interval,
            max_interval: self.max_interval,
            multiplier: self.multiplier,
        }
    }

    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = self.backoff().problems(path);
        if self.max_elapsed.is_some_and(|d| d.is_zero()) {
            out.push(format!(
                "{path}.max_elapsed: must be greater than 0 (omit it to retry forever)"
            ));
        }
        out
    }
}

impl Default for ExporterConfig {
    /// The in-cluster detector (plaintext; set `https://` and `tls` for TLS).
    fn default() -> Self {
        ExporterConfig::new("http://argus-detector:4317")
    }
}

/// Metadata the exporter sets itself (or that HTTP/2 owns); a user header of
/// the same name would corrupt the request.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "te",
    "user-agent",
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

impl ExporterConfig {
    /// Defaults for everything but the endpoint.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ExporterConfig {
            endpoint: endpoint.into(),
            compression: Compression::default(),
            headers: BTreeMap::new(),
            bearer_token_file: None,
            bearer_token_env: None,
            tls: TlsConfig::default(),
            timeout: default_timeout(),
            retry: RetryConfig::default(),
            concurrency: default_concurrency(),
            max_request_bytes: default_max_request_bytes(),
        }
    }

    /// Every problem a look at the config alone can find, each prefixed with
    /// its field path under `path` (e.g. `exporter.tls.key_file: …`).
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        let scheme = endpoint_problems(&self.endpoint, &format!("{path}.endpoint"), &mut out);

        if scheme == Some(Scheme::Http) && !self.tls.is_empty() {
            out.push(format!(
                "{path}.tls: set, but the endpoint is http:// (plaintext); use https:// to enable TLS"
            ));
        }
        let tls = &self.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(_), None) => out.push(format!(
                "{path}.tls.key_file: required with tls.cert_file (mTLS needs both)"
            )),
            (None, Some(_)) => out.push(format!(
                "{path}.tls.cert_file: required with tls.key_file (mTLS needs both)"
            )),
            _ => {}
        }
        for (field, file) in [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ] {
            if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
                out.push(format!("{path}.tls.{field}: empty path"));
            }
        }
        if let Some(name) = &tls.server_name
            && let Err(e) = rustls::pki_types::ServerName::try_from(name.as_str())
        {
            out.push(format!(
                "{path}.tls.server_name: `{name}` is not a DNS name or IP address: {e}"
            ));
        }

        let has_token = self.bearer_token_file.is_some() || self.bearer_token_env.is_some();
        if self.bearer_token_file.is_some() && self.bearer_token_env.is_some() {
            out.push(format!(
                "{path}.bearer_token_env: set together with bearer_token_file; choose one"
            ));
        }
        if self
            .bearer_token_file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            out.push(format!("{path}.bearer_token_file: empty path"));
        }
        if self.bearer_token_env.as_ref().is_some_and(|e| e.is_empty()) {
            out.push(format!("{path}.bearer_token_env: empty variable name"));
        }

        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in &self.headers {
            let field = format!("{path}.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if !seen.insert(lower.clone()) {
                out.push(format!(
                    "{field}: duplicate header (names are case-insensitive)"
                ));
            }
            if lower.ends_with("-bin") {
                out.push(format!(
                    "{field}: binary (-bin) metadata is not supported; use a text header"
                ));
            } else if AsciiMetadataKey::from_bytes(lower.as_bytes()).is_err() {
                out.push(format!("{field}: not a valid gRPC metadata name"));
            } else if lower.starts_with("grpc-") || RESERVED_HEADERS.contains(&lower.as_str()) {
                out.push(format!("{field}: reserved; the exporter sets it itself"));
            } else if lower == "authorization" && has_token {
                out.push(format!(
                    "{field}: conflicts with bearer_token_file/bearer_token_env; use one"
                ));
            }
            match value {
                HeaderValueSource::Literal(v)
                    if AsciiMetadataValue::try_from(v.as_str()).is_err() =>
                {
                    out.push(format!(
                        "{field}: value must be visible ASCII (no control characters)"
                    ));
                }
                HeaderValueSource::Env(FromEnv { env }) if env.is_empty() => {
                    out.push(format!("{field}.env: empty variable name"));
                }
                HeaderValueSource::File(FromFile { file }) if file.as_os_str().is_empty() => {
                    out.push(format!("{field}.file: empty path"));
                }
                _ => {}
            }
        }

        if self.timeout.is_zero() {
            out.push(format!("{path}.timeout: must be greater than 0"));
        }
        out.extend(self.retry.problems(&format!("{path}.retry")));
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            out.push(format!(
                "{path}.concurrency: must be between 1 and {MAX_CONCURRENCY} (got {})",
                self.concurrency
            ));
        }
        if self.max_request_bytes < MIN_MAX_REQUEST_BYTES {
            out.push(format!(
                "{path}.max_request_bytes: must be at least {MIN_MAX_REQUEST_BYTES} (got {})",
                self.max_request_bytes
            ));
        }
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The scheme of a valid endpoint.
    pub(crate) fn of(endpoint: &str) -> Option<Scheme> {
        endpoint_problems(endpoint, "", &mut Vec::new())
    }
}

/// Checks the endpoint; returns its scheme when that much is valid.
fn endpoint_problems(endpoint: &str, field: &str, out: &mut Vec<String>) -> Option<Scheme> {
    let uri = match endpoint.parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(e) => {
            out.push(format!("{field}: not a valid URI: {e}"));
            return None;
        }
    };
    let scheme = match uri.scheme_str() {
        Some("http") => Some(Scheme::Http),
        Some("https") => Some(Scheme::Https),
        Some(other) => {
            out.push(format!(
                "{field}: scheme `{other}` unsupported; use http:// (plaintext) or https:// (TLS)"
            ));
            None
        }
        None => {
            out.push(format!(
                "{field}: missing scheme; write http://{endpoint} (plaintext) or https://{endpoint} (TLS)"
            ));
            None
        }
    };
    match uri.authority() {
        None => out.push(format!("{field}: missing host")),
        Some(a) if a.host().is_empty() => out.push(format!("{field}: missing host")),
        Some(a) if a.as_str().contains('@') => out.push(format!(
            "{field}: credentials in the URL are not supported; use bearer_token_file or headers"
        )),
        Some(_) => {}
    }
    if let Some(pq) = uri.path_and_query() {
        let path = pq.path();
        if !(path.is_empty() || path == "/") || pq.query().is_some() {
            out.push(format!(
                "{field}: OTLP/gRPC endpoints take no path or query (got `{pq}`; is this an OTLP/HTTP URL?)"
            ));
        }
    }
    scheme
}

/// Whether the endpoint's host is this machine (a token sent in plaintext
/// there never crosses a network).
pub(crate) fn is_loopback(endpoint: &str) -> bool {
    endpoint
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Result<ExporterConfig, serde_yaml::Error> {
        serde_yaml::from_str(s)
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = yaml("endpoint: http://detector:4317").unwrap();
        assert_eq!(c, ExporterConfig::new("http://detector:4317"));
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.concurrency, 4);
        assert_eq!(c.max_request_bytes, 4 << 20);
        assert_eq!(c.retry.max_elapsed, None, "retry forever by default");
        assert!(c.problems("exporter").is_empty());
    }

    #[test]
    fn full_config_parses() {
        let c = yaml(
            r#"
endpoint: https://detector:4317
compression: none
bearer_token_file: /var/run/token
headers:
  x-scope-orgid: payments
  x-api-key: { env: API_KEY }
  x-tenant: { file: /etc/tenant }
tls: { ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, server_name: detector }
timeout: 3s
retry: { initial_interval: 1s, max_interval: 1m, multiplier: 1.5, max_elapsed: 10m }
concurrency: 8
max_request_bytes: 1048576
"#,
        )
        .unwrap();
        assert!(
            c.problems("exporter").is_empty(),
            "{:?}",
            c.problems("exporter")
        );
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.retry.max_elapsed, Some(Duration::from_secs(600)));
        assert_eq!(
            c.headers["x-api-key"],
            HeaderValueSource::Env(FromEnv {
                env: "API_KEY".into()
            })
        );
        assert_eq!(
            c.headers["x-tenant"],
            HeaderValueSource::File(FromFile {
                file: "/etc/tenant".into()
            })
        );
    }

    #[test]
    fn unknown_fields_and_insecure_skip_verify_are_refused() {
        assert!(yaml("endpoint: http://d:4317\nendpiont: x").is_err());
        let e = yaml("endpoint: https://d:4317\ntls: { insecure_skip_verify: true }").unwrap_err();
        assert!(e.to_string().contains("insecure_skip_verify"), "{e}");
        assert!(yaml("endpoint: http://d:4317\ncompression: snappy").is_err());
        assert!(yaml("compression: gzip").is_err(), "endpoint is required");
    }

    #[test]
    fn literal_header_values_never_show_in_debug() {
        let mut c = ExporterConfig::new("http://d:4317");
        c.headers.insert(
            "x-api-key".into(),
            HeaderValueSource::Literal("s3cr3t".into()),
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut c = ExporterConfig::new("http://detector:4317/v1/traces");
        c.tls.cert_file = Some("/c.pem".into());
        c.tls.server_name = Some("not a name!".into());
        c.bearer_token_file = Some("/t".into());
        c.bearer_token_env = Some("TOKEN".into());
        c.headers.insert(
            "authorization".into(),
            HeaderValueSource::Literal("x".into()),
        );
        c.headers.insert(
            "grpc-timeout".into(),
            HeaderValueSource::Literal("1S".into()),
        );
        c.headers
            .insert("x-bad".into(), HeaderValueSource::Literal("a\nb".into()));
        c.headers
            .insert("x-key-bin".into(), HeaderValueSource::Literal("a".into()));
        c.headers
            .insert("X-Dup".into(), HeaderValueSource::Literal("a".into()));
        c.headers
            .insert("x-dup".into(), HeaderValueSource::Literal("a".into()));
        c.headers.insert(
            "x-empty".into(),
            HeaderValueSource::Env(FromEnv { env: String::new() }),
        );
        c.timeout = Duration::ZERO;
        c.retry.multiplier = 0.0;
        c.retry.max_elapsed = Some(Duration::ZERO);
        c.concurrency = 0;
        c.max_request_bytes = 10;
        let p = c.problems("exporter");
        for field in [
            "exporter.endpoint: OTLP/gRPC endpoints take no path",
            "exporter.tls: set, but the endpoint is http://",
            "exporter.tls.key_file: required",
            "exporter.tls.server_name:",
            "exporter.bearer_token_env: set together",
            "exporter.headers.authorization: conflicts",
            "exporter.headers.grpc-timeout: reserved",
            "exporter.headers.x-bad: value must be visible ASCII",
            "exporter.headers.x-key-bin: binary",
            "exporter.headers.x-dup: duplicate",
            "exporter.headers.x-empty.env: empty",
            "exporter.timeout:",
            "exporter.retry.multiplier:",
            "exporter.retry.max_elapsed:",
            "exporter.concurrency:",
            "exporter.max_request_bytes:",
        ] {
            assert!(
                p.iter().any(|m| m.starts_with(field)),
                "missing `{field}` in {p:#?}"
            );
        }
    }

    #[test]
    fn endpoint_shapes() {
        let bad = |e: &str| ExporterConfig::new(e).problems("x");
        assert!(
            bad("detector:4317")[0].contains("missing scheme"),
            "{:?}",
            bad("detector:4317")
        );
        assert!(bad("ftp://detector:4317")[0].contains("scheme `ftp`"));
        assert!(bad("http://user:pw@detector:4317")[0].contains("credentials"));
        assert!(bad("http://detector:4317/?a=b")[0].contains("no path or query"));
        assert!(bad("http://detector:4317/").is_empty());
        assert!(bad("https://[::1]:4317").is_empty());
        assert!(bad("http://10.0.0.1").is_empty());
    }
}
