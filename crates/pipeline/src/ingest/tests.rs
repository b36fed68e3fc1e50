//! Tests of the whole ingest: packets in, frames on the Hub out.

use std::sync::Arc;

use base64::Engine;

use super::*;
use crate::hub::{HubConfig, Subscription};
use bytes::Bytes;
use streamgate_rtp::{Codec, CodecParams, OutPacket, PayloadType, RtpPacketBuilder, SeqNo, Ssrc};

const VIDEO: TrackId = TrackId::new(0);
const AUDIO: TrackId = TrackId::new(1);
const SOURCE_SSRC: Ssrc = Ssrc::new(0x1111_1111);
const AUDIO_SSRC: Ssrc = Ssrc::new(0x3333);

/// The fixture capture's SPS/PPS (1280x720 constrained baseline).
fn sdp_params() -> CodecParams {
    let b64 = base64::engine::general_purpose::STANDARD;
    CodecParams {
        sps: Some(Bytes::from(
            b64.decode("Z0LAH9oBQBbsBEAAAAMAQAAADIPGDKg=").expect("sps"),
        )),
        pps: Some(Bytes::from(b64.decode("aM48gA==").expect("pps"))),
        ..CodecParams::default()
    }
}

fn tracks() -> Vec<TrackInfo> {
    vec![
        TrackInfo {
            id: VIDEO,
            codec: Codec::H264,
            clock_rate: 90_000,
            channels: 1,
            payload_type: PayloadType::new(100).unwrap(),
            params: sdp_params(),
        },
        TrackInfo {
            id: AUDIO,
            codec: Codec::Opus,
            clock_rate: 48_000,
            channels: 2,
            payload_type: PayloadType::new(101).unwrap(),
            params: CodecParams::default(),
        },
    ]
}

fn setup() -> (StreamIngest, Subscription, Instant) {
    let hub = Hub::new("cam", HubConfig::default());
    let subscription = hub.subscribe();
    (
        StreamIngest::new(hub, tracks()),
        subscription,
        Instant::now(),
    )
}

