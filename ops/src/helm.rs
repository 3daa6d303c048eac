//! A renderer for the subset of Helm's Go templates the Argus chart uses,
//! because no registry the project may use ships the `helm` binary.
//!
//! It renders `{{ X }}` or `{{ X | F }}` where `X` is `.Release.Namespace`,
//! `.Release.Name`, `.Chart.Name`, `.Chart.AppVersion`, `.Values.a.b…`,
//! `toJson .Values.a.b…` or `.Files.Get "path"`, and `F` is `indent N` or
//! `quote` — with Helm's semantics for each (`indent` pads every line,
//! `toJson` writes JSON with sorted keys). Anything else in a template
//! (control structures, whitespace trimming, other functions) is an error,
//! so a chart that outgrows the subset fails the test instead of being
//! rendered wrongly.

use std::path::Path;

use serde_yaml::Value;

pub struct Release<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

/// Renders every template of the chart at `chart` with its `values.yaml`.
pub fn render_chart(chart: &Path, release: &Release<'_>) -> Result<String, String> {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart.join("values.yaml")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("values.yaml: {e}"))?;
    let meta: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart.join("Chart.yaml")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("Chart.yaml: {e}"))?;
    let mut files: Vec<_> = std::fs::read_dir(chart.join("templates"))
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| e.to_string())?;
        let rendered = render(&text, chart, &values, &meta, release)
            .map_err(|e| format!("{}: {e}", f.display()))?;
        out.push_str(&format!("---\n# Source: {}\n", f.display()));
        out.push_str(&rendered);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

fn render(
    text: &str,
    chart: &Path,
    values: &Value,
    meta: &Value,
    release: &Release<'_>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or("unclosed {{")? + start;
        let action = &rest[start + 2..end];
        if action.starts_with('-') || action.ends_with('-') {
            return Err(format!("unsupported whitespace trimming: {{{{{action}}}}}"));
        }
        out.push_str(&action_value(action.trim(), chart, values, meta, release)?);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup<'v>(root: &'v Value, path: &str) -> Result<&'v Value, String> {
    let mut v = root;
    for key in path.split('.') {
        v = v
            .get(key)
            .ok_or_else(|| format!("no value at .Values.{path}"))?;
    }
    Ok(v)
}

fn scalar(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("not a scalar: {other:?}")),
    }
}

fn action_value(
    action: &str,
    chart: &Path,
    values: &Value,
    meta: &Value,
    release: &Release<'_>,
) -> Result<String, String> {
    let mut stages = action.split('|').map(str::trim);
    let head = stages.next().unwrap_or_default();
    let mut v = if head == ".Release.Namespace" {
        release.namespace.to_string()
    } else if head == ".Release.Name" {
        release.name.to_string()
    } else if head == ".Chart.Name" {
        scalar(&meta["name"])?
    } else if head == ".Chart.AppVersion" {
        scalar(&meta["appVersion"])?
    } else if let Some(path) = head.strip_prefix(".Values.") {
        scalar(lookup(values, path)?)?
    } else if let Some(path) = head.strip_prefix("toJson .Values.") {
        let json: serde_json::Value =
            serde_json::to_value(lookup(values, path)?).map_err(|e| e.to_string())?;
        serde_json::to_string(&json).map_err(|e| e.to_string())?
    } else if let Some(arg) = head.strip_prefix(".Files.Get ") {
        let name = arg.trim().trim_matches('"');
        if name.contains("..") {
            return Err(format!(".Files.Get outside the chart: {name}"));
        }
        std::fs::read_to_string(chart.join(name)).map_err(|e| format!("{name}: {e}"))?
    } else {
        return Err(format!("unsupported template action: {{{{ {action} }}}}"));
    };
    for f in stages {
        if let Some(n) = f.strip_prefix("indent ") {
            let n: usize = n.trim().parse().map_err(|_| format!("indent {n}"))?;
            let pad = " ".repeat(n);
            v = format!("{pad}{}", v.replace('\n', &format!("\n{pad}")));
        } else if f == "quote" {
            v = format!("{:?}", v);
        } else {
            return Err(format!("unsupported template function: {f}"));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_semantics_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "a: 1\nb: 2\n").unwrap();
        let values: Value = serde_yaml::from_str("x: {y: v, m: {b: 2, a: \"1\"}}").unwrap();
        let meta: Value = serde_yaml::from_str("name: c\nappVersion: \"9\"").unwrap();
        let r = Release {
            name: "r",
            namespace: "ns",
        };
        let got = render(
            "n: {{ .Release.Namespace }}\ni: \"{{ .Values.x.y }}:{{ .Chart.AppVersion }}\"\nm: {{ toJson .Values.x.m }}\nq: {{ .Values.x.y | quote }}\nd: |\n{{ .Files.Get \"f.txt\" | indent 2 }}",
            dir.path(),
            &values,
            &meta,
            &r,
        )
        .unwrap();
        assert_eq!(
            got,
            "n: ns\ni: \"v:9\"\nm: {\"a\":\"1\",\"b\":2}\nq: \"v\"\nd: |\n  a: 1\n  b: 2\n  "
        );
        for bad in [
            "{{- if .Values.x }}",
            "{{ include \"x\" . }}",
            "{{ .Values.nope }}",
            "{{ .Values.x.y | upper }}",
            "{{ .Files.Get \"../secret\" }}",
        ] {
            assert!(
                render(bad, dir.path(), &values, &meta, &r).is_err(),
                "{bad}"
            );
        }
    }
}
