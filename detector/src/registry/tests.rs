use super::*;

fn limits(max_series: usize, max_per_name: usize) -> Limits {
    Limits {
        max_series,
        max_per_name,
        ..Limits::default()
    }
}

fn key<'a, 'b: 'a>(name: &'a str, labels: &'a mut Vec<(&'b str, &'b str)>) -> KeyRef<'a> {
    KeyRef::new(Signal::Metrics, name, labels)
}

#[test]
fn same_key_same_id_whatever_the_label_order() {
    let mut r: Registry<u32> = Registry::new(Limits::default());
    let mut a = vec![("service", "checkout"), ("route", "/pay"), ("code", "200")];
    let mut b = vec![("code", "200"), ("service", "checkout"), ("route", "/pay")];
    let id = r.get_or_insert(&key("http.rate", &mut a), 10).unwrap();
    assert_eq!(r.get_or_insert(&key("http.rate", &mut b), 20).unwrap(), id);
    assert_eq!(r.len(), 1);
    assert_eq!(r.last_update(id), Some(20), "a hit touches");
    let mut c = vec![("service", "checkout"), ("route", "/pay"), ("code", "500")];
    let other = r.get_or_insert(&key("http.rate", &mut c), 20).unwrap();
    assert_ne!(other, id);
    // Same labels, other signal: another series.
    let mut d = vec![("service", "checkout"), ("route", "/pay"), ("code", "200")];
    let span = r
        .get_or_insert(&KeyRef::new(Signal::Traces, "http.rate", &mut d), 20)
        .unwrap();
    assert_ne!(span, id);

    let k = r.key(id).unwrap();
    assert_eq!(
        k.to_string(),
        r#"http.rate{code="200",route="/pay",service="checkout"}"#
    );
    assert_eq!(k.service(), "checkout");
    assert_eq!(k.label("route"), Some("/pay"));
    assert_eq!(k.label("missing"), None);
    assert_eq!(
        serde_json::to_value(k).unwrap(),
        serde_json::json!({"signal": "metrics", "name": "http.rate",
            "labels": {"code": "200", "route": "/pay", "service": "checkout"}})
    );
    *r.state_mut(id).unwrap() = 7;
    assert_eq!(r.state(id), Some(&7));
    // Duplicate label names: the first wins.
    let mut dup = vec![("a", "1"), ("a", "2")];
    let kr = key("x", &mut dup);
    assert_eq!(kr.labels(), &[("a", "1")]);
}

#[test]
fn global_cap_refuses_and_counts() {
    let mut r: Registry<()> = Registry::new(limits(3, 100));
    for i in 0..3 {
        let v = i.to_string();
        let mut l = vec![("i", v.as_str())];
        r.get_or_insert(&key("m", &mut l), 0).unwrap();
    }
    let mut l = vec![("i", "3")];
    assert_eq!(
        r.get_or_insert(&key("m", &mut l), 0),
        Err(Rejected::SeriesLimit)
    );
    assert_eq!(
        r.get_or_insert(&key("m", &mut l), 0),
        Err(Rejected::SeriesLimit)
    );
    assert_eq!(
        r.telemetry().dropped(REASON_SERIES_LIMIT),
        2,
        "counted per attempt"
    );
    assert_eq!(r.len(), 3);
    // Existing keys still resolve at the cap.
    let mut l0 = vec![("i", "0")];
    assert!(r.get_or_insert(&key("m", &mut l0), 1).is_ok());
    // Room again after a removal.
    let id0 = r.find(&key("m", &mut l0)).unwrap();
    r.remove(id0).unwrap();
    assert!(r.get_or_insert(&key("m", &mut l), 1).is_ok());
}

#[test]
fn cardinality_cap_is_per_name_and_service() {
    let mut r: Registry<()> = Registry::new(limits(100, 2));
    let mut ins = |name: &str, svc: &str, user: &str| {
        let mut l = vec![("service", svc), ("user", user)];
        r.get_or_insert(&KeyRef::new(Signal::Metrics, name, &mut l), 0)
    };
    assert!(ins("login.rate", "auth", "1").is_ok());
    assert!(ins("login.rate", "auth", "2").is_ok());
    assert_eq!(
        ins("login.rate", "auth", "3"),
        Err(Rejected::CardinalityLimit)
    );
    // Another service, or another name of the same service, is unaffected.
    assert!(ins("login.rate", "web", "3").is_ok());
    assert!(ins("logout.rate", "auth", "3").is_ok());
    assert_eq!(r.telemetry().dropped(REASON_CARDINALITY_LIMIT), 1);
}

#[test]
fn label_limits_refuse_without_truncating() {
    let mut r: Registry<()> = Registry::new(Limits {
        max_labels: 2,
        max_label_bytes: 8,
        ..Limits::default()
    });
    let mut many = vec![("a", "1"), ("b", "2"), ("c", "3")];
    assert_eq!(
        r.get_or_insert(&key("m", &mut many), 0),
        Err(Rejected::LabelLimit)
    );
    let mut long = vec![("a", "123456789")];
    assert_eq!(
        r.get_or_insert(&key("m", &mut long), 0),
        Err(Rejected::LabelLimit)
    );
    let mut ok = vec![("a", "12345678")];
    assert!(r.get_or_insert(&key("m", &mut ok), 0).is_ok());
    assert_eq!(r.telemetry().dropped(REASON_LABEL_LIMIT), 2);
}