fn packet(ssrc: Ssrc, seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> RtpPacket {
    let raw = RtpPacketBuilder {
        payload_type: PayloadType::new(96).unwrap(),
        marker,
        sequence_number: SeqNo::new(seq),
        timestamp: ts,
        ssrc,
        payload: Bytes::from(payload),
        ..Default::default()
    }
    .build()
    .expect("builds");
    RtpPacket::parse(raw).expect("parses")
}

/// An IDR slice sent as three FU-A fragments (seq, seq+1, seq+2).
fn idr(seq: u16, ts: u32) -> Vec<RtpPacket> {
    idr_from(SOURCE_SSRC, seq, ts)
}

fn idr_from(ssrc: Ssrc, seq: u16, ts: u32) -> Vec<RtpPacket> {
    vec![
        packet(ssrc, seq, ts, false, vec![0x7c, 0x85, 1, 2, 3]),
        packet(
            ssrc,
            seq.wrapping_add(1),
            ts,
            false,
            vec![0x7c, 0x05, 4, 5, 6],
        ),
        packet(
            ssrc,
            seq.wrapping_add(2),
            ts,
            true,
            vec![0x7c, 0x45, 7, 8, 9],
        ),
    ]
}

fn idr_nal() -> Bytes {
    Bytes::from_static(&[0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9])
}

fn p_frame(ssrc: Ssrc, seq: u16, ts: u32) -> RtpPacket {
    packet(ssrc, seq, ts, true, vec![0x41, 0x9a, seq as u8])
}

fn push_all(ingest: &mut StreamIngest, packets: Vec<RtpPacket>, now: Instant) {
    for p in packets {
        ingest.push_rtp(VIDEO, p, now).expect("valid packet");
    }
}

fn received(subscription: &mut Subscription) -> Vec<Arc<Frame>> {
    std::iter::from_fn(|| subscription.try_recv().ok().flatten()).collect()
}

#[test]
fn keyframe_gets_parameter_sets_and_one_rewritten_header_per_packet() {
    let (mut ingest, mut sub, now) = setup();
    let source = idr(10, 1000);
    let source_payloads: Vec<Bytes> = source.iter().map(RtpPacket::payload).collect();
    push_all(&mut ingest, source, now);
    push_all(
        &mut ingest,
        vec![p_frame(SOURCE_SSRC, 13, 4000)],
        now + Duration::from_millis(33),
    );
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 2);

    let key = &frames[0];
    let params = sdp_params();
    assert!(key.keyframe);
    assert_eq!(
        key.units,
        vec![
            params.sps.clone().unwrap_or_default(),
            params.pps.clone().unwrap_or_default(),
            idr_nal()
        ]
    );
    assert_eq!(key.packets.len(), 5, "SPS + PPS + three FU-A packets");
    assert_eq!(key.packets[0].payload, key.units[0]);
    assert_eq!(key.packets[1].payload, key.units[1]);
    for (out, src) in key.packets[2..].iter().zip(&source_payloads) {
        assert_eq!(
            out.payload.as_ptr(),
            src.as_ptr(),
            "payload is the received buffer, not a copy"
        );
    }
    let ssrc = key.packets[0].ssrc();
    let first_seq = key.packets[0].sequence();
    let all: Vec<&OutPacket> = frames.iter().flat_map(|f| &f.packets).collect();
    for (i, out) in all.iter().enumerate() {
        assert_eq!(out.ssrc(), ssrc);
        assert_ne!(out.ssrc(), SOURCE_SSRC);
        assert_eq!(
            out.payload_type().get(),
            100,
            "the track's output payload type"
        );
        assert_eq!(out.sequence(), first_seq.wrapping_add(i as u16));
    }
    assert!(key.packets.iter().all(|p| p.timestamp() == key.pts as u32));
    assert_eq!(
        key.packets
            .iter()
            .map(OutPacket::marker)
            .collect::<Vec<_>>(),
        vec![false, false, false, false, true]
    );

    let p = &frames[1];
    assert!(!p.keyframe);
    assert_eq!(p.pts - key.pts, 3000, "source spacing kept");
    assert_eq!(p.packets[0].timestamp(), p.pts as u32);
}

#[test]
fn in_band_parameter_sets_are_not_added_twice() {
    let (mut ingest, mut sub, now) = setup();
    let params = sdp_params();
    let (sps, pps) = (
        params.sps.unwrap_or_default(),
        params.pps.unwrap_or_default(),
    );
    let mut stap = vec![0x78];
    for nal in [&sps, &pps] {
        stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
        stap.extend_from_slice(nal);
    }
    let packets = vec![
        packet(SOURCE_SSRC, 1, 0, false, stap),
        packet(
            SOURCE_SSRC,
            2,
            0,
            true,
            vec![0x65, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ),
    ];
    push_all(&mut ingest, packets, now);
    let frames = received(&mut sub);
    assert_eq!(frames[0].units, vec![sps, pps, idr_nal()]);
    assert_eq!(frames[0].packets.len(), 2);
}

#[test]
fn reordered_fragments_are_reassembled_in_order() {
    let (mut ingest, mut sub, now) = setup();
    let mut packets = idr(65534, 1000);
    packets.swap(1, 2);
    push_all(&mut ingest, packets, now);
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].units.last(), Some(&idr_nal()));
    assert_eq!(ingest.stats().lost_packets, 0);
}

