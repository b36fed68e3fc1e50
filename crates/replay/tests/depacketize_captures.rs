//! Depacketizing the bundled captures (fixtures/, made by scripts/gen-fixtures
//! from 10 s of 25 fps video with a 2 s GOP).

use std::path::Path;

use bytes::Bytes;
use streamgate_replay::Capture;
use streamgate_rtp::codec::decode_order::DecodeOrder;
use streamgate_rtp::codec::{update_params, AccessUnit, Depacketizer};
use streamgate_rtp::testing::{depacketize_all, round_trip, without_declared_reordering};
use streamgate_rtp::{Codec, CodecParams, RtpPacket, TrackInfo};

/// 10 s at 25 fps, an IDR every 50 frames.
const VIDEO_FRAMES: usize = 250;
const VIDEO_KEYFRAMES: usize = 5;

fn load(name: &str) -> Capture {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    Capture::load(
        &fixtures.join(format!("{name}.pcap")),
        &fixtures.join(format!("{name}.sdp")),
    )
    .expect("bundled capture loads")
}

/// Depacketizes one track of a capture, asserting no packet is rejected.
fn access_units(capture: &Capture, codec: Codec) -> (TrackInfo, Vec<AccessUnit>, usize) {
    let track = capture
        .tracks
        .iter()
        .map(|t| t.info.clone())
        .find(|t| t.codec == codec)
        .expect("capture has the track");
    let packets: Vec<RtpPacket> = capture
        .packets
        .iter()
        .filter(|(_, id, _)| *id == track.id)
        .map(|(_, _, pkt)| pkt.clone())
        .collect();
    let count = packets.len();
    let mut depacketizer = Depacketizer::new(&track).expect("depacketizer");
    let (aus, errors) = depacketize_all(&mut depacketizer, packets);
    assert_eq!(errors, vec![]);
    (track, aus, count)
}

fn distinct_timestamps(aus: &[AccessUnit]) -> usize {
    let mut timestamps: Vec<u32> = aus.iter().map(|au| au.rtp_timestamp).collect();
    timestamps.dedup();
    timestamps.len()
}

/// Every packet of the track ends up in exactly one access unit.
fn packets_in(aus: &[AccessUnit]) -> usize {
    aus.iter().map(|au| au.packets.len()).sum()
}

/// capture → depacketize → packetize → depacketize gives identical units.
fn assert_round_trip(track: &TrackInfo, aus: &[AccessUnit]) {
    let input: Vec<(u32, Vec<Bytes>)> = aus
        .iter()
        .map(|au| (au.rtp_timestamp, au.units.clone()))
        .collect();
    for mtu in [1500, 400] {
        assert_eq!(
            round_trip(track, mtu, &input),
            input,
            "{:?} at MTU {mtu}",
            track.codec
        );
    }
}

#[test]
fn h264_and_opus_capture() {
    let capture = load("ffmpeg_h264_opus");
    let (video, aus, packets) = access_units(&capture, Codec::H264);
    assert_eq!(aus.len(), VIDEO_FRAMES);
    assert_eq!(distinct_timestamps(&aus), VIDEO_FRAMES);
    assert_eq!(aus.iter().filter(|au| au.keyframe).count(), VIDEO_KEYFRAMES);
    assert!(aus[0].keyframe);
    assert_eq!(packets_in(&aus), packets);
    // SPS/PPS arrive in band before each IDR.
    let mut params = CodecParams::default();
    assert!(update_params(Codec::H264, &aus[0].units, &mut params));
    assert_eq!((params.width, params.height), (Some(1280), Some(720)));
    assert_eq!(Some(&params.sps), Some(&video.params.sps));
    assert_round_trip(&video, &aus);

    let (audio, aus, packets) = access_units(&capture, Codec::Opus);
    assert_eq!(aus.len(), packets);
    assert!(aus.iter().all(|au| au.keyframe && au.packets.len() == 1));
    assert_round_trip(&audio, &aus);
}

#[test]
fn h264_and_aac_capture() {
    let capture = load("ffmpeg_h264_aac");
    let (video, aus, packets) = access_units(&capture, Codec::H264);
    assert_eq!(aus.len(), VIDEO_FRAMES);
    assert_eq!(aus.iter().filter(|au| au.keyframe).count(), VIDEO_KEYFRAMES);
    assert_eq!(packets_in(&aus), packets);
    assert_round_trip(&video, &aus);

    let (audio, aus, packets) = access_units(&capture, Codec::Aac);
    // Several frames per packet, 1024 ticks apart within a packet. (ffmpeg starts
    // the second packet 8 ticks early: its encoder priming offset.)
    assert!(aus.len() > packets);
    assert_eq!(packets_in(&aus), packets);
    let steps: Vec<u32> = aus
        .windows(2)
        .map(|w| w[1].rtp_timestamp.wrapping_sub(w[0].rtp_timestamp))
        .collect();
    assert!(
        steps.iter().all(|&step| step > 1000 && step <= 1024),
        "{steps:?}"
    );
    // One access unit per AU header (AU-headers-length / 16 bits per packet).
    let headers: usize = capture
        .packets
        .iter()
        .filter(|(_, id, _)| *id == audio.id)
        .map(|(_, _, pkt)| {
            usize::from(u16::from_be_bytes([
                pkt.payload_slice()[0],
                pkt.payload_slice()[1],
            ])) / 16
        })
        .sum();
    assert_eq!(aus.len(), headers);
    assert_round_trip(&audio, &aus);
}

