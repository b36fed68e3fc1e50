//! RTSP restream server: NVRs and players read `rtsp://HOST:PORT/NAME`, where
//! NAME is a stream the [`StreamDirectory`] knows.
//!
//! Layout (one concept per module; the protocol pieces are sans-IO and unit
//! tested, the I/O is two thin layers):
//! - [`framing`]: bytes → requests / interleaved frames, with size caps and a
//!   deadline per request;
//! - [`limits`]: connection caps (per client address, in total) and the
//!   server-wide counts of every limit clients ran into;
//! - [`auth`]: Basic and Digest (MD5, SHA-256) checks and challenges;
//! - [`transport`], [`target`], [`describe`]: Transport negotiation, URL → stream
//!   and track, the SDP answer;
//! - [`sender_report`]: RTCP SR per track and session;
//! - [`session`]: the method handlers of one connection;
//! - [`publish`], [`record`], [`udp_record`]: publishers (ANNOUNCE/RECORD):
//!   the stream's one publisher and its grace, a publisher's session on a
//!   connection, its UDP ports;
//! - [`interleaved`], [`udp`]: writing RTP (vectored, payloads never copied);
//! - [`readers`]: who is playing what, with per-reader packet and byte counts;
//! - [`tls`]: the RTSPS listener's certificate (rustls);
//! - `connection`: the per-connection task (plain or TLS, the same code);
//!   [`RtspServer`]: the accept loop of both listeners.
//!
//! Each reader is its own task reading its own Hub subscription, so a slow reader
//! is skipped to the next keyframe by the Hub and a dead one is cut off by the
//! write timeout, without touching the others.

pub mod auth;
mod connection;
pub mod describe;
pub mod framing;
pub mod interleaved;
pub mod limits;
pub mod publish;
pub mod readers;
pub mod record;
pub mod response;
pub mod sender_report;
pub mod session;
pub mod target;
pub mod tls;
pub mod transport;
pub mod udp;
pub mod udp_record;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use streamgate_pipeline::Hub;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

pub use auth::Credentials;
pub use limits::{LimitCounts, Limited};
pub use publish::{PublishConfig, PublishPoint, PublishStatus, Publisher};
pub use readers::{OutputTotals, ReaderInfo, ReaderTransport, Readers};

use limits::Admission;

/// Connections over a cap that are read at once for the request to answer 503;
/// beyond these, such connections are closed without an answer.
const REFUSING_AT_ONCE: usize = 64;

/// Server settings (the binary's `[rtsp]` section).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Required for every stream that has no credentials of its own.
    pub credentials: Option<Credentials>,
    /// A session with no request, RTCP or keep-alive for this long is closed.
    pub session_timeout: Duration,
    /// How long DESCRIBE waits for a stream's parameter sets before answering 503.
    pub describe_timeout: Duration,
    /// A reader whose socket accepts nothing for this long is cut off.
    pub write_timeout: Duration,
    /// A request (head and body; or an interleaved frame) not complete this
    /// long after its first byte is answered 408 and its connection closed.
    pub request_timeout: Duration,
    /// Connections beyond this are answered 503 and closed.
    pub max_connections: usize,
    /// Connections from one client address beyond this are answered 503 and
    /// closed (IPv4-mapped IPv6 addresses count as their IPv4 address).
    pub max_connections_per_client: usize,
    /// Server RTP/RTCP ports for UDP readers (so a firewall or container port
    /// mapping can let them through); `None`: ephemeral ports.
    pub udp_ports: Option<udp::UdpPortRange>,
    /// Where playing sessions are listed; pass a clone to whoever reports them.
    pub readers: Readers,
    /// An RTSPS listener beside the plain one (same streams, limits and caps).
    pub tls: Option<tls::TlsSettings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8554)),
            credentials: None,
            session_timeout: Duration::from_secs(60),
            describe_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            request_timeout: framing::DEFAULT_REQUEST_TIMEOUT,
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: limits::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            udp_ports: None,
            readers: Readers::default(),
            tls: None,
        }
    }
}

/// A stream as the server sees it.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub hub: Hub,
    /// Overrides the server-wide credentials for this stream.
    pub credentials: Option<Credentials>,
    /// Set for a `source = "publish"` stream: publishers ANNOUNCE to it.
    pub publish: Option<publish::PublishPoint>,
}

/// Looks streams up by the name in the request URL.
pub trait StreamDirectory: Send + Sync + 'static {
    fn lookup(&self, name: &str) -> Option<StreamEntry>;

    /// For a stream that is not here but served by another server (a
    /// cluster's owner): that server's `rtsp://host:port`, where DESCRIBE and
    /// SETUP send the reader with a 302 (after the server-wide credentials).
    fn elsewhere(&self, _name: &str) -> Option<String> {
        None
    }

    /// The credentials a publisher to a path no stream has must prove, when
    /// such paths are open to publishers (`[rtsp] publish = "any"`, MediaMTX's
    /// `all_others`): `None` answers such an ANNOUNCE 404, `Some(None)` lets
    /// anyone publish.
    fn open_publish(&self) -> Option<Option<Credentials>> {
        None
    }

    /// Creates the publish stream `name` for a publisher that passed
    /// [`open_publish`](Self::open_publish) and announced a usable SDP (so a
    /// refused ANNOUNCE leaves no stream behind). The stream found instead when
    /// another publisher created it first; `None` when `name` cannot be a stream.
    fn create_publish(&self, _name: &str) -> Option<StreamEntry> {
        None
    }
}