#[test]
fn loss_drops_the_frame_and_requests_a_keyframe() {
    let (mut ingest, mut sub, now) = setup();
    push_all(&mut ingest, idr(1, 0), now);
    let mut damaged = idr(4, 3000);
    damaged.remove(1);
    push_all(&mut ingest, damaged, now);
    assert_eq!(
        ingest.hub().stats().keyframe_requests,
        0,
        "still waiting for the gap"
    );
    // Well after the reorder buffer's wait: the gap is declared lost.
    let later = now + Duration::from_millis(200);
    push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 7, 6000)], later);
    let frames = received(&mut sub);
    assert_eq!(
        frames
            .iter()
            .map(|f| f.pts - frames[0].pts)
            .collect::<Vec<_>>(),
        vec![0, 6000]
    );
    assert_eq!(ingest.stats().lost_packets, 1);
    assert_eq!(
        ingest.stats().depacketize_errors,
        0,
        "the damaged frame's tail was dropped, not fed in"
    );
    assert_eq!(ingest.hub().stats().keyframe_requests, 1);
    let seqs: Vec<SeqNo> = frames
        .iter()
        .flat_map(|f| &f.packets)
        .map(OutPacket::sequence)
        .collect();
    assert_eq!(
        seqs.last().copied(),
        Some(seqs[0].wrapping_add(5)),
        "output numbering has no hole"
    );
}

#[test]
fn source_restart_keeps_output_running_forward() {
    let (mut ingest, mut sub, now) = setup();
    push_all(&mut ingest, idr(100, 5_000_000), now);
    push_all(
        &mut ingest,
        vec![p_frame(SOURCE_SSRC, 103, 5_003_000)],
        now + Duration::from_millis(33),
    );
    ingest.source_restarted();
    let restart = now + Duration::from_millis(33 + 2000);
    push_all(&mut ingest, idr(7, 12), restart);
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 3);
    let (before, after) = (&frames[1], &frames[2]);
    assert!(
        !after.discontinuity,
        "a restart keeps one continuous timeline"
    );
    assert_eq!(
        after.pts,
        before.pts + 2 * 90_000,
        "continues after the wall time that passed"
    );
    assert_eq!(after.packets[0].ssrc(), before.packets[0].ssrc());
    assert_eq!(
        after.packets[0].sequence(),
        before.packets[0].sequence().next()
    );
}

#[test]
fn a_new_ingest_on_the_same_hub_continues_time() {
    let (mut ingest, mut sub, now) = setup();
    let hub = ingest.hub().clone();
    push_all(&mut ingest, idr(1, 0), now);
    // The source's clock runs ahead of the wall clock: 4 s of timestamps in 1 s.
    push_all(
        &mut ingest,
        vec![p_frame(SOURCE_SSRC, 4, 4 * 90_000)],
        now + Duration::from_secs(1),
    );
    drop(ingest);
    // The source comes back (with other tracks, hence a new ingest) 1 s later.
    let mut ingest = StreamIngest::new(hub, tracks());
    push_all(&mut ingest, idr(900, 123), now + Duration::from_secs(2));
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 3);
    assert!(
        frames[2].pts > frames[1].pts,
        "{} after {}",
        frames[2].pts,
        frames[1].pts
    );
}

#[test]
fn renumbered_source_is_a_restart() {
    let (mut ingest, mut sub, now) = setup();
    push_all(&mut ingest, idr(100, 5_000_000), now);
    let restart = now + Duration::from_secs(1);
    // Same SSRC, sequence numbers 30 000 further on: confirmed by the second packet.
    let mut renumbered = idr(30_000, 9);
    renumbered.push(p_frame(SOURCE_SSRC, 30_003, 3_009));
    push_all(&mut ingest, renumbered, restart);
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 3);
    assert!(!frames[1].discontinuity);
    assert_eq!(frames[1].pts, frames[0].pts + 90_000);
    assert_eq!(frames[2].pts, frames[1].pts + 3_000);
    assert_eq!(ingest.stats().lost_packets, 0);
}

#[test]
fn new_source_ssrc_is_a_restart() {
    let (mut ingest, mut sub, now) = setup();
    push_all(&mut ingest, idr(100, 5_000_000), now);
    let restart = now + Duration::from_secs(1);
    // New SSRC, numbering and timestamps that would otherwise look like loss and a jump.
    push_all(
        &mut ingest,
        idr_from(Ssrc::new(0x2222_2222), 40_000, 77),
        restart,
    );
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 2);
    assert!(!frames[1].discontinuity);
    assert_eq!(frames[1].pts, frames[0].pts + 90_000);
    assert_eq!(ingest.stats().lost_packets, 0);
}

