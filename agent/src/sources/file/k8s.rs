//! Kubernetes metadata from where the kubelet puts a container's log.
//!
//! - `…/pods/<namespace>_<pod>_<pod-uid>/<container>/<restart>.log` (and its
//!   rotated siblings `<restart>.log.<timestamp>`): namespace, pod, uid,
//!   container, restart count. Names cannot contain `_` (DNS-1123), so the
//!   split is unambiguous; the uid is a UUID or, for static pods, a 32-hex
//!   config hash.
//! - `…/containers/<pod>_<namespace>_<container>-<64-hex id>.log`, the
//!   kubelet's symlinks: pod, namespace, container, `container.id`. When such
//!   a symlink is what matched, its target is parsed too, for the uid and
//!   restart count.
//!
//! The path prefix is not checked, so a host mount at `/host/var/log/pods`
//! works. This costs nothing per line: it runs once per file, and the
//! result is the resource of every envelope from that file.

use std::path::Path;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};

use super::record::{kv, string_value};

/// What a log path says about its container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodLog {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
    pub restart_count: Option<u32>,
    pub container_id: Option<String>,
}

impl PodLog {
    /// Parses either path form; `None` for any other path.
    pub fn from_path(path: &Path) -> Option<PodLog> {
        pods_form(path).or_else(|| containers_form(path))
    }

    /// For a `/var/log/containers` symlink, completes the metadata from the
    /// `/var/log/pods` file it points to.
    pub fn from_path_resolving(path: &Path) -> Option<PodLog> {
        let found = PodLog::from_path(path);
        if found.as_ref().is_some_and(|p| p.uid.is_some()) {
            return found;
        }
        let target = std::fs::canonicalize(path).ok();
        match (found, target.as_deref().and_then(pods_form)) {
            (Some(mut link), Some(target)) => {
                link.uid = target.uid;
                link.restart_count = target.restart_count;
                Some(link)
            }
            (found, target) => found.or(target),
        }
    }

    /// OpenTelemetry resource attributes (`k8s.*`, `container.id`).
    pub fn attributes(&self) -> Vec<KeyValue> {
        let s = |v: &str| string_value(v.to_owned());
        let mut out = vec![
            kv("k8s.namespace.name", s(&self.namespace)),
            kv("k8s.pod.name", s(&self.pod)),
            kv("k8s.container.name", s(&self.container)),
        ];
        if let Some(uid) = &self.uid {
            out.push(kv("k8s.pod.uid", s(uid)));
        }
        if let Some(n) = self.restart_count {
            out.push(kv(
                "k8s.container.restart_count",
                AnyValue {
                    value: Some(Value::IntValue(i64::from(n))),
                },
            ));
        }
        if let Some(id) = &self.container_id {
            out.push(kv("container.id", s(id)));
        }
        out
    }
}

fn pods_form(path: &Path) -> Option<PodLog> {
    let file = path.file_name()?.to_str()?;
    let container_dir = path.parent()?;
    let container = container_dir.file_name()?.to_str()?;
    let pod_dir = container_dir.parent()?.file_name()?.to_str()?;
    let mut parts = pod_dir.split('_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_name(namespace) || !is_name(pod) || !is_name(container) {
        return None;
    }
    if !is_uid(uid) {
        return None;
    }
    // `<n>.log` or a rotated `<n>.log.<suffix>`.
    let (stem, _) = file.split_once(".log")?;
    let restart_count = stem.parse().ok()?;
    Some(PodLog {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        uid: Some(uid.to_owned()),
        container: container.to_owned(),
        restart_count: Some(restart_count),
        container_id: None,
    })
}

fn containers_form(path: &Path) -> Option<PodLog> {
    let file = path.file_name()?.to_str()?.strip_suffix(".log")?;
    let (rest, id) = file.rsplit_once('-')?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut parts = rest.split('_');
    let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_name(namespace) || !is_name(pod) || !is_name(container) {
        return None;
    }
    Some(PodLog {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        uid: None,
        container: container.to_owned(),
        restart_count: None,
        container_id: Some(id.to_owned()),
    })
}

/// DNS-1123 subdomain characters (pod names may contain dots).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn is_uid(s: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match s.len() {
        32 => hex(s),
        36 => {
            s.bytes().filter(|&b| b == b'-').count() == 4
                && hex(&s.replace('-', ""))
                && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "5e1c2f1a-8c3b-4d2e-9f0a-1b2c3d4e5f60";
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn path_table() {
        let pods = |ns: &str, pod: &str, c: &str, n: u32| PodLog {
            namespace: ns.into(),
            pod: pod.into(),
            uid: Some(UID.into()),
            container: c.into(),
            restart_count: Some(n),
            container_id: None,
        };
        let cases: Vec<(String, Option<PodLog>)> = vec![
            (
                format!("/var/log/pods/payments_api-7d9f8-x2x_{UID}/api/0.log"),
                Some(pods("payments", "api-7d9f8-x2x", "api", 0)),
            ),
            (
                format!("/host/var/log/pods/kube-system_coredns.a_{UID}/coredns/12.log"),
                Some(pods("kube-system", "coredns.a", "coredns", 12)),
            ),
            (
                format!("/var/log/pods/ns_p_{UID}/c/3.log.20240115-103000"),
                Some(pods("ns", "p", "c", 3)),
            ),
            (
                format!("/var/log/containers/api-1_payments_api-{ID}.log"),
                Some(PodLog {
                    namespace: "payments".into(),
                    pod: "api-1".into(),
                    uid: None,
                    container: "api".into(),
                    restart_count: None,
                    container_id: Some(ID.into()),
                }),
            ),
            // Static pod: the uid is a config hash.
            (
                "/var/log/pods/kube-system_etcd-node1_0123456789abcdef0123456789abcdef/etcd/0.log"
                    .into(),
                Some(PodLog {
                    uid: Some("0123456789abcdef0123456789abcdef".into()),
                    ..pods("kube-system", "etcd-node1", "etcd", 0)
                }),
            ),
            ("/var/log/syslog".into(), None),
            (format!("/var/log/pods/ns_p_{UID}/c/app.log"), None),
            ("/var/log/pods/ns_p_notauid/c/0.log".into(), None),
            (format!("/var/log/pods/ns_p_x_{UID}/c/0.log"), None),
            (format!("/var/log/pods/NS_p_{UID}/c/0.log"), None),
            ("/var/log/containers/p_ns_c-short.log".into(), None),
        ];
        for (path, want) in cases {
            assert_eq!(PodLog::from_path(Path::new(&path)), want, "{path}");
        }
    }

    #[test]
    fn symlink_is_completed_from_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(format!("pods/ns_p_{UID}/c"));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("4.log"), b"").unwrap();
        let links = dir.path().join("containers");
        std::fs::create_dir_all(&links).unwrap();
        let link = links.join(format!("p_ns_c-{ID}.log"));
        std::os::unix::fs::symlink(target.join("4.log"), &link).unwrap();
        let got = PodLog::from_path_resolving(&link).unwrap();
        assert_eq!(got.uid.as_deref(), Some(UID));
        assert_eq!(got.restart_count, Some(4));
        assert_eq!(got.container_id.as_deref(), Some(ID));
        let keys: Vec<_> = got.attributes().into_iter().map(|kv| kv.key).collect();
        assert_eq!(
            keys,
            [
                "k8s.namespace.name",
                "k8s.pod.name",
                "k8s.container.name",
                "k8s.pod.uid",
                "k8s.container.restart_count",
                "container.id"
            ]
        );
    }
}
