//! RTSPS (`rtsps://`) cameras: our own minimal RTSP client ([`proto`]) over
//! tokio-rustls, because retina cannot be given a TLS stream (see the module
//! docs of [`crate::client`]). Media is RTP/AVP interleaved inside the TLS
//! connection, as UniFi Protect serves it; SRTP is refused by name.
//!
//! The connection steps run in the caller's future, each bounded by the step
//! timeout. Once playing, a task owns the connection: it feeds the client,
//! writes its requests (keep-alives) and passes its events on through a
//! bounded channel, so [`TlsSession::next`] is a cancel-safe `recv`. When the
//! session is dropped the task sends TEARDOWN and ends.

mod proto;
pub mod reader;
mod verify;

use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use streamgate_rtp::TrackInfo;

use super::config::TlsOptions;
use super::session::{bounded, SessionEvent};
use super::{CameraUrl, SourceError};
use proto::Client;

/// The RTSPS default port (RFC 2326 §19.2 registers 322 for rtsps).
const DEFAULT_PORT: u16 = 322;

/// Events queued between the connection task and the source (backpressure
/// beyond this: the task stops reading).
const EVENT_QUEUE: usize = 256;

/// How long the goodbye TEARDOWN may take.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(2);

type Item = Result<Option<SessionEvent>, SourceError>;

/// An RTSPS camera session in the PLAY state.
pub struct TlsSession {
    events: mpsc::Receiver<Item>,
    tracks: Vec<TrackInfo>,
}

impl TlsSession {
    /// TCP connect, TLS handshake, OPTIONS, DESCRIBE, SETUP and PLAY, each
    /// bounded by `step_timeout`.
    pub async fn connect(
        url: &CameraUrl,
        tls: &TlsOptions,
        step_timeout: Duration,
    ) -> Result<TlsSession, SourceError> {
        let tls = verify::client_config(tls)?;
        let host = url.url().host_str().unwrap_or_default();
        // An IPv6 literal is bracketed in the URL, not in a socket address or SNI.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.url().port().unwrap_or(DEFAULT_PORT);
        let io_err = |what: &str, e: std::io::Error| {
            SourceError::protocol(url.redact(&format!("{what} {host}:{port}: {e}")))
        };
        let tcp = bounded(
            "TCP connect",
            step_timeout,
            TcpStream::connect((host.as_str(), port)),
        )
        .await?
        .map_err(|e| io_err("cannot connect to", e))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.clone())
            .map_err(|e| SourceError::Tls(format!("camera host {host:?}: {e}")))?;
        let mut stream = bounded(
            "the TLS handshake",
            step_timeout,
            TlsConnector::from(tls.config.clone()).connect(name, tcp),
        )
        .await?
        .map_err(|e| SourceError::Tls(url.redact(&tls.handshake_error(&e))))?;

        let mut client = Client::new(url.url().clone(), url.credentials());
        let mut buf = vec![0u8; 16 * 1024];
        while !client.is_playing() {
            flush(&mut stream, &mut client)
                .await
                .map_err(|e| io_err("writing to", e))?;
            let step = client.step_name();
            let n = bounded(step, step_timeout, stream.read(&mut buf))
                .await?
                .map_err(|e| io_err("reading from", e))?;
            if n == 0 {
                return Err(SourceError::Closed);
            }
            client.handle_input(&buf[..n], Instant::now())?;
        }
        let tracks = client.tracks();
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(async move {
            // The protocol's errors quote no URL, so they need no redaction.
            if let Err(error) = run(&mut stream, &mut client, &tx, &mut buf).await {
                let _ = tx.send(Err(error)).await;
            }
            if let Some(teardown) = client.teardown() {
                let _ = tokio::time::timeout(TEARDOWN_TIMEOUT, async {
                    stream.write_all(&teardown).await?;
                    stream.shutdown().await
                })
                .await;
            }
        });
        Ok(TlsSession { events, tracks })
    }

    /// The tracks from the camera's SDP (ids 0..), as the retina path gives them.
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.tracks
    }

    /// The next event; `Ok(None)` when the camera closed the session. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<SessionEvent>, SourceError> {
        self.events.recv().await.unwrap_or(Ok(None))
    }
}

/// Plays until the connection ends (`Ok`: closed by the camera, reported as
/// such; or the session was dropped) or fails.
async fn run(
    stream: &mut TlsStream<TcpStream>,
    client: &mut Client,
    tx: &mpsc::Sender<Item>,
    buf: &mut [u8],
) -> Result<(), SourceError> {
    let io_err = |e: std::io::Error| SourceError::protocol(format!("camera connection: {e}"));
    loop {
        while let Some(event) = client.poll_event() {
            if tx.send(Ok(Some(event))).await.is_err() {
                return Ok(());
            }
        }
        flush(stream, client).await.map_err(io_err)?;
        let keepalive = client.poll_timeout();
        tokio::select! {
            read = stream.read(buf) => {
                let n = read.map_err(io_err)?;
                if n == 0 {
                    let _ = tx.send(Ok(None)).await;
                    return Ok(());
                }
                client.handle_input(&buf[..n], Instant::now())?;
            }
            () = sleep_until(keepalive) => client.handle_timeout(Instant::now()),
            () = tx.closed() => return Ok(()),
        }
    }
}

async fn flush(stream: &mut TlsStream<TcpStream>, client: &mut Client) -> std::io::Result<()> {
    while let Some(bytes) = client.poll_transmit() {
        stream.write_all(&bytes).await?;
    }
    stream.flush().await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
