//! What the demo's detector talks to: an Alertmanager stand-in and a
//! webhook receiver that verifies signatures — one small HTTP server on
//! loopback.
//!
//! - `POST /api/v2/alerts` accepts what Alertmanager's v2 API accepts (a
//!   JSON array of alerts) and reports each alert to the demo, which prints
//!   state changes. With `--alertmanager URL` the detector sends to the
//!   real Alertmanager too: this receiver is how the demo *sees* the alert
//!   without polling one.
//! - `POST /hooks/restart` is a self-healing endpoint done right (see
//!   `docs/webhooks.md`): it refuses a request whose Standard Webhooks
//!   signature does not verify with the shared secret (401), whose
//!   timestamp is more than five minutes off, or whose `webhook-id` it has
//!   already acted on (answered 200 without acting again, so a retry after
//!   a lost response is harmless).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argus_common::shutdown::Shutdown;
use argus_detector::remediation::signing::SigningKey;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::mpsc;

/// Webhook timestamps further from the receiver's clock are refused.
const TOLERANCE: Duration = Duration::from_secs(300);

/// An alert as Alertmanager's v2 API receives it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
}

impl Alert {
    /// Resolved: `endsAt` is not in the future (a firing alert's `endsAt`
    /// is several resend intervals ahead).
    pub fn is_resolved(&self) -> bool {
        let Some(end) = self
            .ends_at
            .as_deref()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        else {
            return false;
        };
        end.timestamp_millis() <= unix_millis() + 500
    }
}

/// A webhook call that verified, with its body.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub id: String,
    pub body: serde_json::Value,
}

/// What the receivers saw.
#[derive(Debug)]
pub enum Event {
    Alert(Box<Alert>),
    Webhook(Webhook),
    /// A webhook refused, and why (never the signature itself).
    Refused(String),
}

struct Inner {
    keys: Vec<SigningKey>,
    seen: Mutex<HashSet<String>>,
    events: mpsc::UnboundedSender<Event>,
}

/// The running server.
pub struct Receivers {
    pub addr: SocketAddr,
    pub events: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Receivers {
    /// Binds 127.0.0.1 on a free port. `secret`: the `whsec_…` webhooks
    /// are signed with.
    pub async fn start(secret: &str, shutdown: Shutdown) -> std::io::Result<Receivers> {
        let keys = vec![SigningKey::parse(secret).map_err(std::io::Error::other)?];
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            keys,
            seen: Mutex::new(HashSet::new()),
            events: tx,
        });
        let app = Router::new()
            .route("/api/v2/alerts", post(alerts))
            .route("/hooks/restart", post(webhook))
            .with_state(inner);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await;
        });
        Ok(Receivers {
            addr,
            events: rx,
            task,
        })
    }

    pub fn alertmanager_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/hooks/restart", self.addr)
    }

    /// Waits for the server to stop (after its shutdown fired).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

async fn alerts(State(s): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<Vec<Alert>>(&body) {
        Ok(list) => {
            for a in list {
                let _ = s.events.send(Event::Alert(Box::new(a)));
            }
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn webhook(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    match verify(&s.keys, &headers, &body, unix_millis() / 1000) {
        Err(why) => {
            let _ = s.events.send(Event::Refused(why));
            StatusCode::UNAUTHORIZED
        }
        Ok(id) => {
            if !s.seen.lock().insert(id.clone()) {
                return StatusCode::OK; // a retry of an action already taken
            }
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let _ = s.events.send(Event::Webhook(Webhook { id, body }));
            StatusCode::OK
        }
    }
}

/// Standard Webhooks verification; the id on success.
fn verify(keys: &[SigningKey], h: &HeaderMap, body: &[u8], now: i64) -> Result<String, String> {
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("missing {name} header"))
    };
    let id = get("webhook-id")?;
    let ts: u64 = get("webhook-timestamp")?
        .parse()
        .map_err(|_| "webhook-timestamp is not a number".to_owned())?;
    if (ts as i64).abs_diff(now) > TOLERANCE.as_secs() {
        return Err("webhook-timestamp outside the 5 minute tolerance".into());
    }
    let offered = get("webhook-signature")?;
    if keys.iter().any(|k| k.verifies(id, ts, body, offered)) {
        Ok(id.to_owned())
    } else {
        Err("no signature verifies with the shared secret".into())
    }
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", id.parse().unwrap());
        h.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        h.insert("webhook-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn verifies_signed_requests_and_refuses_tampered_or_stale_ones() {
        let key = SigningKey::parse(SECRET).unwrap();
        let keys = [key.clone()];
        let now = 1_700_000_000;
        let body = br#"{"rule":"restart-payments"}"#;
        let sig = key.sign("msg_1", now as u64, body);
        assert_eq!(
            verify(&keys, &headers("msg_1", now, &sig), body, now).unwrap(),
            "msg_1"
        );
        // Several signatures (a rotation): any one verifying is enough.
        let both = format!("v1,AAAA {sig}");
        assert!(verify(&keys, &headers("msg_1", now, &both), body, now).is_ok());
        assert!(verify(&keys, &headers("msg_1", now, &sig), b"{}", now).is_err());
        assert!(verify(&keys, &headers("msg_2", now, &sig), body, now).is_err());
        assert!(verify(&keys, &headers("msg_1", now, &sig), body, now + 301).is_err());
        assert!(verify(&keys, &HeaderMap::new(), body, now).is_err());
    }

    #[test]
    fn an_alert_is_resolved_once_its_end_has_passed() {
        let a = |ends: &str| Alert {
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            starts_at: None,
            ends_at: Some(ends.into()),
            generator_url: None,
        };
        assert!(a("2020-01-01T00:00:00Z").is_resolved());
        assert!(!a("2999-01-01T00:00:00Z").is_resolved());
    }
}
