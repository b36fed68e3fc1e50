//! What the HTTP handlers share: the registry, the API's settings and what the
//! outputs record about their readers (RTSP sessions, HLS viewers).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use streamgate_rtsp::server::Readers;

use super::hls_viewers::HlsViewers;
use crate::config::Config;
use crate::events::EventBus;
use crate::ring::RingDiscovery;
use crate::streams::SharedStreams;
use streamgate_redact::{constant_time_eq, Secret};

/// What the HTTP handlers share; cheap to clone (every field is shared).
#[derive(Clone)]
pub struct AppState {
    pub streams: SharedStreams,
    /// Directory relative `pcap:` paths in API requests are resolved against
    /// (the config file's, as for the file's own streams).
    pub base: PathBuf,
    /// Required as `Authorization: Bearer` on `/api/*` when set.
    pub api_token: Option<Secret>,
    /// Port of the RTSP server, for the URLs the dashboard shows.
    pub rtsp_port: u16,
    pub bitrates: Bitrates,
    pub hls_viewers: HlsViewers,
    /// The RTSP server's playing sessions (the binary passes the server's).
    pub rtsp_readers: Readers,
    /// Ring discovery and its client, when `[ring]` is configured (the binary passes it).
    pub ring: Option<RingDiscovery>,
    /// The event bus, with `[ring]` (the binary passes it).
    pub events: Option<EventBus>,
    /// MQTT publishes and drops, with `[mqtt]` (the binary passes them).
    pub mqtt: Option<std::sync::Arc<crate::mqtt::MqttCounts>>,
    /// The WHEP server (WebRTC viewers), when the binary started it.
    pub whep: Option<crate::webrtc::WhepHandle>,
    /// Browsers signed in on the Ring link pages.
    pub sign_ins: SignIns,
    /// Ring snapshots cache and clip folder (`[ring]` media keys).
    pub ring_media: super::ring_media::books::RingMedia,
    /// In a cluster: members and owners (the API) and where HLS readers of
    /// streams owned elsewhere are sent.
    #[cfg(feature = "cluster")]
    pub cluster: Option<crate::cluster::Cluster>,
    /// Decoded pictures of non-Ring streams and the decode permits.
    #[cfg(feature = "ffmpeg")]
    pub snapshots: super::snapshot::cache::Snapshots,
}

impl AppState {
    pub fn new(config: &Config, streams: SharedStreams, base: PathBuf) -> AppState {
        AppState {
            ring_media: super::ring_media::books::RingMedia::new(config.ring.as_ref(), &base),
            streams,
            base,
            api_token: config.http.api_token.clone(),
            rtsp_port: config.rtsp.listen.port(),
            bitrates: Bitrates::default(),
            hls_viewers: HlsViewers::default(),
            rtsp_readers: Readers::default(),
            ring: None,
            events: None,
            mqtt: None,
            whep: None,
            sign_ins: SignIns::default(),
            #[cfg(feature = "cluster")]
            cluster: None,
            #[cfg(feature = "ffmpeg")]
            snapshots: super::snapshot::cache::Snapshots::default(),
        }
    }
}

/// Per stream, the ingest byte count at the previous look and the rate measured
/// then: the API's `bitrate_bps`.
#[derive(Clone, Default)]
pub struct Bitrates(Arc<Mutex<HashMap<String, BitrateSample>>>);

#[derive(Clone, Copy)]
struct BitrateSample {
    at: Instant,
    bytes: u64,
    bps: Option<u64>,
}

impl Bitrates {
    /// The stream's rate over the time since the previous look at least a second
    /// ago, given its byte count now; none before there are two such looks.
    pub fn sample(&self, name: &str, bytes: u64) -> Option<u64> {
        let now = Instant::now();
        let mut samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = BitrateSample {
            at: now,
            bytes,
            bps: None,
        };
        let sample = samples.entry(name.to_owned()).or_insert(fresh);
        let elapsed = now.duration_since(sample.at).as_secs_f64();
        if bytes < sample.bytes {
            // A replaced stream: start over.
            *sample = fresh;
        } else if elapsed >= 1.0 {
            let bps = (bytes - sample.bytes) as f64 * 8.0 / elapsed;
            *sample = BitrateSample {
                bps: Some(bps as u64),
                ..fresh
            };
        }
        sample.bps
    }

    /// Forgets a removed stream.
    pub fn forget(&self, name: &str) {
        let mut samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        samples.remove(name);
    }
}

/// How long a browser stays signed in.
pub const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
/// Most signed-in browsers kept; the oldest is signed out beyond it.
const MAX_SESSIONS: usize = 1024;

/// Browsers signed in with the API token: random session ids and when they signed in.
#[derive(Clone, Default)]
pub struct SignIns(Arc<Mutex<HashMap<String, Instant>>>);

impl SignIns {
    pub fn create(&self) -> String {
        let id = random_id();
        let mut sessions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, since| now.duration_since(*since) < SESSION_LIFE);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| **s)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), now);
        id
    }

    pub fn contains(&self, id: &str) -> bool {
        let sessions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.iter().any(|(known, since)| {
            constant_time_eq(known.as_bytes(), id.as_bytes()) && since.elapsed() < SESSION_LIFE
        })
    }
}

fn random_id() -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
