//! How the admin API takes connections: a bounded number at a time, each with deadlines, on a Unix
//! socket for the CLI and optionally on a loopback TCP port for scripts.
//!
//! Opening a connection needs no token, so everything here holds before authentication:
//!
//! - **A cap per listener** ([`Limits::max_connections`]). A connection beyond it is closed as soon as
//!   it is accepted, counted in [`ApiCounters::refused`], and reported in the log at most once per
//!   [`REFUSAL_LOG_EVERY`] with the number refused since the last report. The listeners have a cap
//!   each, so a flood of the TCP port (which any local user can reach) never locks the CLI out of the
//!   Unix socket (which only the daemon's user can reach).
//! - **A deadline for the request head** ([`Limits::head_timeout`]): it runs from the moment the
//!   server waits for a request (a new connection, or a kept-alive one after its response) until the
//!   request's head has fully arrived. It bounds a slow sender (slowloris) and is the keep-alive idle
//!   timeout: an idle connection is closed when it passes. A head over [`MAX_HEAD`] gets `431`, and a
//!   connection buffers at most [`MAX_BUFFER`].
//! - **A lifetime** ([`Limits::lifetime`]): after it the connection is closed once its response is
//!   out, and at [`Limits::lifetime`] plus [`NODE_TIMEOUT`] whatever it is doing. A request body must
//!   arrive within [`super::server::BODY_TIMEOUT`].
//! - **An accept error** (out of file descriptors, say) is logged at most once per
//!   [`REFUSAL_LOG_EVERY`] and retried after [`ACCEPT_BACKOFF`]; it never stops the API.
//!
//! On the Unix socket the peer's user is read from the socket (`SO_PEERCRED`): only the socket file's
//! owner (the daemon's user) and root are served.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use super::server::NODE_TIMEOUT;
use meshd_wg::sys::clock;

/// Connections served at once on one listener.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a request's head may take to arrive, counted from when the server starts waiting for it.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection is kept before it is closed after its current response.
pub const LIFETIME: Duration = Duration::from_secs(60);
/// The largest request head taken; a larger one gets `431` and the connection is closed.
pub const MAX_HEAD: usize = 16 << 10;
/// The most a connection buffers of a request, so a listener's connections hold at most
/// `MAX_CONNECTIONS` times this.
pub const MAX_BUFFER: usize = 64 << 10;
/// The pause after a failed `accept`, so that a lack of file descriptors does not spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Refused connections and accept errors are reported at most this often.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The bounds on one listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            head_timeout: HEAD_TIMEOUT,
            lifetime: LIFETIME,
        }
    }
}

/// What one listener did, for tests and reports.
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Connections served.
    pub accepted: AtomicU64,
    /// Connections closed at once: over the cap, or from a user the Unix socket does not serve.
    pub refused: AtomicU64,
    /// `accept` calls that failed (out of file descriptors, say).
    pub accept_errors: AtomicU64,
}

/// Who is on the other end of a request, as the router sees it (an `Extension`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client at this address.
    Tcp(std::net::SocketAddr),
    /// A client on the Unix socket, running as this user (the daemon's user or root).
    Unix { uid: u32 },
}

/// A socket the API is served on.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    /// A Unix socket, and the user allowed on it besides root (the socket file's owner).
    Unix {
        listener: UnixListener,
        owner: u32,
    },
}

impl Listener {
    /// Binds the Unix socket at `path`, mode 0600, replacing a socket left there by a daemon that is
    /// gone (the state directory's lock says no other daemon runs). The directory is the state
    /// directory (0700), so nobody else can reach the path even in the moment before the chmod.
    pub fn bind_unix(path: &Path) -> io::Result<Listener> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; move it away so that the admin API can use \
                         the name",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let owner = std::fs::metadata(path)?.uid();
        Ok(Listener::Unix { listener, owner })
    }

    fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "TCP".to_string(), |a| format!("http://{a}")),
            Listener::Unix { listener, .. } => listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "a Unix socket".to_string()),
        }
    }
}

