//! Cutting a payload into requests no larger than `max_request_bytes`.
//!
//! gRPC servers refuse messages above their receive limit (4 MiB by default
//! in the detector, the OTel Collector and most servers), and a refused
//! message is not data we may drop. So a payload larger than the limit is
//! cut along its own structure: resource → scope → item (log record, span,
//! metric). Each request repeats the resource and scope *envelope* (their
//! attributes, schema URL) of the items it carries, so every item keeps its
//! identity; a single metric with too many data points is cut into several
//! copies of the metric, each with a share of the points.
//!
//! Order is kept: concatenating the requests' items gives the input's items
//! in input order (resources or scopes that hold no item are not resent).
//!
//! Sizes are accounted conservatively and without re-encoding: each nested
//! message is charged its tag and a 5-byte length prefix (the most a length
//! below 4 GiB needs) on top of its content, so a request's real encoded
//! size never exceeds the estimate, and the estimate never exceeds the
//! limit. The only request that can exceed the limit is one holding a single
//! item that is itself larger than the limit; it is sent alone and left to
//! the endpoint (see the exporter's too-large handling).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::Payload;

/// Upper bound of a field's framing: one tag byte (field numbers here are
/// below 16) and a length varint of at most 5 bytes.
const FRAME: usize = 6;

/// Splits `payload` into payloads each encoding to at most `max` bytes
/// (except an item that alone exceeds `max`, which travels alone). A payload
/// within the limit is returned untouched.
pub(crate) fn split(payload: Payload, max: usize) -> Vec<Payload> {
    if payload.encoded_len() <= max {
        return vec![payload];
    }
    match payload {
        Payload::Logs(r) => pack(r.resource_logs, max, |l, _| vec![l])
            .into_iter()
            .map(|resource_logs| Payload::Logs(ExportLogsServiceRequest { resource_logs }))
            .collect(),
        Payload::Traces(r) => pack(r.resource_spans, max, |s, _| vec![s])
            .into_iter()
            .map(|resource_spans| Payload::Traces(ExportTraceServiceRequest { resource_spans }))
            .collect(),
        Payload::Metrics(r) => pack(r.resource_metrics, max, split_metric)
            .into_iter()
            .map(|resource_metrics| {
                Payload::Metrics(ExportMetricsServiceRequest { resource_metrics })
            })
            .collect(),
    }
}

/// A message holding a list of children: resource → scopes, scope → items.
trait Nest: Message + Clone {
    type Child: Message;
    fn children(&mut self) -> &mut Vec<Self::Child>;
}

macro_rules! nest {
    ($parent:ty, $field:ident, $child:ty) => {
        impl Nest for $parent {
            type Child = $child;
            fn children(&mut self) -> &mut Vec<$child> {
                &mut self.$field
            }
        }
    };
}

nest!(ResourceLogs, scope_logs, ScopeLogs);
nest!(ScopeLogs, log_records, LogRecord);
nest!(ResourceSpans, scope_spans, ScopeSpans);
nest!(ScopeSpans, spans, Span);
nest!(ResourceMetrics, scope_metrics, ScopeMetrics);
nest!(ScopeMetrics, metrics, Metric);

type ItemOf<R> = <<R as Nest>::Child as Nest>::Child;

/// One request being filled.
struct Chunk<R> {
    resources: Vec<R>,
    size: usize,
    items: usize,
    /// The last resource / scope in `resources` is the one being iterated,
    /// so a further item joins it rather than opening a copy.
    resource_open: bool,
    scope_open: bool,
}

impl<R> Default for Chunk<R> {
    fn default() -> Self {
        Chunk {
            resources: Vec::new(),
            size: 0,
            items: 0,
            resource_open: false,
            scope_open: false,
        }
    }
}