/// Output frames of `kind` as (keyframe, pts).
fn of_kind(frames: &[Arc<Frame>], kind: MediaKind) -> Vec<(bool, u64)> {
    frames
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| (f.keyframe, f.pts))
        .collect()
}

#[test]
fn source_restart_drops_p_frames_until_the_new_sessions_keyframe() {
    let (mut ingest, mut sub, now) = setup();
    let at = |ms: u64| now + Duration::from_millis(ms);
    push_all(&mut ingest, idr(100, 5_000_000), at(0));
    push_all(
        &mut ingest,
        vec![p_frame(SOURCE_SSRC, 103, 5_003_000)],
        at(33),
    );
    ingest.source_restarted();
    // The camera reconnects mid-GOP: P-frames, audio, then its next IDR.
    push_all(
        &mut ingest,
        vec![
            p_frame(SOURCE_SSRC, 7, 3_000),
            p_frame(SOURCE_SSRC, 8, 6_000),
        ],
        at(1_000),
    );
    push_audio(&mut ingest, 60, 0, at(1_010));
    push_all(&mut ingest, idr(9, 9_000), at(1_066));
    push_all(
        &mut ingest,
        vec![p_frame(SOURCE_SSRC, 12, 12_000)],
        at(1_100),
    );
    let frames = received(&mut sub);
    let video = of_kind(&frames, MediaKind::Video);
    assert_eq!(
        video.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
        vec![true, false, true, false],
        "after the restart video resumes at the IDR"
    );
    assert!(frames.iter().any(|f| f.kind == MediaKind::Video
        && f.keyframe
        && !f.discontinuity
        && f.pts == video[2].1));
    assert_eq!(video[3].1, video[2].1 + 3_000);
    assert_eq!(
        of_kind(&frames, MediaKind::Audio).len(),
        1,
        "audio is not held back"
    );
    assert_eq!(ingest.stats().dropped_frames, 2);
    assert_eq!(ingest.hub().stats().keyframe_requests, 1, "requested once");
    let seqs: Vec<SeqNo> = frames
        .iter()
        .filter(|f| f.kind == MediaKind::Video)
        .flat_map(|f| &f.packets)
        .map(OutPacket::sequence)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].next()),
        "dropped frames leave no hole in the output numbering: {seqs:?}"
    );
}

#[test]
fn new_source_ssrc_waits_for_its_keyframe() {
    let (mut ingest, mut sub, now) = setup();
    push_all(&mut ingest, idr(100, 5_000_000), now);
    let restart = now + Duration::from_secs(1);
    let mut packets = vec![p_frame(Ssrc::new(0x2222_2222), 40_000, 77)];
    packets.extend(idr_from(Ssrc::new(0x2222_2222), 40_001, 3_077));
    push_all(&mut ingest, packets, restart);
    let frames = received(&mut sub);
    assert_eq!(
        of_kind(&frames, MediaKind::Video)
            .iter()
            .map(|(key, _)| *key)
            .collect::<Vec<_>>(),
        vec![true, true]
    );
    assert!(!frames[1].discontinuity);
    assert_eq!(ingest.stats().dropped_frames, 1);
    assert_eq!(ingest.hub().stats().keyframe_requests, 1);
}

#[test]
fn renumbered_source_waits_for_its_keyframe() {
    let (mut ingest, mut sub, now) = setup();
    push_all(&mut ingest, idr(100, 5_000_000), now);
    let restart = now + Duration::from_secs(1);
    let mut packets = vec![
        p_frame(SOURCE_SSRC, 30_000, 9),
        p_frame(SOURCE_SSRC, 30_001, 3_009),
    ];
    packets.extend(idr(30_002, 6_009));
    push_all(&mut ingest, packets, restart);
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 2);
    assert!(frames[1].keyframe && !frames[1].discontinuity);
    assert_eq!(ingest.stats().dropped_frames, 2);
    assert_eq!(ingest.hub().stats().keyframe_requests, 1);
}

