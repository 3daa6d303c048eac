//! Log records → per-severity counts, template counts and the
//! new-or-rare error signal (the definitions are in the
//! [module doc](super) and on [`NoveltyConfig`](super::NoveltyConfig)).

use argus_common::otlp::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};

use super::group::Kind;
use super::resource::{ResourceLabels, format_value};
use super::step::{NANOS, nanos};
use super::{Ingest, IngestStats, Reason, trace_id};
use crate::registry::KeyRef;
use crate::template::TemplateId;

pub const RECORDS: &str = "log.records";
pub const TEMPLATE: &str = "log.template";
pub const NEW_ERROR_TEMPLATES: &str = "log.new_error_templates";

pub const LABEL_SEVERITY: &str = "severity";
pub const LABEL_TEMPLATE: &str = "template";

/// Severity bucket of a log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// TRACE, DEBUG, or unknown.
    Other,
    Info,
    Warn,
    /// ERROR and FATAL.
    Error,
}

impl Severity {
    /// From the OTLP `severity_number` (1–24), else from `severity_text`.
    pub fn of(number: i32, text: &str) -> Severity {
        match number {
            17..=24 => Severity::Error,
            13..=16 => Severity::Warn,
            9..=12 => Severity::Info,
            1..=8 => Severity::Other,
            _ => Self::from_text(text.trim()),
        }
    }

