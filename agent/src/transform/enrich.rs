//! Resource attributes that say where data came from: `host.name`,
//! `k8s.node.name` and configured static attributes.
//!
//! Resolved once at build time (the node does not change under a running
//! agent), then added to every resource that lacks them; an attribute the
//! source already set (an SDK's own `host.name`) always wins.
//!
//! `host.name` is the configured `host_name`, else the kernel's hostname.
//! In a pod without `hostNetwork` the kernel hostname is the *pod's* name:
//! the DaemonSet should pass the node name (downward API `spec.nodeName`)
//! as `host_name` or run with `hostNetwork: true`. `k8s.node.name` is the
//! configured `node_name`, else `K8S_NODE_NAME`, else `NODE_NAME`.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};

use super::string_kv;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    pub enabled: bool,
    /// `host.name`; default: the kernel's hostname.
    pub host_name: Option<String>,
    /// `k8s.node.name`; default: env `K8S_NODE_NAME`, then `NODE_NAME`.
    pub node_name: Option<String>,
    /// Static resource attributes (`deployment.environment: prod`).
    pub attributes: BTreeMap<String, String>,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            enabled: true,
            host_name: None,
            node_name: None,
            attributes: BTreeMap::new(),
        }
    }
}

impl EnrichConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (field, v) in [
            ("host_name", &self.host_name),
            ("node_name", &self.node_name),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push(format!(
                    "{path}.{field}: must not be empty (omit it to detect)"
                ));
            }
        }
        for k in self.attributes.keys() {
            if k.trim().is_empty() {
                out.push(format!("{path}.attributes: empty attribute name"));
            }
        }
        out
    }

    pub fn build(&self) -> Enrich {
        self.build_with(|k| std::env::var(k).ok(), hostname)
    }

    /// [`build`](Self::build) with the environment and hostname lookups
    /// injected (tests).
    pub fn build_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
        hostname: impl Fn() -> Option<String>,
    ) -> Enrich {
        let mut attrs = Vec::new();
        let host = self.host_name.clone().or_else(hostname);
        match host {
            Some(h) if !h.is_empty() => attrs.push(string_kv("host.name", h)),
            _ => {
                tracing::warn!("enrich: cannot determine the host name; host.name will not be set")
            }
        }
        let node = self
            .node_name
            .clone()
            .or_else(|| env("K8S_NODE_NAME"))
            .or_else(|| env("NODE_NAME"))
            .filter(|n| !n.is_empty());
        if let Some(n) = node {
            attrs.push(string_kv("k8s.node.name", n));
        }
        for (k, v) in &self.attributes {
            if !attrs.iter().any(|a| &a.key == k) {
                attrs.push(string_kv(k, v.clone()));
            }
        }
        Enrich { attrs }
    }
}

/// The kernel's hostname (`gethostname(2)`).
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Built [`EnrichConfig`].
#[derive(Clone, Debug)]
pub struct Enrich {
    attrs: Vec<KeyValue>,
}

impl Enrich {
    /// The attributes this adds (where missing).
    pub fn attributes(&self) -> &[KeyValue] {
        &self.attrs
    }

    pub fn apply(&self, resource: &mut Option<Resource>) {
        let r = resource.get_or_insert_with(Resource::default);
        for a in &self.attrs {
            if !r.attributes.iter().any(|have| have.key == a.key) {
                r.attributes.push(a.clone());
            }
        }
    }
}