fn sender_report(ntp_time: u64, rtp_time: u32) -> SenderReport {
    SenderReport {
        ssrc: SOURCE_SSRC,
        ntp_time,
        rtp_time,
        packet_count: 0,
        octet_count: 0,
        reports: Vec::new(),
    }
}

fn audio_report(ntp_time: u64, rtp_time: u32) -> SenderReport {
    SenderReport {
        ssrc: AUDIO_SSRC,
        ..sender_report(ntp_time, rtp_time)
    }
}

fn push_audio(ingest: &mut StreamIngest, seq: u16, ts: u32, now: Instant) {
    let p = packet(AUDIO_SSRC, seq, ts, true, vec![0xfc, 1, 2]);
    ingest.push_rtp(AUDIO, p, now).expect("opus");
}

fn ntp_at(unix_secs: u64) -> u64 {
    streamgate_rtp::rtcp::ntp_from_system_time(
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs),
    )
}

fn seconds(frame: &Frame) -> f64 {
    let rate = if frame.kind == MediaKind::Video {
        90_000.0
    } else {
        48_000.0
    };
    frame.pts as f64 / rate
}

#[test]
fn wallclock_is_the_origin_plus_output_time_across_restarts_and_reports() {
    let (mut ingest, mut sub, now) = setup();
    let origin = ingest.hub().origin().1;
    let at = |ms: u64| now + Duration::from_millis(ms);
    push_all(&mut ingest, idr(1, 1000), at(0));
    push_audio(&mut ingest, 50, 0, at(5));
    push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 4, 4000)], at(33));
    push_audio(&mut ingest, 51, 960, at(25));
    // Reports arrive mid-stream, on a clock far from the ingest's.
    ingest.on_sender_report(VIDEO, &sender_report(ntp_at(1_600_000_000), 1000), now);
    ingest.on_sender_report(AUDIO, &sender_report(ntp_at(1_600_000_000), 0), now);
    push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 5, 7000)], at(66));
    push_audio(&mut ingest, 52, 1920, at(45));
    // The source restarts 2 s later with new timestamps and new reports.
    ingest.source_restarted();
    ingest.on_sender_report(VIDEO, &sender_report(ntp_at(1_700_000_000), 500), now);
    ingest.on_sender_report(AUDIO, &sender_report(ntp_at(1_700_000_000), 100), now);
    push_all(&mut ingest, idr(10, 500), at(2_000));
    push_audio(&mut ingest, 60, 100, at(2_010));
    push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 13, 3500)], at(2_033));
    ingest.on_sender_report(VIDEO, &sender_report(ntp_at(1_700_000_001), 90_500), now);
    push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 14, 6500)], at(2_066));
    push_audio(&mut ingest, 61, 1060, at(2_030));
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 11);
    for frame in &frames {
        let since_origin = frame
            .wallclock
            .duration_since(origin)
            .expect("wallclock after the origin")
            .as_secs_f64();
        assert!(
            (since_origin - seconds(frame)).abs() < 1e-6,
            "{:?} frame at {} s of output has wallclock origin + {since_origin} s",
            frame.kind,
            seconds(frame)
        );
    }
}

