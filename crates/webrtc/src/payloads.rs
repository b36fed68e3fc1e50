//! The payloads of a stream's recent frames in the form str0m sends
//! (`Arc<[u8]>`), converted once per frame and shared by every viewer.
//!
//! Each viewer has its own Hub subscription (so the Hub starts it at the GOP
//! cache and drops a slow one to the next keyframe), so the same `Arc<Frame>`
//! reaches the server once per viewer; the cache keyed by the frame's address
//! makes the conversion happen once. Holding the `Arc<Frame>` keeps the address
//! from being reused while it is cached.

use std::collections::VecDeque;
use std::sync::Arc;

use streamgate_rtp::Frame;

/// Frames remembered per stream: more than viewers lag behind one another
/// between two turns of the server loop.
const RECENT_FRAMES: usize = 128;

/// One frame's packet payloads, in packet order.
pub type SharedPayloads = Arc<[Arc<[u8]>]>;

#[derive(Default)]
pub struct PayloadCache {
    recent: VecDeque<(Arc<Frame>, SharedPayloads)>,
    conversions: u64,
}

impl PayloadCache {
    /// The frame's payloads, converted now if no viewer asked for them before.
    pub fn get(&mut self, frame: &Arc<Frame>) -> SharedPayloads {
        if let Some((_, payloads)) = self.recent.iter().find(|(f, _)| Arc::ptr_eq(f, frame)) {
            return Arc::clone(payloads);
        }
        let payloads: SharedPayloads = frame
            .packets
            .iter()
            .map(|p| Arc::<[u8]>::from(&p.payload[..]))
            .collect();
        self.conversions += 1;
        if self.recent.len() == RECENT_FRAMES {
            self.recent.pop_front();
        }
        self.recent
            .push_back((Arc::clone(frame), Arc::clone(&payloads)));
        payloads
    }

    /// Frames converted so far (once each, however many viewers sent them).
    pub fn conversions(&self) -> u64 {
        self.conversions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::SystemTime;
    use streamgate_rtp::OutPacket;
    use streamgate_rtp::{MediaKind, TrackId};
    use streamgate_rtp::{PayloadType, SeqNo, Ssrc};

    fn frame() -> Arc<Frame> {
        let packet = OutPacket::new(
            PayloadType::new(96).unwrap(),
            true,
            SeqNo::new(1),
            0,
            Ssrc::new(1),
            Bytes::from_static(b"payload"),
        );
        Arc::new(Frame {
            track: TrackId::new(0),
            kind: MediaKind::Video,
            pts: 0,
            dts: 0,
            wallclock: SystemTime::UNIX_EPOCH,
            keyframe: true,
            discontinuity: false,
            random_access_skipped: false,
            units: vec![],
            packets: vec![packet],
        })
    }

    #[test]
    fn one_conversion_per_frame_shared_by_every_viewer() {
        let mut cache = PayloadCache::default();
        let (a, b) = (frame(), frame());
        let first = cache.get(&a);
        let again = cache.get(&a);
        assert!(
            Arc::ptr_eq(&first[0], &again[0]),
            "the same buffer for a second viewer"
        );
        assert_eq!(&first[0][..], b"payload");
        cache.get(&b);
        assert_eq!(cache.conversions(), 2);
    }
}
