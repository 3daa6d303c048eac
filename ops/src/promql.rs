//! The metric names a PromQL expression reads.
//!
//! Syntax is `promtool`'s business (the tests run it on every expression);
//! this module only has to find the *selectors* in an expression promtool
//! accepts. A lexer is enough for that: an identifier is a metric name
//! unless it is a keyword, a function or aggregation (followed by `(`), a
//! label inside `{…}` or a grouping list (`by (…)`, `on (…)`, …), a
//! duration inside `[…]` or after `offset`, or part of a string. A
//! `{__name__="x"}` matcher names `x` too; a `__name__` regex matcher is
//! reported as an error (it cannot be checked by name).

/// Grafana's interval variables, as Grafana expands them (values are
/// irrelevant to syntax and names).
const GRAFANA_INTERVALS: [(&str, &str); 8] = [
    ("${__rate_interval}", "5m"),
    ("$__rate_interval", "5m"),
    ("${__interval}", "1m"),
    ("$__interval_ms", "60000"),
    ("$__interval", "1m"),
    ("${__range}", "1h"),
    ("$__range_s", "3600"),
    ("$__range", "1h"),
];

/// The expression with Grafana's interval variables expanded. Dashboard
/// variables (`$service`) may only appear inside string literals (label
/// matcher values), where any value parses; elsewhere they are an error,
/// because promtool could not check what the expression becomes.
pub fn expand_grafana(expr: &str) -> Result<String, String> {
    let mut out = expr.to_string();
    for (var, value) in GRAFANA_INTERVALS {
        out = out.replace(var, value);
    }
    let mut quote: Option<char> = None;
    let mut prev = '\0';
    for c in out.chars() {
        match quote {
            Some(q) if c == q && prev != '\\' => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None if c == '$' => {
                return Err(format!(
                    "a Grafana variable outside a string literal: {expr:?}"
                ));
            }
            None => {}
        }
        prev = if prev == '\\' && c == '\\' { '\0' } else { c };
    }
    Ok(out)
}

/// Words that are never metric names. The grouping keywords and `offset`
/// are not repeated here: `metric_names` handles them before it looks here.
const KEYWORDS: [&str; 8] = [
    "bool", "and", "or", "unless", "atan2", "inf", "nan", "start",
];

/// Aggregation operators (may be followed by `by (…)` before their `(`).
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised label list.
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The distinct metric names `expr` selects, in order of appearance.
pub fn metric_names(expr: &str) -> Result<Vec<String>, String> {
    let b: Vec<char> = expr.chars().collect();
    let mut names: Vec<String> = Vec::new();
    let push = |n: String, names: &mut Vec<String>| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    let mut i = 0;
    let mut after_offset = false;
    while i < b.len() {
        let c = b[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&b, i)?;
        } else if c == '{' {
            let end = find_close(&b, i, '{', '}')?;
            let inner: String = b[i + 1..end].iter().collect();
            if let Some(n) = name_matcher(&inner)? {
                push(n, &mut names);
            }
            i = end + 1;
        } else if c == '[' {
            i = find_close(&b, i, '[', ']')? + 1;
        } else if c == '#' {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            // Numbers and durations (1e-3, 0x1f, 5m, 1h30m).
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == '.'
                    || ((b[i] == '-' || b[i] == '+') && matches!(b[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            after_offset = false;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == ':') {
                i += 1;
            }
            let word: String = b[start..i].iter().collect();
            let mut j = i;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let lower = word.to_ascii_lowercase();
            if after_offset {
                after_offset = false;
                continue;
            }
            if GROUPING.contains(&lower.as_str()) {
                if b.get(j) == Some(&'(') {
                    i = find_close(&b, j, '(', ')')? + 1;
                }
                continue;
            }
            if lower == "offset" {
                after_offset = true;
                continue;
            }
            if KEYWORDS.contains(&lower.as_str()) {
                continue;
            }
            if b.get(j) == Some(&'(') {
                // A function or an aggregation.
                continue;
            }
            let next: String = b[j..]
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            if AGGREGATIONS.contains(&lower.as_str())
                && matches!(next.to_ascii_lowercase().as_str(), "by" | "without")
            {
                // `sum by (x) (…)`.
                continue;
            }
            push(word, &mut names);
        } else {
            i += 1;
        }
    }
    Ok(names)
}

fn skip_string(b: &[char], start: usize) -> Result<usize, String> {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == '\\' && q != '`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return Ok(i + 1);
        }
        i += 1;
    }
    Err("unterminated string".into())
}

fn find_close(b: &[char], start: usize, open: char, close: char) -> Result<usize, String> {
    let mut depth = 0;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(b, i)?;
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return Ok(i);
            }
        }
        i += 1;
    }
    Err(format!("unbalanced {open}{close}"))
}

/// `__name__="x"` inside a matcher list.
fn name_matcher(inner: &str) -> Result<Option<String>, String> {
    let Some(p) = inner.find("__name__") else {
        return Ok(None);
    };
    let rest = inner[p + "__name__".len()..].trim_start();
    if let Some(v) = rest.strip_prefix('=')
        && !v.starts_with('~')
    {
        let v = v.trim_start();
        let q = v.chars().next().ok_or("empty __name__ matcher")?;
        let end = v[1..].find(q).ok_or("unterminated __name__ value")?;
        return Ok(Some(v[1..1 + end].to_string()));
    }
    Err(format!(
        "a __name__ matcher other than `=` cannot be checked by name: {{{inner}}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(e: &str) -> Vec<String> {
        metric_names(e).unwrap()
    }

    #[test]
    fn finds_selectors_not_labels_functions_or_durations() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le, node) (rate(argus_agent_export_duration_seconds_bucket{node=~"a|b", le!="x"}[5m])))"#
            ),
            ["argus_agent_export_duration_seconds_bucket"]
        );
        assert_eq!(
            names(
                "sum(rate(a_total[5m] offset 1h)) / on (job) group_left (node) max without(instance) (b) > bool 0.5 unless c"
            ),
            ["a_total", "b", "c"]
        );
        assert_eq!(
            names(r#"{__name__="up", job="x"} or absent(argus_detector_build_info)"#),
            ["up", "argus_detector_build_info"]
        );
        assert_eq!(names("max_over_time(x[1h:5m]) * 1e-3 + 0x1f"), ["x"]);
        assert_eq!(names("sum(x) by (le) / 2"), ["x"]);
        assert_eq!(
            names(r#"label_replace(x, "dst", "$1", "src", "(.*)")"#),
            ["x"]
        );
        assert!(metric_names(r#"{__name__=~"argus_.*"}"#).is_err());
    }

    #[test]
    fn grafana_variables() {
        assert_eq!(
            expand_grafana(r#"rate(x{service=~"$service"}[$__rate_interval])"#).unwrap(),
            r#"rate(x{service=~"$service"}[5m])"#
        );
        assert!(expand_grafana("topk($n, x)").is_err());
    }
}
