//! TCP accept loop, TLS handshake and HTTP connections for both servers.
//!
//! One loop per server, written once: hyper-util's `auto` connection
//! (HTTP/1.1 and HTTP/2, or HTTP/2 only for gRPC) over TCP or rustls. Every
//! request carries the connection's [`ConnInfo`] (peer address, verified
//! client certificate) to the handler.
//!
//! Shutdown, in two steps:
//! 1. *soft* (the caller's [`Shutdown`]): the accept loop returns, dropping
//!    the listening socket, so new connections are refused by the kernel;
//!    each connection is told to shut down gracefully (HTTP/2 `GOAWAY`,
//!    HTTP/1 `Connection: close` after the current request), which lets
//!    in-flight requests finish;
//! 2. *hard* (after the grace period, from the receiver): connections still
//!    open are dropped.
//!
//! A TLS handshake gets [`HANDSHAKE_TIMEOUT`], and HTTP/1 request headers
//! [`HEADER_READ_TIMEOUT`]: an idle or slow client must not hold a connection
//! slot forever. Accept errors (e.g. out of file descriptors) are logged and
//! retried after a pause instead of ending the server.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::consumer::Transport;
use super::telemetry::ReceiverMetrics;
use crate::shutdown::Shutdown;

pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a handler knows about the connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub client_cert: Option<Arc<CertificateDer<'static>>>,
}

/// One server's request handling.
pub(crate) trait Handler: Send + Sync + 'static {
    type Body: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;

    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<Self::Body>> + Send + 'static;
}

/// A bound, not yet serving, socket.
pub(crate) struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    transport: Transport,
    local: SocketAddr,
}

impl Listener {
    pub(crate) async fn bind(
        endpoint: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        transport: Transport,
    ) -> io::Result<Self> {
        let tcp = TcpListener::bind(endpoint).await?;
        let local = tcp.local_addr()?;
        Ok(Self {
            tcp,
            tls: tls.map(TlsAcceptor::from),
            transport,
            local,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepts until `soft` fires; every connection task goes on `tracker`.
    pub(crate) async fn serve<H: Handler>(
        self,
        handler: Arc<H>,
        metrics: Arc<ReceiverMetrics>,
        soft: Shutdown,
        hard: CancellationToken,
        tracker: TaskTracker,
    ) {
        let transport = self.transport;
        tracing::info!(transport = transport.as_str(), addr = %self.local, tls = self.tls.is_some(), "OTLP receiver listening");
        loop {
            let (tcp, peer) = tokio::select! {
                _ = soft.wait() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) if is_per_connection(&e) => continue,
                    Err(e) => {
                        tracing::warn!(transport = transport.as_str(), error = %e, "accept failed; pausing");
                        tokio::select! {
                            _ = soft.wait() => break,
                            _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        }
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            tracker.spawn(connection(
                tcp,
                peer,
                self.tls.clone(),
                transport,
                handler.clone(),
                metrics.clone(),
                soft.clone(),
                hard.clone(),
            ));
        }
        tracing::info!(transport = transport.as_str(), addr = %self.local, "OTLP receiver stopped accepting");
    }
}

/// Errors that concern one connection only, not the listening socket.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

struct OpenConnection<'a>(&'a ReceiverMetrics, Transport);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connection_closed(self.1);
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    transport: Transport,
    handler: Arc<H>,
    metrics: Arc<ReceiverMetrics>,
    soft: Shutdown,
    hard: CancellationToken,
) {
    metrics.connection_opened(transport);
    let _open = OpenConnection(&metrics, transport);

    let (io, client_cert) = match tls {
        None => (Either::Left(tcp), None),
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let stream = tokio::select! {
                _ = soft.wait() => return,
                r = handshake => match r {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return metrics.handshake_failed(transport, peer, &e.to_string()),
                    Err(_) => return metrics.handshake_failed(transport, peer, "handshake timed out"),
                },
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.clone().into_owned()));
            (Either::Right(stream), cert)
        }
    };

    let info = Arc::new(ConnInfo { peer, client_cert });
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let fut = handler.clone().handle(req, info.clone());
        async move { Ok::<_, Infallible>(fut.await) }
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = match transport {
        Transport::Grpc => builder.http2_only(),
        Transport::Http => builder,
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = soft.wait() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = hard.cancelled() => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        // Clients vanish all the time (timeouts, resets); not worth a warning.
        tracing::debug!(transport = transport.as_str(), %peer, error = %e, "connection ended with an error");
    }
}
