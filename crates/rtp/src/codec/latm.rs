//! MPEG-4 AAC in LATM over RTP (RFC 6416 `MP4A-LATM`), the AAC framing most IP
//! cameras use, with the `StreamMuxConfig` out of band (`cpresent=0`).
//!
//! A packet holds one or more whole `AudioMuxElement`s, or one fragment of an
//! element too big for a packet (the marker bit ends the element; fragments are
//! reassembled with one copy). With the config out of band an element is, for
//! each of its `numSubFrames + 1` AAC frames, a `PayloadLengthInfo` (a run of
//! `0xFF` bytes plus a final byte < 255, summed) and that many bytes of frame.
//!
//! Only the `StreamMuxConfig` shape cameras (and GStreamer's `rtpmp4apay`, and
//! ffmpeg's `-rtpflags latm`) send is read: `audioMuxVersion` 0, one program of
//! one layer, all streams on the same time framing, variable frame lengths
//! (`frameLengthType` 0) and no other data. Anything else is refused when the
//! SDP is read, naming the field, rather than misread packet by packet.
//! The `AudioSpecificConfig` inside it is walked by hand with the crate's bit
//! reader, as aac.rs reads its frame length: LATM version 0 gives it no length,
//! so only its own fields tell where the `StreamMuxConfig` goes on, and the few
//! object types cameras use need ~40 lines, not a dependency.

use bytes::{BufMut, Bytes, BytesMut};

use super::bits::BitReader;
use super::{
    AccessUnit, DepacketizeError, PacketRef, PacketizeError, Payload, ReadyQueue,
    MAX_PACKETS_PER_ACCESS_UNIT,
};
use crate::packet::RtpPacket;
use crate::track::{Codec, TrackInfo};

/// Largest `AudioMuxElement` (and so reassembly buffer) accepted. An AAC frame is
/// at most 6144 bits per channel (768 bytes; 6 KiB for 7.1), and a few of them
/// share an element; 64 KiB leaves room and still bounds a lying sender.
pub const MAX_ELEMENT_BYTES: usize = 64 * 1024;
/// Most AAC frames accepted from one packet; real senders put 1–8 in one.
const MAX_FRAMES_PER_PACKET: usize = 64;

/// What the depacketizer and the SDP need from a `StreamMuxConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMuxConfig {
    /// The `AudioSpecificConfig` of the (only) layer, re-aligned to whole bytes.
    pub audio_specific_config: Bytes,
    /// AAC frames per `AudioMuxElement` (`numSubFrames + 1`).
    pub frames_per_element: usize,
    /// Channel count from the `channelConfiguration`: senders often leave it out
    /// of the `rtpmap` (GStreamer does, for stereo too).
    pub channels: u16,
}

