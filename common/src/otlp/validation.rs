//! Checks applied to every decoded request, whatever its transport.
//!
//! Protobuf (and the hex strings of OTLP/JSON) let a client send a trace ID
//! of any length. The Collector refuses any trace ID that is not 16 bytes and
//! any span ID that is not 8 (empty means "absent" and is fine), and so do we:
//! everything downstream — correlation of logs with traces, exemplars on
//! latency metrics, alert annotations naming trace IDs — relies on IDs being
//! exactly what W3C Trace Context says they are. The error names the first
//! offending field by its path in the request, in OTLP/JSON spelling.

use opentelemetry_proto::tonic::metrics::v1::{Exemplar, metric::Data};

use super::Payload;

pub const TRACE_ID_LEN: usize = 16;
pub const SPAN_ID_LEN: usize = 8;

/// `Err(path: reason)` for the first malformed ID.
pub fn validate(payload: &Payload) -> Result<(), String> {
    match payload {
        Payload::Traces(r) => {
            for (i, rs) in r.resource_spans.iter().enumerate() {
                for (j, ss) in rs.scope_spans.iter().enumerate() {
                    for (k, s) in ss.spans.iter().enumerate() {
                        let at = || format!("resourceSpans[{i}].scopeSpans[{j}].spans[{k}]");
                        trace_id(&s.trace_id, || format!("{}.traceId", at()))?;
                        span_id(&s.span_id, || format!("{}.spanId", at()))?;
                        span_id(&s.parent_span_id, || format!("{}.parentSpanId", at()))?;
                        for (l, link) in s.links.iter().enumerate() {
                            trace_id(&link.trace_id, || format!("{}.links[{l}].traceId", at()))?;
                            span_id(&link.span_id, || format!("{}.links[{l}].spanId", at()))?;
                        }
                    }
                }
            }
        }
        Payload::Logs(r) => {
            for (i, rl) in r.resource_logs.iter().enumerate() {
                for (j, sl) in rl.scope_logs.iter().enumerate() {
                    for (k, l) in sl.log_records.iter().enumerate() {
                        let at = || format!("resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]");
                        trace_id(&l.trace_id, || format!("{}.traceId", at()))?;
                        span_id(&l.span_id, || format!("{}.spanId", at()))?;
                    }
                }
            }
        }
        Payload::Metrics(r) => {
            for (i, rm) in r.resource_metrics.iter().enumerate() {
                for (j, sm) in rm.scope_metrics.iter().enumerate() {
                    for (k, m) in sm.metrics.iter().enumerate() {
                        let at = || format!("resourceMetrics[{i}].scopeMetrics[{j}].metrics[{k}]");
                        exemplars(m.data.as_ref(), &at)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn exemplars(data: Option<&Data>, at: &dyn Fn() -> String) -> Result<(), String> {
    let lists: Vec<(&str, usize, &[Exemplar])> = match data {
        None => return Ok(()),
        Some(Data::Gauge(g)) => {
            with_points("gauge", g.data_points.iter().map(|p| &p.exemplars[..]))
        }
        Some(Data::Sum(s)) => with_points("sum", s.data_points.iter().map(|p| &p.exemplars[..])),
        Some(Data::Histogram(h)) => {
            with_points("histogram", h.data_points.iter().map(|p| &p.exemplars[..]))
        }
        Some(Data::ExponentialHistogram(h)) => with_points(
            "exponentialHistogram",
            h.data_points.iter().map(|p| &p.exemplars[..]),
        ),
        Some(Data::Summary(_)) => return Ok(()),
    };
    for (kind, p, list) in lists {
        for (e, ex) in list.iter().enumerate() {
            let here = || format!("{}.{kind}.dataPoints[{p}].exemplars[{e}]", at());
            trace_id(&ex.trace_id, || format!("{}.traceId", here()))?;
            span_id(&ex.span_id, || format!("{}.spanId", here()))?;
        }
    }
    Ok(())
}

fn with_points<'a>(
    kind: &'a str,
    points: impl Iterator<Item = &'a [Exemplar]>,
) -> Vec<(&'a str, usize, &'a [Exemplar])> {
    points
        .enumerate()
        .filter(|(_, e)| !e.is_empty())
        .map(|(i, e)| (kind, i, e))
        .collect()
}

fn trace_id(id: &[u8], at: impl FnOnce() -> String) -> Result<(), String> {
    check(id, TRACE_ID_LEN, "trace ID", at)
}

fn span_id(id: &[u8], at: impl FnOnce() -> String) -> Result<(), String> {
    check(id, SPAN_ID_LEN, "span ID", at)
}

fn check(id: &[u8], len: usize, what: &str, at: impl FnOnce() -> String) -> Result<(), String> {
    if id.is_empty() || id.len() == len {
        Ok(())
    } else {
        Err(format!(
            "{}: a {what} must be {len} bytes ({} hex digits), got {} bytes",
            at(),
            len * 2,
            id.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Link};

    fn spans(spans: Vec<Span>) -> Payload {
        Payload::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn ids_must_be_w3c_sized_or_absent() {
        let good = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            ..Default::default()
        };
        assert_eq!(
            validate(&spans(vec![good.clone(), Span::default()])),
            Ok(())
        );
        let bad_link = Span {
            links: vec![Link {
                trace_id: vec![1; 16],
                span_id: vec![2; 7],
                ..Default::default()
            }],
            ..good.clone()
        };
        let err = validate(&spans(vec![good, bad_link])).unwrap_err();
        assert_eq!(
            err,
            "resourceSpans[0].scopeSpans[0].spans[1].links[0].spanId: \
             a span ID must be 8 bytes (16 hex digits), got 7 bytes"
        );
    }

    #[test]
    fn exemplar_ids_are_checked_too() {
        let p = Payload::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![
                                NumberDataPoint::default(),
                                NumberDataPoint {
                                    exemplars: vec![Exemplar {
                                        trace_id: vec![0; 17],
                                        ..Default::default()
                                    }],
                                    ..Default::default()
                                },
                            ],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let err = validate(&p).unwrap_err();
        assert!(
            err.starts_with(
                "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[1].exemplars[0].traceId"
            ),
            "{err}"
        );
    }
}