#[test]
fn sender_reports_put_a_late_track_in_step_after_a_restart() {
    let (mut ingest, mut sub, now) = setup();
    let at = |ms: u64| now + Duration::from_millis(ms);
    push_all(&mut ingest, idr(1, 1000), at(0));
    push_audio(&mut ingest, 50, 0, at(0));
    ingest.source_restarted();
    // Both tracks restart captured at the same instant (their reports say so),
    // but the audio's first packet arrives 300 ms after the video's.
    let ntp = ntp_at(1_700_000_000);
    ingest.on_sender_report(VIDEO, &sender_report(ntp, 777_000), now);
    ingest.on_sender_report(AUDIO, &sender_report(ntp, 4_000), now);
    push_all(&mut ingest, idr(10, 777_000), at(1_000));
    push_audio(&mut ingest, 60, 4_000, at(1_300));
    push_audio(&mut ingest, 61, 4_960, at(1_310));
    let frames = received(&mut sub);
    let (video, audio) = (&frames[2], &frames[3]);
    assert_eq!(
        (video.kind, audio.kind),
        (MediaKind::Video, MediaKind::Audio)
    );
    assert!(!video.discontinuity && !audio.discontinuity);
    assert!(
        (seconds(audio) - seconds(video)).abs() < 0.001,
        "audio at {} s, video at {} s of output",
        seconds(audio),
        seconds(video)
    );
    assert_eq!(frames[4].pts, audio.pts + 960, "then the source's spacing");
}

#[test]
fn reports_after_the_anchors_delay_the_early_track_once_per_session() {
    let (mut ingest, mut sub, now) = setup();
    let at = |ms: u64| now + Duration::from_millis(ms);
    push_all(&mut ingest, idr(1, 1000), at(0));
    push_audio(&mut ingest, 50, 0, at(0));
    ingest.source_restarted();
    // Both tracks restart captured at the same instant, but the audio's first
    // packet arrives 100 ms after the video's; the reports come later.
    push_all(&mut ingest, idr(10, 777_000), at(1_000));
    push_audio(&mut ingest, 60, 4_000, at(1_100));
    let ntp = ntp_at(1_700_000_000);
    ingest.on_sender_report(VIDEO, &sender_report(ntp, 777_000), now);
    ingest.on_sender_report(AUDIO, &audio_report(ntp, 4_000), now);
    push_all(
        &mut ingest,
        vec![p_frame(SOURCE_SSRC, 13, 780_000)],
        at(1_133),
    );
    // A later report that disagrees moves nothing: the session is in step.
    ingest.on_sender_report(AUDIO, &audio_report(ntp_at(1_700_000_001), 4_000), now);
    push_all(
        &mut ingest,
        vec![p_frame(SOURCE_SSRC, 14, 783_000)],
        at(1_166),
    );
    let frames = received(&mut sub);
    let video = of_kind(&frames[2..], MediaKind::Video);
    let audio = of_kind(&frames[2..], MediaKind::Audio);
    assert_eq!(video.len(), 3);
    let gap = video[1].1 - video[0].1 - 3_000;
    assert!(
        gap.abs_diff(9_000) <= 2,
        "a 100 ms gap in video: {gap} ticks"
    );
    assert_eq!(video[2].1, video[1].1 + 3_000, "delayed once");
    let video_at_capture = (video[0].1 + gap) as f64 / 90_000.0;
    let audio_at_capture = audio[0].1 as f64 / 48_000.0;
    assert!(
        (audio_at_capture - video_at_capture).abs() < 0.001,
        "audio at {audio_at_capture} s, video at {video_at_capture} s of output"
    );
}

/// Our wall clock at `at`, as NTP (the ingest's view: origin + elapsed).
fn ntp_of(ingest: &StreamIngest, at: Instant) -> u64 {
    let (origin, wall) = ingest.hub().origin();
    streamgate_rtp::rtcp::ntp_from_system_time(wall + at.duration_since(origin))
}