/// Why a `StreamMuxConfig` cannot be used.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum LatmConfigError {
    #[error("StreamMuxConfig ends inside the {0}")]
    Truncated(&'static str),
    #[error("unsupported StreamMuxConfig: {0}")]
    Unsupported(&'static str),
}

/// Parses a `StreamMuxConfig` (ISO/IEC 14496-3 §1.7.3.1, the `config=` of an
/// `MP4A-LATM` SDP) of the supported shape (see the module docs).
pub fn parse_stream_mux_config(config: &[u8]) -> Result<StreamMuxConfig, LatmConfigError> {
    use LatmConfigError::{Truncated, Unsupported};
    let mut r = BitReader::new(config);
    let bits =
        |r: &mut BitReader<'_>, n: u32, field: &'static str| r.read_bits(n).ok_or(Truncated(field));
    if bits(&mut r, 1, "audioMuxVersion")? != 0 {
        return Err(Unsupported("audioMuxVersion 1"));
    }
    if bits(&mut r, 1, "allStreamsSameTimeFraming")? != 1 {
        return Err(Unsupported("streams on different time framing"));
    }
    let frames_per_element = bits(&mut r, 6, "numSubFrames")? as usize + 1;
    if bits(&mut r, 4, "numProgram")? != 0 || bits(&mut r, 3, "numLayer")? != 0 {
        return Err(Unsupported("more than one program or layer"));
    }
    let start = r.position();
    let channels = skip_audio_specific_config(&mut r)?;
    let audio_specific_config = copy_bits(config, start, r.position());
    // GStreamer's rtpmp4apay (1.22) ends the config with the AudioSpecificConfig's
    // bytes. Like ffmpeg, take fields cut off there as their defaults: variable
    // frame lengths, no other data, no CRC.
    if r.read_bits(3)
        .is_some_and(|frame_length_type| frame_length_type != 0)
    {
        return Err(Unsupported("fixed frame lengths (frameLengthType ≠ 0)"));
    }
    let _latm_buffer_fullness = r.read_bits(8);
    if r.read_bit() == Some(true) {
        return Err(Unsupported("other data in the AudioMuxElement"));
    }
    if r.read_bit() == Some(true) {
        bits(&mut r, 8, "crcCheckSum")?;
    }
    Ok(StreamMuxConfig {
        audio_specific_config,
        frames_per_element,
        channels,
    })
}

/// Reads past an `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1) of AAC
/// Main/LC/SSR/LTP, possibly with explicit SBR/PS signalling (hierarchical, or
/// backward compatible in sync extensions as GStreamer and ffmpeg write it);
/// returns the channel count.
fn skip_audio_specific_config(r: &mut BitReader<'_>) -> Result<u16, LatmConfigError> {
    use LatmConfigError::{Truncated, Unsupported};
    const SBR: u32 = 5;
    const PS: u32 = 29;
    let truncated = || Truncated("AudioSpecificConfig");
    let object_type = |r: &mut BitReader<'_>| match r.read_bits(5) {
        Some(31) => r.read_bits(6).map(|t| 32 + t),
        other => other,
    };
    let sampling_frequency = |r: &mut BitReader<'_>| match r.read_bits(4)? {
        15 => r.read_bits(24),
        index => Some(index),
    };
    let mut audio_object_type = object_type(r).ok_or_else(truncated)?;
    sampling_frequency(r).ok_or_else(truncated)?;
    let channel_configuration = r.read_bits(4).ok_or_else(truncated)?;
    if audio_object_type == SBR || audio_object_type == PS {
        sampling_frequency(r).ok_or_else(truncated)?;
        audio_object_type = object_type(r).ok_or_else(truncated)?;
    }
    if !(1..=4).contains(&audio_object_type) {
        return Err(Unsupported(
            "audio object type other than AAC Main/LC/SSR/LTP",
        ));
    }
    if channel_configuration == 0 {
        return Err(Unsupported(
            "channel configuration 0 (program_config_element)",
        ));
    }
    // GASpecificConfig: frameLengthFlag, dependsOnCoreCoder (+ coreCoderDelay), extensionFlag.
    r.skip_bits(1).ok_or_else(truncated)?;
    if r.read_bit().ok_or_else(truncated)? {
        r.skip_bits(14).ok_or_else(truncated)?;
    }
    if r.read_bit().ok_or_else(truncated)? {
        r.skip_bits(1).ok_or_else(truncated)?; // extensionFlag3
    }
    // Backward-compatible SBR/PS signalling. LATM version 0 gives the config no
    // length, so it is recognized by its sync words, which no supported
    // frameLengthType (the next field) can start with.
    if let Some(sbr_present) = sync_extension(r, SBR_SYNC, |r| match object_type(r)? {
        SBR => r.read_bit(),
        _ => Some(false),
    })? {
        if sbr_present {
            sampling_frequency(r).ok_or_else(truncated)?;
            sync_extension(r, PS_SYNC, |r| r.read_bit())?;
        }
    }
    Ok(match channel_configuration {
        7 => 8,
        n => n as u16,
    })
}

/// `syncExtensionType` of backward-compatible SBR and of PS.
const SBR_SYNC: u32 = 0x2b7;
const PS_SYNC: u32 = 0x548;

