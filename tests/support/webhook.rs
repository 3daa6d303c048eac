//! A remediation endpoint inside the test: every request is verified with
//! the shipped example's `Verifier` (`detector/examples/webhook_receiver.rs`,
//! the code users copy: Standard Webhooks signature, freshness, replay) and
//! recorded with its verdict.
//!
//! Include with `#[path = "support/webhook.rs"] mod webhook;` next to
//! `#[path = "../detector/examples/webhook_receiver.rs"] mod example;`.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use crate::example::{Rejection, Verifier};

/// The secret both sides use (a Standard Webhooks test-vector key).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Clone, Debug)]
pub struct Request {
    pub id: Option<String>,
    pub body: serde_json::Value,
    pub verdict: Result<String, Rejection>,
}

#[derive(Clone)]
pub struct Receiver {
    verifier: Arc<Verifier>,
    requests: Arc<Mutex<Vec<Request>>>,
    pub url: String,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let r = Receiver {
            verifier: Arc::new(Verifier::new(SECRET).unwrap()),
            requests: Arc::default(),
            url,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(handle))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    /// Every request received, verified or not.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn handle(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let verdict = r.verifier.verify(&headers, &body, now);
    let status = match &verdict {
        Ok(_) | Err(Rejection::Replayed) => StatusCode::OK,
        Err(_) => StatusCode::UNAUTHORIZED,
    };
    r.requests.lock().unwrap().push(Request {
        id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .map(Into::into),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        verdict,
    });
    status
}
