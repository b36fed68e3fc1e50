//! Who is watching over HLS: HLS has no sessions, so a viewer is a client address
//! that fetched one of the stream's playlists or media in the last [`WINDOW`].
//! Recorded by a middleware on the HLS routes, shown by the API and metrics,
//! together with the bytes of the playlists and media answered (their declared
//! size: counted when the answer is handed to the HTTP server, one add per request).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// A player re-fetches its playlist at least every target duration (seconds), so a
/// client silent this long has left.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Addresses remembered per stream: bounds memory whatever clients do.
const MAX_VIEWERS_PER_STREAM: usize = 4096;

/// Per stream name: last request time by client address, and bytes answered.
#[derive(Clone, Default)]
pub struct HlsViewers(Arc<Mutex<HashMap<String, StreamViewers>>>);

#[derive(Default)]
struct StreamViewers {
    last_seen: HashMap<IpAddr, Instant>,
    bytes: u64,
}

impl HlsViewers {
    fn note(&self, stream: &str, address: IpAddr, now: Instant, bytes: u64) {
        let mut streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = streams.entry(stream.to_owned()).or_default();
        entry.bytes = entry.bytes.wrapping_add(bytes);
        let viewers = &mut entry.last_seen;
        viewers.retain(|_, seen| now.duration_since(*seen) < WINDOW);
        if viewers.len() < MAX_VIEWERS_PER_STREAM || viewers.contains_key(&address) {
            viewers.insert(address, now);
        }
    }

    /// The stream's current viewers' addresses, sorted.
    pub fn of(&self, stream: &str) -> Vec<IpAddr> {
        let now = Instant::now();
        let streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut addresses: Vec<IpAddr> = streams
            .get(stream)
            .into_iter()
            .flat_map(|entry| &entry.last_seen)
            .filter(|(_, seen)| now.duration_since(**seen) < WINDOW)
            .map(|(address, _)| *address)
            .collect();
        addresses.sort();
        addresses
    }

    /// Bytes of the stream's playlists and media answered since it was added.
    pub fn bytes(&self, stream: &str) -> u64 {
        let streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        streams.get(stream).map_or(0, |entry| entry.bytes)
    }

    /// Forgets a stream (deleted or replaced).
    pub fn forget(&self, stream: &str) {
        let mut streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        streams.remove(stream);
    }
}

/// Middleware on `/hls/NAME/...`: a successful playlist or media answer counts the
/// client as a viewer of NAME (the player page and hls.js do not).
pub async fn track(State(viewers): State<HlsViewers>, request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    let stream = request
        .uri()
        .path()
        .strip_prefix("/hls/")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(_, file)| {
            file.ends_with(".m3u8") || file.ends_with(".m4s") || file.ends_with(".mp4")
        })
        .map(|(name, _)| name.to_owned());
    let response = next.run(request).await;
    if let (Some(address), Some(stream)) = (address, stream) {
        if response.status().is_success() {
            viewers.note(&stream, address, Instant::now(), body_size(&response));
        }
    }
    response
}

/// The answer's size: its Content-Length (media, streamed from shared chunks) or
/// its body's exact size (playlists); 0 when neither is known.
fn body_size(response: &Response) -> u64 {
    response
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .or_else(|| axum::body::HttpBody::size_hint(response.body()).exact())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_expire_and_are_capped() {
        let viewers = HlsViewers::default();
        let start = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        viewers.note("cam", a, start, 100);
        viewers.note("cam", a, start, 20);
        assert_eq!(viewers.bytes("cam"), 120);
        assert_eq!(viewers.of("cam"), [a]);
        assert!(viewers.of("other").is_empty());
        for i in 0..(MAX_VIEWERS_PER_STREAM as u32 + 10) {
            viewers.note("busy", IpAddr::from(i.to_be_bytes()), start, 0);
        }
        assert_eq!(viewers.of("busy").len(), MAX_VIEWERS_PER_STREAM);
        viewers.forget("cam");
        assert!(viewers.of("cam").is_empty());
    }
}