/// Greedy packing, in order. `explode` may cut an item that alone would not
/// fit into pieces that do (metrics by data point); it gets the room an
/// item has in an otherwise empty request.
fn pack<R>(
    resources: Vec<R>,
    max: usize,
    explode: impl Fn(ItemOf<R>, usize) -> Vec<ItemOf<R>>,
) -> Vec<Vec<R>>
where
    R: Nest,
    R::Child: Nest + Clone,
{
    let mut out = Vec::new();
    let mut chunk = Chunk::<R>::default();
    for mut resource in resources {
        let scopes = std::mem::take(resource.children());
        let resource_cost = resource.encoded_len() + FRAME;
        chunk.resource_open = false;
        chunk.scope_open = false;
        for mut scope in scopes {
            let items = std::mem::take(scope.children());
            let scope_cost = scope.encoded_len() + FRAME;
            chunk.scope_open = false;
            let room = max.saturating_sub(resource_cost + scope_cost);
            for item in items {
                let pieces = if item.encoded_len() + FRAME > room {
                    explode(item, room)
                } else {
                    vec![item]
                };
                for piece in pieces {
                    let cost = piece.encoded_len() + FRAME;
                    let opening = |c: &Chunk<R>| {
                        (if c.resource_open { 0 } else { resource_cost })
                            + (if c.scope_open { 0 } else { scope_cost })
                    };
                    if chunk.items > 0 && chunk.size + opening(&chunk) + cost > max {
                        out.push(std::mem::take(&mut chunk).resources);
                    }
                    if !chunk.resource_open {
                        chunk.resources.push(resource.clone());
                        chunk.size += resource_cost;
                        chunk.resource_open = true;
                        chunk.scope_open = false;
                    }
                    let r = chunk.resources.last_mut().expect("opened above");
                    if !chunk.scope_open {
                        r.children().push(scope.clone());
                        chunk.size += scope_cost;
                        chunk.scope_open = true;
                    }
                    let s = r.children().last_mut().expect("opened above");
                    s.children().push(piece);
                    chunk.size += cost;
                    chunk.items += 1;
                }
            }
        }
    }
    if chunk.items > 0 {
        out.push(chunk.resources);
    }
    out
}

