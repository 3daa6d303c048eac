//! Maintenance windows: planned work that must neither page nor teach the
//! models that the broken state is normal.
//!
//! A window is a series selector (the `/api/v1/series` syntax,
//! [`crate::registry::Matcher`]: `{service="checkout"}`,
//! `span.*{namespace="batch"}`) and a time range `[start, end)` in data
//! time (the scoring clock: wall time live, data time in event mode). While
//! a window covers a series:
//!
//! - its points are **not learnt**: they are scored with
//!   [`SeriesDetector::peek`](crate::engine::SeriesDetector::peek), which
//!   shows score and band in the API and on `/metrics` but leaves the model
//!   untouched, so the maintenance never becomes the baseline;
//! - they are **never anomalous** for incidents: no incident opens or grows
//!   from them, so nothing alerts and no remediation runs. A window that
//!   starts during an incident counts its series as recovered (the
//!   operators declaring maintenance have taken over); the incident
//!   resolves once its other members have.
//!
//! Windows come from the config (`maintenance.windows`, permanent, cannot
//! be deleted through the API) and from `POST /api/v1/maintenance` (kept in
//! snapshots; deleted with `DELETE /api/v1/maintenance/{id}`). Ended
//! windows are forgotten a day after their end.
//!
//! Times in the config and the API are RFC 3339 in UTC
//! (`2025-03-01T02:00:00Z`); the API also takes a `duration` from now.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::registry::{Matcher, SeriesKey};

/// `maintenance:` — windows that hold for the detector's whole life.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    pub windows: Vec<WindowConfig>,
}

/// One static window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Series selector.
    #[serde(rename = "match")]
    pub matcher: String,
    /// RFC 3339, UTC.
    pub start: String,
    pub end: String,
    #[serde(default)]
    pub comment: String,
}

/// Parses an RFC 3339 UTC time to unix seconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s.trim())
        .map_err(|e| format!("not an RFC 3339 UTC time like 2025-03-01T02:00:00Z: {e}"))?;
    Ok(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    })
}

fn fmt_time(ts: i64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(ts.max(0) as u64))
        .to_string()
}

impl WindowConfig {
    fn problems(&self, path: &str) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = Matcher::parse(&self.matcher) {
            p.push(format!("{path}.match: {e}"));
        }
        let start = parse_time(&self.start)
            .map_err(|e| p.push(format!("{path}.start: {e}")))
            .ok();
        let end = parse_time(&self.end)
            .map_err(|e| p.push(format!("{path}.end: {e}")))
            .ok();
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            p.push(format!("{path}.end: must be after start"));
        }
        p
    }
}

impl MaintenanceConfig {
    pub fn problems(&self, path: &str) -> Vec<String> {
        self.windows
            .iter()
            .enumerate()
            .flat_map(|(i, w)| w.problems(&format!("{path}.windows[{i}]")))
            .collect()
    }
}

/// Where a window came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Api,
}

/// A window in force or planned.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Window {
    pub id: String,
    #[serde(rename = "match")]
    pub matcher: String,
    /// Unix seconds, `[start, end)`.
    pub start: i64,
    pub end: i64,
    pub comment: String,
    pub source: Source,
    #[serde(skip)]
    parsed: Option<Matcher>,
}

impl Window {
    fn matcher(&mut self) -> Result<&Matcher, String> {
        if self.parsed.is_none() {
            self.parsed = Some(Matcher::parse(&self.matcher).map_err(|e| e.to_string())?);
        }
        Ok(self.parsed.as_ref().expect("just set"))
    }

    pub fn active_at(&self, ts: i64) -> bool {
        self.start <= ts && ts < self.end
    }

    /// As the API shows it.
    pub fn view(&self, now: i64) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "match": self.matcher,
            "start": fmt_time(self.start),
            "end": fmt_time(self.end),
            "comment": self.comment,
            "source": self.source,
            "active": self.active_at(now),
        })
    }
}

/// `POST /api/v1/maintenance`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    #[serde(rename = "match")]
    pub matcher: String,
    /// Default: now.
    #[serde(default)]
    pub start: Option<String>,
    /// Either `end` …
    #[serde(default)]
    pub end: Option<String>,
    /// … or `duration` (`2h`) from `start`.
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub comment: String,
}

