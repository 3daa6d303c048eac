use super::*;
use crate::registry::{KeyRef, Registry};

struct Fixture {
    reg: Registry<()>,
    inc: Incidents,
}

impl Fixture {
    fn new(window_secs: u64) -> Self {
        Fixture {
            reg: Registry::new(Default::default()),
            inc: Incidents::new(
                IncidentsConfig {
                    window: Duration::from_secs(window_secs),
                    max_members: 3,
                    ..Default::default()
                },
                0.6,
            ),
        }
    }

    fn series(&mut self, name: &str, labels: &[(&str, &str)]) -> (SeriesId, SeriesKey) {
        let mut l: Vec<(&str, &str)> = labels.to_vec();
        let k = KeyRef::new(Signal::Traces, name, &mut l);
        let id = self.reg.get_or_insert(&k, 0).unwrap();
        (id, self.reg.key(id).unwrap().clone())
    }
}

fn point(id: SeriesId, ts: i64, value: f64, traces: &[u8]) -> StepPoint {
    StepPoint {
        series: id,
        ts,
        value,
        exemplars: traces.iter().map(|&b| [b; 16]).collect(),
        templates: Vec::new(),
    }
}

fn verdict(score: f64, anomalous: bool, onset: bool) -> Verdict {
    Verdict {
        score,
        alert_score: score,
        anomalous,
        onset,
        expected: 1.0,
        lower: 0.5,
        upper: 1.5,
        fired: if anomalous { 1 } else { 0 },
        ..Default::default()
    }
}

const CHECKOUT: &[(&str, &str)] = &[
    ("service", "checkout"),
    ("namespace", "prod"),
    ("operation", "GET /pay"),
];

#[test]
fn anomalies_on_one_entity_are_one_incident_and_others_are_not() {
    let mut f = Fixture::new(60);
    let (lat, lat_key) = f.series("span.latency.p99", CHECKOUT);
    let (err, err_key) = f.series("span.error_ratio", CHECKOUT);
    let (other, other_key) = f.series(
        "span.latency.p99",
        &[("service", "search"), ("namespace", "prod")],
    );
    let (staging, staging_key) = f.series(
        "span.latency.p99",
        &[("service", "checkout"), ("namespace", "staging")],
    );

    let a = f
        .inc
        .onset(
            lat,
            &lat_key,
            &point(lat, 100, 5.0, &[1]),
            &verdict(0.5, true, true),
        )
        .unwrap();
    let b = f
        .inc
        .onset(
            err,
            &err_key,
            &point(err, 110, 0.3, &[2]),
            &verdict(0.4, true, true),
        )
        .unwrap();
    let c = f
        .inc
        .onset(
            other,
            &other_key,
            &point(other, 110, 9.0, &[]),
            &verdict(0.4, true, true),
        )
        .unwrap();
    let d = f
        .inc
        .onset(
            staging,
            &staging_key,
            &point(staging, 110, 9.0, &[]),
            &verdict(0.4, true, true),
        )
        .unwrap();
    assert_eq!(a, b, "same service and namespace: one incident");
    assert_ne!(a, c, "another service");
    assert_ne!(a, d, "same service in another namespace");
    assert_eq!(f.inc.open_count(), 3);
    assert_eq!(
        f.inc.take_events(),
        vec![Event::Opened(a), Event::Opened(c), Event::Opened(d)],
        "a joiner right after the opening is part of the opening announcement"
    );
    let inc = f.inc.get(a).unwrap();
    assert_eq!(inc.entity.key(), "namespace=prod,service=checkout");
    assert_eq!(inc.members.len(), 2);
    assert_eq!(inc.started_at, 100);
    assert_eq!(inc.signal, Signal::Traces);
    // The top member (highest score) comes first, and so do its traces.
    assert_eq!(inc.top_members()[0].name, "span.latency.p99");
    assert_eq!(
        inc.trace_ids(),
        vec![hex::encode([1u8; 16]), hex::encode([2u8; 16])]
    );
    let labels = inc.common_labels();
    assert_eq!(labels.get("service").map(String::as_str), Some("checkout"));
    assert_eq!(
        labels.get("operation").map(String::as_str),
        Some("GET /pay")
    );
}