/// When the next 11 bits are `sync`, reads them and then `body`; otherwise reads nothing.
fn sync_extension<T>(
    r: &mut BitReader<'_>,
    sync: u32,
    body: impl FnOnce(&mut BitReader<'_>) -> Option<T>,
) -> Result<Option<T>, LatmConfigError> {
    let mut ahead = r.clone();
    if ahead.read_bits(11) != Some(sync) {
        return Ok(None);
    }
    let value = body(&mut ahead).ok_or(LatmConfigError::Truncated("AudioSpecificConfig"))?;
    *r = ahead;
    Ok(Some(value))
}

/// Bits `start..end` of `data` as bytes, zero-padded at the end.
fn copy_bits(data: &[u8], start: usize, end: usize) -> Bytes {
    let mut r = BitReader::new(data);
    let mut out = vec![0u8; (end - start).div_ceil(8)];
    if r.skip_bits(start).is_some() {
        for i in 0..end - start {
            if r.read_bit() == Some(true) {
                out[i / 8] |= 0x80 >> (i % 8);
            }
        }
    }
    Bytes::from(out)
}

/// An `AudioMuxElement` split over several packets, kept as slices until complete.
#[derive(Debug)]
struct Fragment {
    timestamp: u32,
    len: usize,
    pieces: Vec<Bytes>,
    packets: Vec<RtpPacket>,
}

#[derive(Debug)]
pub struct Depacketizer {
    frames_per_element: usize,
    frame_ticks: u32,
    fragment: Option<Fragment>,
    ready: ReadyQueue,
}

impl Depacketizer {
    pub fn new(track: &TrackInfo) -> Result<Self, DepacketizeError> {
        let bad = |reason| DepacketizeError::BadTrack {
            codec: Codec::AacLatm,
            reason,
        };
        if track.clock_rate == 0 {
            return Err(bad("zero clock rate"));
        }
        let config = track
            .params
            .stream_mux_config
            .as_deref()
            .ok_or(bad("no StreamMuxConfig"))?;
        let config =
            parse_stream_mux_config(config).map_err(|_| bad("unsupported StreamMuxConfig"))?;
        Ok(Depacketizer {
            frames_per_element: config.frames_per_element,
            frame_ticks: super::aac::samples_per_frame(track),
            fragment: None,
            ready: ReadyQueue::default(),
        })
    }

    pub fn push(&mut self, pkt: RtpPacket) -> Result<(), DepacketizeError> {
        let at = PacketRef::of(&pkt);
        // Whatever happens to this packet, an unfinished element of another timestamp is lost.
        match self.fragment.take() {
            Some(f) if f.timestamp == at.timestamp => self.continue_fragment(f, pkt),
            Some(_) => self
                .start(pkt)
                .and(Err(DepacketizeError::FragmentEndLost { at })),
            None => self.start(pkt),
        }
    }

    pub fn pull(&mut self) -> Option<AccessUnit> {
        self.ready.pop()
    }

    pub fn discard_partial(&mut self) {
        self.fragment = None;
    }

    /// A packet of whole elements (marker set), or the first fragment of one.
    fn start(&mut self, pkt: RtpPacket) -> Result<(), DepacketizeError> {
        let at = PacketRef::of(&pkt);
        let payload = pkt.payload();
        if payload.is_empty() {
            return Err(DepacketizeError::EmptyPayload { at });
        }
        if pkt.marker() {
            return self.read_elements(at, payload, vec![pkt]);
        }
        if payload.len() > MAX_ELEMENT_BYTES {
            return Err(DepacketizeError::AccessUnitTooLarge {
                at,
                limit: MAX_ELEMENT_BYTES,
            });
        }
        self.fragment = Some(Fragment {
            timestamp: at.timestamp,
            len: payload.len(),
            pieces: vec![payload],
            packets: vec![pkt],
        });
        Ok(())
    }

    fn continue_fragment(
        &mut self,
        mut f: Fragment,
        pkt: RtpPacket,
    ) -> Result<(), DepacketizeError> {
        let at = PacketRef::of(&pkt);
        let payload = pkt.payload();
        if payload.is_empty() {
            return Err(DepacketizeError::EmptyPayload { at });
        }
        f.len += payload.len();
        if f.len > MAX_ELEMENT_BYTES {
            return Err(DepacketizeError::AccessUnitTooLarge {
                at,
                limit: MAX_ELEMENT_BYTES,
            });
        }
        if f.packets.len() >= MAX_PACKETS_PER_ACCESS_UNIT {
            return Err(DepacketizeError::TooMany {
                at,
                what: "packets",
                limit: MAX_PACKETS_PER_ACCESS_UNIT,
            });
        }
        let marker = pkt.marker();
        f.pieces.push(payload);
        f.packets.push(pkt);
        if !marker {
            self.fragment = Some(f);
            return Ok(());
        }
        let mut element = BytesMut::with_capacity(f.len);
        for piece in &f.pieces {
            element.put_slice(piece);
        }
        self.read_elements(at, element.freeze(), f.packets)
    }

    /// Splits complete elements into AAC frames; frame `i` gets the timestamp +
    /// `i` frames, the first carries the packets. Nothing is published unless the
    /// whole payload parses.
    fn read_elements(
        &mut self,
        at: PacketRef,
        data: Bytes,
        packets: Vec<RtpPacket>,
    ) -> Result<(), DepacketizeError> {
        let mut frames = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            for _ in 0..self.frames_per_element {
                let (len, start) = payload_length(at, &data, pos)?;
                if len == 0 {
                    return Err(DepacketizeError::Malformed {
                        at,
                        what: "zero-length AAC frame in LATM",
                    });
                }
                let available = data.len() - start;
                if len > available {
                    return Err(DepacketizeError::BadLength {
                        at,
                        what: "LATM PayloadLengthInfo",
                        claimed: len,
                        available,
                    });
                }
                if frames.len() == MAX_FRAMES_PER_PACKET {
                    return Err(DepacketizeError::TooMany {
                        at,
                        what: "AAC frames in one packet",
                        limit: MAX_FRAMES_PER_PACKET,
                    });
                }
                frames.push(data.slice(start..start + len));
                pos = start + len;
            }
        }
        let mut packets = Some(packets);
        for (i, frame) in frames.into_iter().enumerate() {
            self.ready.push(AccessUnit {
                rtp_timestamp: at
                    .timestamp
                    .wrapping_add(self.frame_ticks.wrapping_mul(i as u32)),
                units: vec![frame],
                packets: packets.take().unwrap_or_default(),
                keyframe: true,
                random_access_skipped: false,
            });
        }
        Ok(())
    }
}