/// Why a window could not be removed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    #[error("no maintenance window {0}")]
    NotFound(String),
    #[error("window {0} comes from the configuration; remove it there")]
    Static(String),
}

/// Ended windows are forgotten this long after their end.
const FORGET_AFTER: i64 = 86_400;
/// API windows held at once (each costs a matcher per point it covers).
pub const MAX_WINDOWS: usize = 1000;

/// The windows, static and API-made.
#[derive(Debug, Default)]
pub struct Maintenance {
    windows: Vec<Window>,
    next: u64,
}

impl Maintenance {
    /// From a validated config.
    pub fn new(cfg: &MaintenanceConfig) -> Self {
        let mut m = Maintenance::default();
        for (i, w) in cfg.windows.iter().enumerate() {
            let (Ok(start), Ok(end)) = (parse_time(&w.start), parse_time(&w.end)) else {
                continue;
            };
            m.windows.push(Window {
                id: format!("config-{i}"),
                matcher: w.matcher.clone(),
                start,
                end,
                comment: w.comment.clone(),
                source: Source::Config,
                parsed: Matcher::parse(&w.matcher).ok(),
            });
        }
        m
    }

    /// Any window in force at `ts` (the cheap check before matching).
    pub fn any_active(&self, ts: i64) -> bool {
        self.windows.iter().any(|w| w.active_at(ts))
    }

    /// Whether a window in force at `ts` covers `key`.
    pub fn covers(&self, key: &SeriesKey, ts: i64) -> bool {
        self.windows
            .iter()
            .any(|w| w.active_at(ts) && w.parsed.as_ref().is_some_and(|m| m.matches(key)))
    }

    pub fn list(&self) -> &[Window] {
        &self.windows
    }

    pub fn active_count(&self, ts: i64) -> usize {
        self.windows.iter().filter(|w| w.active_at(ts)).count()
    }

    /// Adds a window from the API; `now` is the scoring clock.
    pub fn add(&mut self, req: WindowRequest, now: i64) -> Result<Window, String> {
        let matcher = Matcher::parse(&req.matcher).map_err(|e| format!("match: {e}"))?;
        let start = match &req.start {
            Some(s) => parse_time(s).map_err(|e| format!("start: {e}"))?,
            None => now,
        };
        let end = match (&req.end, &req.duration) {
            (Some(e), None) => parse_time(e).map_err(|e| format!("end: {e}"))?,
            (None, Some(d)) => {
                let d = humantime::parse_duration(d).map_err(|e| format!("duration: {e}"))?;
                start.saturating_add(d.as_secs() as i64)
            }
            _ => return Err("give exactly one of end, duration".into()),
        };
        if end <= start {
            return Err("end must be after start".into());
        }
        if end <= now {
            return Err("the window is already over".into());
        }
        if self
            .windows
            .iter()
            .filter(|w| w.source == Source::Api)
            .count()
            >= MAX_WINDOWS
        {
            return Err(format!("at most {MAX_WINDOWS} maintenance windows"));
        }
        self.next += 1;
        let w = Window {
            id: format!("mw-{}-{}", start, self.next),
            matcher: req.matcher,
            start,
            end,
            comment: req.comment,
            source: Source::Api,
            parsed: Some(matcher),
        };
        self.windows.push(w.clone());
        Ok(w)
    }

    pub fn remove(&mut self, id: &str) -> Result<Window, RemoveError> {
        let i = self
            .windows
            .iter()
            .position(|w| w.id == id)
            .ok_or_else(|| RemoveError::NotFound(id.to_string()))?;
        if self.windows[i].source == Source::Config {
            return Err(RemoveError::Static(id.to_string()));
        }
        Ok(self.windows.remove(i))
    }

    /// Forgets API windows that ended more than a day before `now`.
    pub fn prune(&mut self, now: i64) {
        self.windows
            .retain(|w| w.source == Source::Config || w.end + FORGET_AFTER > now);
    }

