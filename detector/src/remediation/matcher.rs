//! Alertmanager-style label matchers: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"`.
//!
//! As in Alertmanager, regexes are anchored at both ends (`service=~"pay"`
//! does not match `payments`), and a missing label has the empty value (so
//! `pod!=""` means "has a pod label", `pod=""` means "has none"). Values may
//! be double-quoted with `\"` and `\\` escapes, or written bare when they
//! hold no spaces, quotes or commas.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

#[derive(Clone, Debug)]
pub(crate) struct Matcher {
    name: String,
    op: Op,
    value: String,
    regex: Option<Regex>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Re,
    NotRe,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        }
    }
}

impl Matcher {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let name_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let name = &s[..name_len];
        if !crate::alert::is_label_name(name) {
            return Err(format!(
                "{s:?}: expected a label name, then =, !=, =~ or !~, then a value"
            ));
        }
        let rest = s[name_len..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (Op::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (Op::NotRe, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (Op::Ne, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (Op::Eq, r)
        } else {
            return Err(format!(
                "{s:?}: expected =, !=, =~ or !~ after the label name"
            ));
        };
        let value = unquote(rest.trim()).map_err(|e| format!("{s:?}: {e}"))?;
        let regex = match op {
            Op::Re | Op::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regex {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.regex.as_ref().expect("regex op").is_match(v),
            Op::NotRe => !self.regex.as_ref().expect("regex op").is_match(v),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        if v.contains(['"', ' ', ',']) {
            return Err("a value with spaces, quotes or commas must be double-quoted".into());
        }
        return Ok(v.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            None => return Err("unterminated quoted value".into()),
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some(c) => {
                    // Regex escapes such as \d pass through untouched.
                    out.push('\\');
                    out.push(c);
                }
                None => return Err("unterminated quoted value".into()),
            },
            Some(c) => out.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(format!(
            "unexpected text after the quoted value: {:?}",
            chars.as_str()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_four_operators_behave_like_alertmanager() {
        let l = labels(&[("service", "payments"), ("severity", "critical")]);
        let m = |s: &str| Matcher::parse(s).unwrap().matches(&l);
        assert!(m(r#"service="payments""#));
        assert!(m("service=payments"));
        assert!(!m(r#"service!="payments""#));
        assert!(m(r#"service=~"pay.*|checkout""#));
        assert!(!m(r#"service=~"pay""#), "anchored");
        assert!(m(r#"service!~"pay""#));
        assert!(m(r#"severity =~ "crit\w+""#), "spaces and regex escapes");
        // A missing label is the empty string.
        assert!(m(r#"pod="""#));
        assert!(!m(r#"pod!="""#));
        assert!(m(r#"pod!~".+""#));
    }

    #[test]
    fn bad_matchers_say_why() {
        for (s, why) in [
            (r#"service=~"(""#, "invalid regex"),
            ("k8s.pod=x", "expected ="),
            ("=x", "expected a label name"),
            ("service", "expected ="),
            (r#"service="open"#, "unterminated"),
            (r#"service="a" b"#, "unexpected text"),
            ("service=a b", "must be double-quoted"),
        ] {
            let e = Matcher::parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
        assert_eq!(
            Matcher::parse(r#"summary="say \"hi\"""#)
                .unwrap()
                .to_string(),
            r#"summary="say \"hi\"""#
        );
    }
}
