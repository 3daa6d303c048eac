//! OpenMetrics text → Prometheus text format 0.0.4.
//!
//! prometheus-client encodes OpenMetrics only. A 0.0.4 parser (Prometheus
//! without content negotiation, Telegraf, Datadog, many scripts) differs in
//! ways that matter:
//! - a counter family is named *with* `_total` in `# TYPE`/`# HELP`
//!   (OpenMetrics names the family without it, samples with it);
//! - `info` and `unknown` types do not exist (`gauge` / `untyped`);
//! - `# UNIT` and `# EOF` are not part of it;
//! - exemplars (`… # {trace_id="…"} 0.5`) are a syntax error.
//!
//! The conversion works line by line on the encoder's output, after one pass
//! to learn each family's type (a family's `# HELP` precedes its `# TYPE`).

use std::collections::HashMap;

/// Rewrites an OpenMetrics exposition as Prometheus text 0.0.4.
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let types: HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect();
    let renamed = |name: &str| -> String {
        match types.get(name).copied() {
            Some("counter") if !name.ends_with("_total") => format!("{name}_total"),
            Some("info") if !name.ends_with("_info") => format!("{name}_info"),
            _ => name.to_string(),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let kind = match kind {
                "counter" | "gauge" | "histogram" | "summary" => kind,
                "info" => "gauge",
                _ => "untyped",
            };
            out.push_str(&format!("# TYPE {} {kind}\n", renamed(name)));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // 0.0.4 escapes only `\\` and `\n` in HELP; an OpenMetrics `\"`
            // would show up literally.
            out.push_str(&format!(
                "# HELP {} {}\n",
                renamed(name),
                help.replace("\\\"", "\"")
            ));
        } else if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        } else {
            out.push_str(strip_exemplar(line));
            out.push('\n');
        }
    }
    out
}

/// A sample line without its exemplar (`name{labels} value [ts] # {…} v`).
/// The label set is skipped quote-aware: a label value may contain " # ".
fn strip_exemplar(line: &str) -> &str {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && b[i] != b'{' && b[i] != b' ' {
        i += 1;
    }
    if i < b.len() && b[i] == b'{' {
        let (mut quoted, mut escaped) = (false, false);
        i += 1;
        while i < b.len() {
            let c = b[i];
            i += 1;
            if quoted {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    quoted = false;
                }
            } else if c == b'"' {
                quoted = true;
            } else if c == b'}' {
                break;
            }
        }
    }
    match line[i..].find(" # ") {
        Some(p) => &line[..i + p],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::exemplar::HistogramWithExemplars;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::info::Info;
    use prometheus_client::registry::{Registry, Unit};

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Trace {
        trace_id: String,
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Path {
        path: String,
    }

    #[test]
    fn registry_output_becomes_valid_0_0_4() {
        let mut r = Registry::with_prefix("argus_agent");
        let c = Family::<Path, Counter>::default();
        c.get_or_create(&Path {
            path: "a # b }\"".into(),
        })
        .inc_by(3);
        r.register_with_unit("sent", "Bytes \"sent\"", Unit::Bytes, c);
        let h = HistogramWithExemplars::new([0.1, 1.0].into_iter());
        h.observe(
            0.5,
            Some(Trace {
                trace_id: "abc".into(),
            }),
            None,
        );
        r.register("latency_seconds", "Latency", h);
        r.register("build", "Build", Info::new(vec![("version", "1.0")]));
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &r).unwrap();
        assert!(
            om.contains("# {trace_id=\"abc\"}"),
            "exemplar expected in:\n{om}"
        );

        let p = openmetrics_to_prometheus(&om);
        let expected_lines = [
            "# HELP argus_agent_sent_bytes_total Bytes \"sent\".",
            "# TYPE argus_agent_sent_bytes_total counter",
            "argus_agent_sent_bytes_total{path=\"a # b }\\\"\"} 3",
            "# TYPE argus_agent_latency_seconds histogram",
            "argus_agent_latency_seconds_bucket{le=\"1.0\"} 1",
            "# TYPE argus_agent_build_info gauge",
            "argus_agent_build_info{version=\"1.0\"} 1",
        ];
        for l in expected_lines {
            assert!(p.lines().any(|x| x == l), "missing {l:?} in:\n{p}");
        }
        assert!(
            !p.contains("# EOF") && !p.contains("# UNIT") && !p.contains("trace_id"),
            "{p}"
        );
    }

    #[test]
    fn exemplars_are_cut_outside_labels_only() {
        assert_eq!(strip_exemplar("a_total 1 # {t=\"x\"} 1"), "a_total 1");
        assert_eq!(strip_exemplar("a{l=\" # \"} 1"), "a{l=\" # \"} 1");
        assert_eq!(
            strip_exemplar("a{l=\"\\\" # \"} 2 # {t=\"y\"} 1 5"),
            "a{l=\"\\\" # \"} 2"
        );
        assert_eq!(strip_exemplar("a 1"), "a 1");
    }
}
