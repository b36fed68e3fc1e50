//! RTSP restream server: NVRs and players read `rtsp://HOST:PORT/NAME`, where
//! NAME is a stream the [`StreamDirectory`] knows.
//!
//! Layout (one concept per module; the protocol pieces are sans-IO and unit
//! tested, the I/O is two thin layers):
//! - [`framing`]: bytes → requests / interleaved frames, with size caps;
//! - [`auth`]: Basic and Digest (MD5, SHA-256) checks and challenges;
//! - [`transport`], [`target`], [`describe`]: Transport negotiation, URL → stream
//!   and track, the SDP answer;
//! - [`sender_report`]: RTCP SR per track and session;
//! - [`session`]: the method handlers of one connection;
//! - [`interleaved`], [`udp`]: writing RTP (vectored, payloads never copied);
//! - [`readers`]: who is playing what, with per-reader packet and byte counts;
//! - `connection`: the per-connection task; [`RtspServer`]: the accept loop.
//!
//! Each reader is its own task reading its own Hub subscription, so a slow reader
//! is skipped to the next keyframe by the Hub and a dead one is cut off by the
//! write timeout, without touching the others.

pub mod auth;
mod connection;
pub mod describe;
pub mod framing;
pub mod interleaved;
pub mod readers;
pub mod response;
pub mod sender_report;
pub mod session;
pub mod target;
pub mod transport;
pub mod udp;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use streamgate_pipeline::Hub;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use auth::Credentials;
pub use readers::{OutputTotals, ReaderInfo, ReaderTransport, Readers};

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
    /// Connections beyond this are answered 503 and closed.
    pub max_connections: usize,
    /// Server RTP/RTCP ports for UDP readers (so a firewall or container port
    /// mapping can let them through); `None`: ephemeral ports.
    pub udp_ports: Option<udp::UdpPortRange>,
    /// Where playing sessions are listed; pass a clone to whoever reports them.
    pub readers: Readers,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8554)),
            credentials: None,
            session_timeout: Duration::from_secs(60),
            describe_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            udp_ports: None,
            readers: Readers::default(),
        }
    }
}

/// A stream as the server sees it.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    pub hub: Hub,
    /// Overrides the server-wide credentials for this stream.
    pub credentials: Option<Credentials>,
}

/// Looks streams up by the name in the request URL.
pub trait StreamDirectory: Send + Sync + 'static {
    fn lookup(&self, name: &str) -> Option<StreamEntry>;
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
}

/// A bound RTSP server; [`RtspServer::run`] serves until the task is dropped.
pub struct RtspServer {
    listener: TcpListener,
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
        Ok(RtspServer {
            listener,
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

    /// Accepts connections forever, one task each.
    pub async fn run(self) {
        self.run_until(std::future::pending(), Duration::ZERO).await;
    }

    /// Accepts connections until `stop` resolves, then waits up to `drain` for
    /// the open connections to end. A connection ends once its stream closes,
    /// after it has sent its readers SR+BYE on every track: so a caller that
    /// closes the streams and then resolves `stop` gets a graceful shutdown.
    pub async fn run_until(self, stop: impl Future<Output = ()>, drain: Duration) {
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        tracing::info!(addr = ?self.listener.local_addr().ok(), "RTSP server listening");
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => accepted,
            };
            let (mut stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "RTSP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tokio::spawn(async move {
                    let _ = stream.write_all(&connection::service_unavailable()).await;
                });
                continue;
            };
            let config = Arc::clone(&self.config);
            let directory = Arc::clone(&self.directory);
            tokio::spawn(async move {
                connection::serve(stream, peer, config, directory).await;
                drop(slot);
            });
        }
        drop(self.listener);
        // Every slot back means every connection task has finished.
        let every_slot = u32::try_from(self.config.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(drain, slots.acquire_many(every_slot))
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.config.max_connections - slots.available_permits(),
                "RTSP connections still open after {drain:?}: cut off"
            );
        }
    }
}
