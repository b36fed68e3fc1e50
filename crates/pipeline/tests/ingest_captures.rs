//! The bundled ffmpeg captures through StreamIngest and the Hub, twice (the
//! second pass as a restarted source): every frame arrives, output numbering and
//! time run on across the restart, keyframes carry their parameter sets in band,
//! payloads are the captured buffers, and the output packets depacketize back to
//! the same access units.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamgate_pipeline::StreamIngest;
use streamgate_pipeline::{Hub, HubConfig, Subscription};
use streamgate_replay::Capture;
use streamgate_rtp::codec::Depacketizer;
use streamgate_rtp::packet::RtpPacket;
use streamgate_rtp::{Codec, Frame, MediaKind, TrackId, TrackInfo};

fn load(name: &str) -> Capture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    Capture::load(
        &dir.join(format!("{name}.pcap")),
        &dir.join(format!("{name}.sdp")),
    )
    .expect("bundled capture loads")
}

/// H.264/H.265 NAL unit type.
fn nal_type(codec: Codec, nal: &[u8]) -> u8 {
    match codec {
        Codec::H265 => (nal[0] >> 1) & 0x3f,
        _ => nal[0] & 0x1f,
    }
}

fn parameter_set_types(codec: Codec) -> &'static [u8] {
    match codec {
        Codec::H265 => &[32, 33, 34],
        _ => &[7, 8],
    }
}

/// Plays the capture `passes` times, restarting the source between passes, and
/// returns every frame the subscriber got plus the ingest.
fn play(capture: &Capture, passes: u32) -> (Vec<Arc<Frame>>, StreamIngest) {
    let tracks: Vec<TrackInfo> = capture.tracks.iter().map(|t| t.info.clone()).collect();
    let hub = Hub::new("capture", HubConfig::default());
    let mut subscription: Subscription = hub.subscribe();
    let mut ingest = StreamIngest::new(hub, tracks);
    let start = Instant::now();
    let mut frames = Vec::new();
    for pass in 0..passes {
        if pass > 0 {
            ingest.source_restarted();
        }
        let pass_start = start + (capture.duration() + Duration::from_secs(1)) * pass;
        for (offset, track, packet) in &capture.packets {
            ingest
                .push_rtp(*track, packet.clone(), pass_start + *offset)
                .expect("capture packets are valid");
            while let Ok(Some(frame)) = subscription.try_recv() {
                frames.push(frame);
            }
        }
    }
    assert_eq!(subscription.dropped(), 0);
    (frames, ingest)
}

/// Access units the capture holds per track: distinct consecutive timestamps of
/// the video track's packets (every audio packet is at least one frame).
fn video_frames_in_capture(capture: &Capture, video: TrackId) -> usize {
    let timestamps: Vec<u32> = capture
        .packets
        .iter()
        .filter(|(_, t, _)| *t == video)
        .map(|(_, _, p)| p.timestamp())
        .collect();
    1 + timestamps.windows(2).filter(|w| w[0] != w[1]).count()
}

