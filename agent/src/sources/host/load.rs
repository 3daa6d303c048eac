//! `/proc/loadavg`: the kernel's 1, 5 and 15 minute load averages.
//!
//! Format: `0.08 0.03 0.01 2/123 4567` — three averages, then
//! runnable/total scheduling entities and the last PID (both ignored: the
//! processes collector reports process counts).

use opentelemetry_proto::tonic::metrics::v1::Metric;

use super::HostError;
use super::metric_set::{Kind, MetricBuilder, Stamp};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

pub fn parse(text: &str) -> Result<LoadAvg, HostError> {
    let bad = |reason: String| HostError::Parse {
        file: "proc/loadavg",
        reason,
    };
    let mut fields = text.split_ascii_whitespace();
    let mut next = |which: &str| -> Result<f64, HostError> {
        let f = fields
            .next()
            .ok_or_else(|| bad(format!("no {which} average")))?;
        match f.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(bad(format!("{which} average is not a load: {f:?}"))),
        }
    };
    Ok(LoadAvg {
        one: next("1m")?,
        five: next("5m")?,
        fifteen: next("15m")?,
    })
}

/// `system.cpu.load_average.{1m,5m,15m}` gauges.
pub fn metrics(l: &LoadAvg, stamp: Stamp, out: &mut Vec<Metric>) {
    for (suffix, value) in [("1m", l.one), ("5m", l.five), ("15m", l.fifteen)] {
        let mut m = MetricBuilder::new(
            Kind::Gauge,
            &format!("system.cpu.load_average.{suffix}"),
            "Average number of runnable or uninterruptible threads",
            "{thread}",
            stamp,
        );
        m.point(Vec::new(), value);
        m.finish(out);
    }
}
