//! Every PromQL expression of a Grafana dashboard: panel targets (rows
//! included) and query variables (`label_values(<expr>, label)`,
//! `query_result(<expr>)`).

use serde_json::Value;

/// One expression and where it is ("panel \"Queue depth\" target A").
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub location: String,
    pub expr: String,
}

/// All expressions of `dashboard`, or an error naming a query the check
/// cannot read (a variable query it does not understand).
pub fn expressions(dashboard: &Value) -> Result<Vec<Expr>, String> {
    let mut out = Vec::new();
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    let mut stack: Vec<Value> = panels;
    while let Some(p) = stack.pop() {
        if let Some(children) = p["panels"].as_array() {
            stack.extend(children.iter().cloned());
        }
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push(Expr {
                    location: format!(
                        "panel {title:?} target {}",
                        t["refId"].as_str().unwrap_or("?")
                    ),
                    expr: e.to_string(),
                });
            }
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?");
        let q = match &v["query"] {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        let expr = variable_expr(&q).map_err(|e| format!("variable ${name}: {e}: {q:?}"))?;
        if let Some(expr) = expr {
            out.push(Expr {
                location: format!("variable ${name}"),
                expr,
            });
        }
    }
    out.reverse();
    Ok(out)
}

/// The PromQL inside a Prometheus variable query, `None` for
/// `label_values(label)` (no metric).
fn variable_expr(q: &str) -> Result<Option<String>, String> {
    let q = q.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        // The label is the last top-level argument.
        let mut depth = 0i32;
        let mut quoted = false;
        let mut split = None;
        for (i, c) in inner.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '(' | '{' | '[' if !quoted => depth += 1,
                ')' | '}' | ']' if !quoted => depth -= 1,
                ',' if !quoted && depth == 0 => split = Some(i),
                _ => {}
            }
        }
        return Ok(split.map(|i| inner[..i].trim().to_string()));
    }
    if let Some(inner) = q
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return Ok(Some(inner.trim().to_string()));
    }
    Err("not label_values(…) or query_result(…)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_nested_rows_and_variables() {
        let d = serde_json::json!({
            "panels": [
                {"title": "a", "targets": [{"refId": "A", "expr": "x"}]},
                {"type": "row", "title": "r", "panels": [
                    {"title": "b", "targets": [{"refId": "B", "expr": "y"}]}
                ]}
            ],
            "templating": {"list": [
                {"type": "datasource", "name": "datasource", "query": "prometheus"},
                {"type": "query", "name": "node", "query": {"query": "label_values(argus_agent_build_info{job=\"a,b\"}, node)"}},
                {"type": "query", "name": "ns", "query": "label_values(namespace)"}
            ]}
        });
        let e: Vec<String> = expressions(&d)
            .unwrap()
            .into_iter()
            .map(|e| e.expr)
            .collect();
        assert!(
            e.contains(&"x".to_string()) && e.contains(&"y".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"argus_agent_build_info{job=\"a,b\"}".to_string()),
            "{e:?}"
        );
        assert_eq!(e.len(), 3);
    }
}
