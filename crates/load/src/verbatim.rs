//! Replays a capture with the RTP headers it was recorded with (sequence
//! numbers, timestamps, gaps and resets included), shifted per loop so that a
//! clean capture stays continuous. The default replay
//! (`streamgate_replay::run`) goes through the gateway's ingest, which
//! renumbers packets and repairs time: right for a stable load, but it would hide
//! a faulty capture from the readers. A virtual camera that must reproduce a real
//! camera's faults uses this one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use streamgate_pipeline::Hub;
use streamgate_replay::{Capture, LOOP_GAP};
use streamgate_rtp::codec::Depacketizer;
use streamgate_rtp::{Frame, OutPacket, RtpPacket, TrackInfo};

/// One track's state while replaying.
struct TrackReplay {
    info: TrackInfo,
    depacketizer: Option<Depacketizer>,
    /// How far one pass moves this track's timestamps and sequence numbers.
    timestamp_step: u32,
    sequence_step: u16,
}

impl TrackReplay {
    fn new(info: TrackInfo, capture: &Capture, pass_length: Duration) -> TrackReplay {
        let mut sequences = capture
            .packets
            .iter()
            .filter(|(_, id, _)| *id == info.id)
            .map(|(_, _, p)| p.sequence_number());
        let first = sequences.next().unwrap_or_default();
        let last = sequences.last().unwrap_or(first);
        let ticks = pass_length.as_nanos() * u128::from(info.clock_rate) / 1_000_000_000;
        TrackReplay {
            depacketizer: Depacketizer::new(&info).ok(),
            // RTP timestamps are modulo 2^32: truncation is the intent.
            timestamp_step: ticks as u32,
            sequence_step: last.wrapping_sub(first).wrapping_add(1),
            info,
        }
    }

    /// Frames completed by `packet` in pass `pass`, headers as recorded (shifted).
    fn push(&mut self, packet: &RtpPacket, pass: u32) -> Vec<Frame> {
        let Some(depacketizer) = self.depacketizer.as_mut() else {
            return Vec::new();
        };
        let sequence_shift = self.sequence_step.wrapping_mul(pass as u16);
        let timestamp_shift = self.timestamp_step.wrapping_mul(pass);
        // A packet the depacketizer refuses (a fragment whose start was dropped)
        // is lost with its frame, as it would be at a real reader.
        let _ = depacketizer.push(packet.clone());
        let mut frames = Vec::new();
        while let Some(unit) = depacketizer.pull() {
            let timestamp = unit.rtp_timestamp.wrapping_add(timestamp_shift);
            frames.push(Frame {
                track: self.info.id,
                kind: self.info.kind(),
                pts: u64::from(timestamp),
                dts: u64::from(timestamp),
                wallclock: SystemTime::now(),
                keyframe: unit.keyframe,
                discontinuity: false,
                random_access_skipped: false,
                packets: unit
                    .packets
                    .iter()
                    .map(|p| {
                        OutPacket::new(
                            p.payload_type(),
                            p.marker(),
                            p.sequence_number().wrapping_add(sequence_shift),
                            p.timestamp().wrapping_add(timestamp_shift),
                            p.ssrc(),
                            p.payload(),
                        )
                    })
                    .collect(),
                units: unit.units,
            });
        }
        frames
    }
}

/// Publishes `capture` into `hub` at its recorded pace, looping until dropped.
pub async fn run(capture: Arc<Capture>, hub: Hub) {
    let pass_length = capture.duration() + LOOP_GAP;
    let mut tracks: Vec<TrackReplay> = capture
        .tracks
        .iter()
        .map(|t| TrackReplay::new(t.info.clone(), &capture, pass_length))
        .collect();
    hub.set_tracks(capture.tracks.iter().map(|t| t.info.clone()).collect());
    let mut pass_start = tokio::time::Instant::now();
    let mut pass: u32 = 0;
    loop {
        for (offset, track, packet) in &capture.packets {
            tokio::time::sleep_until(pass_start + *offset).await;
            if let Some(track) = tracks.iter_mut().find(|t| t.info.id == *track) {
                for frame in track.push(packet, pass) {
                    hub.publish(frame);
                }
            }
        }
        pass_start += pass_length;
        pass = pass.wrapping_add(1);
    }
}
