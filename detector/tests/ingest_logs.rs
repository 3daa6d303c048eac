//! Logs → severity counts, Drain templates, template series and the
//! new-or-rare error signal.

#[path = "ingest_support/payload.rs"]
mod payload;

use argus_detector::ingest::{Ingest, IngestConfig, StepPoint};
use argus_detector::template::TemplateId;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList, any_value::Value};
use payload::*;

const INFO: i32 = 9;
const WARN: i32 = 13;
const ERROR: i32 = 17;

fn ingest() -> Ingest {
    Ingest::new(IngestConfig::default()).unwrap()
}

fn novelty(ing: &Ingest, pts: &[StepPoint]) -> Vec<(i64, f64)> {
    values(
        ing,
        pts,
        "log.new_error_templates",
        &[("service", "payments")],
    )
}

#[test]
fn severity_counts_are_zero_filled_rates() {
    let mut ing = ingest();
    let t = T0 as f64;
    let mut sev_text = record(t + 2.0, 0, "disk almost full", None);
    sev_text.severity_text = "WARNING".into();
    let map_body = {
        let mut r = record(t + 3.0, ERROR, "", Some(9));
        r.body = Some(AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    kv("level", "error"),
                    kv("msg", "payment declined for order 42"),
                ],
            })),
        });
        r
    };
    let st = ing.ingest(
        &logs(
            resource("payments"),
            vec![
                record(t + 1.0, INFO, "request served in 12ms", None),
                record(t + 1.5, INFO, "request served in 15ms", None),
                sev_text,
                map_body,
                record(t + 11.0, INFO, "request served in 9ms", None),
            ],
        ),
        T0 + 12,
    );
    assert_eq!(st.accepted, 5);
    let pts = ing.flush(T0 + 40);
    let by = |sev: &str| values(&ing, &pts, "log.records", &[("severity", sev)]);
    assert_eq!(by("info"), vec![(T0, 0.2), (T0 + 10, 0.1), (T0 + 20, 0.0)]);
    assert_eq!(by("warn"), vec![(T0, 0.1), (T0 + 10, 0.0), (T0 + 20, 0.0)]);
    assert_eq!(by("error"), vec![(T0, 0.1), (T0 + 10, 0.0), (T0 + 20, 0.0)]);
    assert!(
        by("other").is_empty(),
        "a severity never seen has no series"
    );

    // The error point names its template and trace.
    let p = select(&ing, &pts, "log.records", &[("severity", "error")])
        .next()
        .unwrap();
    assert_eq!(p.exemplars, vec![[9; 16]]);
    assert_eq!(p.templates.len(), 1);
    let tpl = ing.template(p.templates[0]).unwrap();
    assert_eq!(tpl.text(), "payment declined for order <*>");
    assert_eq!(tpl.trace_ids(), vec![[9; 16]]);
    assert_eq!(tpl.service(), "payments");
    // One template for the three "request served" lines.
    let info = select(&ing, &pts, "log.records", &[("severity", "info")])
        .next()
        .unwrap();
    assert_eq!(
        ing.template(info.templates[0]).unwrap().text(),
        "request served in <*>"
    );
    assert_eq!(ing.template(info.templates[0]).unwrap().count(), 3);
}

/// A template gets its own series once it recurs (5 records) or at its
/// first error; rarer info templates do not make series.
#[test]
fn template_series_for_recurring_or_error_templates() {
    let mut ing = ingest();
    let t = T0 as f64;
    let mut recs = Vec::new();
    for i in 0..7 {
        recs.push(record(
            t + 1.0 + i as f64,
            INFO,
            &format!("cache refreshed in {i}ms"),
            None,
        ));
    }
    recs.push(record(t + 2.0, INFO, "config reloaded", None));
    recs.push(record(
        t + 3.0,
        ERROR,
        "upstream timeout after 30s",
        Some(4),
    ));
    ing.ingest(&logs(resource("payments"), recs), T0 + 9);
    let pts = ing.flush(T0 + 30);
    let tpl: Vec<(String, f64)> = select(&ing, &pts, "log.template", &[])
        .filter(|p| p.ts == T0)
        .map(|p| (ing.template(p.templates[0]).unwrap().text(), p.value))
        .collect();
    let mut tpl = tpl;
    tpl.sort_by(|a, b| a.0.cmp(&b.0));
    // Counted from the record that qualified it: the 5th, 6th and 7th.
    assert_eq!(
        tpl,
        vec![
            ("cache refreshed in <*>".to_string(), 0.3),
            ("upstream timeout after <*>".to_string(), 0.1),
        ]
    );
    // Its label is the template id, which resolves back to the template.
    let p = select(&ing, &pts, "log.template", &[]).next().unwrap();
    let label: TemplateId = ing
        .key(p.series)
        .unwrap()
        .label("template")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(label, p.templates[0]);
}