#[test]
fn resolves_a_window_after_the_last_recovery_and_regroups_within_it() {
    let mut f = Fixture::new(60);
    let (lat, key) = f.series("span.latency.p99", CHECKOUT);
    let seq = f
        .inc
        .onset(
            lat,
            &key,
            &point(lat, 100, 5.0, &[1]),
            &verdict(0.5, true, true),
        )
        .unwrap();
    f.inc.take_events();
    assert!(f.inc.member_point(
        seq,
        lat,
        &point(lat, 110, 6.0, &[3]),
        &verdict(0.55, true, false),
        false
    ));
    // Recovery (the engine's hysteresis closed the episode).
    assert!(!f.inc.member_point(
        seq,
        lat,
        &point(lat, 200, 1.0, &[]),
        &verdict(0.0, false, false),
        false
    ));
    f.inc.tick(259);
    assert!(f.inc.get(seq).unwrap().is_open(), "quiet window not over");
    // A new onset within the window re-joins the same incident.
    let again = f
        .inc
        .onset(
            lat,
            &key,
            &point(lat, 250, 7.0, &[4]),
            &verdict(0.5, true, true),
        )
        .unwrap();
    assert_eq!(again, seq);
    assert_eq!(
        f.inc.get(seq).unwrap().members.len(),
        1,
        "same member re-activated"
    );
    assert_eq!(f.inc.take_events(), vec![Event::Changed(seq)]);
    assert!(!f.inc.member_point(
        seq,
        lat,
        &point(lat, 300, 1.0, &[]),
        &verdict(0.0, false, false),
        false
    ));
    f.inc.tick(359);
    assert!(f.inc.get(seq).unwrap().is_open());
    f.inc.tick(360);
    let inc = f.inc.get(seq).unwrap();
    assert_eq!(inc.state, IncidentState::Resolved);
    assert_eq!(
        inc.resolved_at,
        Some(300),
        "resolved at the recovery, not at the window's end"
    );
    assert_eq!(f.inc.take_events(), vec![Event::Resolved(seq)]);
    // The entity is free: the next onset is a new incident.
    let next = f
        .inc
        .onset(
            lat,
            &key,
            &point(lat, 400, 7.0, &[]),
            &verdict(0.5, true, true),
        )
        .unwrap();
    assert_ne!(next, seq);
}

#[test]
fn peak_explains_and_a_much_higher_score_updates_the_alert() {
    let mut f = Fixture::new(60);
    let (lat, key) = f.series("span.latency.p99", CHECKOUT);
    let seq = f
        .inc
        .onset(
            lat,
            &key,
            &point(lat, 100, 5.0, &[1]),
            &verdict(0.4, true, true),
        )
        .unwrap();
    f.inc.take_events();
    f.inc.member_point(
        seq,
        lat,
        &point(lat, 110, 5.5, &[2]),
        &verdict(0.45, true, false),
        false,
    );
    assert!(f.inc.take_events().is_empty(), "small rise: no re-send");
    f.inc.member_point(
        seq,
        lat,
        &point(lat, 120, 9.0, &[7]),
        &verdict(0.65, true, false),
        false,
    );
    assert_eq!(f.inc.take_events(), vec![Event::Changed(seq)]);
    let inc = f.inc.get(seq).unwrap();
    assert_eq!(inc.severity, "critical", "score reached critical_score");
    let m = &inc.members[0];
    assert_eq!(m.peak.observed, 9.0);
    assert_eq!(m.peak.ts, 120);
    assert_eq!(m.last.ts, 120);
    assert_eq!(
        m.trace_ids[0],
        hex::encode([7u8; 16]),
        "the peak's exemplars first"
    );
    assert_eq!(m.models, vec![ModelKind::Robust]);
}

