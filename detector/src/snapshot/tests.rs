use super::*;
use crate::engine::Verdict;
use crate::incident::{Incidents, IncidentsConfig};
use crate::registry::{KeyRef, Registry};
use crate::scoring::RecentPoint;

fn trained(n: usize) -> (EngineConfig, SeriesDetector) {
    let cfg = EngineConfig::default();
    let mut d = SeriesDetector::new(&cfg);
    for i in 0..n {
        let v = 100.0 + (i as f64 * 0.37).sin() * 5.0 + (i % 7) as f64 * 0.1;
        d.update(&cfg, 1_700_000_000 + 10 * i as i64, v);
    }
    (cfg, d)
}

fn write_one(dir: &Path, det: &SeriesDetector, corrupt_after: bool) -> u64 {
    let mut w = Writer::create(dir).unwrap();
    let mut enc = Encoder::default();
    enc.meta(&Meta {
        taken_at: 1,
        clock: 2,
        step_secs: 10,
        engine: 3,
        next_incident: 4,
        version: "test".into(),
    });
    let mut reg = Registry::<()>::new(Default::default());
    let mut labels = vec![("service", "checkout \"quoted\""), ("operation", "GET /x")];
    let k = KeyRef::new(Signal::Traces, "span.latency.p99", &mut labels);
    let id = reg.get_or_insert(&k, 0).unwrap();
    let key = reg.key(id).unwrap();
    enc.series(&SeriesOut {
        signal: key.signal(),
        name: key.name(),
        labels: key.label_vec(),
        detector: det,
        recent: vec![RecentPoint::new(5, f64::NAN, &Verdict::default(), true)],
        incident: Some(7),
    });
    let mut inc = Incidents::new(IncidentsConfig::default(), 0.6);
    let p = crate::ingest::StepPoint {
        series: id,
        ts: 5,
        value: 1.0,
        exemplars: vec![[9; 16]],
        templates: vec![],
    };
    let v = Verdict {
        anomalous: true,
        onset: true,
        score: 0.5,
        ..Default::default()
    };
    inc.onset(id, key, &p, &v);
    for i in inc.open() {
        enc.incident(i);
    }
    w.take(&mut enc).unwrap();
    let bytes = w.finish().unwrap();
    if corrupt_after {
        let path = dir.join(FILE_NAME);
        let mut data = std::fs::read(&path).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0x40;
        std::fs::write(&path, data).unwrap();
    }
    bytes
}

#[test]
fn round_trip_continues_with_identical_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, mut live) = trained(400);
    let bytes = write_one(dir.path(), &live, false);
    assert!(
        !dir.path().join("detector.snapshot.tmp").exists(),
        "temp file renamed away"
    );
    let snap = read(dir.path()).unwrap().unwrap();
    assert_eq!(snap.bytes, bytes);
    assert_eq!(snap.meta.next_incident, 4);
    assert_eq!(snap.series.len(), 1);
    assert_eq!(snap.open.len(), 1);
    let s = &snap.series[0];
    assert_eq!(
        s.display_key(),
        "span.latency.p99{operation=\"GET /x\",service=\"checkout \\\"quoted\\\"\"}"
    );
    assert_eq!(s.incident, Some(7));
    assert!(s.recent[0].value.is_nan() && s.recent[0].maintenance());
    let mut restored = s.detector.clone();
    assert_eq!(restored.points(), 400);
    // Bit-exact state: the next verdicts are identical, including a spike.
    for i in 400..460 {
        let v = if i == 430 {
            500.0
        } else {
            100.0 + (i as f64 * 0.37).sin() * 5.0
        };
        let ts = 1_700_000_000 + 10 * i;
        let a = live.update(&cfg, ts, v);
        let b = restored.update(&cfg, ts, v);
        assert_eq!(a.score.to_bits(), b.score.to_bits(), "point {i}");
        assert_eq!(a.upper.to_bits(), b.upper.to_bits(), "point {i}");
        assert_eq!(a.anomalous, b.anomalous);
    }
    // The open incident came back whole.
    assert_eq!(
        snap.open[0].members[0].trace_ids,
        vec![hex::encode([9u8; 16])]
    );
}

#[test]
fn damaged_files_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read(dir.path()).unwrap().is_none(), "no snapshot yet");
    let (_, det) = trained(50);
    write_one(dir.path(), &det, true);
    let err = read(dir.path()).unwrap_err();
    assert!(matches!(err, SnapshotError::Corrupt { .. }), "{err}");

    write_one(dir.path(), &det, false);
    let path = dir.path().join(FILE_NAME);
    let good = std::fs::read(&path).unwrap();
    for (what, data) in [
        ("truncated", good[..good.len() - 3].to_vec()),
        ("no end record", good[..good.len() - 20].to_vec()),
        ("bad magic", [b"NOTARGUS".as_slice(), &good[8..]].concat()),
        (
            "future version",
            [&good[..8], &99u32.to_le_bytes(), &good[12..]].concat(),
        ),
        ("trailing garbage", [good.as_slice(), b"x"].concat()),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &data).unwrap();
        match read(dir.path()) {
            Err(SnapshotError::Corrupt { reason, .. }) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn engine_fingerprint_follows_the_settings() {
    let a = EngineConfig::default();
    let mut b = a.clone();
    assert_eq!(engine_fingerprint(&a), engine_fingerprint(&b));
    b.warmup += 1;
    assert_ne!(engine_fingerprint(&a), engine_fingerprint(&b));
}
