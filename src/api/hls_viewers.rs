//! Who is watching over HLS: HLS has no sessions, so a viewer is a client address
//! that fetched one of the stream's playlists or media in the last [`WINDOW`].
//! Recorded by a middleware on the HLS routes, shown by the API and metrics.

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

/// Last request time by client address, by stream name.
#[derive(Clone, Default)]
pub struct HlsViewers(Arc<Mutex<HashMap<String, HashMap<IpAddr, Instant>>>>);

impl HlsViewers {
    fn note(&self, stream: &str, address: IpAddr, now: Instant) {
        let mut streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let viewers = streams.entry(stream.to_owned()).or_default();
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
            .flatten()
            .filter(|(_, seen)| now.duration_since(**seen) < WINDOW)
            .map(|(address, _)| *address)
            .collect();
        addresses.sort();
        addresses
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
            viewers.note(&stream, address, Instant::now());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewers_expire_and_are_capped() {
        let viewers = HlsViewers::default();
        let start = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        viewers.note("cam", a, start);
        assert_eq!(viewers.of("cam"), [a]);
        assert!(viewers.of("other").is_empty());
        for i in 0..(MAX_VIEWERS_PER_STREAM as u32 + 10) {
            viewers.note("busy", IpAddr::from(i.to_be_bytes()), start);
        }
        assert_eq!(viewers.of("busy").len(), MAX_VIEWERS_PER_STREAM);
        viewers.forget("cam");
        assert!(viewers.of("cam").is_empty());
    }
}
