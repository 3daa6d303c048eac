//! A remediation endpoint that verifies Argus' webhooks: copy it, replace
//! `remediate` with your action.
//!
//! ```sh
//! export ARGUS_WEBHOOK_SECRET="whsec_$(head -c 32 /dev/urandom | base64)"   # the same secret Argus signs with
//! cargo run -p argus-detector --example webhook_receiver -- 127.0.0.1:8088
//! ```
//!
//! Verification, per Standard Webhooks (see `docs/webhooks.md`):
//!
//! 1. **Signature**: HMAC-SHA256, keyed with the base64-decoded part of the
//!    `whsec_` secret, over `{webhook-id}.{webhook-timestamp}.{raw body}`,
//!    compared in constant time with each `v1,` entry of `webhook-signature`
//!    (several during a secret rotation). The raw bytes are verified *before*
//!    the JSON is parsed: re-serialised JSON would not match.
//! 2. **Freshness**: `webhook-timestamp` within ±5 minutes of now, so a
//!    captured request cannot be replayed later.
//! 3. **Replay / idempotency**: a `webhook-id` seen within the tolerance
//!    window is not acted on again. Argus retries a failed delivery with the
//!    same id, so the id is remembered only once the action succeeded; a
//!    duplicate of a processed id is answered `200` (so Argus stops
//!    retrying) without acting.
//!
//! Dependencies: axum, tokio, hmac, sha2, base64, serde_json.
#![allow(dead_code)] // also compiled as a module by the integration tests

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far `webhook-timestamp` may be from the receiver's clock.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    MissingHeader(&'static str),
    BadTimestamp,
    /// Outside ±tolerance: stale (or from a skewed clock).
    StaleTimestamp,
    /// No `v1` signature matched: wrong secret, or id/timestamp/body changed.
    BadSignature,
    /// This id was already processed.
    Replayed,
}

/// Verifies requests against one or more secrets (several while rotating).
pub struct Verifier {
    keys: Vec<Vec<u8>>,
    tolerance: Duration,
    /// Processed (or in-progress) ids and their timestamps.
    seen: Mutex<HashMap<String, u64>>,
}

impl Verifier {
    /// `secrets`: whitespace-separated `whsec_…` values.
    pub fn new(secrets: &str) -> Result<Self, String> {
        let keys = secrets
            .split_whitespace()
            .map(|s| {
                let b64 = s
                    .strip_prefix("whsec_")
                    .ok_or("secrets start with whsec_")?;
                STANDARD
                    .decode(b64)
                    .map_err(|_| "secret is not base64 after whsec_")
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("no secret".into());
        }
        Ok(Self {
            keys,
            tolerance: TOLERANCE,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Checks one request; `now` is the receiver's clock in Unix seconds.
    /// On success the id is reserved: call [`Verifier::forget`] if acting on
    /// it failed, so Argus' retry (same id) is accepted.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<String, Rejection> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(Rejection::MissingHeader(name))
        };
        let id = header("webhook-id")?;
        let ts_text = header("webhook-timestamp")?;
        let signatures = header("webhook-signature")?;
        let ts: u64 = ts_text.parse().map_err(|_| Rejection::BadTimestamp)?;
        if ts.abs_diff(now) > self.tolerance.as_secs() {
            return Err(Rejection::StaleTimestamp);
        }
        let matched = signatures.split(' ').any(|entry| {
            let Some(sig) = entry.strip_prefix("v1,") else {
                return false; // other schemes (v1a) are not ours to check
            };
            let Ok(sig) = STANDARD.decode(sig) else {
                return false;
            };
            self.keys.iter().any(|key| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(ts_text.as_bytes());
                mac.update(b".");
                mac.update(body);
                mac.verify_slice(&sig).is_ok() // constant-time
            })
        });
        if !matched {
            return Err(Rejection::BadSignature);
        }
        let mut seen = self.seen.lock().unwrap();
        // Ids older than the window cannot come back (their timestamp would
        // be refused), so they need not be remembered.
        let horizon = now.saturating_sub(2 * self.tolerance.as_secs());
        seen.retain(|_, t| *t >= horizon);
        if seen.contains_key(id) {
            return Err(Rejection::Replayed);
        }
        seen.insert(id.to_owned(), ts);
        Ok(id.to_owned())
    }

    /// Releases an id whose action failed, so a retry can try again.
    pub fn forget(&self, id: &str) {
        self.seen.lock().unwrap().remove(id);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Your action. Return Err to make Argus retry (it sends the same id).
async fn remediate(payload: &serde_json::Value) -> Result<(), String> {
    println!(
        "remediating incident {} (rule {}, target {})",
        payload["incident_id"], payload["rule"], payload["target"]
    );
    Ok(())
}

async fn handle(
    State(v): State<Arc<Verifier>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let id = match v.verify(&headers, &body, unix_now()) {
        Ok(id) => id,
        Err(Rejection::Replayed) => {
            return (StatusCode::OK, "duplicate: already processed".into());
        }
        Err(e) => {
            eprintln!("rejected webhook: {e:?}");
            return (StatusCode::UNAUTHORIZED, format!("{e:?}"));
        }
    };
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not JSON: {e}")),
    };
    match remediate(&payload).await {
        Ok(()) => (StatusCode::OK, "done".into()),
        Err(e) => {
            v.forget(&id);
            (StatusCode::SERVICE_UNAVAILABLE, e)
        }
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8088".into());
    let secret = std::env::var("ARGUS_WEBHOOK_SECRET")
        .expect("set ARGUS_WEBHOOK_SECRET to the whsec_… secret Argus signs with");
    let verifier = Arc::new(Verifier::new(&secret).expect("valid secret"));
    let app = axum::Router::new()
        .route("/", axum::routing::post(handle))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("verifying Argus webhooks on http://{addr}/");
    axum::serve(listener, app).await.expect("serve");
}
