//! The HTTPS accept loop every fleetctl server runs (the control plane's
//! and the agents'): bounded connections in all and per source address,
//! and a deadline at every stage, so no client can hold it.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Most connections served at once; past this, new ones wait in the
/// kernel's backlog until one closes.
pub const MAX_CONNECTIONS: usize = 4096;
/// Most connections from one address at once, well below
/// [`MAX_CONNECTIONS`]: one client cannot take every slot. Past it, new
/// connections from that address are closed at once.
pub const MAX_PER_SOURCE: usize = 256;
/// Longest request body; a longer one is answered 413.
pub const MAX_BODY: usize = 64 * 1024;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers must arrive within this; it also ends idle keep-alive
/// connections (hyper starts the clock when it waits for a request).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole request body must arrive within this, else 408 and close.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The certificate (DER) a client showed on this request's connection,
/// already checked against the CA; a request extension.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<[u8]>);

/// How many connections a server holds, in all and per source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    /// Below `max_connections`, so one client cannot take every slot.
    pub max_per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_per_source: MAX_PER_SOURCE,
        }
    }
}

/// Connections open per source address; a slot is given back on drop.
#[derive(Debug)]
struct PerSource {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

struct SourceSlot {
    table: Arc<PerSource>,
    ip: IpAddr,
}

impl PerSource {
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let ip = ip.to_canonical();
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            table: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Reads the whole request body before the handler runs: within
/// [`BODY_TIMEOUT`] (else 408) and up to [`MAX_BODY`] (else 413). Either
/// refusal closes the connection, so a stalled body never holds it.
async fn bounded_body(request: Request<Body>, next: Next) -> Response {
    use futures_util::StreamExt as _;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return refuse_and_close(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
            if buf.len() + chunk.len() > MAX_BODY {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => refuse_and_close(StatusCode::REQUEST_TIMEOUT),
        Ok(Err(status)) => refuse_and_close(status),
        Ok(Ok(buf)) => next.run(Request::from_parts(parts, Body::from(buf))).await,
    }
}

fn refuse_and_close(status: StatusCode) -> Response {
    let body = crate::model::control::ApiError {
        error: match status {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::REQUEST_TIMEOUT => "body_timeout",
            _ => "bad_request",
        }
        .to_owned(),
        reason: match status {
            StatusCode::PAYLOAD_TOO_LARGE => format!("request bodies are at most {MAX_BODY} bytes"),
            StatusCode::REQUEST_TIMEOUT => format!(
                "the request body did not arrive within {}s",
                BODY_TIMEOUT.as_secs()
            ),
            _ => "the request body could not be read".to_owned(),
        },
    };
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, with the
/// default [`Limits`].
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_https_with(listener, tls, app, Limits::default(), shutdown).await
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves; handshakes
/// run per connection (a slow client never blocks others), connections are
/// bounded in all and per source address, and every stage has a deadline
/// (see the module's table). After `shutdown`, requests in flight get a
/// few seconds to finish.
pub async fn serve_https_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn(bounded_body));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let max = limits.max_connections.max(1);
    let limit = Arc::new(Semaphore::new(max));
    let per_source = Arc::new(PerSource {
        cap: limits.max_per_source.clamp(1, max),
        open: Mutex::new(HashMap::new()),
    });
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, not spin.
                    tracing::warn!(error = %e, "accept failed; retrying in 100ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = per_source.take(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many from this address");
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _held = (permit, slot);
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|c| PeerCertificate(Arc::from(c.as_ref())));
            let app = match client_cert {
                Some(cert) => app.layer(axum::Extension(cert)),
                None => app,
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_BODY)
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, limit.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("stopped with requests still in flight after {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
}
