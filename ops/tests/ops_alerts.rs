//! `alerts/`: the rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), every alert has a firing and a silent case and
//! the labels and annotations users route on; `alertmanager.yml` passes
//! `amtool check-config`, routes representative alerts where they belong
//! (`amtool config routes test`), never holds a PagerDuty key inline, and
//! inhibits pod alerts of a node that is down in a real Alertmanager.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use argus_ops::{root, tools};

fn rules() -> Vec<serde_yaml::Value> {
    let y: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("alerts/argus-rules.yaml")).unwrap(),
    )
    .unwrap();
    y["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, out) = tools::run("promtool", &["check", "rules", "alerts/argus-rules.yaml"]);
    assert!(ok, "{out}");
    let (ok, out) = tools::run_in(
        "promtool",
        &["test", "rules", "tests/argus-rules.test.yaml"],
        &root().join("alerts"),
    );
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_is_documented_and_tested_both_ways() {
    let tests: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("alerts/tests/argus-rules.test.yaml")).unwrap(),
    )
    .unwrap();
    // alertname → (has a firing case, has a silent case)
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for t in tests["tests"].as_sequence().unwrap() {
        for c in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = c["alertname"].as_str().unwrap().to_string();
            let fires = c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty());
            let e = cases.entry(name).or_default();
            if fires {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
    }
    let docs = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let required = [
        "ArgusAgentDown",
        "ArgusAgentNotExporting",
        "ArgusAgentQueueFilling",
        "ArgusAgentDroppingRecords",
        "ArgusAgentExportFailing",
        "ArgusDetectorIngestStalled",
        "ArgusAlertDeliveryFailing",
        "ArgusRemediationWebhooksFailing",
        "ArgusDetectorSnapshotStale",
    ];
    let mut names = BTreeSet::new();
    for r in rules() {
        let Some(name) = r["alert"].as_str() else {
            continue;
        };
        names.insert(name.to_string());
        assert!(r["for"].as_str().is_some(), "{name}: no `for`");
        let sev = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        assert!(
            r["labels"]["team"].as_str().is_some(),
            "{name}: no team label"
        );
        assert!(
            r["annotations"]["summary"].as_str().is_some(),
            "{name}: no summary"
        );
        let runbook = r["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let anchor = runbook.rsplit_once('#').map(|(_, a)| a).unwrap_or_default();
        assert!(
            !anchor.is_empty() && anchor == name.to_ascii_lowercase(),
            "{name}: runbook_url {runbook:?} must point at docs/operations.md#{}",
            name.to_ascii_lowercase()
        );
        assert!(
            docs.contains(&format!("### {name}")),
            "{name}: no runbook section `### {name}` in docs/operations.md"
        );
        let (fires, silent) = cases.get(name).copied().unwrap_or_default();
        assert!(fires, "{name}: no promtool case where it fires");
        assert!(silent, "{name}: no promtool case where it stays silent");
    }
    for r in required {
        assert!(names.contains(r), "the issue asks for {r}");
    }
}