fn check_capture(name: &str) {
    let capture = load(name);
    let video = capture
        .tracks
        .iter()
        .map(|t| &t.info)
        .find(|t| t.kind() == MediaKind::Video)
        .expect("video track");
    let (frames, ingest) = play(&capture, 2);
    let stats = ingest.stats();
    assert_eq!(
        (
            stats.lost_packets,
            stats.depacketize_errors,
            stats.discarded_packets
        ),
        (0, 0, 0),
        "{name}: {stats:?}"
    );

    // Every video frame of both passes (the subscriber joined before the first).
    let video_frames: Vec<&Arc<Frame>> = frames.iter().filter(|f| f.track == video.id).collect();
    assert_eq!(
        video_frames.len(),
        2 * video_frames_in_capture(&capture, video.id),
        "{name}"
    );
    assert!(video_frames[0].keyframe);

    // Keyframes carry the parameter sets in band, in their units and their packets.
    for key in video_frames.iter().filter(|f| f.keyframe) {
        let unit_types: HashSet<u8> = key.units.iter().map(|u| nal_type(video.codec, u)).collect();
        let packet_types: HashSet<u8> = key
            .packets
            .iter()
            .map(|p| nal_type(video.codec, &p.payload))
            .collect();
        for t in parameter_set_types(video.codec) {
            assert!(
                unit_types.contains(t),
                "{name}: keyframe at {} lacks NAL type {t} in units",
                key.pts
            );
            assert!(
                packet_types.contains(t)
                    || packet_types.contains(&24)
                    || packet_types.contains(&48),
                "{name}: keyframe at {} lacks NAL type {t} in packets",
                key.pts
            );
        }
    }

    // Per track: one SSRC, consecutive sequence numbers, timestamps = pts, and
    // time moving forward across the restart, which is no discontinuity.
    let captured_payloads: HashSet<usize> = capture
        .packets
        .iter()
        .map(|(_, _, p)| p.payload().as_ptr() as usize)
        .collect();
    for track in capture.tracks.iter().map(|t| &t.info) {
        let track_frames: Vec<&Arc<Frame>> =
            frames.iter().filter(|f| f.track == track.id).collect();
        let packets: Vec<_> = track_frames
            .iter()
            .flat_map(|f| f.packets.iter().map(move |p| (f, p)))
            .collect();
        let ssrc = packets[0].1.ssrc();
        let first_seq = packets[0].1.sequence();
        for (i, (_, packet)) in packets.iter().enumerate() {
            assert_eq!(packet.ssrc(), ssrc, "{name}");
            assert_eq!(
                packet.sequence(),
                first_seq.wrapping_add(i as u16),
                "{name}: track {:?}",
                track.id
            );
            assert_eq!(packet.payload_type(), track.payload_type);
            let injected = track.kind() == MediaKind::Video
                && parameter_set_types(track.codec)
                    .contains(&nal_type(track.codec, &packet.payload));
            if !injected {
                assert!(
                    captured_payloads.contains(&(packet.payload.as_ptr() as usize)),
                    "{name}: payload was copied"
                );
            }
        }
        for pair in track_frames.windows(2) {
            assert!(
                pair[1].pts > pair[0].pts,
                "{name}: track {:?} time went backwards",
                track.id
            );
            assert!(pair[1]
                .packets
                .iter()
                .all(|p| p.timestamp() == pair[1].pts as u32));
        }
        assert!(
            track_frames.iter().all(|f| !f.discontinuity),
            "{name}: track {:?} marks the restart as a discontinuity",
            track.id
        );
    }

    // Output packets depacketize back to the very same access units.
    for track in capture.tracks.iter().map(|t| &t.info) {
        let mut depacketizer = Depacketizer::new(track).expect("depacketizer");
        let mut again: Vec<Vec<Bytes>> = Vec::new();
        let mut expected: Vec<Vec<Bytes>> = Vec::new();
        for frame in frames.iter().filter(|f| f.track == track.id) {
            expected.push(frame.units.clone());
            for out in &frame.packets {
                let mut raw = out.header.to_vec();
                raw.extend_from_slice(&out.payload);
                depacketizer
                    .push(RtpPacket::parse(Bytes::from(raw)).expect("output parses"))
                    .expect("output depacketizes");
                while let Some(au) = depacketizer.pull() {
                    again.push(au.units);
                }
            }
        }
        // The last video frame ends at its marker, so nothing is left pending.
        let compared = again.len();
        assert!(
            compared + 1 >= expected.len(),
            "{name}: {compared} of {} frames came back",
            expected.len()
        );
        assert_eq!(
            again[..],
            expected[..compared],
            "{name}: track {:?}",
            track.id
        );
    }

    // Wall clock is consistent across tracks: the same instant for the same
    // output time in seconds.
    let mut first_by_track: HashMap<TrackId, &Arc<Frame>> = HashMap::new();
    for frame in &frames {
        first_by_track.entry(frame.track).or_insert(frame);
    }
    for track in capture.tracks.iter().map(|t| &t.info) {
        let frame = first_by_track[&track.id];
        let origin = frame.wallclock
            - Duration::from_nanos(frame.pts * 1_000_000_000 / u64::from(track.clock_rate));
        let video_frame = first_by_track[&video.id];
        let video_origin = video_frame.wallclock
            - Duration::from_nanos(video_frame.pts * 1_000_000_000 / u64::from(video.clock_rate));
        let skew = origin
            .duration_since(video_origin)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or_default();
        assert!(
            skew <= Duration::from_millis(1),
            "{name}: track {:?} wall clock off by {skew:?}",
            track.id
        );
    }
}

#[test]
fn h264_opus_capture() {
    check_capture("ffmpeg_h264_opus");
}

#[test]
fn h264_aac_capture() {
    check_capture("ffmpeg_h264_aac");
}

#[test]
fn h265_capture() {
    check_capture("ffmpeg_h265");
}