/// A server sends its GOP cache at once on PLAY: 2 s of frames, the first
/// captured 2 s ago, the last now. Its report (stamped now) says so.
fn burst_wallclock_error(report_clock_error: Duration) -> Duration {
    let (mut ingest, mut sub, now) = setup();
    let at = |ms: u64| now + Duration::from_millis(ms);
    let live_edge = 2 * 90_000;
    let report = sender_report(ntp_of(&ingest, at(0) + report_clock_error), live_edge);
    ingest.on_sender_report(VIDEO, &report, at(0));
    push_all(&mut ingest, idr(1, 0), at(1));
    push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 4, 90_000)], at(2));
    push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 5, live_edge)], at(3));
    let frames = received(&mut sub);
    let arrival = ingest.hub().origin().1 + at(3).duration_since(ingest.hub().origin().0);
    frames[2]
        .wallclock
        .duration_since(arrival)
        .unwrap_or_else(|behind| behind.duration())
}

#[test]
fn a_burst_of_old_frames_is_dated_by_a_report_from_a_clock_like_ours() {
    assert!(
        burst_wallclock_error(Duration::ZERO) < Duration::from_millis(5),
        "the live edge is dated its arrival"
    );
    // A source clock 1 s off ours is not trusted: the burst's first frame is
    // dated its arrival, and the live edge 2 s later.
    let untrusted = burst_wallclock_error(Duration::from_secs(1));
    assert!(untrusted > Duration::from_millis(1_990), "{untrusted:?}");
}

#[test]
fn reports_from_another_ssrc_are_ignored() {
    let (mut ingest, mut sub, now) = setup();
    let at = |ms: u64| now + Duration::from_millis(ms);
    push_all(&mut ingest, idr(1, 1000), at(0));
    push_audio(&mut ingest, 50, 0, at(100));
    let ntp = ntp_at(1_700_000_000);
    ingest.on_sender_report(VIDEO, &sender_report(ntp, 1_000), now);
    ingest.on_sender_report(AUDIO, &sender_report(ntp, 0), now);
    push_all(&mut ingest, vec![p_frame(SOURCE_SSRC, 4, 4_000)], at(133));
    let frames = received(&mut sub);
    assert_eq!(frames[2].pts, frames[0].pts + 3_000, "no delay");
}

#[test]
fn in_band_sps_change_updates_the_hub_and_marks_a_discontinuity() {
    let (mut ingest, mut sub, now) = setup();
    let hub = ingest.hub().clone();
    push_all(&mut ingest, idr(1, 0), now);
    let new_sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x28, 0xac]);
    let mut packets = vec![packet(SOURCE_SSRC, 4, 3000, false, new_sps.to_vec())];
    packets.extend(idr(5, 3000));
    push_all(&mut ingest, packets, now + Duration::from_millis(33));
    let frames = received(&mut sub);
    assert!(!frames[0].discontinuity);
    assert!(frames[1].discontinuity);
    assert_eq!(hub.tracks()[0].params.sps, Some(new_sps.clone()));
    assert_eq!(
        frames[1].units[0], new_sps,
        "in-band SPS kept, not replaced"
    );
}

#[test]
fn bad_input_is_an_error_and_the_stream_goes_on() {
    let (mut ingest, mut sub, now) = setup();
    let unknown = ingest.push_rtp(TrackId::new(9), p_frame(SOURCE_SSRC, 1, 0), now);
    assert!(matches!(
        unknown,
        Err(IngestError::UnknownTrack { track, .. }) if track == TrackId::new(9)
    ));
    let truncated = ingest.push_rtp(VIDEO, packet(SOURCE_SSRC, 1, 0, true, vec![0x7c]), now);
    assert!(
        matches!(
            truncated,
            Err(IngestError::Depacketize { track: VIDEO, .. })
        ),
        "{truncated:?}"
    );
    push_all(&mut ingest, idr(2, 3000), now);
    assert_eq!(received(&mut sub).len(), 1);
    assert_eq!(ingest.stats().depacketize_errors, 1);
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let (mut ingest, mut sub, now) = setup();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 24) as u32
    };
    let mut seq = 0u16;
    for i in 0..20_000u64 {
        let roll = next();
        seq = seq.wrapping_add((roll % 7) as u16).wrapping_sub(2);
        let len = (next() % 40) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(first) = payload.first_mut() {
            // Mostly plausible NAL/FU headers so the depacketizers go deep.
            *first = [0x7c, 0x78, 0x65, 0x41, 0x67, *first][(roll % 6) as usize];
        }
        let ssrc = if roll % 997 == 0 {
            Ssrc::new(next())
        } else {
            SOURCE_SSRC
        };
        let track = if roll % 3 == 0 { AUDIO } else { VIDEO };
        let packet = packet(ssrc, seq, next() % 4 * 3000, roll % 2 == 0, payload);
        let _ = ingest.push_rtp(track, packet, now + Duration::from_millis(i));
        if i % 1000 == 0 {
            ingest.source_restarted();
        }
        while sub.try_recv().ok().flatten().is_some() {}
    }
    for track in &ingest.tracks {
        assert!(track.reorder.held() <= ReorderConfig::default().window);
    }
    assert!(ingest.stats().packets == 20_000);
}