fn route(labels: &[&str]) -> String {
    let mut args = vec![
        "config",
        "routes",
        "test",
        "--config.file=alerts/alertmanager.yml",
    ];
    args.extend_from_slice(labels);
    let (ok, out) = tools::run("amtool", &args);
    assert!(ok, "amtool routes test {labels:?}: {out}");
    out.lines()
        .find(|l| !l.starts_with("Warning"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn alertmanager_config_checks_and_routes_representative_alerts() {
    let (ok, out) = tools::run("amtool", &["check-config", "alerts/alertmanager.yml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");

    let text = std::fs::read_to_string(root().join("alerts/alertmanager.yml")).unwrap();
    assert!(
        !text.contains("routing_key:") && !text.contains("service_key:"),
        "PagerDuty keys only from files"
    );
    assert!(text.contains("routing_key_file:"));

    let cases: [(&[&str], &str); 9] = [
        // Argus anomalies: critical pages the team and triggers remediation.
        (
            &[
                "alertname=ArgusAnomaly",
                "severity=critical",
                "team=payments",
                "service=checkout",
                "namespace=prod",
            ],
            "remediation-webhook,payments-critical",
        ),
        (
            &[
                "alertname=ArgusAnomaly",
                "severity=warning",
                "team=payments",
                "service=checkout",
            ],
            "payments-warning",
        ),
        (
            &[
                "alertname=ArgusAnomaly",
                "severity=critical",
                "team=search",
                "service=query",
            ],
            "remediation-webhook,pagerduty-default",
        ),
        (
            &[
                "alertname=ArgusAnomaly",
                "severity=warning",
                "service=query",
            ],
            "pagerduty-low-urgency",
        ),
        // Argus's own alerts go to the observability team.
        (
            &[
                "alertname=ArgusAgentDown",
                "severity=critical",
                "team=observability",
                "node=node-a",
            ],
            "observability-critical",
        ),
        (
            &[
                "alertname=ArgusAgentQueueFilling",
                "severity=warning",
                "team=observability",
                "node=node-a",
            ],
            "observability-warning",
        ),
        // A node down pages the platform team; a pod alert on it the app team.
        (
            &[
                "alertname=KubeNodeNotReady",
                "severity=critical",
                "node=node-a",
            ],
            "platform-critical",
        ),
        (
            &[
                "alertname=KubePodCrashLooping",
                "severity=warning",
                "team=payments",
                "pod=checkout-7d9",
                "node=node-a",
            ],
            "payments-warning",
        ),
        // Unlabelled info still goes somewhere.
        (
            &["alertname=Something", "severity=info"],
            "pagerduty-low-urgency",
        ),
    ];
    for (labels, want) in cases {
        assert_eq!(route(labels), want, "{labels:?}");
    }
}

/// Inhibition cannot be shown by `amtool config routes test`: a real
/// Alertmanager gets a node-down alert, a pod alert on that node and one on
/// another node; only the pod alert on the down node is inhibited.
#[test]
fn node_down_inhibits_pod_alerts_on_that_node_in_a_real_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    // The config as shipped, with the key files pointed at a temp dir (the
    // receivers never get a notification here: group_wait is long).
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    for k in [
        "default",
        "low-urgency",
        "payments",
        "payments-low-urgency",
        "observability",
        "observability-low-urgency",
        "platform",
    ] {
        std::fs::write(keys.join(k), "not-a-real-key").unwrap();
    }
    let cfg = std::fs::read_to_string(root().join("alerts/alertmanager.yml"))
        .unwrap()
        .replace(
            "/etc/alertmanager/secrets/pagerduty",
            keys.to_str().unwrap(),
        );
    std::fs::write(dir.path().join("am.yml"), cfg).unwrap();
    let port = free_port();
    let cluster = free_port();
    let am = std::process::Command::new(tools::find("prometheus-alertmanager"))
        .arg(format!(
            "--config.file={}",
            dir.path().join("am.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--cluster.listen-address=127.0.0.1:{cluster}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager starts");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let am = Kill(am);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "alertmanager did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let alerts = r#"[
      {"labels": {"alertname": "KubeNodeNotReady", "severity": "critical", "node": "node-a"}},
      {"labels": {"alertname": "KubePodCrashLooping", "severity": "warning", "team": "payments", "pod": "checkout-1", "node": "node-a"}},
      {"labels": {"alertname": "KubePodCrashLooping", "severity": "warning", "team": "payments", "pod": "checkout-2", "node": "node-b"}}
    ]"#;
    let (status, body) = http(addr, "POST", "/api/v2/alerts", alerts);
    assert_eq!(status, 200, "{body}");
    // Inhibition is evaluated when alerts are listed; allow a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(addr, "GET", "/api/v2/alerts", "");
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let state = |pod: &str| -> Option<String> {
            list.as_array()?
                .iter()
                .find(|a| a["labels"]["pod"] == pod)
                .map(|a| a["status"]["state"].as_str().unwrap_or("").to_string())
        };
        let (a, b) = (state("checkout-1"), state("checkout-2"));
        if a.as_deref() == Some("suppressed") && b.as_deref() == Some("active") {
            let inhibited_by = list
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["labels"]["pod"] == "checkout-1")
                .unwrap()["status"]["inhibitedBy"]
                .as_array()
                .unwrap()
                .len();
            assert_eq!(inhibited_by, 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod on node-a: {a:?}, pod on node-b: {b:?}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(am);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            r = tail[n..].strip_prefix("\r\n").unwrap_or(&tail[n..]);
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}