/// The new-or-rare error signal fires for a never-seen error and not for
/// its thousandth repeat, nor for errors the service always logs.
#[test]
fn new_error_template_fires_once_not_on_repeats() {
    let mut ing = ingest();
    let t = T0 as f64;
    // Ten minutes of routine: info traffic and a chronic, known error.
    for s in 0..60 {
        let at = t + s as f64 * 10.0;
        let recs = vec![
            record(at + 1.0, INFO, &format!("request served in {s}ms"), None),
            record(
                at + 2.0,
                ERROR,
                &format!("retrying connection to db-{}", s % 3),
                None,
            ),
        ];
        ing.ingest(&logs(resource("payments"), recs), T0 + s * 10 + 3);
    }
    let warm = ing.flush(T0 + 600);
    let quiet_after_a_minute: Vec<f64> = novelty(&ing, &warm)
        .into_iter()
        .filter(|(ts, _)| *ts >= T0 + 60)
        .map(|(_, v)| v)
        .collect();
    assert!(
        quiet_after_a_minute.iter().all(|v| *v == 0.0),
        "{quiet_after_a_minute:?}"
    );

    // A new error, once, at T0+600; then 999 repeats, 10 per step.
    let s0 = T0 + 600;
    ing.ingest(
        &logs(
            resource("payments"),
            vec![
                record(
                    s0 as f64 + 1.0,
                    ERROR,
                    "payment declined for order 123",
                    Some(7),
                ),
                record(s0 as f64 + 2.0, ERROR, "retrying connection to db-1", None),
            ],
        ),
        s0 + 3,
    );
    let mut repeats = 1;
    let mut step = s0 + 10;
    while repeats < 1000 {
        let recs: Vec<_> = (0..10)
            .map(|i| {
                record(
                    step as f64 + i as f64 * 0.5,
                    ERROR,
                    &format!("payment declined for order {}", 1000 + i),
                    Some(8),
                )
            })
            .collect();
        repeats += 10;
        ing.ingest(&logs(resource("payments"), recs), step + 6);
        step += 10;
    }
    let last_step = step - 10;
    let pts = ing.flush(step + 20);
    let sig = novelty(&ing, &pts);
    let at = |ts: i64| sig.iter().find(|(t, _)| *t == ts).map(|(_, v)| *v);
    assert_eq!(at(s0), Some(1.0), "fires for the new error (and only it)");
    let p = select(&ing, &pts, "log.new_error_templates", &[])
        .find(|p| p.ts == s0)
        .unwrap();
    assert_eq!(p.exemplars, vec![[7; 16]]);
    assert_eq!(
        ing.template(p.templates[0]).unwrap().text(),
        "payment declined for order <*>"
    );
    assert_eq!(at(last_step), Some(0.0), "the 1000th repeat is not news");
    // One episode: non-zero only while the template is new — steps with
    // records less than `new_for` (60 s) after its first one (at s0 + 1).
    let firing: Vec<i64> = sig
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(firing.first(), Some(&s0));
    assert!(firing.iter().all(|t| *t < s0 + 1 + 60), "{firing:?}");
    assert!(
        firing.windows(2).all(|w| w[1] - w[0] == 10),
        "contiguous: {firing:?}"
    );
}

/// A rare error — a few times a day — keeps firing on each of its first
/// `rare_below` (5) occurrences in the window, then is routine.
#[test]
fn rare_error_template_fires_until_it_is_routine() {
    let mut ing = ingest();
    let half_hour = 1800;
    let mut fired = Vec::new();
    for i in 0..8 {
        let at = T0 + i * half_hour;
        ing.ingest(
            &logs(
                resource("payments"),
                vec![record(
                    at as f64 + 1.0,
                    WARN,
                    "certificate expires in 12 days",
                    None,
                )],
            ),
            at + 2,
        );
        // Info traffic keeps the service alive.
        ing.ingest(
            &logs(
                resource("payments"),
                vec![record(at as f64 + 3.0, INFO, "heartbeat", None)],
            ),
            at + 4,
        );
        let pts = ing.flush(at + 30);
        fired.push(
            novelty(&ing, &pts)
                .iter()
                .find(|(t, _)| *t == at)
                .map(|(_, v)| *v),
        );
    }
    assert_eq!(
        fired,
        vec![
            Some(1.0),
            Some(1.0),
            Some(1.0),
            Some(1.0),
            Some(1.0),
            Some(0.0),
            Some(0.0),
            Some(0.0)
        ]
    );
    // Info records never count, however new.
    let mut ing = ingest();
    ing.ingest(
        &logs(
            resource("payments"),
            vec![record(T0 as f64 + 1.0, INFO, "brand new info line", None)],
        ),
        T0 + 2,
    );
    let pts = ing.flush(T0 + 20);
    assert_eq!(novelty(&ing, &pts), vec![(T0, 0.0)]);
}

#[test]
fn templates_are_per_service() {
    let mut ing = ingest();
    let t = T0 as f64;
    ing.ingest(
        &logs(
            resource("payments"),
            vec![record(t + 1.0, ERROR, "connection reset by peer", None)],
        ),
        T0 + 2,
    );
    ing.ingest(
        &logs(
            resource("orders"),
            vec![record(t + 1.0, ERROR, "connection reset by peer", None)],
        ),
        T0 + 2,
    );
    let pts = ing.flush(T0 + 20);
    // New to each service: both fire.
    assert_eq!(
        values(
            &ing,
            &pts,
            "log.new_error_templates",
            &[("service", "orders")]
        ),
        vec![(T0, 1.0)]
    );
    assert_eq!(novelty(&ing, &pts), vec![(T0, 1.0)]);
    assert_eq!(ing.templates().len(), 2);
}