    /// API windows, for a snapshot.
    pub fn export(&self) -> Vec<Window> {
        self.windows
            .iter()
            .filter(|w| w.source == Source::Api)
            .cloned()
            .collect()
    }

    /// Restores API windows from a snapshot (unparsable ones are dropped
    /// with a warning).
    pub fn restore(&mut self, windows: Vec<Window>) {
        for mut w in windows {
            if self.windows.iter().any(|x| x.id == w.id) {
                continue;
            }
            match w.matcher() {
                Ok(_) => {
                    self.next += 1;
                    self.windows.push(w)
                }
                Err(e) => {
                    tracing::warn!(window = %w.id, error = %e, "dropping a restored maintenance window")
                }
            }
        }
    }
}

/// Now, in unix seconds, for "start: now" in wall mode.
pub fn wall_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{KeyRef, Registry};
    use argus_common::otlp::Signal;

    fn key(reg: &mut Registry<()>, name: &str, service: &str) -> SeriesKey {
        let mut labels = vec![("service", service), ("namespace", "prod")];
        let k = KeyRef::new(Signal::Traces, name, &mut labels);
        let id = reg.get_or_insert(&k, 0).unwrap();
        reg.key(id).unwrap().clone()
    }

    #[test]
    fn windows_cover_matching_series_only_while_in_force() {
        let cfg: MaintenanceConfig = serde_yaml::from_str(
            "windows:\n  - match: '{service=\"batch\"}'\n    start: 2025-01-01T02:00:00Z\n    end: 2025-01-01T04:00:00Z\n",
        )
        .unwrap();
        assert!(cfg.problems("maintenance").is_empty());
        let mut m = Maintenance::new(&cfg);
        let mut reg = Registry::<()>::new(Default::default());
        let batch = key(&mut reg, "span.requests", "batch");
        let web = key(&mut reg, "span.requests", "web");
        let t = parse_time("2025-01-01T03:00:00Z").unwrap();
        assert!(m.any_active(t));
        assert!(m.covers(&batch, t) && !m.covers(&web, t));
        assert!(
            !m.covers(&batch, parse_time("2025-01-01T04:00:00Z").unwrap()),
            "end is exclusive"
        );
        assert_eq!(
            m.remove("config-0").unwrap_err(),
            RemoveError::Static("config-0".into())
        );

        let w = m
            .add(
                WindowRequest {
                    matcher: "span.*{service=\"web\"}".into(),
                    start: None,
                    end: None,
                    duration: Some("1h".into()),
                    comment: "deploy".into(),
                },
                t,
            )
            .unwrap();
        assert!(m.covers(&web, t + 10));
        assert!(!m.covers(&web, t + 3600));
        // Survives a snapshot round trip without its parsed matcher.
        let exported = serde_json::to_string(&m.export()).unwrap();
        let mut fresh = Maintenance::new(&cfg);
        fresh.restore(serde_json::from_str(&exported).unwrap());
        assert!(fresh.covers(&web, t + 10));
        m.remove(&w.id).unwrap();
        assert!(!m.covers(&web, t + 10));
        assert!(matches!(m.remove(&w.id), Err(RemoveError::NotFound(_))));
    }

    #[test]
    fn bad_requests_say_why() {
        let mut m = Maintenance::default();
        let req = |start: Option<&str>, end: Option<&str>, d: Option<&str>| WindowRequest {
            matcher: "{service=\"x\"}".into(),
            start: start.map(Into::into),
            end: end.map(Into::into),
            duration: d.map(Into::into),
            comment: String::new(),
        };
        assert!(
            m.add(req(None, None, None), 100)
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(
            m.add(req(None, Some("soon"), None), 100)
                .unwrap_err()
                .starts_with("end:")
        );
        assert!(
            m.add(
                req(
                    Some("1970-01-01T00:00:10Z"),
                    Some("1970-01-01T00:00:20Z"),
                    None
                ),
                100
            )
            .unwrap_err()
            .contains("already over")
        );
        let mut bad = req(None, None, Some("1h"));
        bad.matcher = "{".into();
        assert!(m.add(bad, 100).unwrap_err().starts_with("match:"));
    }
}