/// Serves `router` on `listener` within `limits` until the future is dropped.
pub async fn serve_router(listener: Listener, router: Router, limits: Limits, counters: Arc<ApiCounters>) {
    let name = listener.describe();
    tracing::info!("admin API listening on {name}");
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut report = Report::default();
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, addr)| Accepted::Tcp(s, addr)),
            Listener::Unix { listener, owner } => listener.accept().await.map(|(s, _)| {
                let uid = s.peer_cred().map(|c| c.uid()).ok();
                Accepted::Unix(s, uid.filter(|u| *u == *owner || *u == 0))
            }),
        };
        let now = clock::now();
        let accepted = match accepted {
            Ok(a) => a,
            Err(e) => {
                counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                report.accept_error(now, &name, &e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (io, peer): (Box<dyn Io>, Peer) = match accepted {
            Accepted::Tcp(stream, addr) => (Box::new(stream), Peer::Tcp(addr)),
            Accepted::Unix(stream, Some(uid)) => (Box::new(stream), Peer::Unix { uid }),
            Accepted::Unix(_, None) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                report.refused(
                    now,
                    &name,
                    "from users that are neither root nor the daemon's user",
                );
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            let why = format!("over the cap: all {} slots taken", limits.max_connections);
            report.refused(now, &name, &why);
            continue; // dropping the stream closes it
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let router = router.clone();
        tokio::spawn(async move {
            serve_connection(io, peer, router, limits).await;
            drop(permit);
        });
    }
}

/// A connection of either kind.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

enum Accepted {
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
    /// The stream and the peer's user, `None` when it may not be served.
    Unix(tokio::net::UnixStream, Option<u32>),
}

/// One connection: HTTP/1.1 with keep-alive, under the head timeout and the lifetime.
async fn serve_connection(io: Box<dyn Io>, peer: Peer, router: Router, limits: Limits) {
    let service = TowerToHyperService::new(router.layer(Extension(peer)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_BUFFER)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = tokio::time::sleep(limits.lifetime) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(NODE_TIMEOUT, conn.as_mut()).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!("admin API: closed a connection of {peer:?} still busy after its lifetime");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        // The client's doing (a timeout, a reset, a malformed request): not worth more than debug.
        tracing::debug!("admin API: connection of {peer:?} ended: {e}");
    }
}

/// Rate-limited reports of refused connections and accept errors.
#[derive(Default)]
struct Report {
    last_refused: Option<Instant>,
    refused_since: u64,
    last_error: Option<Instant>,
    errors_since: u64,
}

/// Whether a report last made at `last` may be made again `now` (and notes it made).
fn due(last: &mut Option<Instant>, now: Instant) -> bool {
    let due = last.is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_LOG_EVERY);
    if due {
        *last = Some(now);
    }
    due
}

impl Report {
    fn refused(&mut self, now: Instant, name: &str, why: &str) {
        self.refused_since += 1;
        if due(&mut self.last_refused, now) {
            tracing::warn!(
                "admin API on {name}: closed {} new connection(s) at once since the last report, {why} \
                 (reported at most every {} s)",
                self.refused_since,
                REFUSAL_LOG_EVERY.as_secs()
            );
            self.refused_since = 0;
        }
    }

    fn accept_error(&mut self, now: Instant, name: &str, e: &io::Error) {
        self.errors_since += 1;
        if due(&mut self.last_error, now) {
            tracing::warn!(
                "admin API on {name}: cannot accept connections: {e} ({} time(s) since the last report); \
                 retrying",
                self.errors_since
            );
            self.errors_since = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads until the end of the stream; `None` if it has not come within `limit`.
    async fn eof_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        tokio::time::timeout(limit, async {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .ok()
        .map(|()| all)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_kept_alive_connection_is_closed_after_its_lifetime() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 4,
            head_timeout: Duration::from_secs(30),
            lifetime: Duration::from_millis(300),
        };
        let counters = Arc::new(ApiCounters::default());
        let router = Router::new().route("/", get(|| async { "ok" }));
        let server = tokio::spawn(serve_router(
            Listener::Tcp(listener),
            router,
            limits,
            Arc::clone(&counters),
        ));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The answer comes, then the connection stays open (keep-alive, a 30 s head timeout) until
        // the lifetime closes it.
        let response = eof_within(&mut stream, Duration::from_secs(3))
            .await
            .expect("closed at the end of its lifetime, well before the head timeout");
        assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
        assert_eq!(counters.accepted.load(Ordering::Relaxed), 1);
        server.abort();
    }

    #[test]
    fn refusals_are_reported_at_most_once_per_period() {
        let mut report = Report::default();
        let t0 = clock::now();
        assert!(due(&mut report.last_refused, t0));
        assert!(!due(&mut report.last_refused, t0 + Duration::from_secs(1)));
        assert!(
            due(&mut report.last_error, t0 + Duration::from_secs(1)),
            "errors have their own period"
        );
        assert!(due(&mut report.last_refused, t0 + REFUSAL_LOG_EVERY));
    }
}
