//! What users write to configure the OTLP receivers.
//!
//! Field names and defaults follow the OpenTelemetry Collector's
//! `otlpreceiver` wherever it has an equivalent, so a Collector config
//! translates line by line:
//!
//! ```yaml
//! grpc:
//!   endpoint: 0.0.0.0:4317          # default
//!   max_recv_msg_size_mib: 4        # default, as grpc-go / the Collector
//!   tls:                            # optional
//!     cert_file: /etc/argus/tls/tls.crt
//!     key_file: /etc/argus/tls/tls.key
//!     client_ca_file: /etc/argus/tls/ca.crt   # → client certificates required
//! http:
//!   endpoint: 0.0.0.0:4318          # default
//!   max_request_body_size: 20971520 # bytes, default 20 MiB (the Collector's)
//!   traces_url_path: /v1/traces     # defaults shown
//!   metrics_url_path: /v1/metrics
//!   logs_url_path: /v1/logs
//! auth:
//!   token_file: /var/run/secrets/argus/token  # or token_env: ARGUS_TOKEN
//! shutdown_grace: 10s
//! ```
//!
//! Both servers are on by default; `grpc: null` or `http: null` turns one off
//! (unlike the Collector, where an unlisted protocol is off: a receiver that
//! silently listens on nothing is the worse surprise).
//!
//! Size limits apply twice: to the bytes on the wire *and* to the
//! decompressed message, so a compression bomb costs at most the limit in
//! memory and is refused as "too large" (gRPC `RESOURCE_EXHAUSTED`, HTTP 413).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The OTLP receivers (gRPC and HTTP) of one process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    /// OTLP/gRPC server; `null` disables it.
    pub grpc: Option<GrpcServerConfig>,
    /// OTLP/HTTP server (protobuf and JSON); `null` disables it.
    pub http: Option<HttpServerConfig>,
    /// Bearer-token authentication for both servers; absent = none.
    pub auth: Option<AuthConfig>,
    /// On shutdown: how long in-flight requests (and the consumer calls they
    /// started) get to finish before connections are cut.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        Self {
            grpc: Some(GrpcServerConfig::default()),
            http: Some(HttpServerConfig::default()),
            auth: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// OTLP/gRPC server settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcServerConfig {
    /// `host:port` to listen on (`:port` means all interfaces).
    pub endpoint: String,
    /// Largest accepted message, in MiB, before *and* after decompression.
    pub max_recv_msg_size_mib: u32,
    pub tls: Option<TlsServerConfig>,
}

impl Default for GrpcServerConfig {
    fn default() -> Self {
        Self {
            endpoint: "0.0.0.0:4317".into(),
            max_recv_msg_size_mib: 4,
            tls: None,
        }
    }
}

impl GrpcServerConfig {
    pub fn max_recv_msg_size_bytes(&self) -> usize {
        self.max_recv_msg_size_mib as usize * 1024 * 1024
    }
}

/// OTLP/HTTP server settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// `host:port` to listen on (`:port` means all interfaces).
    pub endpoint: String,
    /// Largest accepted request body in bytes, on the wire *and* after
    /// decompression.
    pub max_request_body_size: u64,
    pub traces_url_path: String,
    pub metrics_url_path: String,
    pub logs_url_path: String,
    pub tls: Option<TlsServerConfig>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        Self {
            endpoint: "0.0.0.0:4318".into(),
            max_request_body_size: 20 * 1024 * 1024,
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            tls: None,
        }
    }
}

/// Server-side TLS. With `client_ca_file`, clients must present a certificate
/// signed by that CA (mTLS); without it, any client may connect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version offered: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Bearer-token authentication: requests must carry
/// `authorization: Bearer <token>` (gRPC metadata or HTTP header).
///
/// Exactly one source. A token file may hold several tokens, one per line
/// (blank lines and `#` comments ignored), so a token can be rotated without
/// a window where either side is refused: add the new one, roll out the
/// clients, remove the old one. The file is re-read every
/// [`token_reload_interval`](Self::token_reload_interval), as a mounted
/// Kubernetes Secret changes in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Name of an environment variable holding the token (read once, at
    /// build).
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default = "default_token_reload", with = "humantime_serde")]
    pub token_reload_interval: Duration,
}

fn default_token_reload() -> Duration {
    Duration::from_secs(30)
}

impl AuthConfig {
    pub fn from_file(path: impl Into<PathBuf>) -> Self {
        Self {
            token_file: Some(path.into()),
            token_env: None,
            token_reload_interval: default_token_reload(),
        }
    }