/// Reads a `PayloadLengthInfo` at `pos`: the frame length and where the frame starts.
fn payload_length(
    at: PacketRef,
    data: &[u8],
    mut pos: usize,
) -> Result<(usize, usize), DepacketizeError> {
    let mut len = 0usize;
    loop {
        let Some(&byte) = data.get(pos) else {
            return Err(DepacketizeError::Truncated {
                at,
                what: "LATM PayloadLengthInfo",
            });
        };
        pos += 1;
        // At most MAX_ELEMENT_BYTES (or one packet) of 255s: no overflow.
        len += usize::from(byte);
        if byte != 0xff {
            return Ok((len, pos));
        }
    }
}

/// The number of frames per element the packetizer writes: the track's
/// `StreamMuxConfig`'s, or one when it has none that parses.
pub(super) fn frames_per_element(track: &TrackInfo) -> usize {
    track
        .params
        .stream_mux_config
        .as_deref()
        .and_then(|config| parse_stream_mux_config(config).ok())
        .map_or(1, |config| config.frames_per_element)
}

/// Writes each group of `frames_per_element` frames as one `AudioMuxElement`
/// in its own packet, fragmented over several when it does not fit (marker on
/// the last).
pub(super) fn packetize(
    units: &[Bytes],
    budget: usize,
    frame_ticks: u32,
    frames_per_element: usize,
) -> Result<Vec<Payload>, PacketizeError> {
    if budget == 0 {
        return Err(PacketizeError::MtuTooSmall {
            codec: Codec::AacLatm,
            mtu: super::RTP_HEADER_LEN,
            needed: super::RTP_HEADER_LEN + 1,
        });
    }
    let per_element = frames_per_element.max(1);
    if units.len() % per_element != 0 {
        return Err(PacketizeError::FrameCount {
            codec: Codec::AacLatm,
            count: units.len(),
            multiple: per_element,
        });
    }
    let mut payloads = Vec::new();
    for (group, frames) in units.chunks(per_element).enumerate() {
        let mut element = BytesMut::new();
        for (i, frame) in frames.iter().enumerate() {
            let index = group * per_element + i;
            if frame.is_empty() {
                return Err(PacketizeError::BadUnit {
                    codec: Codec::AacLatm,
                    index,
                    len: 0,
                    what: "empty AAC frame",
                });
            }
            element.put_bytes(0xff, frame.len() / 255);
            element.put_u8((frame.len() % 255) as u8);
            element.put_slice(frame);
        }
        // The depacketizer's reassembly cap.
        if element.len() > MAX_ELEMENT_BYTES {
            return Err(PacketizeError::UnitTooLarge {
                codec: Codec::AacLatm,
                index: group * per_element,
                len: element.len(),
                limit: MAX_ELEMENT_BYTES,
            });
        }
        let timestamp_offset = frame_ticks.wrapping_mul((group * per_element) as u32);
        let element = element.freeze();
        let mut start = 0;
        while start < element.len() {
            let end = (start + budget).min(element.len());
            payloads.push(Payload {
                timestamp_offset,
                marker: end == element.len(),
                data: element.slice(start..end),
            });
            start = end;
        }
    }
    Ok(payloads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Depacketizer as AnyDepacketizer, Packetizer};
    use crate::ids::Ssrc;
    use crate::testing::{bytes, depacketize_all, round_trip, rtp};

    /// The RFC 6416 / camera example: AAC-LC, 16 kHz, mono, one frame per element.
    const MONO_16K: &[u8] = &[0x40, 0x00, 0x28, 0x10, 0x3f, 0xc0];
    /// GStreamer's `rtpmp4apay` for the AAC fixture: AAC-LC, 48 kHz, stereo, with
    /// the ASC's backward-compatible "no SBR" sync extension.
    const GSTREAMER_48K_STEREO: &[u8] = &[0x40, 0x00, 0x23, 0x20, 0xad, 0xca, 0x00];

    fn latm_track(config: &[u8], clock_rate: u32) -> TrackInfo {
        let mut track = crate::testing::track(Codec::AacLatm, clock_rate, 1);
        let parsed = parse_stream_mux_config(config).expect("test config parses");
        track.params.audio_config = Some(parsed.audio_specific_config);
        track.params.stream_mux_config = Some(bytes(config));
        track
    }

    fn depacketizer(config: &[u8]) -> AnyDepacketizer {
        AnyDepacketizer::new(&latm_track(config, 16_000)).unwrap()
    }

    /// One element of `frames` (PayloadLengthInfo + frame each).
    fn element(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            out.extend(std::iter::repeat_n(0xff, frame.len() / 255));
            out.push((frame.len() % 255) as u8);
            out.extend_from_slice(frame);
        }
        out
    }

    /// `config` with `numSubFrames` set to `n`.
    fn with_subframes(config: &[u8], n: u8) -> Vec<u8> {
        let mut config = config.to_vec();
        config[0] = (config[0] & 0xc0) | n;
        config
    }

    #[test]
    fn stream_mux_config_yields_the_audio_specific_config() {
        let parsed = parse_stream_mux_config(MONO_16K).unwrap();
        // AAC-LC (2), 16 kHz (index 8), mono: 00010 1000 0001 000.
        assert_eq!(parsed.audio_specific_config, bytes(&[0x14, 0x08]));
        assert_eq!((parsed.frames_per_element, parsed.channels), (1, 1));
        let parsed = parse_stream_mux_config(GSTREAMER_48K_STEREO).unwrap();
        // The same ASC as the fixture's mpeg4-generic config (sdp.rs tests).
        assert_eq!(
            parsed.audio_specific_config,
            bytes(&[0x11, 0x90, 0x56, 0xe5, 0x00])
        );
        assert_eq!(parsed.channels, 2);
        let parsed = parse_stream_mux_config(&with_subframes(MONO_16K, 3)).unwrap();
        assert_eq!(parsed.frames_per_element, 4);
        // Explicit SBR (HE-AAC), 24 kHz core, 48 kHz output, stereo: 2b 11 88 in the ASC,
        // then frameLengthType 0, fullness ff, no other data, no CRC.
        let he = [0x40, 0x00, 0x56, 0x23, 0x10, 0x1f, 0xe0];
        let parsed = parse_stream_mux_config(&he).unwrap();
        assert_eq!(
            parsed.audio_specific_config,
            bytes(&[0x2b, 0x11, 0x88, 0x00])
        );
    }

    #[test]
    fn unsupported_or_truncated_configs_are_named() {
        let cases: &[(&[u8], LatmConfigError)] = &[
            (&[], LatmConfigError::Truncated("audioMuxVersion")),
            (&[0x80], LatmConfigError::Unsupported("audioMuxVersion 1")),
            (
                &[0x00],
                LatmConfigError::Unsupported("streams on different time framing"),
            ),
            (
                &[0x40, 0x20],
                LatmConfigError::Unsupported("more than one program or layer"),
            ),
            (
                &[0x40, 0x00, 0x28],
                LatmConfigError::Truncated("AudioSpecificConfig"),
            ),
            (
                &[0x40, 0x00, 0x28, 0x10, 0x7f, 0xc0],
                LatmConfigError::Unsupported("fixed frame lengths (frameLengthType ≠ 0)"),
            ),
            (
                &[0x40, 0x00, 0x28, 0x10, 0x3f, 0xe0],
                LatmConfigError::Unsupported("other data in the AudioMuxElement"),
            ),
            (
                &[0x40, 0x00, 0x28, 0x10, 0x3f, 0xd0],
                LatmConfigError::Truncated("crcCheckSum"),
            ),
            // Channel configuration 0 and object type 7 (TwinVQ).
            (
                &[0x40, 0x00, 0x28, 0x00, 0x3f, 0xc0],
                LatmConfigError::Unsupported("channel configuration 0 (program_config_element)"),
            ),
            (
                &[0x40, 0x00, 0x78, 0x10, 0x3f, 0xc0],
                LatmConfigError::Unsupported("audio object type other than AAC Main/LC/SSR/LTP"),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(
                parse_stream_mux_config(config).as_ref(),
                Err(expected),
                "{config:02x?}"
            );
        }
        // With a CRC byte the config parses, and so does one that ends after the ASC.
        assert!(parse_stream_mux_config(&[0x40, 0x00, 0x28, 0x10, 0x3f, 0xd0, 0x12]).is_ok());
        assert_eq!(
            parse_stream_mux_config(&[0x40, 0x00, 0x28, 0x10]).map(|c| c.audio_specific_config),
            Ok(bytes(&[0x14, 0x08]))
        );
    }

    #[test]
    fn frames_get_consecutive_timestamps_across_elements_and_subframes() {
        let mut d = depacketizer(MONO_16K);
        let mut two_elements = element(&[&[1, 1]]);
        two_elements.extend(element(&[&[2]]));
        let mut subframes = depacketizer(&with_subframes(MONO_16K, 1));
        let (aus, errors) = depacketize_all(&mut d, [rtp(0, 1000, true, &two_elements)]);
        let (sub_aus, sub_errors) = depacketize_all(
            &mut subframes,
            [rtp(0, 1000, true, &element(&[&[1, 1], &[2]]))],
        );
        assert!(errors.is_empty() && sub_errors.is_empty());
        for aus in [aus, sub_aus] {
            let got: Vec<(u32, Bytes, usize)> = aus
                .iter()
                .map(|au| (au.rtp_timestamp, au.units[0].clone(), au.packets.len()))
                .collect();
            assert_eq!(got, vec![(1000, bytes(&[1, 1]), 1), (2024, bytes(&[2]), 0)]);
            assert!(aus.iter().all(|au| au.keyframe && au.units.len() == 1));
        }
    }

    #[test]
    fn long_frames_use_ff_runs() {
        let frame: Vec<u8> = (0..=255u8).cycle().take(600).collect();
        let payload = element(&[&frame]);
        assert_eq!(&payload[..3], &[0xff, 0xff, 90]);
        let (aus, errors) =
            depacketize_all(&mut depacketizer(MONO_16K), [rtp(0, 0, true, &payload)]);
        assert!(errors.is_empty());
        assert_eq!(aus[0].units, vec![Bytes::from(frame)]);
        // Exactly 255 bytes: one 0xff then 0.
        assert_eq!(&element(&[&[7; 255]])[..2], &[0xff, 0x00]);
        let (aus, _) = depacketize_all(
            &mut depacketizer(MONO_16K),
            [rtp(0, 0, true, &element(&[&[7; 255]]))],
        );
        assert_eq!(aus[0].units[0].len(), 255);
    }

    #[test]
    fn lying_lengths_and_truncation_are_errors() {
        let mut d = depacketizer(&with_subframes(MONO_16K, 1));
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, true, &[]),
                rtp(1, 0, true, &[5, 1, 2]),        // 5 claimed, 2 there
                rtp(2, 0, true, &[0xff, 0xff]),     // the length never ends
                rtp(3, 0, true, &[0, 1]),           // zero-length frame
                rtp(4, 0, true, &element(&[&[1]])), // element stops after one of two frames
                rtp(5, 0, true, &[0xff, 3, 1, 2, 3]), // 258 claimed, 4 there
                rtp(6, 0, true, &element(&[&[1], &[2]])),
            ],
        );
        assert!(matches!(errors[0], DepacketizeError::EmptyPayload { .. }));
        assert!(matches!(
            errors[1],
            DepacketizeError::BadLength {
                claimed: 5,
                available: 2,
                ..
            }
        ));
        assert!(matches!(errors[2], DepacketizeError::Truncated { .. }));
        assert!(matches!(errors[3], DepacketizeError::Malformed { .. }));
        assert!(matches!(errors[4], DepacketizeError::Truncated { .. }));
        assert!(matches!(
            errors[5],
            DepacketizeError::BadLength {
                claimed: 258,
                available: 3,
                ..
            }
        ));
        assert_eq!(errors.len(), 6);
        assert_eq!(aus.len(), 2, "only the last packet yields frames");
    }

    #[test]
    fn too_many_frames_in_one_packet_is_an_error() {
        let many: Vec<u8> = (0..=MAX_FRAMES_PER_PACKET).flat_map(|_| [1u8, 9]).collect();
        let (aus, errors) = depacketize_all(&mut depacketizer(MONO_16K), [rtp(0, 0, true, &many)]);
        assert!(aus.is_empty());
        assert!(matches!(errors[..], [DepacketizeError::TooMany { .. }]));
    }

    #[test]
    fn fragmented_element_is_reassembled_and_losses_are_reported() {
        let mut d = depacketizer(MONO_16K);
        let whole = element(&[&[1, 2, 3, 4, 5]]);
        let (aus, errors) = depacketize_all(
            &mut d,
            [
                rtp(0, 0, false, &whole[..2]),
                rtp(1, 0, false, &whole[2..4]),
                rtp(2, 0, true, &whole[4..]),
                // End lost: the next timestamp reveals it, and its packet is kept.
                rtp(3, 1024, false, &whole[..3]),
                rtp(4, 2048, true, &element(&[&[9]])),
                // A fragment that says more than the element holds.
                rtp(5, 3072, false, &[9, 1]),
                rtp(6, 3072, true, &[2]),
            ],
        );
        assert!(matches!(
            errors[0],
            DepacketizeError::FragmentEndLost { .. }
        ));
        assert!(matches!(errors[1], DepacketizeError::BadLength { .. }));
        assert_eq!(errors.len(), 2);
        assert_eq!(aus.len(), 2);
        assert_eq!(aus[0].units, vec![bytes(&[1, 2, 3, 4, 5])]);
        assert_eq!(aus[0].packets.len(), 3);
        assert_eq!(aus[1].rtp_timestamp, 2048);

        d.push(rtp(7, 4096, false, &whole[..2])).unwrap();
        d.discard_partial();
        assert!(d.push(rtp(8, 4096, true, &whole[2..])).is_err());
        assert!(d.pull().is_none());
    }

    #[test]
    fn reassembly_is_capped() {
        let mut d = depacketizer(MONO_16K);
        let chunk = vec![0xff; 1400];
        let packets =
            (0..=(MAX_ELEMENT_BYTES / chunk.len()) as u16).map(|seq| rtp(seq, 0, false, &chunk));
        let (aus, errors) = depacketize_all(&mut d, packets);
        assert!(aus.is_empty());
        assert!(matches!(
            errors[..],
            [DepacketizeError::AccessUnitTooLarge { .. }]
        ));
    }

    #[test]
    fn round_trip_single_and_fragmented_elements() {
        for config in [MONO_16K.to_vec(), with_subframes(MONO_16K, 2)] {
            let track = latm_track(&config, 16_000);
            let frames: Vec<Bytes> = (0..6u8)
                .map(|i| Bytes::from(vec![i; 100 + usize::from(i) * 120]))
                .collect();
            let expected: Vec<(u32, Vec<Bytes>)> = frames
                .iter()
                .enumerate()
                .map(|(i, f)| (5000 + 1024 * i as u32, vec![f.clone()]))
                .collect();
            for mtu in [1500, 300, 13] {
                assert_eq!(
                    round_trip(&track, mtu, &[(5000, frames.clone())]),
                    expected,
                    "mtu {mtu} config {config:02x?}"
                );
            }
        }
    }

    #[test]
    fn packetizer_rejects_what_an_element_cannot_hold() {
        let track = latm_track(&with_subframes(MONO_16K, 1), 16_000);
        let mut packetizer = Packetizer::new(&track, Ssrc::new(1), 1200);
        assert!(matches!(
            packetizer.packetize(0, &[bytes(&[1])]),
            Err(PacketizeError::FrameCount { multiple: 2, .. })
        ));
        assert!(matches!(
            packetizer.packetize(0, &[Bytes::new(), bytes(&[1])]),
            Err(PacketizeError::BadUnit { index: 0, .. })
        ));
        assert!(matches!(
            packetizer.packetize(0, &[Bytes::from(vec![1; MAX_ELEMENT_BYTES]), bytes(&[1])]),
            Err(PacketizeError::UnitTooLarge { .. })
        ));
        assert!(Packetizer::new(&track, Ssrc::new(1), 12)
            .packetize(0, &[bytes(&[1]), bytes(&[2])])
            .is_err());
    }

    #[test]
    fn tracks_without_a_usable_config_cannot_be_depacketized() {
        let mut track = latm_track(MONO_16K, 16_000);
        track.params.stream_mux_config = None;
        assert!(AnyDepacketizer::new(&track).is_err());
        track.params.stream_mux_config = Some(bytes(&[0x80]));
        assert!(AnyDepacketizer::new(&track).is_err());
        let mut zero_clock = latm_track(MONO_16K, 16_000);
        zero_clock.clock_rate = 0;
        assert!(AnyDepacketizer::new(&zero_clock).is_err());
    }
}
