//! The Helm chart renders the same resources as deploy/kubernetes (minus
//! the Namespace, which `helm install --create-namespace` makes), and its
//! output passes `kubernetes-validate`. Rendering uses `argus_ops::helm`,
//! a renderer of the template subset the chart uses (no `helm` binary is
//! available from the registries the project may use); a template outside
//! that subset fails this test.

use std::collections::BTreeMap;

use argus_ops::helm::{Release, render_chart};
use argus_ops::{root, tools};
use serde::Deserialize as _;

fn parse_all(text: &str) -> BTreeMap<(String, String), serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| {
            (
                (
                    v["kind"].as_str().unwrap().to_string(),
                    v["metadata"]["name"].as_str().unwrap().to_string(),
                ),
                v,
            )
        })
        .collect()
}

#[test]
fn the_chart_renders_the_manifests_and_validates() {
    let chart = root().join("deploy/helm/argus");
    let rendered = render_chart(
        &chart,
        &Release {
            name: "argus",
            namespace: "argus",
        },
    )
    .unwrap_or_else(|e| panic!("chart does not render: {e}"));
    let got = parse_all(&rendered);
    let mut want = BTreeMap::new();
    for f in std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .flatten()
    {
        want.extend(parse_all(&std::fs::read_to_string(f.path()).unwrap()));
    }
    want.retain(|(kind, _), _| kind != "Namespace");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "same resources"
    );
    for (k, v) in &want {
        assert_eq!(
            &got[k], v,
            "{k:?} differs between the chart and deploy/kubernetes"
        );
    }

    // Another namespace and image tag reach every resource.
    let other = render_chart(
        &chart,
        &Release {
            name: "x",
            namespace: "observability",
        },
    )
    .unwrap();
    for (k, v) in parse_all(&other) {
        assert_eq!(v["metadata"]["namespace"], "observability", "{k:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rendered.yaml");
    std::fs::write(&path, &rendered).unwrap();
    let (ok, out) = tools::run("kubernetes-validate", &["--strict", path.to_str().unwrap()]);
    assert!(ok, "{out}");
    for line in out.lines() {
        assert!(
            line.contains(" passed for resource ")
                || line.contains("Couldn't find schema for kind ServiceMonitor ")
                || line.contains("Couldn't find schema for kind PrometheusRule "),
            "{line}"
        );
    }

    // The chart's copies of the configs and rules are the real ones.
    for (copy, original) in [
        ("files/agent.yaml", "deploy/config/agent.yaml"),
        ("files/detector.yaml", "deploy/config/detector.yaml"),
        ("files/argus-rules.yaml", "alerts/argus-rules.yaml"),
    ] {
        assert_eq!(
            std::fs::read_to_string(chart.join(copy)).unwrap(),
            std::fs::read_to_string(root().join(original)).unwrap(),
            "deploy/helm/argus/{copy} must be a copy of {original}"
        );
    }
}
