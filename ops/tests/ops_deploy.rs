//! `deploy/`: every manifest passes `kubernetes-validate --strict` (the
//! Prometheus Operator kinds have no schema there: they are checked by
//! structure and against alerts/), the ConfigMaps hold configurations the
//! binaries accept (`validate-config`), and the DaemonSet has what a node
//! agent needs.

use std::path::PathBuf;
use std::process::Command;

use argus_ops::binaries::binary;
use argus_ops::{root, tools};

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn docs(path: &PathBuf) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}
use serde::Deserialize as _;

/// Kinds kubernetes-validate has no schema for.
const CRDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

/// Validates `files`; returns the resources that passed.
pub fn kubernetes_validate(files: &[PathBuf]) -> Vec<String> {
    let args: Vec<&str> = std::iter::once("--strict")
        .chain(files.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let (ok, out) = tools::run("kubernetes-validate", &args);
    assert!(ok, "kubernetes-validate failed:\n{out}");
    for line in out.lines() {
        let fine = line.contains(" passed for resource ")
            || (line.contains("Couldn't find schema for kind")
                && CRDS.iter().any(|k| line.contains(&format!("kind {k} "))));
        assert!(fine, "kubernetes-validate: {line}\n{out}");
    }
    out.lines()
        .filter(|l| l.contains(" passed for resource "))
        .map(|l| {
            l.rsplit_once("resource ")
                .unwrap()
                .1
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn every_manifest_validates() {
    let files = manifests();
    let passed = kubernetes_validate(&files);
    let mut kinds = Vec::new();
    for f in &files {
        for d in docs(f) {
            let kind = d["kind"].as_str().unwrap().to_string();
            let name = d["metadata"]["name"].as_str().unwrap().to_string();
            if !CRDS.contains(&kind.as_str()) {
                let id = format!("{}/{name}", kind.to_ascii_lowercase());
                assert!(passed.contains(&id), "{id} was not validated: {passed:?}");
            }
            kinds.push(kind);
        }
    }
    for k in [
        "Namespace",
        "DaemonSet",
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
        "NetworkPolicy",
        "ConfigMap",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in deploy/kubernetes");
    }
}

fn find(kind: &str, name: &str) -> serde_yaml::Value {
    manifests()
        .iter()
        .flat_map(docs)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name}"))
}

#[test]
fn configmaps_hold_configs_the_binaries_accept() {
    let dir = tempfile::tempdir().unwrap();
    // The ConfigMaps are the files in deploy/config, verbatim.
    for (name, key, file) in [
        ("argus-agent", "agent.yaml", "deploy/config/agent.yaml"),
        (
            "argus-detector",
            "detector.yaml",
            "deploy/config/detector.yaml",
        ),
    ] {
        let cm = find("ConfigMap", name);
        let data = cm["data"][key].as_str().unwrap();
        assert_eq!(
            data,
            std::fs::read_to_string(root().join(file)).unwrap(),
            "{name} ≠ {file}"
        );
        std::fs::write(dir.path().join(key), data).unwrap();
    }
    let validate = |bin: &PathBuf, file: &str, env: &[(&str, &str)]| -> (bool, String) {
        let out = Command::new(bin)
            .arg("validate-config")
            .arg(dir.path().join(file))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let detector = binary("argus-detector", &["detector", "common"]);
    let (ok, out) = validate(&detector, "detector.yaml", &[("ARGUS_DETECTOR_TOKEN", "t")]);
    assert!(ok, "{out}");

    // The agent's config names pod paths (the host's /proc at /host/proc):
    // here they don't exist, and that must be the only problem reported.
    let agent = binary("argus-agent", &["agent", "common"]);
    let (ok, out) = validate(&agent, "agent.yaml", &[("ARGUS_AGENT_TOKEN", "t")]);
    assert!(!ok);
    let problems: Vec<&str> = out.lines().skip(1).map(str::trim).collect();
    assert_eq!(problems.len(), 1, "{out}");
    assert!(
        problems[0].starts_with("host.root: /host/proc is not a directory"),
        "{out}"
    );
    // With the host root pointed at this machine's / (the binary's own
    // override mechanism), the file is valid as is.
    let (ok, out) = validate(
        &agent,
        "agent.yaml",
        &[("ARGUS_AGENT_TOKEN", "t"), ("ARGUS_AGENT__HOST__ROOT", "/")],
    );
    assert!(ok, "{out}");
    // And the token really is required (the Secret must exist).
    let (ok, out) = validate(&agent, "agent.yaml", &[("ARGUS_AGENT__HOST__ROOT", "/")]);
    assert!(!ok && out.contains("exporter.bearer_token_env"), "{out}");
}

#[test]
fn the_daemonset_is_a_proper_node_agent() {
    let ds = find("DaemonSet", "argus-agent");
    let spec = &ds["spec"]["template"]["spec"];
    assert!(
        spec["tolerations"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t["key"].is_null()),
        "tolerates every taint"
    );
    let c = &spec["containers"][0];
    let env = c["env"].as_sequence().unwrap();
    assert!(env.iter().any(|e| e["name"] == "K8S_NODE_NAME"
        && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"));
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("{path}"))
    };
    assert_eq!(mount("/var/log/pods")["readOnly"], true);
    assert_eq!(mount("/host/proc")["readOnly"], true);
    let state = mount("/var/lib/argus-agent")["name"].as_str().unwrap();
    let vol = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == state)
        .unwrap();
    assert_eq!(
        vol["hostPath"]["path"], "/var/lib/argus-agent",
        "queue and checkpoints survive the pod"
    );
    let cfg: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("deploy/config/agent.yaml")).unwrap(),
    )
    .unwrap();
    assert!(
        cfg["queue"]["dir"]
            .as_str()
            .unwrap()
            .starts_with("/var/lib/argus-agent/")
    );
    assert!(
        cfg["file"]["data_dir"]
            .as_str()
            .unwrap()
            .starts_with("/var/lib/argus-agent/")
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["resources"]["requests"]["memory"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let svc = find("Service", "argus-agent");
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Local");
    let det = find("StatefulSet", "argus-detector");
    assert_eq!(
        det["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
}

#[test]
fn the_prometheus_rule_is_alerts_argus_rules() {
    let pr = find("PrometheusRule", "argus");
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("alerts/argus-rules.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        pr["spec"]["groups"], rules["groups"],
        "regenerate deploy/kubernetes/monitoring.yaml from alerts/"
    );
    for name in ["argus-agent", "argus-detector"] {
        let sm = find("ServiceMonitor", name);
        assert_eq!(
            sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
            name
        );
        assert_eq!(sm["spec"]["endpoints"][0]["port"], "ops");
    }
}

/// The agent image is built with `-p argus-agent`, whose dependency graph
/// (Cargo.lock) reaches neither polars nor linfa; both images are
/// multi-stage with a distroless final stage.
#[test]
fn images_are_small_and_the_agent_links_no_polars_or_linfa() {
    for (file, package) in [
        ("deploy/docker/agent.Dockerfile", "argus-agent"),
        ("deploy/docker/detector.Dockerfile", "argus-detector"),
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
        assert_eq!(froms.len(), 2, "{file}: multi-stage");
        assert!(
            froms[1].contains("distroless") || froms[1].contains("-slim"),
            "{file}: {}",
            froms[1]
        );
        assert!(
            text.contains(&format!("-p {package} ")),
            "{file}: builds -p {package} only"
        );
    }
    let lock: toml_like::Lock =
        toml_like::parse(&std::fs::read_to_string(root().join("Cargo.lock")).unwrap());
    let reach = lock.reachable("argus-agent");
    assert!(
        reach.contains("tokio") && reach.contains("argus-common"),
        "{reach:?}"
    );
    for banned in [
        "polars",
        "polars-core",
        "linfa",
        "linfa-clustering",
        "ndarray",
    ] {
        assert!(!reach.contains(banned), "argus-agent depends on {banned}");
    }
    assert!(
        lock.reachable("argus-detector").contains("linfa"),
        "the walk sees real edges"
    );
}

/// Just enough of Cargo.lock: package names and their dependency names.
mod toml_like {
    use std::collections::{BTreeMap, BTreeSet};

    pub struct Lock(BTreeMap<String, Vec<String>>);

    pub fn parse(text: &str) -> Lock {
        let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for block in text.split("[[package]]").skip(1) {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("name = "))
                .unwrap()
                .trim_matches('"')
                .to_string();
            let mut list = Vec::new();
            if let Some(d) = block.split("dependencies = [").nth(1) {
                for l in d.split(']').next().unwrap().lines() {
                    let l = l.trim().trim_end_matches(',').trim_matches('"');
                    if let Some(n) = l.split_whitespace().next() {
                        list.push(n.to_string());
                    }
                }
            }
            deps.entry(name).or_default().extend(list);
        }
        Lock(deps)
    }

    impl Lock {
        pub fn reachable(&self, from: &str) -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.to_string()];
            while let Some(n) = stack.pop() {
                if seen.insert(n.clone()) {
                    stack.extend(self.0.get(&n).cloned().unwrap_or_default());
                }
            }
            seen
        }
    }
}
