//! The HTTP API (`/api/v1/*`), merged into the ops server beside
//! `/metrics`, `/healthz` and `/readyz`. JSON in and out; errors are
//! `{"error": "…"}` with 400 (bad request), 401 (write without a valid
//! token when `api.auth` is set), 404 (unknown id) or 409 (a configured
//! window cannot be deleted here).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/api/v1/incidents?state=open\|resolved\|all&limit=N` | incidents, open first (oldest first), then resolved (newest first), with their explanation and the alert they raise |
//! | GET | `/api/v1/incidents/{id}` | one incident |
//! | GET | `/api/v1/anomalies` | every series anomalous now, highest score first |
//! | GET | `/api/v1/series?match=SELECTOR&limit=N&points=false` | matching series: labels, learning state, band, score, recent points |
//! | GET | `/api/v1/maintenance` | windows (config and API) |
//! | POST | `/api/v1/maintenance` | `{"match": SELECTOR, "start"?: RFC3339, "end": RFC3339 \| "duration": "2h", "comment"?}` → the window (201) |
//! | DELETE | `/api/v1/maintenance/{id}` | removes an API window |
//! | POST | `/api/v1/feedback` | `{"incident_id": ID}` or `{"series": SELECTOR}`: "not an anomaly" |
//!
//! Times are unix seconds (`ts`, `started_at`, …) except in maintenance
//! windows, which speak RFC 3339 like the config. Values the engine has no
//! opinion on (a series' band before its models are ready) are `null`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::incident::Incident;
use crate::maintenance::{RemoveError, WindowRequest};
use crate::registry::Matcher;
use crate::scoring::RecentPoint;
use crate::service::Shared;
use argus_common::otlp::auth::AuthOutcome;

/// The API's routes, to merge into the ops server.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/anomalies", get(anomalies))
        .route("/api/v1/series", get(series))
        .route("/api/v1/maintenance", get(list_windows).post(add_window))
        .route("/api/v1/maintenance/{id}", delete(remove_window))
        .route("/api/v1/feedback", post(feedback))
        .with_state(shared)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// Write endpoints need the API token when one is configured.
fn authorize(s: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(auth) = &s.api_auth else {
        return Ok(());
    };
    match auth.check(headers.get(header::AUTHORIZATION)) {
        AuthOutcome::Valid => Ok(()),
        other => {
            let mut r = error(StatusCode::UNAUTHORIZED, other.message());
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Box::new(r))
        }
    }
}

fn incident_view(s: &Shared, inc: &Incident) -> Value {
    let mut v = serde_json::to_value(inc).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("max_score".into(), json!(inc.max_score()));
        m.insert(
            "top_series".into(),
            json!(
                inc.top_members()
                    .iter()
                    .take(5)
                    .map(|m| &m.series)
                    .collect::<Vec<_>>()
            ),
        );
        m.insert("trace_ids".into(), json!(inc.trace_ids()));
        m.insert("models".into(), json!(inc.models()));
        let alert = crate::incident::alert::render(&s.cfg.alerting, &s.cfg.outputs.links(), inc);
        m.insert(
            "alert".into(),
            json!({ "labels": alert.labels, "annotations": alert.annotations }),
        );
    }
    v
}

#[derive(Deserialize)]
struct IncidentsQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn incidents(State(s): State<Arc<Shared>>, Query(q): Query<IncidentsQuery>) -> Response {
    let (open, resolved) = match q.state.as_deref().unwrap_or("all") {
        "all" => (true, true),
        "open" => (true, false),
        "resolved" => (false, true),
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("state: expected open, resolved or all, got {other:?}"),
            );
        }
    };
    let limit = q.limit.unwrap_or(100).min(1000);
    let core = s.core.lock();
    let mut list: Vec<Value> = Vec::new();
    if open {
        list.extend(
            core.incidents
                .open()
                .into_iter()
                .map(|i| incident_view(&s, i)),
        );
    }
    if resolved {
        list.extend(core.incidents.resolved().map(|i| incident_view(&s, i)));
    }
    list.truncate(limit);
    ok(json!({ "incidents": list }))
}

async fn incident(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let core = s.core.lock();
    match core.incidents.by_id(&id) {
        Some(i) => ok(incident_view(&s, i)),
        None => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
    }
}

fn point_view(p: &RecentPoint) -> Value {
    json!({
        "ts": p.ts,
        "value": p.value,
        "score": p.score,
        "expected": p.expected,
        "lower": p.lower,
        "upper": p.upper,
        "anomalous": p.anomalous(),
        "learning": p.learning(),
        "maintenance": p.maintenance(),
    })
}

async fn anomalies(State(s): State<Arc<Shared>>) -> Response {
    let core = s.core.lock();
    let mut list: Vec<(f32, Value)> = Vec::new();
    for sr in core.ingest.registry().iter() {
        let Some(last) = sr.state.last() else {
            continue;
        };
        if !last.anomalous() {
            continue;
        }
        let inc = sr.state.incident.and_then(|seq| core.incidents.get(seq));
        // The onset: the incident's record, else the start of the anomalous
        // run in the recent points.
        let series = sr.key.to_string();
        let since = inc
            .and_then(|i| i.members.iter().find(|m| m.series == series))
            .map(|m| m.onset)
            .unwrap_or_else(|| {
                sr.state
                    .recent
                    .iter()
                    .rev()
                    .take_while(|p| p.anomalous())
                    .last()
                    .map_or(last.ts, |p| p.ts)
            });
        list.push((
            last.score,
            json!({
                "series_id": format!("{:016x}", sr.state.key_hash),
                "series": series,
                "signal": sr.key.signal(),
                "name": sr.key.name(),
                "labels": sr.key.labels().collect::<std::collections::BTreeMap<_, _>>(),
                "since": since,
                "incident_id": inc.map(|i| i.id.clone()),
                "last": point_view(last),
            }),
        ));
    }
    list.sort_by(|a, b| b.0.total_cmp(&a.0));
    ok(json!({ "anomalies": list.into_iter().map(|x| x.1).collect::<Vec<_>>() }))
}