    pub fn from_env(var: impl Into<String>) -> Self {
        Self {
            token_file: None,
            token_env: Some(var.into()),
            token_reload_interval: default_token_reload(),
        }
    }

    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.token_file, &self.token_env) {
            (None, None) => out.push(format!(
                "{path}: set one of token_file, token_env (or remove auth)"
            )),
            (Some(_), Some(_)) => out.push(format!(
                "{path}.token_env: token_file is also set; use one source"
            )),
            (Some(f), None) if f.as_os_str().is_empty() => {
                out.push(format!("{path}.token_file: empty path"))
            }
            (None, Some(v)) if v.is_empty() || v.contains('=') || v.contains('\0') => out.push(
                format!("{path}.token_env: not a valid variable name: {v:?}"),
            ),
            _ => {}
        }
        if self.token_file.is_some() && self.token_reload_interval < Duration::from_secs(1) {
            out.push(format!("{path}.token_reload_interval: must be at least 1s"));
        }
        out
    }
}

impl TlsServerConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.cert_file.as_os_str().is_empty() {
            out.push(format!("{path}.cert_file: empty path"));
        }
        if self.key_file.as_os_str().is_empty() {
            out.push(format!("{path}.key_file: empty path"));
        }
        if let Some(ca) = &self.client_ca_file
            && ca.as_os_str().is_empty()
        {
            out.push(format!("{path}.client_ca_file: empty path"));
        }
        out
    }
}

/// `host:port` → a string `TcpListener::bind` resolves; `:port` → all
/// interfaces (as Go's `net.Listen`, which Collector users are used to).
pub(crate) fn normalize_endpoint(endpoint: &str) -> Result<String, String> {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err("expected host:port".into());
    };
    port.parse::<u16>()
        .map_err(|_| format!("invalid port {port:?}"))?;
    if host.is_empty() {
        return Ok(format!("0.0.0.0:{port}"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("IPv6 addresses must be bracketed, e.g. [::]:4317".into());
    }
    if host.contains(['/', ' ', '@']) {
        return Err(format!("invalid host {host:?}"));
    }
    Ok(endpoint.to_string())
}

impl GrpcServerConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = normalize_endpoint(&self.endpoint) {
            out.push(format!("{path}.endpoint: {e}: {:?}", self.endpoint));
        }
        if self.max_recv_msg_size_mib == 0 || self.max_recv_msg_size_mib > 2048 {
            out.push(format!(
                "{path}.max_recv_msg_size_mib: must be between 1 and 2048 (got {})",
                self.max_recv_msg_size_mib
            ));
        }
        if let Some(tls) = &self.tls {
            out.extend(tls.problems(&format!("{path}.tls")));
        }
        out
    }
}

impl HttpServerConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = normalize_endpoint(&self.endpoint) {
            out.push(format!("{path}.endpoint: {e}: {:?}", self.endpoint));
        }
        if self.max_request_body_size == 0 || self.max_request_body_size > (2u64 << 30) {
            out.push(format!(
                "{path}.max_request_body_size: must be between 1 byte and 2 GiB (got {})",
                self.max_request_body_size
            ));
        }
        let paths = [
            ("traces_url_path", &self.traces_url_path),
            ("metrics_url_path", &self.metrics_url_path),
            ("logs_url_path", &self.logs_url_path),
        ];
        for (i, (name, p)) in paths.iter().enumerate() {
            if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
                out.push(format!(
                    "{path}.{name}: must be an absolute URL path like /v1/traces (got {p:?})"
                ));
            }
            if let Some((other, _)) = paths[..i].iter().find(|(_, q)| q == p) {
                out.push(format!("{path}.{name}: same as {other} ({p:?})"));
            }
        }
        if let Some(tls) = &self.tls {
            out.extend(tls.problems(&format!("{path}.tls")));
        }
        out
    }
}