impl<F> StreamDirectory for F
where
    F: Fn(&str) -> Option<StreamEntry> + Send + Sync + 'static,
{
    fn lookup(&self, name: &str) -> Option<StreamEntry> {
        self(name)
    }
}

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen for RTSP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A bound RTSP server; [`RtspServer::run`] serves until the task is dropped.
pub struct RtspServer {
    listener: TcpListener,
    /// RTSPS: its listener and the TLS acceptor.
    tls: Option<(TcpListener, TlsAcceptor)>,
    config: Arc<ServerConfig>,
    directory: Arc<dyn StreamDirectory>,
}

impl RtspServer {
    pub async fn bind(
        config: ServerConfig,
        directory: Arc<dyn StreamDirectory>,
    ) -> Result<RtspServer, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let tls = match &config.tls {
            Some(settings) => {
                let acceptor = tls::acceptor(settings)?;
                let listener = TcpListener::bind(settings.listen).await.map_err(|source| {
                    ServerError::Bind {
                        addr: settings.listen,
                        source,
                    }
                })?;
                Some((listener, acceptor))
            }
            None => None,
        };
        Ok(RtspServer {
            listener,
            tls,
            config: Arc::new(config),
            directory,
        })
    }

    /// The sessions playing now and their counters (shared with `config.readers`).
    pub fn readers(&self) -> Readers {
        self.config.readers.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The RTSPS listener's address, when one is configured.
    pub fn tls_local_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.tls.as_ref().map(|(listener, _)| listener.local_addr())
    }

    /// Accepts connections forever, one task each.
    pub async fn run(self) {
        self.run_until(std::future::pending(), Duration::ZERO).await;
    }

    /// Accepts connections until `stop` resolves, then waits up to `drain` for
    /// the open connections to end. A connection ends once its stream closes,
    /// after it has sent its readers SR+BYE on every track: so a caller that
    /// closes the streams and then resolves `stop` gets a graceful shutdown.
    ///
    /// A connection over `max_connections_per_client` or `max_connections` is
    /// answered 503 on its first request and closed; the open ones go on.
    pub async fn run_until(self, stop: impl Future<Output = ()>, drain: Duration) {
        let admission = Arc::new(Mutex::new(Admission::new(
            self.config.max_connections,
            self.config.max_connections_per_client,
        )));
        let (open_tx, mut open_rx) = watch::channel(0usize);
        let open_tx = Arc::new(open_tx);
        let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
        tracing::info!(addr = ?self.listener.local_addr().ok(), "RTSP server listening");
        if let Some((listener, _)) = &self.tls {
            tracing::info!(addr = ?listener.local_addr().ok(), "RTSPS server listening");
        }
        tokio::pin!(stop);
        loop {
            let (accepted, acceptor) = tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => (accepted, None),
                accepted = accept_tls(&self.tls) => (accepted.0, Some(accepted.1)),
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "RTSP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admitted = {
                let mut admission = lock(&admission);
                let admitted = admission.admit(peer.ip());
                if admitted.is_ok() {
                    open_tx.send_replace(admission.open());
                }
                admitted
            };
            if let Err(refusal) = admitted {
                let now = Instant::now();
                if let Some(left_out) = self.config.readers.limit_hit(refusal.kind(), now) {
                    tracing::warn!(%peer, left_out, "RTSP connection refused (503): {refusal}");
                }
                // Bounded: a flood of refused connections is closed unanswered.
                if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                    let wait = self.config.request_timeout;
                    tokio::spawn(async move {
                        connection::refuse_connection(stream, refusal, wait).await;
                        drop(permit);
                    });
                }
                continue;
            }
            let slot = Slot {
                admission: Arc::clone(&admission),
                client: peer.ip(),
                open: Arc::clone(&open_tx),
            };
            let config = Arc::clone(&self.config);
            let directory = Arc::clone(&self.directory);
            tokio::spawn(async move {
                match acceptor {
                    None => connection::serve_tcp(stream, peer, config, directory).await,
                    Some(acceptor) => {
                        connection::serve_tls(stream, acceptor, peer, config, directory).await
                    }
                }
                drop(slot);
            });
        }
        drop(self.listener);
        drop(self.tls);
        if tokio::time::timeout(drain, open_rx.wait_for(|open| *open == 0))
            .await
            .is_err()
        {
            tracing::warn!(
                open = *open_rx.borrow(),
                "RTSP connections still open after {drain:?}: cut off"
            );
        }
    }
}

/// The next RTSPS connection (pending without a TLS listener).
async fn accept_tls(
    tls: &Option<(TcpListener, TlsAcceptor)>,
) -> (std::io::Result<(TcpStream, SocketAddr)>, TlsAcceptor) {
    match tls {
        Some((listener, acceptor)) => (listener.accept().await, acceptor.clone()),
        None => std::future::pending().await,
    }
}

fn lock(admission: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    admission.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One admitted connection; dropping it counts the connection out.
struct Slot {
    admission: Arc<Mutex<Admission>>,
    client: IpAddr,
    open: Arc<watch::Sender<usize>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut admission = lock(&self.admission);
        admission.release(self.client);
        self.open.send_replace(admission.open());
    }
}
