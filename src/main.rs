//! `streamgate`: the gateway binary. Loads the config, starts every stream's
//! source (see `streamgate::streams` and `streamgate::sources`) and runs until Ctrl-C or SIGTERM.
//!
//! Outputs (RTSP server, HLS over HTTP) are started in [`serve`] next to the
//! stream registry, each from its own config section.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use std::sync::Arc;

use streamgate::config::{self, Config, RingSettings};
use streamgate::events::{EventBus, EventSettings};
use streamgate::http::{self, AppState};
use streamgate::reload::Desired;
use streamgate::ring::{DiscoveryContext, RingDiscovery};
use streamgate::sources::{RingLink, RingSessions, Services};
use streamgate::streams::{self, SharedStreams, Streams};
use streamgate_rtsp::server::Readers;

/// Live video gateway: WHEP/RTSP/pcap sources in, RTSP and LL-HLS out.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, value_name = "PATH", default_value = "gateway.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks a configuration file (syntax, sources, captures) and exits.
    CheckConfig {
        /// File to check (default: the --config path).
        path: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Some(Command::CheckConfig { path }) => check_config(&path.unwrap_or(cli.config)),
        None => serve(&cli.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Anything that stops the gateway from starting, with a message for the user.
#[derive(thiserror::Error, Debug)]
enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Stream(#[from] streams::StreamError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen for SIGINT/SIGTERM: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Rtsp(#[from] streamgate_rtsp::server::ServerError),
    #[error("cannot listen for HTTP on {listen}: {source}")]
    Http {
        listen: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for WebRTC on UDP {listen}: {source}")]
    Webrtc {
        listen: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("[ring]: `{key}` is not set (set it in the file or in {env})")]
    RingSetting {
        key: &'static str,
        env: &'static str,
    },
    #[error("[ring]: {0}")]
    Ring(String),
    #[error(transparent)]
    Mqtt(#[from] streamgate::mqtt::MqttError),
    #[error("[mqtt] needs [ring]: the event bus it publishes lives with the Ring store")]
    MqttWithoutRing,
}

/// Loads `path` and everything its streams need; the directory of `path` is
/// the base of relative paths in it.
fn load(path: &Path) -> Result<(Config, Vec<streams::PlannedStream>), StartError> {
    let config = Config::load(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let planned = streams::plan(&config, base)?;
    Ok((config, planned))
}

fn check_config(path: &Path) -> Result<(), StartError> {
    let (_, planned) = load(path)?;
    tracing::info!(config = %path.display(), streams = planned.len(), "configuration is valid");
    Ok(())
}

fn serve(path: &Path) -> Result<(), StartError> {
    let (config, planned) = load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(async {
        // Installed before anything starts so an early signal still stops cleanly.
        let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signal)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signal)?;
        let mut hangup = signal(SignalKind::hangup()).map_err(StartError::Signal)?;
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let ring = config
            .ring
            .as_ref()
            .map(|settings| ring_link(settings, &base))
            .transpose()?;
        let services = Services { ring: ring.clone() };
        // In a cluster a stream starts once this node owns it.
        let clustered = config.cluster.is_some();
        let planned = if clustered { Vec::new() } else { planned };
        let streams = SharedStreams::new(Streams::start(planned, services));
        let desired = if clustered {
            Desired::clustered(&config)
        } else {
            Desired::new(&config)
        };
        #[cfg(feature = "cluster")]
        let (cluster, departure) = config
            .cluster
            .as_ref()
            .map(|settings| {
                streamgate::cluster::Cluster::start(settings, desired.clone(), streams.clone(), base.clone())
            })
            .unzip();
        let placement = Placement {
            #[cfg(feature = "cluster")]
            cluster,
        };
        let discovery = ring.zip(config.ring.as_ref()).map(|(link, settings)| {
            let context = DiscoveryContext {
                streams: streams.clone(),
                desired: desired.clone(),
                base: base.clone(),
                devices: settings.devices.clone(),
                every: settings.rediscover,
                max_streams: settings.max_streams,
            };
            RingDiscovery::start(link, context)
        });
        let events = discovery
            .as_ref()
            .zip(config.ring.as_ref())
            .map(|(discovery, settings)| {
                EventBus::new(discovery.link.client.clone(), event_settings(settings))
            });
        let mut mqtt_counts = None;
        if let Some(mqtt) = &config.mqtt {
            let (Some(bus), Some(discovery)) = (&events, &discovery) else {
                return Err(StartError::MqttWithoutRing);
            };
            mqtt_counts = Some(streamgate::mqtt::start(
                mqtt,
                &config,
                bus.clone(),
                discovery.link.clone(),
            )?);
        }
        // After MQTT subscribed to the bus, so it sees the first stream events.
        if let Some((bus, discovery)) = events.as_ref().zip(discovery.as_ref()) {
            bus.start_watchers(streams.clone());
            bus.forward_motion(discovery.link.clone());
        }
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let (rtsp, rtsp_readers) = start_rtsp(&config, &base, &streams, &placement, stopping.clone()).await?;
        let http = start_http(&config, &streams, rtsp_readers, (discovery, events, mqtt_counts), &placement, base.clone(), stopping).await?;
        tracing::info!(config = %path.display(), streams = streams.read().iter().count(), "streamgate running");
        let reason = loop {
            tokio::select! {
                _ = interrupt.recv() => break "SIGINT",
                _ = terminate.recv() => break "SIGTERM",
                _ = hangup.recv() => reload_streams(path, &base, &streams, &desired).await,
            }
        };
        tracing::info!("{reason}: shutting down");
        // New connections stop now. Closing the streams ends what is in flight:
        // RTSP readers get SR+BYE on every track, blocking HLS requests return.
        stop.send_replace(true);
        // Stops this node's sources and revokes its lease: the other nodes
        // claim its streams now, not after the lease's TTL.
        #[cfg(feature = "cluster")]
        if let Some(departure) = departure {
            if tokio::time::timeout(SHUTDOWN_DRAIN, departure.leave()).await.is_err() {
                tracing::warn!("leaving the cluster took over {SHUTDOWN_DRAIN:?}: its lease expires on its own");
            }
        }
        let streams = streams.write().take();
        streams.shutdown().await;
        // The RTSP server waits for its connections itself, within SHUTDOWN_DRAIN.
        let _ = rtsp.await;
        let http_abort = http.abort_handle();
        if tokio::time::timeout(SHUTDOWN_DRAIN, http).await.is_err() {
            tracing::warn!("HTTP requests still running after {SHUTDOWN_DRAIN:?}: cut off");
            http_abort.abort();
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// The Ring Partner API client of `[ring]`, with its store (relative to `base`).
fn ring_link(settings: &RingSettings, base: &Path) -> Result<RingLink, StartError> {
    use streamgate_ring::{RingClient, RingConfig, Store};
    let client_secret = settings
        .client_secret
        .clone()
        .ok_or(StartError::RingSetting {
            key: "client_secret",
            env: config::RING_CLIENT_SECRET_ENV,
        })?;
    let hmac_key = settings.hmac_key.clone().ok_or(StartError::RingSetting {
        key: "hmac_key",
        env: config::RING_HMAC_KEY_ENV,
    })?;
    let mut ring = RingConfig::new(settings.client_id.clone(), client_secret, hmac_key);
    ring.api_url = settings.api_url.clone();
    ring.token_url = settings.token_url.clone();
    ring.max_requests_per_second = settings.max_requests_per_second;
    ring.refresh_token_life = settings.refresh_token_life;
    let database = base.join(
        settings
            .database
            .clone()
            .unwrap_or_else(|| PathBuf::from("streamgate.db")),
    );
    let store = Store::open(&database)
        .map_err(|e| StartError::Ring(format!("{}: {e}", database.display())))?;
    let client = RingClient::new(ring, store).map_err(|e| StartError::Ring(e.to_string()))?;
    tracing::info!(api = %settings.api_url, database = %database.display(), accounts = client.accounts().len(), "Ring Partner API client ready");
    Ok(RingLink::new(
        client,
        RingSessions {
            battery: settings.battery_session,
            wired: settings.wired_session,
            unknown: settings.unknown_session,
            webrtc_bind: settings.webrtc_bind,
            on_motion: settings.on_motion,
            motion_hold: settings.motion_hold,
        },
    ))
}

/// The event bus's settings of `[ring]` (the HMAC key is there: `ring_link` checked).
fn event_settings(settings: &RingSettings) -> EventSettings {
    let webhook_keys = [&settings.hmac_key, &settings.previous_hmac_key]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    EventSettings {
        webhook_keys,
        webhook_max_age: settings.webhook_max_age,
        keep: settings.events_keep,
        max_age: settings.events_max_age,
    }
}

/// SIGHUP: re-reads the config file and applies its `[streams]`; a bad file is
/// logged and the running streams are kept.
async fn reload_streams(path: &Path, base: &Path, streams: &SharedStreams, desired: &Desired) {
    tracing::info!(config = %path.display(), "SIGHUP: reloading streams");
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!("reload failed, keeping the running streams: {error}");
            return;
        }
    };
    match desired.set_configured(streams, &config, base).await {
        Ok(summary) => tracing::info!(
            added = ?summary.added,
            changed = ?summary.changed,
            removed = ?summary.removed,
            unchanged = ?summary.unchanged,
            "streams reloaded"
        ),
        Err(error) => tracing::error!("reload failed, keeping the running streams: {error}"),
    }
}

/// Where readers of streams that run on another node are sent: the cluster
/// (feature `cluster`, with `[cluster]`); without it every stream is local.
#[derive(Clone, Default)]
struct Placement {
    #[cfg(feature = "cluster")]
    cluster: Option<streamgate::cluster::Cluster>,
}

/// Starts the RTSP restream server (`[rtsp]`) over the registry (streams added
/// or removed at runtime included); its reader registry goes to the API.
async fn start_rtsp(
    config: &Config,
    base: &Path,
    streams: &SharedStreams,
    placement: &Placement,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(tokio::task::JoinHandle<()>, Readers), StartError> {
    use streamgate::config::PublishPaths;
    use streamgate::published::{credentials, Directory};
    use streamgate_rtsp::server::tls::TlsSettings;
    use streamgate_rtsp::server::{PublishConfig, RtspServer, ServerConfig};
    let server_config = ServerConfig {
        listen: config.rtsp.listen,
        credentials: credentials(&config.rtsp.username, &config.rtsp.password),
        udp_ports: config.rtsp.udp_ports,
        request_timeout: config.rtsp.request_timeout,
        max_connections: config.rtsp.max_connections.get(),
        max_connections_per_client: config.rtsp.max_connections_per_client.get(),
        tls: config
            .rtsp
            .tls_listen
            .zip(config.rtsp.tls_certificate.as_ref())
            .zip(config.rtsp.tls_key.as_ref())
            .map(|((listen, certificate), key)| TlsSettings {
                listen,
                certificate: base.join(certificate),
                key: base.join(key),
            }),
        ..ServerConfig::default()
    };
    let rtsp = &config.rtsp;
    let open = (rtsp.publish == PublishPaths::Any).then(|| PublishConfig {
        credentials: credentials(&rtsp.publish_username, &rtsp.publish_password),
        replace: rtsp.publish_replace,
        grace: rtsp.publish_grace,
    });
    #[cfg_attr(not(feature = "cluster"), allow(unused_mut))]
    let mut directory = Directory::new(streams.clone(), open);
    #[cfg(feature = "cluster")]
    {
        directory.cluster = placement.cluster.clone();
    }
    #[cfg(not(feature = "cluster"))]
    let _ = placement;
    let server = RtspServer::bind(server_config, Arc::new(directory)).await?;
    let readers = server.readers();
    let stopped = stopped(stopping);
    Ok((
        tokio::spawn(server.run_until(stopped, SHUTDOWN_DRAIN)),
        readers,
    ))
}

/// How long connections in flight (RTSP readers, HTTP requests) may take to
/// finish at shutdown.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves once shutdown starts (or the sender is gone, which is a stop too).
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Starts the HTTP server (`[http]`): API, metrics, dashboard and HLS.
async fn start_http(
    config: &Config,
    streams: &SharedStreams,
    rtsp_readers: Readers,
    (ring, events, mqtt): (
        Option<RingDiscovery>,
        Option<EventBus>,
        Option<Arc<streamgate::mqtt::MqttCounts>>,
    ),
    placement: &Placement,
    base: PathBuf,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let listen = config.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Http { listen, source })?;
    tracing::info!(%listen, "HTTP server listening (dashboard at /, API at /api/, HLS at /hls/NAME/)");
    let mut state = AppState::new(config, streams.clone(), base);
    state.rtsp_readers = rtsp_readers;
    state.ring = ring;
    state.events = events;
    state.mqtt = mqtt;
    #[cfg(feature = "cluster")]
    {
        state.cluster = placement.cluster.clone();
    }
    #[cfg(not(feature = "cluster"))]
    let _ = placement;
    let whep = streamgate::webrtc::start(&config.webrtc)
        .await
        .map_err(|source| StartError::Webrtc {
            listen: config.webrtc.listen,
            source,
        })?;
    state.whep = Some(whep);
    let app = http::app(state, config.hls.clone(), &config.http);
    Ok(tokio::spawn(async move {
        // Client addresses reach the handlers (HLS viewers in the API).
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped(stopping))
            .await
        {
            tracing::error!(%error, "HTTP server stopped");
        }
    }))
}