#[test]
fn idle_series_are_evicted_with_their_state_and_ids_never_alias() {
    let mut r: Registry<&'static str> = Registry::new(Limits::default());
    let mut a = vec![("s", "a")];
    let mut b = vec![("s", "b")];
    let ida = r
        .get_or_insert_with(&key("m", &mut a), 100, || "state a")
        .unwrap();
    let idb = r
        .get_or_insert_with(&key("m", &mut b), 100, || "state b")
        .unwrap();
    r.touch(idb, 3000);
    r.touch(idb, 2000); // never backwards
    assert_eq!(r.last_update(idb), Some(3000));

    assert!(
        r.evict_idle(3700, 3600).is_empty(),
        "exactly idle_after is not idle"
    );
    let ev = r.evict_idle(3701, 3600);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].id, ev[0].state, ev[0].last_update),
        (ida, "state a", 100)
    );
    assert_eq!(ev[0].key.label("s"), Some("a"));
    assert_eq!(r.telemetry().dropped(REASON_EVICTED_IDLE), 1);
    assert!(r.get(ida).is_none());

    // The slot is reused by the next series, under a new generation.
    let mut c = vec![("s", "c")];
    let idc = r
        .get_or_insert_with(&key("m", &mut c), 4000, || "state c")
        .unwrap();
    assert_eq!(idc.slot(), ida.slot());
    assert_ne!(idc, ida);
    assert!(
        r.get(ida).is_none(),
        "a stale id does not resolve to the new series"
    );
    assert_eq!(SeriesId::from_u64(idc.as_u64()), idc);
    assert_eq!(r.iter().count(), 2);
}

#[test]
fn insert_all_is_all_or_nothing_and_counts_once() {
    let mut r: Registry<()> = Registry::new(limits(4, 100));
    let mut l = vec![("service", "s")];
    r.get_or_insert(&key("existing", &mut l), 0).unwrap();
    let labels = [("service", "s")];
    let names = ["h.rate", "h.mean", "h.p50", "h.p99"];
    let keys: Vec<KeyRef<'_>> = names
        .iter()
        .map(|n| KeyRef::sorted(Signal::Metrics, n, &labels))
        .collect();
    assert_eq!(r.insert_all(&keys, 0, || ()), Err(Rejected::SeriesLimit));
    assert_eq!(r.len(), 1, "nothing of the group was registered");
    assert_eq!(r.telemetry().dropped(REASON_SERIES_LIMIT), 1);
    let ids = r.insert_all(&keys[..3], 0, || ()).unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(r.len(), 4);
    // Keys already present come back as they are.
    assert_eq!(r.insert_all(&keys[..1], 5, || ()).unwrap(), ids[..1]);
    // The family cap counts series of the same family inside one batch.
    let mut r2: Registry<()> = Registry::new(limits(100, 1));
    let twice = [
        KeyRef::sorted(Signal::Metrics, "x", &[("a", "1"), ("service", "s")]),
        KeyRef::sorted(Signal::Metrics, "x", &[("a", "2"), ("service", "s")]),
    ];
    assert_eq!(
        r2.insert_all(&twice, 0, || ()),
        Err(Rejected::CardinalityLimit)
    );
    assert!(r2.is_empty());
}

#[test]
fn colliding_hashes_still_resolve_exactly() {
    let mut r: Registry<u8> = Registry::new(Limits::default());
    r.collide = true;
    let vals = ["a", "b", "c", "d"];
    let ids: Vec<SeriesId> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut l = vec![("k", *v)];
            r.get_or_insert_with(&key("m", &mut l), 0, || i as u8)
                .unwrap()
        })
        .collect();
    for (i, v) in vals.iter().enumerate() {
        let mut l = vec![("k", *v)];
        assert_eq!(r.find(&key("m", &mut l)), Some(ids[i]));
    }
    // Remove the indexed one and one from the overflow list.
    r.remove(ids[0]).unwrap();
    r.remove(ids[2]).unwrap();
    for (i, v) in vals.iter().enumerate() {
        let mut l = vec![("k", *v)];
        let want = (i % 2 == 1).then_some(ids[i]);
        assert_eq!(r.find(&key("m", &mut l)), want, "{v}");
    }
    r.remove(ids[1]).unwrap();
    r.remove(ids[3]).unwrap();
    assert!(r.index.is_empty() && r.collisions.is_empty());
}

#[test]
fn interned_strings_and_families_are_released() {
    let mut r: Registry<()> = Registry::new(Limits::default());
    for i in 0..50 {
        let v = i.to_string();
        let mut l = vec![("service", "s"), ("user", v.as_str())];
        r.get_or_insert(&key("m", &mut l), 0).unwrap();
    }
    assert_eq!(r.interned.len(), 3, "name + two label names, shared");
    let before = r.key_bytes();
    assert!(before > 50 * 50, "{before}");
    let ev = r.evict_idle(10_000, 10);
    assert_eq!(ev.len(), 50);
    assert!(r.interned.is_empty());
    assert!(r.families.is_empty());
    assert!(r.is_empty());
}