impl OtlpReceiverConfig {
    /// Every problem in the config, each naming its field path.
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.grpc.is_none() && self.http.is_none() {
            out.push(format!(
                "{path}: both grpc and http are disabled; enable at least one"
            ));
        }
        if let Some(g) = &self.grpc {
            out.extend(g.problems(&format!("{path}.grpc")));
        }
        if let Some(h) = &self.http {
            out.extend(h.problems(&format!("{path}.http")));
        }
        if let (Some(g), Some(h)) = (&self.grpc, &self.http)
            && let (Ok(a), Ok(b)) = (
                normalize_endpoint(&g.endpoint),
                normalize_endpoint(&h.endpoint),
            )
            && a == b
            && !a.ends_with(":0")
        {
            out.push(format!(
                "{path}.http.endpoint: same as grpc.endpoint ({a}); they need separate ports"
            ));
        }
        if let Some(a) = &self.auth {
            out.extend(a.problems(&format!("{path}.auth")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_collectors() {
        let cfg: OtlpReceiverConfig = serde_yaml::from_str("{}").unwrap();
        let g = cfg.grpc.as_ref().unwrap();
        let h = cfg.http.as_ref().unwrap();
        assert_eq!(g.endpoint, "0.0.0.0:4317");
        assert_eq!(g.max_recv_msg_size_bytes(), 4 << 20);
        assert_eq!(h.endpoint, "0.0.0.0:4318");
        assert_eq!(h.max_request_body_size, 20 << 20);
        assert_eq!(h.traces_url_path, "/v1/traces");
        assert!(cfg.problems("otlp").is_empty());
    }

    #[test]
    fn null_disables_a_server_and_unknown_fields_are_refused() {
        let cfg: OtlpReceiverConfig = serde_yaml::from_str("grpc: null").unwrap();
        assert!(cfg.grpc.is_none() && cfg.http.is_some());
        let err = serde_yaml::from_str::<OtlpReceiverConfig>("grpc: {endpont: x}").unwrap_err();
        assert!(err.to_string().contains("endpont"), "{err}");
    }

    #[test]
    fn every_bad_field_is_named() {
        let yaml = r#"
grpc:
  endpoint: "localhost"
  max_recv_msg_size_mib: 0
  tls: {cert_file: "", key_file: k}
http:
  endpoint: ":70000"
  max_request_body_size: 0
  traces_url_path: v1/traces
  logs_url_path: /v1/metrics
auth:
  token_file: /t
  token_env: T
"#;
        let cfg: OtlpReceiverConfig = serde_yaml::from_str(yaml).unwrap();
        let p = cfg.problems("receivers.otlp");
        for field in [
            "receivers.otlp.grpc.endpoint:",
            "receivers.otlp.grpc.max_recv_msg_size_mib:",
            "receivers.otlp.grpc.tls.cert_file:",
            "receivers.otlp.http.endpoint:",
            "receivers.otlp.http.max_request_body_size:",
            "receivers.otlp.http.traces_url_path:",
            "receivers.otlp.http.logs_url_path: same as metrics_url_path",
            "receivers.otlp.auth.token_env:",
        ] {
            assert!(
                p.iter().any(|m| m.starts_with(field)),
                "{field} missing in {p:#?}"
            );
        }
        assert_eq!(p.len(), 8, "{p:#?}");
    }

    #[test]
    fn both_servers_off_or_on_one_port_is_a_problem() {
        let cfg = OtlpReceiverConfig {
            grpc: None,
            http: None,
            ..Default::default()
        };
        assert_eq!(cfg.problems("otlp").len(), 1);
        let mut cfg = OtlpReceiverConfig::default();
        cfg.http.as_mut().unwrap().endpoint = "0.0.0.0:4317".into();
        assert!(cfg.problems("otlp")[0].starts_with("otlp.http.endpoint: same as grpc"));
        // Port 0 twice is two ephemeral ports, which is fine (tests do it).
        cfg.grpc.as_mut().unwrap().endpoint = "127.0.0.1:0".into();
        cfg.http.as_mut().unwrap().endpoint = "127.0.0.1:0".into();
        assert!(cfg.problems("otlp").is_empty());
    }

    #[test]
    fn endpoints_normalize_like_go() {
        assert_eq!(normalize_endpoint(":4317").unwrap(), "0.0.0.0:4317");
        assert_eq!(normalize_endpoint("[::]:4317").unwrap(), "[::]:4317");
        assert!(normalize_endpoint("::1:4317").is_err());
        assert!(normalize_endpoint("host").is_err());
        assert!(normalize_endpoint("host:http").is_err());
    }

    #[test]
    fn auth_needs_exactly_one_source() {
        let none = AuthConfig {
            token_file: None,
            token_env: None,
            token_reload_interval: Duration::from_secs(30),
        };
        assert_eq!(none.problems("a").len(), 1);
        assert!(AuthConfig::from_env("ARGUS_TOKEN").problems("a").is_empty());
        assert!(!AuthConfig::from_env("A=B").problems("a").is_empty());
        let cfg: AuthConfig =
            serde_yaml::from_str("token_file: /t\ntoken_reload_interval: 5m").unwrap();
        assert_eq!(cfg.token_reload_interval, Duration::from_secs(300));
    }
}
