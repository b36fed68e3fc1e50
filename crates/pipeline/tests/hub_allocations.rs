//! Fan-out to 100 subscribers allocates nothing per subscriber and copies no
//! payload: measured with a counting global allocator (the only test in this
//! binary, so nothing else allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use streamgate_pipeline::{Hub, HubConfig, Subscription};
use streamgate_rtp::{
    Codec, CodecParams, Frame, MediaKind, OutPacket, PayloadType, SeqNo, Ssrc, TrackId, TrackInfo,
};

struct CountingAllocator;

static ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const SUBSCRIBERS: usize = 100;
const FRAMES: usize = 50;
const PAYLOAD: usize = 64 * 1024;

#[test]
fn fan_out_to_100_subscribers_copies_no_payload() {
    let hub = Hub::new("alloc", HubConfig::default());
    hub.set_tracks(vec![TrackInfo {
        id: TrackId::new(0),
        codec: Codec::H264,
        clock_rate: 90_000,
        channels: 1,
        payload_type: PayloadType::new(96).unwrap(),
        params: CodecParams::default(),
    }]);
    let mut subscribers: Vec<Subscription> = (0..SUBSCRIBERS).map(|_| hub.subscribe()).collect();
    // Built before measuring: what a source would have received.
    let frames: Vec<Frame> = (0..FRAMES)
        .map(|i| {
            let payload = Bytes::from(vec![i as u8; PAYLOAD]);
            Frame {
                track: TrackId::new(0),
                kind: MediaKind::Video,
                pts: i as u64 * 3000,
                dts: i as u64 * 3000,
                wallclock: SystemTime::UNIX_EPOCH,
                keyframe: i % 25 == 0,
                discontinuity: false,
                random_access_skipped: false,
                packets: vec![OutPacket::new(
                    PayloadType::new(96).unwrap(),
                    true,
                    SeqNo::new(i as u16),
                    i as u32 * 3000,
                    Ssrc::new(7),
                    payload.clone(),
                )],
                units: vec![payload],
            }
        })
        .collect();
    let mut received: Vec<Arc<Frame>> = Vec::with_capacity(SUBSCRIBERS * FRAMES);

    let (bytes_before, count_before) = (
        ALLOCATED_BYTES.load(Ordering::SeqCst),
        ALLOCATIONS.load(Ordering::SeqCst),
    );
    for frame in frames {
        hub.publish(frame);
        for subscriber in &mut subscribers {
            received.push(
                subscriber
                    .try_recv()
                    .expect("open")
                    .expect("a frame is waiting"),
            );
        }
    }
    let bytes = ALLOCATED_BYTES.load(Ordering::SeqCst) - bytes_before;
    let count = ALLOCATIONS.load(Ordering::SeqCst) - count_before;

    assert_eq!(received.len(), SUBSCRIBERS * FRAMES);
    // Per frame: the Arc<Frame> and occasional GOP-cache growth; nothing per
    // subscriber (that would be ≥ 5000 allocations) and no payload copy (one copy
    // of one frame would be 64 KiB).
    assert!(
        count <= 2 * FRAMES,
        "{count} allocations for {FRAMES} frames to {SUBSCRIBERS} subscribers"
    );
    assert!(
        bytes < PAYLOAD,
        "{bytes} bytes allocated: payload was copied"
    );
}
