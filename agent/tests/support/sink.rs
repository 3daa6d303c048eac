//! The endpoint the agent exports to in end-to-end tests: a real
//! `argus_common::otlp` receiver (gRPC) whose consumer keeps what arrives.
//! It can be stopped and started again on the same port, to play an
//! endpoint outage.
//!
//! Include with `#[path = "support/sink.rs"] mod sink;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argus_common::otlp::{
    Accepted, ConsumeError, OtlpConsumer, OtlpReceiverConfig, Payload, RequestContext,
};
use argus_common::shutdown::Shutdown;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prometheus_client::registry::Registry;

/// What arrived: every payload (when `keep_payloads`), and every log
/// record's body as text.
#[derive(Default)]
pub struct Received {
    pub payloads: Mutex<Vec<Payload>>,
    pub bodies: Mutex<Vec<String>>,
    keep_payloads: bool,
}

impl Received {
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    pub fn body_count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    pub fn payloads(&self) -> Vec<Payload> {
        self.payloads.lock().unwrap().clone()
    }
}

/// The body of a log record as text (string bodies as they are, others
/// debug-printed).
pub fn body_text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

struct Consumer(Arc<Received>);

impl OtlpConsumer for Consumer {
    async fn consume(&self, p: Payload, _: RequestContext) -> Result<Accepted, ConsumeError> {
        if let Payload::Logs(r) = &p {
            let mut b = self.0.bodies.lock().unwrap();
            for rl in &r.resource_logs {
                for sl in &rl.scope_logs {
                    for lr in &sl.log_records {
                        b.push(body_text(&lr.body));
                    }
                }
            }
        }
        if self.0.keep_payloads {
            self.0.payloads.lock().unwrap().push(p);
        }
        Ok(Accepted::all())
    }
}

/// A running sink.
pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Received>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// On a free loopback port; `keep_payloads` keeps whole payloads (not
    /// only log bodies).
    pub async fn start(keep_payloads: bool) -> Sink {
        let received = Arc::new(Received {
            keep_payloads,
            ..Default::default()
        });
        Sink::start_at("127.0.0.1:0".parse().unwrap(), received).await
    }

    /// On `addr` (retrying for a few seconds while the port is still held
    /// by a previous instance), recording into `received`.
    pub async fn start_at(addr: SocketAddr, received: Arc<Received>) -> Sink {
        let mut cfg = OtlpReceiverConfig::default();
        cfg.grpc.as_mut().unwrap().endpoint = addr.to_string();
        cfg.grpc.as_mut().unwrap().max_recv_msg_size_mib = 64;
        cfg.http = None;
        cfg.shutdown_grace = Duration::from_secs(2);
        let deadline = Instant::now() + Duration::from_secs(10);
        let bound = loop {
            let receiver = cfg
                .build(Consumer(received.clone()), &mut Registry::default())
                .unwrap();
            match receiver.bind().await {
                Ok(b) => break b,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("sink: bind {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("sink cannot bind {addr}: {e}"),
            }
        };
        let addr = bound.grpc_addr().unwrap();
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        let task = tokio::spawn(async move {
            bound.serve(s).await.unwrap();
        });
        Sink {
            addr,
            received,
            shutdown,
            task,
        }
    }

    /// `http://addr`, for the agent's `exporter.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening; returns what was received and where it listened.
    pub async fn stop(self) -> (SocketAddr, Arc<Received>) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        (self.addr, self.received)
    }

    /// Waits until `done(received)` holds, polling; panics after `within`
    /// with `what` and the count of bodies seen.
    pub async fn wait_for(&self, within: Duration, what: &str, done: impl Fn(&Received) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.received) {
            if Instant::now() > deadline {
                panic!(
                    "sink: timed out after {within:?} waiting for {what} ({} log records so far)",
                    self.received.body_count()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