/// The same AAC as `h264_and_aac_capture`, sent by ffmpeg as MP4A-LATM: one
/// frame per packet, and byte for byte the frames the mpeg4-generic capture gives.
/// (The LATM elements' length bytes are gone: the units are raw AAC.)
#[test]
fn h264_and_latm_capture() {
    let capture = load("ffmpeg_h264_latm");
    let (audio, aus, packets) = access_units(&capture, Codec::AacLatm);
    assert_eq!(aus.len(), packets);
    assert!(aus.iter().all(|au| au.keyframe && au.packets.len() == 1));
    assert_eq!(
        audio.params.audio_config.as_deref(),
        Some(&[0x11, 0x90][..])
    );
    let (_, generic, _) = access_units(&load("ffmpeg_h264_aac"), Codec::Aac);
    let frames = |aus: &[AccessUnit]| aus.iter().map(|au| au.units.clone()).collect::<Vec<_>>();
    // ffmpeg's mpeg4-generic packetizer drops the frames it still holds at the end.
    assert!(generic.len() > aus.len() - 10);
    assert_eq!(frames(&aus[..generic.len()]), frames(&generic));
    assert_round_trip(&audio, &aus);
}

#[test]
fn h265_capture() {
    let capture = load("ffmpeg_h265");
    let (video, aus, packets) = access_units(&capture, Codec::H265);
    assert_eq!(aus.len(), VIDEO_FRAMES);
    assert_eq!(aus.iter().filter(|au| au.keyframe).count(), VIDEO_KEYFRAMES);
    assert_eq!(packets_in(&aus), packets);
    assert_round_trip(&video, &aus);
}

/// Decode times of a capture's access units (RTP timestamps as presentation
/// times), checked to rise and never pass the presentation times; returns both
/// and the reorder depth used.
fn decode_times(
    aus: &[AccessUnit],
    params: &CodecParams,
    codec: Codec,
) -> (Vec<u64>, Vec<u64>, usize) {
    let first = aus[0].rtp_timestamp;
    let pts: Vec<u64> = aus
        .iter()
        .map(|au| u64::from(au.rtp_timestamp.wrapping_sub(first)) + 90_000)
        .collect();
    let mut order = DecodeOrder::new(codec, 90_000);
    let dts: Vec<u64> = aus
        .iter()
        .zip(&pts)
        .map(|(au, &p)| order.dts(&au.units, params, p))
        .collect();
    assert!(dts.windows(2).all(|w| w[1] > w[0]), "{codec:?}: {dts:?}");
    assert!(pts.iter().zip(&dts).all(|(p, d)| d <= p), "{codec:?}");
    (pts, dts, order.depth())
}

/// The B-frame captures: RTP timestamps step back at every B-frame, and the
/// derived decode times rise, never pass the presentation times, and run the
/// SPS's reorder depth (2) behind them.
#[test]
fn b_frame_captures_get_decode_times() {
    for (name, codec) in [
        ("ffmpeg_h264_bframes", Codec::H264),
        ("ffmpeg_h265_bframes", Codec::H265),
    ] {
        let capture = load(name);
        let (video, aus, _) = access_units(&capture, codec);
        assert_eq!(aus.len(), VIDEO_FRAMES, "{name}");
        assert_eq!(distinct_timestamps(&aus), VIDEO_FRAMES, "{name}");
        let (pts, dts, depth) = decode_times(&aus, &video.params, codec);
        let steps_back = pts.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(
            steps_back >= VIDEO_FRAMES / 4,
            "{name}: {steps_back} B-frame steps"
        );
        assert_eq!(depth, 2, "{name}");
        let mut sorted = pts.clone();
        sorted.sort_unstable();
        assert_eq!(dts[3..], sorted[1..VIDEO_FRAMES - 2], "{name}");
    }
}

/// The x264 capture as if its SPS declared no reordering: the slices' picture
/// order announces the B-frames (I P B B: one deep) before they come.
#[test]
fn b_frame_capture_without_declared_reordering() {
    let capture = load("ffmpeg_h264_bframes");
    let (mut video, aus, _) = access_units(&capture, Codec::H264);
    let sps = video.params.sps.as_deref().expect("SDP has the SPS");
    video.params.sps = Some(without_declared_reordering(sps));
    let (_, _, depth) = decode_times(&aus, &video.params, Codec::H264);
    assert_eq!(depth, 1);
}