/// Cuts a metric whose data points do not fit in `room` bytes into copies
/// (same name, unit, description, metadata, temporality) each holding a
/// consecutive share of the points.
fn split_metric(mut m: Metric, room: usize) -> Vec<Metric> {
    fn groups<P: Message>(points: Vec<P>, room: usize) -> Vec<Vec<P>> {
        let mut out: Vec<Vec<P>> = Vec::new();
        let mut size = 0;
        for p in points {
            let cost = p.encoded_len() + FRAME;
            match out.last_mut() {
                Some(g) if size + cost <= room => g.push(p),
                _ => {
                    out.push(vec![p]);
                    size = 0;
                }
            }
            size += cost;
        }
        out
    }
    use metric::Data;
    let Some(mut data) = m.data.take() else {
        return vec![m];
    };
    // The envelope: the metric with an empty `data` of the same kind, plus
    // the framing of `data` itself.
    let shell_cost = {
        let mut shell_data = data.clone();
        match &mut shell_data {
            Data::Gauge(g) => g.data_points.clear(),
            Data::Sum(s) => s.data_points.clear(),
            Data::Histogram(h) => h.data_points.clear(),
            Data::ExponentialHistogram(h) => h.data_points.clear(),
            Data::Summary(s) => s.data_points.clear(),
        }
        m.data = Some(shell_data);
        m.encoded_len() + FRAME
    };
    let room = room.saturating_sub(shell_cost);
    let with = |data: Data| Metric {
        data: Some(data),
        ..m.clone()
    };
    match &mut data {
        Data::Gauge(g) => groups(std::mem::take(&mut g.data_points), room)
            .into_iter()
            .map(|data_points| {
                with(Data::Gauge(
                    opentelemetry_proto::tonic::metrics::v1::Gauge { data_points },
                ))
            })
            .collect(),
        Data::Sum(s) => groups(std::mem::take(&mut s.data_points), room)
            .into_iter()
            .map(|data_points| {
                with(Data::Sum(opentelemetry_proto::tonic::metrics::v1::Sum {
                    data_points,
                    ..s.clone()
                }))
            })
            .collect(),
        Data::Histogram(h) => groups(std::mem::take(&mut h.data_points), room)
            .into_iter()
            .map(|data_points| {
                with(Data::Histogram(
                    opentelemetry_proto::tonic::metrics::v1::Histogram {
                        data_points,
                        ..h.clone()
                    },
                ))
            })
            .collect(),
        Data::ExponentialHistogram(h) => groups(std::mem::take(&mut h.data_points), room)
            .into_iter()
            .map(|data_points| {
                with(Data::ExponentialHistogram(
                    opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                        data_points,
                        ..h.clone()
                    },
                ))
            })
            .collect(),
        Data::Summary(s) => groups(std::mem::take(&mut s.data_points), room)
            .into_iter()
            .map(|data_points| {
                with(Data::Summary(
                    opentelemetry_proto::tonic::metrics::v1::Summary { data_points },
                ))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, Sum};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    /// Resources × scopes × record body sizes.
    fn logs(shape: &[Vec<Vec<usize>>]) -> Payload {
        let mut n = 0u64;
        Payload::Logs(ExportLogsServiceRequest {
            resource_logs: shape
                .iter()
                .enumerate()
                .map(|(ri, scopes)| ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", &format!("svc-{ri}"))],
                        ..Default::default()
                    }),
                    schema_url: format!("https://schema/{ri}"),
                    scope_logs: scopes
                        .iter()
                        .enumerate()
                        .map(|(si, records)| ScopeLogs {
                            scope: Some(InstrumentationScope {
                                name: format!("scope-{si}"),
                                ..Default::default()
                            }),
                            log_records: records
                                .iter()
                                .map(|&len| {
                                    n += 1;
                                    LogRecord {
                                        time_unix_nano: n,
                                        body: Some(AnyValue {
                                            value: Some(any_value::Value::StringValue(
                                                "x".repeat(len),
                                            )),
                                        }),
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// Every record with the identity of its resource and scope, in order.
    fn flat_logs(
        p: &Payload,
    ) -> Vec<(
        Option<Resource>,
        String,
        Option<InstrumentationScope>,
        LogRecord,
    )> {
        let Payload::Logs(r) = p else { panic!("logs") };
        r.resource_logs
            .iter()
            .flat_map(|rl| {
                rl.scope_logs.iter().flat_map(move |sl| {
                    sl.log_records.iter().map(move |lr| {
                        (
                            rl.resource.clone(),
                            rl.schema_url.clone(),
                            sl.scope.clone(),
                            lr.clone(),
                        )
                    })
                })
            })
            .collect()
    }

    #[test]
    fn small_payload_is_untouched() {
        let p = logs(&[vec![vec![10, 10]]]);
        assert_eq!(split(p.clone(), 1 << 20), vec![p]);
    }

    #[test]
    fn cuts_keep_resource_and_scope_identity_and_order() {
        let p = logs(&[vec![vec![300; 10], vec![300; 3]], vec![vec![300; 5]]]);
        let parts = split(p.clone(), 1500);
        assert!(parts.len() >= 4, "{} parts", parts.len());
        for part in &parts {
            assert!(part.encoded_len() <= 1500, "{}", part.encoded_len());
        }
        let joined: Vec<_> = parts.iter().flat_map(flat_logs).collect();
        assert_eq!(joined, flat_logs(&p));
    }

    #[test]
    fn an_oversized_item_travels_alone() {
        let p = logs(&[vec![vec![10, 5000, 10]]]);
        let parts = split(p.clone(), 2000);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].item_count(), 1);
        assert!(parts[1].encoded_len() > 2000);
        let joined: Vec<_> = parts.iter().flat_map(flat_logs).collect();
        assert_eq!(joined, flat_logs(&p));
    }

    #[test]
    fn a_metric_with_too_many_points_is_cut_by_point() {
        let points: Vec<NumberDataPoint> = (0..1000)
            .map(|i| NumberDataPoint {
                attributes: vec![kv("pod", &format!("pod-{i}"))],
                time_unix_nano: i,
                ..Default::default()
            })
            .collect();
        let metric = |data| Metric {
            name: "http.server.requests".into(),
            unit: "1".into(),
            data: Some(data),
            ..Default::default()
        };
        let p = Payload::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric(metric::Data::Sum(Sum {
                            data_points: points.clone(),
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        metric(metric::Data::Gauge(Gauge {
                            data_points: points[..3].to_vec(),
                        })),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let parts = split(p.clone(), 4096);
        assert!(parts.len() > 5);
        let mut sum_points = Vec::new();
        for part in &parts {
            assert!(part.encoded_len() <= 4096, "{}", part.encoded_len());
            let Payload::Metrics(r) = part else { panic!() };
            for m in r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
            {
                assert_eq!(m.name, "http.server.requests");
                if let Some(metric::Data::Sum(s)) = &m.data {
                    assert!(s.is_monotonic && s.aggregation_temporality == 2);
                    sum_points.extend(s.data_points.iter().cloned());
                }
            }
        }
        assert_eq!(sum_points, points);
        assert_eq!(
            parts.iter().map(Payload::item_count).sum::<usize>(),
            p.item_count()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The union of the requests is the input, in order, and each
        /// request is within the limit unless it is one oversized item.
        #[test]
        fn split_is_lossless_ordered_and_bounded(
            shape in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(0usize..700, 0..12), 0..4),
                1..4,
            ),
            max in 256usize..4096,
        ) {
            let p = logs(&shape);
            let parts = split(p.clone(), max);
            let joined: Vec<_> = parts.iter().flat_map(flat_logs).collect();
            prop_assert_eq!(joined, flat_logs(&p));
            for part in &parts {
                prop_assert!(part.encoded_len() <= max || part.item_count() == 1,
                    "{} bytes, {} items, max {}", part.encoded_len(), part.item_count(), max);
                prop_assert!(parts.len() == 1 || part.item_count() > 0, "an empty request");
            }
        }
    }
}