#[derive(Deserialize)]
struct SeriesQuery {
    #[serde(rename = "match")]
    matcher: Option<String>,
    limit: Option<usize>,
    points: Option<bool>,
}

async fn series(State(s): State<Arc<Shared>>, Query(q): Query<SeriesQuery>) -> Response {
    let Some(sel) = q.matcher else {
        return error(
            StatusCode::BAD_REQUEST,
            "match: a series selector is required, e.g. match={service=\"checkout\"}",
        );
    };
    let m = match Matcher::parse(&sel) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("match: {e}")),
    };
    let limit = q
        .limit
        .unwrap_or(s.cfg.api.max_series)
        .min(s.cfg.api.max_series);
    let with_points = q.points.unwrap_or(true);
    let core = s.core.lock();
    let mut out = Vec::new();
    let mut total = 0usize;
    for sr in core.ingest.registry().select(&m) {
        total += 1;
        if out.len() >= limit {
            continue;
        }
        let det = sr.state.detector.as_deref();
        let inc = sr.state.incident.and_then(|seq| core.incidents.get(seq));
        let mut v = json!({
            "series_id": format!("{:016x}", sr.state.key_hash),
            "series": sr.key.to_string(),
            "signal": sr.key.signal(),
            "name": sr.key.name(),
            "labels": sr.key.labels().collect::<std::collections::BTreeMap<_, _>>(),
            "points_seen": det.map_or(0, |d| d.points()),
            "learning": det.is_none_or(|d| d.learning(&core.engine)),
            "desensitized_decades": det.map_or(0.0, |d| d.desensitized()),
            "incident_id": inc.map(|i| i.id.clone()),
            "maintenance": sr.state.last().is_some_and(|p| p.maintenance()),
            "last": sr.state.last().map(point_view),
            "last_update": sr.last_update,
        });
        if with_points {
            v["points"] = json!(sr.state.recent.iter().map(point_view).collect::<Vec<_>>());
        }
        out.push(v);
    }
    ok(json!({ "series": out, "matched": total, "truncated": total.saturating_sub(out.len()) }))
}

async fn list_windows(State(s): State<Arc<Shared>>) -> Response {
    let now = s.now();
    let core = s.core.lock();
    let list: Vec<Value> = core
        .maintenance
        .list()
        .iter()
        .map(|w| w.view(now))
        .collect();
    ok(json!({ "windows": list }))
}

async fn add_window(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return *r;
    }
    let req: WindowRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    let now = s.now();
    let added = s.core.lock().maintenance.add(req, now);
    match added {
        Ok(w) => {
            tracing::info!(window = %w.id, matcher = %w.matcher, start = w.start, end = w.end, comment = %w.comment, "maintenance window added");
            (StatusCode::CREATED, axum::Json(w.view(now))).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn remove_window(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return *r;
    }
    let now = s.now();
    let removed = s.core.lock().maintenance.remove(&id);
    match removed {
        Ok(w) => {
            tracing::info!(window = %w.id, "maintenance window removed");
            ok(w.view(now))
        }
        Err(e @ RemoveError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ RemoveError::Static(_)) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    incident_id: Option<String>,
    series: Option<String>,
    #[serde(default)]
    comment: String,
}

async fn feedback(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return *r;
    }
    let req: FeedbackRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    match (req.incident_id, req.series) {
        (Some(id), None) => {
            let now = s.now();
            let outbox = {
                let mut core = s.core.lock();
                let Some(members) = core.incidents.dismiss(&id, now) else {
                    return error(StatusCode::NOT_FOUND, format!("no incident {id}"));
                };
                let mut n = 0;
                for (sid, display) in &members {
                    n += core.feedback_series(*sid, display) as usize;
                }
                (core.outbox(), n)
            };
            let (outbox, n) = outbox;
            s.telemetry.feedback_given("incident", &id, n);
            s.deliver(outbox);
            ok(json!({ "incident_id": id, "dismissed": true, "series": n, "comment": req.comment }))
        }
        (None, Some(sel)) => {
            let m = match Matcher::parse(&sel) {
                Ok(m) => m,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("series: {e}")),
            };
            let max = s.cfg.api.max_series;
            let mut core = s.core.lock();
            let ids: Vec<_> = core
                .ingest
                .registry()
                .select(&m)
                .map(|x| x.id)
                .take(max + 1)
                .collect();
            if ids.len() > max {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("series: the selector matches more than {max} series; narrow it"),
                );
            }
            if ids.is_empty() {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("series: nothing matches {sel}"),
                );
            }
            let mut n = 0;
            for id in ids {
                n += core.feedback_series(Some(id), "") as usize;
            }
            drop(core);
            s.telemetry.feedback_given("series", &sel, n);
            ok(json!({ "series": n, "comment": req.comment }))
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "give exactly one of incident_id, series",
        ),
    }
}