#[test]
fn audio_frames_are_keyframes_with_their_own_numbering() {
    let (mut ingest, _video_sub, now) = setup();
    let hub = ingest.hub().clone();
    hub.set_tracks(vec![tracks().remove(1)]);
    let mut sub = hub.subscribe();
    for i in 0..3u16 {
        let p = packet(
            Ssrc::new(0x4444),
            50 + i,
            960 * u32::from(i),
            true,
            vec![0xfc, 1, 2],
        );
        ingest
            .push_rtp(AUDIO, p, now + Duration::from_millis(20 * u64::from(i)))
            .expect("opus");
    }
    let frames = received(&mut sub);
    assert_eq!(frames.len(), 3);
    assert!(frames
        .iter()
        .all(|f| f.keyframe && f.kind == MediaKind::Audio));
    assert_eq!(
        frames
            .iter()
            .map(|f| f.pts - frames[0].pts)
            .collect::<Vec<_>>(),
        vec![0, 960, 1920]
    );
    assert!(frames
        .iter()
        .all(|f| f.packets[0].payload_type().get() == 101));
}

/// Track ids name tracks, they are not positions: a source numbers its tracks
/// as it likes (an SDP's `a=mid`, an ordinal), and the ingest and the Hub find
/// them by id.
#[test]
fn track_ids_need_not_be_positions() {
    let (video, audio) = (TrackId::new(7), TrackId::new(3));
    let mut tracks = tracks();
    tracks[0].id = video;
    tracks[1].id = audio;
    let hub = Hub::new("cam", HubConfig::default());
    let mut sub = hub.subscribe();
    let mut ingest = StreamIngest::new(hub.clone(), tracks);
    let now = Instant::now();
    for p in idr(10, 1000) {
        ingest.push_rtp(video, p, now).expect("video packet");
    }
    let opus = packet(AUDIO_SSRC, 1, 960, true, vec![0xfc, 1, 2]);
    ingest.push_rtp(audio, opus, now).expect("audio packet");
    let at_position = ingest.push_rtp(TrackId::new(0), p_frame(SOURCE_SSRC, 13, 4000), now);
    assert!(
        matches!(at_position, Err(IngestError::UnknownTrack { track, .. }) if track == TrackId::new(0)),
        "a position is not a track id: {at_position:?}"
    );

    let frames = received(&mut sub);
    let got: Vec<(TrackId, MediaKind, u8)> = frames
        .iter()
        .map(|f| (f.track, f.kind, f.packets[0].payload_type().get()))
        .collect();
    assert_eq!(
        got,
        [
            (video, MediaKind::Video, 100),
            (audio, MediaKind::Audio, 101)
        ]
    );

    let params = CodecParams {
        width: Some(640),
        ..CodecParams::default()
    };
    hub.update_params(audio, params.clone());
    let described = hub.tracks();
    assert_eq!((described[1].id, &described[1].params), (audio, &params));
    assert_eq!(
        described[0].params,
        sdp_params(),
        "the other track is untouched"
    );
}
