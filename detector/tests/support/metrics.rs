//! Reading one sample out of a `prometheus-client` registry, as a scrape
//! would see it. Include with `#[path = "support/metrics.rs"] mod metrics;`.

use prometheus_client::registry::Registry;

/// The value of the sample `name{labels}` (labels in any order, all of them),
/// 0 when absent.
pub fn sample(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (n, l) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let mut got: Vec<(String, String)> = l
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        got.sort();
        if got == want {
            return value.parse().unwrap();
        }
    }
    0.0
}

/// The whole exposition text (to check what must never appear in it).
#[allow(dead_code)]
pub fn text(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}
