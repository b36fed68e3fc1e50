//! One HLS reader: polls a media playlist (following a multivariant playlist
//! to its first variant), fetches the init segment once and every new media
//! segment from the live edge on, and checks them:
//!
//! - loss: a media sequence number skipped between two fetched segments, or a
//!   segment that could not be fetched;
//! - monotonic time: each track's `tfdt` decode time must not step back;
//! - decodable start: the first segment's video fragment starts on a sync sample.
//!
//! Units are segments, not packets. Playlists are polled every half target
//! duration (plain HLS polling: LL-HLS parts and blocking reloads are not used,
//! so both kinds of server are read the same way); [`crate::ll_hls`] reads parts
//! instead. No end-to-end latency: the playlists carry no common wall-clock
//! reference.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::fmp4;
use crate::reader::{LiveCounters, ReaderReport};

/// Largest playlist or segment body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// What one HLS reader has seen so far.
#[derive(Default)]
pub(crate) struct HlsCheck {
    /// The latency samples a reader takes, if any (LL-HLS: blocking reloads).
    pub latency_ms: Vec<f64>,
    video_track: Option<u32>,
    last_sequence: Option<u64>,
    decode_times: HashMap<u32, u64>,
    segments: u64,
    lost: u64,
    bytes: u64,
    backward_timestamps: u64,
    keyframe_first: Option<bool>,
    first_segment_at: Option<Instant>,
}

impl HlsCheck {
    /// The init segment: which track is video.
    pub(crate) fn on_init(&mut self, init: &[u8]) {
        self.video_track = fmp4::video_track(init);
        self.bytes += init.len() as u64;
    }

    /// A media segment (or LL-HLS part) numbered `sequence`: a gap is loss.
    /// Counted in `live` too.
    pub(crate) fn on_media(
        &mut self,
        sequence: u64,
        body: &[u8],
        now: Instant,
        live: &LiveCounters,
    ) {
        if let Some(last) = self.last_sequence {
            let lost = sequence.saturating_sub(last + 1);
            self.lost += lost;
            live.lost.fetch_add(lost, Ordering::Relaxed);
        }
        live.packets.fetch_add(1, Ordering::Relaxed);
        self.last_sequence = Some(sequence);
        self.segments += 1;
        self.bytes += body.len() as u64;
        for fragment in fmp4::fragments(body) {
            if let Some(previous) = self
                .decode_times
                .insert(fragment.track_id, fragment.decode_time)
            {
                if fragment.decode_time < previous {
                    self.backward_timestamps += 1;
                }
            }
            if self.keyframe_first.is_none() && Some(fragment.track_id) == self.video_track {
                self.keyframe_first = Some(fragment.starts_with_sync == Some(true));
                self.first_segment_at = Some(now);
            }
        }
    }
}

