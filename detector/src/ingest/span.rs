//! Spans → RED series (requests, errors, error ratio, latency quantiles)
//! per service, operation (span name) and span kind. Which spans count is
//! documented on [`SpansConfig`](super::SpansConfig).

use argus_common::otlp::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use super::config::{SpanKindName, quantile_suffix};
use super::group::Kind;
use super::resource::ResourceLabels;
use super::step::nanos;
use super::{Ingest, IngestStats, trace_id};
use crate::registry::KeyRef;

pub const REQUESTS: &str = "span.requests";
pub const ERRORS: &str = "span.errors";
pub const ERROR_RATIO: &str = "span.error_ratio";
pub const LATENCY: &str = "span.latency";

pub const LABEL_OPERATION: &str = "operation";
pub const LABEL_SPAN_KIND: &str = "span_kind";

/// The outputs of a RED group, in order.
pub(crate) fn red_names(quantiles: &[f64]) -> Vec<String> {
    let mut v = vec![
        REQUESTS.to_string(),
        ERRORS.to_string(),
        ERROR_RATIO.to_string(),
    ];
    v.extend(
        quantiles
            .iter()
            .map(|q| format!("{LATENCY}.{}", quantile_suffix(*q))),
    );
    v
}

impl<S: Default> Ingest<S> {
    pub(super) fn ingest_traces(&mut self, req: &ExportTraceServiceRequest, st: &mut IngestStats) {
        let Ingest {
            cfg,
            clock,
            registry,
            groups,
            latency,
            ..
        } = self;
        let sp = &cfg.spans;
        let now = clock.now();
        let wm = clock.watermark();
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(8);
        for rs in &req.resource_spans {
            let res = ResourceLabels::of(rs.resource.as_ref());
            // One lookup per resource (one service), not per span.
            let mut histogram = None;
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    if !sp.enabled {
                        st.ignore();
                        continue;
                    }
                    let kind = SpanKindName::from_otlp(span.kind);
                    let root = span.parent_span_id.iter().all(|b| *b == 0);
                    if !(sp.kinds.contains(&kind) || (sp.root_spans && root)) {
                        st.ignore();
                        continue;
                    }
                    let (start, end) = (
                        nanos(span.start_time_unix_nano),
                        nanos(span.end_time_unix_nano),
                    );
                    if end == 0 || start == 0 || end < start {
                        st.reject(super::Reason::Invalid);
                        continue;
                    }
                    let k = match clock.classify(end) {
                        Ok(k) => k,
                        Err(t) => {
                            st.timing(t);
                            continue;
                        }
                    };
                    labels.clear();
                    res.push_grouped(&sp.group_by, &mut labels);
                    labels.push((LABEL_OPERATION, span.name.as_str()));
                    labels.push((LABEL_SPAN_KIND, kind.as_str()));
                    let key = KeyRef::new(Signal::Traces, REQUESTS, &mut labels);
                    let g = match groups.resolve(registry, &key, Kind::Red, now, wm, || {
                        red_names(&cfg.quantiles)
                    }) {
                        Ok(g) => g,
                        Err(r) => {
                            st.reject(r);
                            continue;
                        }
                    };
                    let acc = groups.get_mut(g).acc(k).red();
                    let secs = (end - start) as f64 / 1e9;
                    if histogram.is_none() {
                        histogram =
                            Some(latency.for_service(res.service, res.namespace.unwrap_or("")));
                    }
                    if let Some(Some(h)) = &histogram {
                        super::latency::observe(h, secs, trace_id(&span.trace_id));
                    }
                    acc.requests += 1;
                    acc.latency.add(secs);
                    if let Some(t) = trace_id(&span.trace_id) {
                        acc.slow.offer(sp.slowest_exemplars, secs, t);
                    }
                    let error = span
                        .status
                        .as_ref()
                        .is_some_and(|s| s.code == StatusCode::Error as i32);
                    if error {
                        acc.errors += 1;
                        if let Some(t) = trace_id(&span.trace_id) {
                            acc.errs.offer(sp.error_exemplars, secs, t);
                        }
                    }
                    st.accept();
                }
            }
        }
    }
}
