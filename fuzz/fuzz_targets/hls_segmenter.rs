//! The HLS segmenter fed what the ingest makes of an arbitrary packet sequence
//! (see packet_sequence.rs), with a small window and byte cap so both bite.
//!
//! Checks after every frame: no panic (a refused frame is an `Err`); the
//! window holds at most `window` finished segments, numbered consecutively;
//! the bytes held stay within `max_bytes`; durations are finite and not
//! negative; every part is whole `moof` + `mdat` boxes.
#![no_main]

mod packet_sequence;

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use streamgate_hls::segmenter::{Segmenter, SegmenterConfig};

const MAX_BYTES: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let config = SegmenterConfig {
        segment_target: Duration::from_millis(500),
        part_target: Duration::from_millis(100),
        window: 3,
        max_bytes: MAX_BYTES,
        ..SegmenterConfig::default()
    };
    let mut segmenter =
        Segmenter::new(config, &packet_sequence::tracks()).expect("the tracks are muxable");
    packet_sequence::run(data, |frame| {
        let _ = segmenter.push(frame);
        let segments = segmenter.segments();
        assert!(segments.len() <= 3);
        for pair in segments.iter().zip(segments.iter().skip(1)) {
            assert_eq!(pair.0.msn + 1, pair.1.msn);
        }
        if let (Some(last), Some(current)) = (segments.back(), segmenter.current()) {
            assert_eq!(last.msn + 1, current.msn);
        }
        assert!(segmenter.stored_bytes() <= MAX_BYTES);
        for segment in segments.iter().chain(segmenter.current()) {
            assert!(segment.duration.is_finite() && segment.duration >= 0.0);
            for part in &segment.parts {
                assert!(part.duration.is_finite() && part.duration >= 0.0);
                assert_boxes(&part.data);
            }
        }
    });
});

/// `data` is a `moof` then an `mdat`, each box's size covering it exactly.
fn assert_boxes(data: &[u8]) {
    let mut kinds = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "a box header cut short");
        let size = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(
            size >= 8 && size <= rest.len(),
            "box size {size} of {}",
            rest.len()
        );
        kinds.push([rest[4], rest[5], rest[6], rest[7]]);
        rest = &rest[size..];
    }
    assert_eq!(kinds, [*b"moof", *b"mdat"], "part boxes");
}