pub(crate) async fn get(client: &reqwest::Client, url: &url::Url) -> Result<Bytes, String> {
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("{}: HTTP {}", url.path(), response.status()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY as u64)
    {
        return Err(format!("{}: body over {MAX_BODY} bytes", url.path()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if body.len() > MAX_BODY {
        return Err(format!("{}: body over {MAX_BODY} bytes", url.path()));
    }
    Ok(body)
}

/// Reads `url` until `deadline` and reports: whole segments, or LL-HLS parts.
pub async fn read(
    index: usize,
    url: url::Url,
    parts: bool,
    deadline: Instant,
    live: Arc<LiveCounters>,
) -> ReaderReport {
    let started = Instant::now();
    let mut check = HlsCheck::default();
    let mut playing_since = None;
    let reading = async {
        let client = reqwest::Client::new();
        let (url, playlist) = open(&client, url.clone()).await?;
        let init = fetch_init(&client, &url, &playlist).await?;
        check.on_init(&init);
        playing_since = Some(Instant::now());
        live.playing.fetch_add(1, Ordering::Relaxed);
        if parts {
            crate::ll_hls::follow(&client, &url, playlist, &mut check, &live).await
        } else {
            poll(&client, &url, playlist, &mut check, &live).await
        }
    };
    let error = match tokio::time::timeout_at(deadline, reading).await {
        Ok(Err(e)) => Some(e),
        Ok(Ok(())) | Err(_) => None,
    };
    if playing_since.is_some() {
        live.playing.fetch_sub(1, Ordering::Relaxed);
    }
    let seconds = playing_since.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
    ReaderReport {
        index,
        url: streamgate_redact::redact_url(&url),
        error,
        play_ms: playing_since.map(|t| (t - started).as_secs_f64() * 1000.0),
        first_keyframe_ms: check
            .first_segment_at
            .filter(|_| check.keyframe_first == Some(true))
            .map(|t| (t - started).as_secs_f64() * 1000.0),
        keyframe_first: check.keyframe_first,
        packets: check.segments,
        bytes: check.bytes,
        expected: check.segments + check.lost,
        lost: check.lost,
        backward_timestamps: check.backward_timestamps,
        bitrate_kbps: if seconds > 0.0 {
            check.bytes as f64 * 8.0 / seconds / 1000.0
        } else {
            0.0
        },
        latency_ms: check.latency_ms,
    }
}

/// The media playlist `url` leads to (following a multivariant playlist to its
/// first variant) and its first text. A server may answer 503 while it starts
/// the stream's muxer on demand: retried as a player would, until the deadline.
async fn open(client: &reqwest::Client, mut url: url::Url) -> Result<(url::Url, Bytes), String> {
    loop {
        let body = match get(client, &url).await {
            Ok(body) => body,
            Err(e) => {
                tracing::debug!(error = %e, "playlist not ready yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        match m3u8_rs::parse_playlist_res(&body) {
            Ok(m3u8_rs::Playlist::MasterPlaylist(master)) => {
                let variant = master
                    .variants
                    .first()
                    .ok_or("multivariant playlist without variants")?;
                url = url
                    .join(&variant.uri)
                    .map_err(|e| format!("variant URI: {e}"))?;
            }
            Ok(m3u8_rs::Playlist::MediaPlaylist(_)) => return Ok((url, body)),
            Err(_) => return Err(format!("{}: not a playlist", url.path())),
        }
    }
}

/// The init segment the media playlist's `EXT-X-MAP` names (empty without one).
async fn fetch_init(
    client: &reqwest::Client,
    url: &url::Url,
    playlist: &[u8],
) -> Result<Bytes, String> {
    let Ok(m3u8_rs::Playlist::MediaPlaylist(media)) = m3u8_rs::parse_playlist_res(playlist) else {
        return Err(format!("{}: not a media playlist", url.path()));
    };
    match media.segments.iter().find_map(|s| s.map.as_ref()) {
        Some(map) => {
            let init_url = url.join(&map.uri).map_err(|e| format!("init URI: {e}"))?;
            get(client, &init_url).await
        }
        None => Ok(Bytes::new()),
    }
}

/// Whole segments from the live edge on, polling every half target duration.
async fn poll(
    client: &reqwest::Client,
    url: &url::Url,
    mut body: Bytes,
    check: &mut HlsCheck,
    live: &LiveCounters,
) -> Result<(), String> {
    loop {
        let playlist = match m3u8_rs::parse_playlist_res(&body) {
            Ok(m3u8_rs::Playlist::MediaPlaylist(media)) => media,
            _ => return Err(format!("{}: not a media playlist", url.path())),
        };
        let first = playlist.media_sequence;
        // Start at the live edge: the newest segment, like a low-latency player.
        let next = check.last_sequence.map_or(
            first + playlist.segments.len().saturating_sub(1) as u64,
            |s| s + 1,
        );
        for (i, segment) in playlist.segments.iter().enumerate() {
            let sequence = first + i as u64;
            if sequence < next {
                continue;
            }
            let segment_url = url
                .join(&segment.uri)
                .map_err(|e| format!("segment URI: {e}"))?;
            let media = get(client, &segment_url).await?;
            check.on_media(sequence, &media, Instant::now(), live);
        }
        if playlist.end_list {
            return Err("the playlist ended (EXT-X-ENDLIST)".to_owned());
        }
        let target = Duration::from_secs_f64(playlist.target_duration.max(1) as f64 / 2.0);
        tokio::time::sleep(target).await;
        body = get(client, url).await?;
    }
}