    fn from_text(t: &str) -> Severity {
        const ERROR: &[&str] = &[
            "error",
            "err",
            "fatal",
            "critical",
            "crit",
            "alert",
            "emerg",
            "emergency",
            "panic",
            "severe",
            "e",
            "f",
        ];
        const WARN: &[&str] = &["warn", "warning", "w"];
        const INFO: &[&str] = &["info", "information", "informational", "notice", "i"];
        let is = |set: &[&str]| set.iter().any(|s| s.eq_ignore_ascii_case(t));
        if is(ERROR) {
            Severity::Error
        } else if is(WARN) {
            Severity::Warn
        } else if is(INFO) {
            Severity::Info
        } else {
            Severity::Other
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Other => "other",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// The text a record is mined on: a string body; the `message`, `msg`,
/// `log` or `body` field of a map body; anything else formatted.
fn body_text<'a>(body: Option<&'a AnyValue>, buf: &'a mut String) -> &'a str {
    match body.and_then(|b| b.value.as_ref()) {
        None => "",
        Some(Value::StringValue(s)) => s,
        Some(Value::KvlistValue(kv)) => {
            for field in ["message", "msg", "log", "body"] {
                if let Some(Value::StringValue(s)) = kv
                    .values
                    .iter()
                    .find(|x| x.key == field)
                    .and_then(|x| x.value.as_ref())
                    .and_then(|v| v.value.as_ref())
                {
                    return s;
                }
            }
            buf.clear();
            format_value(body.and_then(|b| b.value.as_ref()).expect("matched"), buf);
            buf
        }
        Some(v) => {
            buf.clear();
            format_value(v, buf);
            buf
        }
    }
}

fn hex_id(id: TemplateId, buf: &mut [u8; 16]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((id.0 >> (60 - 4 * i)) & 0xf) as usize];
    }
    std::str::from_utf8(buf).expect("hex digits")
}

impl<S: Default> Ingest<S> {
    pub(super) fn ingest_logs(&mut self, req: &ExportLogsServiceRequest, st: &mut IngestStats) {
        let evicted_before = self.miner.evicted();
        let Ingest {
            cfg,
            clock,
            registry,
            groups,
            miner,
            ..
        } = self;
        let lc = &cfg.logs;
        let now = clock.now();
        let wm = clock.watermark();
        let new_for = lc.novelty.new_for.as_secs() as i64;
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(6);
        let mut body_buf = String::new();
        for rl in &req.resource_logs {
            let res = ResourceLabels::of(rl.resource.as_ref());
            // Groups of this resource, resolved once: every record of a
            // resource shares its per-severity and novelty series.
            let mut by_severity: [Option<Result<u32, Reason>>; 4] = [None; 4];
            let mut novelty: Option<Option<u32>> = None;
            for sl in &rl.scope_logs {
                for rec in &sl.log_records {
                    if !lc.enabled {
                        st.ignore();
                        continue;
                    }
                    let ts = if rec.time_unix_nano != 0 {
                        nanos(rec.time_unix_nano)
                    } else if rec.observed_time_unix_nano != 0 {
                        nanos(rec.observed_time_unix_nano)
                    } else {
                        now.saturating_mul(NANOS)
                    };
                    let k = match clock.classify(ts) {
                        Ok(k) => k,
                        Err(t) => {
                            st.timing(t);
                            continue;
                        }
                    };
                    let sev = Severity::of(rec.severity_number, &rec.severity_text);
                    let resolved = *by_severity[sev as usize].get_or_insert_with(|| {
                        labels.clear();
                        res.push_grouped(&lc.group_by, &mut labels);
                        labels.push((LABEL_SEVERITY, sev.as_str()));
                        let key = KeyRef::new(Signal::Logs, RECORDS, &mut labels);
                        groups.resolve(registry, &key, Kind::LogCount, now, wm, || {
                            vec![RECORDS.to_string()]
                        })
                    });
                    let g = match resolved {
                        Ok(g) => g,
                        Err(r) => {
                            st.reject(r);
                            continue;
                        }
                    };
                    let trace = trace_id(&rec.trace_id);
                    let mut line = body_text(rec.body.as_ref(), &mut body_buf);
                    if line.is_empty() {
                        line = rec.event_name.as_str();
                    }
                    let ts_s = ts.div_euclid(NANOS);
                    let obs = miner.observe(res.service, line, ts_s, trace);
                    {
                        let a = groups.get_mut(g).acc(k).count();
                        a.n += 1;
                        if let Some(t) = trace {
                            a.traces.offer(lc.exemplars, ts as f64, t);
                        }
                        a.template(obs.id);
                    }

                    // The template's own series, once it recurs or matters.
                    if obs.count >= lc.template_series_min_count || sev == Severity::Error {
                        let mut hex = [0u8; 16];
                        let mut tl: Vec<(&str, &str)> = Vec::with_capacity(4);
                        res.push_grouped(&lc.group_by, &mut tl);
                        tl.push((LABEL_TEMPLATE, hex_id(obs.id, &mut hex)));
                        let tkey = KeyRef::new(Signal::Logs, TEMPLATE, &mut tl);
                        // A refusal is counted by the registry; the record
                        // itself is already counted in `log.records`.
                        if let Ok(tg) =
                            groups.resolve(registry, &tkey, Kind::Template, now, wm, || {
                                vec![TEMPLATE.to_string()]
                            })
                        {
                            let grp = groups.get_mut(tg);
                            grp.template.get_or_insert(obs.id);
                            let a = grp.acc(k).count();
                            a.n += 1;
                            if let Some(t) = trace {
                                a.traces.offer(lc.exemplars, ts as f64, t);
                            }
                        }
                    }

                    // The new-or-rare signal exists for every service that
                    // logs, so that its quiet steps are zeros.
                    let ng = *novelty.get_or_insert_with(|| {
                        labels.clear();
                        res.push_grouped(&lc.group_by, &mut labels);
                        let nkey = KeyRef::new(Signal::Logs, NEW_ERROR_TEMPLATES, &mut labels);
                        groups
                            .resolve(registry, &nkey, Kind::Novelty, now, wm, || {
                                vec![NEW_ERROR_TEMPLATES.to_string()]
                            })
                            .ok()
                    });
                    if let Some(ng) = ng {
                        let a = groups.get_mut(ng).acc(k).count();
                        let novel = ts_s - obs.first_seen < new_for
                            || obs.window_count <= lc.novelty.rare_below;
                        if sev >= Severity::Warn && novel {
                            a.n += 1;
                            a.template(obs.id);
                            if let Some(t) = trace {
                                a.traces.offer(lc.exemplars, ts as f64, t);
                            }
                        }
                    }
                    st.accept();
                }
            }
        }
        let evicted = self.miner.evicted() - evicted_before;
        let now = self.clock.now();
        let active = self.miner.len();
        self.telemetry.templates_evicted(evicted, active, now);
        self.telemetry.templates(active);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_from_number_then_text() {
        let cases = [
            (17, "", Severity::Error),
            (24, "info", Severity::Error),
            (13, "", Severity::Warn),
            (9, "ERROR", Severity::Info),
            (5, "", Severity::Other),
            (0, "ERROR", Severity::Error),
            (0, " Warning ", Severity::Warn),
            (0, "crit", Severity::Error),
            (0, "notice", Severity::Info),
            (0, "debug", Severity::Other),
            (0, "", Severity::Other),
        ];
        for (n, t, want) in cases {
            assert_eq!(Severity::of(n, t), want, "{n} {t:?}");
        }
    }

    #[test]
    fn body_text_prefers_message_fields() {
        use opentelemetry_proto::tonic::common::v1::{KeyValue, KeyValueList};
        let mut buf = String::new();
        let map = |k: &str| AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    KeyValue {
                        key: "level".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("error".into())),
                        }),
                        ..Default::default()
                    },
                    KeyValue {
                        key: k.into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("payment declined".into())),
                        }),
                        ..Default::default()
                    },
                ],
            })),
        };
        assert_eq!(body_text(Some(&map("msg")), &mut buf), "payment declined");
        assert_eq!(
            body_text(Some(&map("other")), &mut buf),
            "{\"level\":\"error\",\"other\":\"payment declined\"}"
        );
        let int = AnyValue {
            value: Some(Value::IntValue(7)),
        };
        assert_eq!(body_text(Some(&int), &mut buf), "7");
        assert_eq!(body_text(None, &mut buf), "");
    }

    #[test]
    fn template_ids_print_as_16_hex_digits() {
        let mut b = [0u8; 16];
        let id = TemplateId(0x00ab_cdef_0123_4567);
        assert_eq!(hex_id(id, &mut b), id.to_string());
        assert_eq!(hex_id(id, &mut b), "00abcdef01234567");
    }
}