#[test]
fn maintenance_recovers_members_and_entities_fall_back() {
    let mut f = Fixture::new(10);
    // `unknown_service` identifies nothing: the pod does.
    let (a, ka) = f.series(
        "cpu",
        &[
            ("service", "unknown_service:java"),
            ("pod", "p-1"),
            ("node", "n-1"),
        ],
    );
    let (b, kb) = f.series("temp", &[("node", "n-1")]);
    let (c, kc) = f.series("lonely", &[]);
    assert_eq!(f.inc.entity_of(&ka).key(), "pod=p-1");
    assert_eq!(f.inc.entity_of(&kb).key(), "node=n-1");
    assert_eq!(f.inc.entity_of(&kc).label, "series");
    let seq = f
        .inc
        .onset(a, &ka, &point(a, 0, 1.0, &[]), &verdict(0.5, true, true))
        .unwrap();
    let _ = (b, c);
    // A maintenance window now covers the series: it counts as recovered.
    assert!(!f.inc.member_point(
        seq,
        a,
        &point(a, 10, 1.0, &[]),
        &verdict(0.9, true, false),
        true
    ));
    f.inc.tick(20);
    assert_eq!(f.inc.get(seq).unwrap().state, IncidentState::Resolved);
}

#[test]
fn feedback_dismisses_escalation_raises_and_members_are_bounded() {
    let mut f = Fixture::new(60);
    let ids: Vec<(SeriesId, SeriesKey)> = (0..5)
        .map(|i| f.series(&format!("m{i}"), &[("service", "svc")]))
        .collect();
    let seq = f
        .inc
        .onset(
            ids[0].0,
            &ids[0].1,
            &point(ids[0].0, 0, 1.0, &[]),
            &verdict(0.4, true, true),
        )
        .unwrap();
    for (id, key) in &ids[1..] {
        f.inc.onset(
            *id,
            key,
            &point(*id, 10, 1.0, &[]),
            &verdict(0.4, true, true),
        );
    }
    let inc = f.inc.get(seq).unwrap();
    assert_eq!((inc.members.len(), inc.members_dropped), (3, 2));
    let id = inc.id.clone();
    f.inc.take_events();

    assert!(f.inc.escalate(&id, "critical", "restart did not help"));
    assert!(f.inc.escalate(&id, "critical", "restart did not help"));
    let inc = f.inc.get(seq).unwrap();
    assert_eq!(inc.severity, "critical");
    assert_eq!(inc.escalations, vec!["restart did not help".to_string()]);
    assert_eq!(f.inc.take_events(), vec![Event::Changed(seq)]);

    let members = f.inc.dismiss(&id, 50).unwrap();
    assert_eq!(members.len(), 3);
    let inc = f.inc.get(seq).unwrap();
    assert!(inc.dismissed && inc.state == IncidentState::Resolved);
    assert_eq!(inc.resolved_at, Some(50));
    assert_eq!(f.inc.take_events(), vec![Event::Resolved(seq)]);
    assert!(
        !f.inc.escalate(&id, "critical", "x"),
        "closed incidents are not escalated"
    );
    // Points of former members no longer link.
    assert!(!f.inc.member_point(
        seq,
        ids[0].0,
        &point(ids[0].0, 60, 1.0, &[]),
        &verdict(0.9, true, false),
        false
    ));
    assert!(f.inc.dismiss("nope", 0).is_none());
}

#[test]
fn export_restore_keeps_open_incidents_and_rebinds_members() {
    let mut f = Fixture::new(60);
    let (lat, key) = f.series("span.latency.p99", CHECKOUT);
    let seq = f
        .inc
        .onset(
            lat,
            &key,
            &point(lat, 100, 5.0, &[1]),
            &verdict(0.5, true, true),
        )
        .unwrap();
    let (open, resolved, next) = f.inc.export();
    let mut fresh = Incidents::new(IncidentsConfig::default(), 0.6);
    fresh.restore(open, resolved, next);
    assert_eq!(fresh.open_count(), 1);
    // After a restart the series has a new id; until rebound it is unknown.
    let (new_id, _) = f.series("span.latency.p99.other", CHECKOUT);
    assert!(!fresh.member_point(
        seq,
        new_id,
        &point(new_id, 110, 1.0, &[]),
        &verdict(0.5, true, false),
        false
    ));
    assert!(fresh.rebind(seq, &key.to_string(), new_id));
    assert!(fresh.member_point(
        seq,
        new_id,
        &point(new_id, 110, 1.0, &[]),
        &verdict(0.5, true, false),
        false
    ));
    // A new incident gets a new number.
    let (x, kx) = f.series("x", &[("service", "other")]);
    let s2 = fresh
        .onset(x, &kx, &point(x, 120, 1.0, &[]), &verdict(0.5, true, true))
        .unwrap();
    assert!(s2 > seq);
}
