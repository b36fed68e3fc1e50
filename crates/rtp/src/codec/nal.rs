//! The RTP payload structure H.264 (RFC 6184) and H.265 (RFC 7798) share:
//! single NAL unit packets, aggregation packets (STAP-A / AP: 16-bit size +
//! NAL, repeated) and fragmentation units (FU-A / FU). The codecs differ only in
//! header layout and type numbers, given by a [`NalSyntax`].
//!
//! An access unit ends at the marker bit or when the timestamp changes (some
//! senders never set the marker). Non-interleaved modes only: H.264
//! packetization-mode 0 and 1, H.265 without DONL (sprop-max-don-diff = 0).

use std::marker::PhantomData;

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    AccessUnit, DepacketizeError, PacketRef, PacketizeError, Payload, ReadyQueue,
    MAX_ACCESS_UNIT_BYTES, MAX_PACKETS_PER_ACCESS_UNIT, MAX_UNITS_PER_ACCESS_UNIT,
};
use crate::packet::RtpPacket;
use crate::track::{Codec, CodecParams};

/// Which parameter set a NAL unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterSet {
    Vps,
    Sps,
    Pps,
}

/// How one NAL-based codec lays out its NAL header and RTP payload types.
pub trait NalSyntax {
    const CODEC: Codec;
    /// NAL header length: 1 (H.264) or 2 (H.265).
    const HEADER_LEN: usize;
    /// Payload type of an aggregation packet (STAP-A 24, AP 48).
    const AGGREGATION: u8;
    /// Payload type of a fragmentation unit (FU-A 28, FU 49).
    const FRAGMENTATION: u8;
    /// Bits of the FU header that hold the fragmented unit's type.
    const FU_TYPE_MASK: u8;

    /// The type field of a NAL header (`header.len() >= HEADER_LEN`).
    fn nal_type(header: &[u8]) -> u8;
    /// `header` (≥ `HEADER_LEN` bytes) with its type field replaced.
    fn with_type(header: &[u8], nal_type: u8) -> [u8; 2];
    /// Header of an aggregation packet carrying `nals`.
    fn aggregation_header(nals: &[Bytes]) -> [u8; 2];
    /// A NAL unit type that may be sent as a single NAL unit packet.
    fn is_single(nal_type: u8) -> bool;
    /// A decoder can start at an access unit holding this NAL type.
    fn is_random_access(nal_type: u8) -> bool;
    /// A leading picture that refers to pictures before its random access
    /// point, so it cannot be decoded when decoding starts there.
    fn is_random_access_skipped(nal_type: u8) -> bool;
    fn parameter_set(nal_type: u8) -> Option<ParameterSet>;
    /// Cropped picture size from an SPS NAL unit (header included).
    fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)>;
    /// Most frames that may precede a frame in decode order and follow it in
    /// presentation order, when the SPS says (see [`super::decode_order`]).
    fn sps_reorder_depth(sps: &[u8]) -> Option<u32>;
}

/// The access unit being assembled from packets sharing one timestamp.
#[derive(Debug)]
struct Partial {
    timestamp: u32,
    units: Vec<Bytes>,
    packets: Vec<RtpPacket>,
    /// Bytes in `units` plus `fragment`.
    len: usize,
    /// The unit being reassembled from FU packets.
    fragment: Option<Fragment>,
}

/// A fragmented NAL unit in progress: its pieces stay slices of the packets
/// until the last one arrives, then are copied once into an exact-size buffer.
#[derive(Debug)]
struct Fragment {
    header: [u8; 2],
    nal_type: u8,
    pieces: Vec<Bytes>,
}

/// Depacketizer for a NAL-based codec.
#[derive(Debug)]
pub struct NalDepacketizer<S> {
    partial: Option<Partial>,
    /// Timestamp of an access unit already dropped: its remaining packets are
    /// ignored until its marker bit or a new timestamp.
    dropping: Option<u32>,
    ready: ReadyQueue,
    syntax: PhantomData<S>,
}

impl<S> Default for NalDepacketizer<S> {
    fn default() -> Self {
        NalDepacketizer {
            partial: None,
            dropping: None,
            ready: ReadyQueue::default(),
            syntax: PhantomData,
        }
    }
}

impl<S: NalSyntax> NalDepacketizer<S> {
    pub fn push(&mut self, pkt: RtpPacket) -> Result<(), DepacketizeError> {
        let at = PacketRef::of(&pkt);
        let payload = pkt.payload();
        if payload.is_empty() {
            // Padding-only packets (bandwidth probes) carry nothing: leave state alone.
            return Err(DepacketizeError::EmptyPayload { at });
        }
        let mut result = Ok(());
        if self
            .partial
            .as_ref()
            .is_some_and(|p| p.timestamp != at.timestamp)
        {
            result = self.finish(at);
        }
        match self.dropping {
            Some(ts) if ts == at.timestamp => {
                if pkt.marker() {
                    self.dropping = None;
                }
                return result;
            }
            _ => self.dropping = None,
        }
        let partial = self.partial.get_or_insert_with(|| Partial {
            timestamp: at.timestamp,
            units: Vec::new(),
            packets: Vec::new(),
            len: 0,
            fragment: None,
        });
        let read = read_payload::<S>(partial, at, payload).and_then(|()| {
            if partial.packets.len() >= MAX_PACKETS_PER_ACCESS_UNIT {
                return Err(DepacketizeError::TooMany {
                    at,
                    what: "packets",
                    limit: MAX_PACKETS_PER_ACCESS_UNIT,
                });
            }
            Ok(())
        });
        if let Err(e) = read {
            self.partial = None;
            if !pkt.marker() {
                self.dropping = Some(at.timestamp);
            }
            if let Err(previous) = result {
                tracing::debug!(%previous, "previous access unit also dropped");
            }
            return Err(e);
        }
        let marker = pkt.marker();
        partial.packets.push(pkt);
        if marker {
            let finished = self.finish(at);
            result = result.and(finished);
        }
        result
    }

    pub fn pull(&mut self) -> Option<AccessUnit> {
        self.ready.pop()
    }

    pub fn discard_partial(&mut self) {
        if let Some(partial) = self.partial.take() {
            self.dropping = Some(partial.timestamp);
        }
    }

    /// Ends the access unit in progress; `at` is the packet that ended it.
    fn finish(&mut self, at: PacketRef) -> Result<(), DepacketizeError> {
        let Some(partial) = self.partial.take() else {
            return Ok(());
        };
        if partial.fragment.is_some() {
            return Err(DepacketizeError::FragmentEndLost { at });
        }
        if partial.units.is_empty() {
            return Ok(());
        }
        let keyframe = partial
            .units
            .iter()
            .any(|u| S::is_random_access(S::nal_type(u)));
        let random_access_skipped = partial
            .units
            .iter()
            .any(|u| S::is_random_access_skipped(S::nal_type(u)));
        self.ready.push(AccessUnit {
            rtp_timestamp: partial.timestamp,
            units: partial.units,
            packets: partial.packets,
            keyframe,
            random_access_skipped,
        });
        Ok(())
    }
}

/// Adds the NAL units (or fragment) in one packet's payload to `partial`.
fn read_payload<S: NalSyntax>(
    partial: &mut Partial,
    at: PacketRef,
    payload: Bytes,
) -> Result<(), DepacketizeError> {
    if payload.len() < S::HEADER_LEN {
        return Err(DepacketizeError::Truncated {
            at,
            what: "NAL header",
        });
    }
    let payload_type = S::nal_type(&payload);
    if partial.fragment.is_some() && payload_type != S::FRAGMENTATION {
        return Err(DepacketizeError::FragmentEndLost { at });
    }
    if S::is_single(payload_type) {
        add_unit::<S>(partial, at, payload)
    } else if payload_type == S::AGGREGATION {
        read_aggregation::<S>(partial, at, payload)
    } else if payload_type == S::FRAGMENTATION {
        read_fragment::<S>(partial, at, payload)
    } else {
        Err(DepacketizeError::UnsupportedType {
            at,
            codec: S::CODEC,
            nal_type: payload_type,
            what: "interleaved or reserved packet type",
        })
    }
}

fn add_unit<S: NalSyntax>(
    partial: &mut Partial,
    at: PacketRef,
    unit: Bytes,
) -> Result<(), DepacketizeError> {
    if unit.len() < S::HEADER_LEN {
        return Err(DepacketizeError::Truncated {
            at,
            what: "NAL header",
        });
    }
    if partial.units.len() >= MAX_UNITS_PER_ACCESS_UNIT {
        return Err(DepacketizeError::TooMany {
            at,
            what: "NAL units",
            limit: MAX_UNITS_PER_ACCESS_UNIT,
        });
    }
    partial.len = checked_total(partial.len, unit.len(), at)?;
    partial.units.push(unit);
    Ok(())
}

fn checked_total(current: usize, added: usize, at: PacketRef) -> Result<usize, DepacketizeError> {
    current
        .checked_add(added)
        .filter(|&total| total <= MAX_ACCESS_UNIT_BYTES)
        .ok_or(DepacketizeError::AccessUnitTooLarge {
            at,
            limit: MAX_ACCESS_UNIT_BYTES,
        })
}

/// STAP-A / AP: after the payload header, repeated 16-bit size + NAL unit.
fn read_aggregation<S: NalSyntax>(
    partial: &mut Partial,
    at: PacketRef,
    payload: Bytes,
) -> Result<(), DepacketizeError> {
    let body = payload.slice(S::HEADER_LEN..);
    if body.is_empty() {
        return Err(DepacketizeError::Truncated {
            at,
            what: "aggregation packet (no NAL units)",
        });
    }
    for unit in aggregated_units(&body) {
        let range = unit.map_err(|error| match error {
            AggregationError::TruncatedSize => DepacketizeError::Truncated {
                at,
                what: "aggregated NAL size",
            },
            AggregationError::BadLength { claimed, available } => DepacketizeError::BadLength {
                at,
                what: "aggregated NAL size",
                claimed,
                available,
            },
        })?;
        let unit = body.slice(range);
        if unit.len() >= S::HEADER_LEN && !S::is_single(S::nal_type(&unit)) {
            return Err(DepacketizeError::UnsupportedType {
                at,
                codec: S::CODEC,
                nal_type: S::nal_type(&unit),
                what: "aggregated unit of a non-NAL type",
            });
        }
        add_unit::<S>(partial, at, unit)?;
    }
    Ok(())
}

/// Why an aggregation packet's body cannot be split into NAL units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregationError {
    /// The body ends inside a 16-bit size field.
    TruncatedSize,
    /// A size of zero, or one that runs past the end of the packet.
    BadLength { claimed: usize, available: usize },
}

/// The NAL units of an aggregation packet body (STAP-A / AP after its payload
/// header: 16-bit size + unit, repeated) as byte ranges of `body`. The one parser of
/// that layout, for the depacketizer and for peeking at a packet (keyframe starts);
/// it ends after the first error.
pub fn aggregated_units(
    body: &[u8],
) -> impl Iterator<Item = Result<std::ops::Range<usize>, AggregationError>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= body.len() {
            return None;
        }
        let Some(size_bytes) = body.get(pos..pos + 2) else {
            pos = body.len();
            return Some(Err(AggregationError::TruncatedSize));
        };
        let size = usize::from(u16::from_be_bytes([size_bytes[0], size_bytes[1]]));
        let start = pos + 2;
        let available = body.len() - start;
        if size == 0 || size > available {
            pos = body.len();
            return Some(Err(AggregationError::BadLength {
                claimed: size,
                available,
            }));
        }
        pos = start + size;
        Some(Ok(start..pos))
    })
}

/// The NAL type of `nal` for an H.264 or H.265 track (`None`: another codec, or
/// too short for its header). With [`parameter_set`] and [`is_delimiter`], the
/// codec-level dispatch over [`NalSyntax`] for code that holds a [`Codec`].
pub fn nal_type(codec: Codec, nal: &[u8]) -> Option<u8> {
    match codec {
        Codec::H264 if !nal.is_empty() => Some(super::h264::Syntax::nal_type(nal)),
        Codec::H265 if nal.len() >= 2 => Some(super::h265::Syntax::nal_type(nal)),
        _ => None,
    }
}

/// Which parameter set `nal` is, if any.
pub fn parameter_set(codec: Codec, nal: &[u8]) -> Option<ParameterSet> {
    let nal_type = nal_type(codec, nal)?;
    match codec {
        Codec::H264 => super::h264::Syntax::parameter_set(nal_type),
        _ => super::h265::Syntax::parameter_set(nal_type),
    }
}

/// An access unit delimiter NAL (H.264 type 9, H.265 type 35), which must stay first.
pub fn is_delimiter(codec: Codec, nal: &[u8]) -> bool {
    matches!(
        (codec, nal_type(codec, nal)),
        (Codec::H264, Some(9)) | (Codec::H265, Some(35))
    )
}

/// FU-A / FU: payload header, FU header (S, E, type), fragment data.
fn read_fragment<S: NalSyntax>(
    partial: &mut Partial,
    at: PacketRef,
    payload: Bytes,
) -> Result<(), DepacketizeError> {
    let Some(&fu_header) = payload.get(S::HEADER_LEN) else {
        return Err(DepacketizeError::Truncated {
            at,
            what: "FU header",
        });
    };
    let (start, end, nal_type) = (
        fu_header & 0x80 != 0,
        fu_header & 0x40 != 0,
        fu_header & S::FU_TYPE_MASK,
    );
    if start && end {
        return Err(DepacketizeError::Malformed {
            at,
            what: "FU with both start and end bits set",
        });
    }
    if !S::is_single(nal_type) {
        return Err(DepacketizeError::UnsupportedType {
            at,
            codec: S::CODEC,
            nal_type,
            what: "fragmented unit of a non-NAL type",
        });
    }
    let data = payload.slice(S::HEADER_LEN + 1..);
    if start {
        if partial.fragment.is_some() {
            return Err(DepacketizeError::FragmentEndLost { at });
        }
        partial.len = checked_total(partial.len, S::HEADER_LEN, at)?;
        partial.fragment = Some(Fragment {
            header: S::with_type(&payload, nal_type),
            nal_type,
            pieces: Vec::new(),
        });
    }
    let Some(fragment) = partial.fragment.as_mut() else {
        return Err(DepacketizeError::FragmentStartLost { at });
    };
    if fragment.nal_type != nal_type {
        return Err(DepacketizeError::Malformed {
            at,
            what: "FU type differs from the unit's first fragment",
        });
    }
    partial.len = checked_total(partial.len, data.len(), at)?;
    fragment.pieces.push(data);
    if end {
        let unit = reassemble::<S>(fragment);
        partial.fragment = None;
        // `len` already counts these bytes; add_unit counts them again.
        partial.len -= unit.len();
        add_unit::<S>(partial, at, unit)?;
    }
    Ok(())
}

/// The one copy of a fragmented unit: header plus pieces into an exact-size buffer.
fn reassemble<S: NalSyntax>(fragment: &Fragment) -> Bytes {
    let len = S::HEADER_LEN + fragment.pieces.iter().map(Bytes::len).sum::<usize>();
    let mut buf = BytesMut::with_capacity(len);
    buf.put_slice(&fragment.header[..S::HEADER_LEN]);
    for piece in &fragment.pieces {
        buf.put_slice(piece);
    }
    buf.freeze()
}

/// Payloads for one access unit: parameter-set runs aggregated, units that fit
/// sent whole (a slice, no copy), the rest fragmented.
pub(super) fn packetize<S: NalSyntax>(
    units: &[Bytes],
    budget: usize,
) -> Result<Vec<Payload>, PacketizeError> {
    // Payload header + FU header + at least one data byte.
    let needed = S::HEADER_LEN + 2;
    if budget < needed {
        return Err(PacketizeError::MtuTooSmall {
            codec: S::CODEC,
            mtu: budget + super::RTP_HEADER_LEN,
            needed: needed + super::RTP_HEADER_LEN,
        });
    }
    let mut payloads = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let nal = &units[i];
        if nal.len() < S::HEADER_LEN {
            return Err(PacketizeError::BadUnit {
                codec: S::CODEC,
                index: i,
                len: nal.len(),
                what: "NAL unit shorter than its header",
            });
        }
        let run = aggregatable_run::<S>(&units[i..], budget);
        if run >= 2 {
            payloads.push(aggregate::<S>(&units[i..i + run]));
            i += run;
            continue;
        }
        if nal.len() <= budget {
            payloads.push(Payload {
                timestamp_offset: 0,
                marker: false,
                data: nal.clone(),
            });
        } else {
            fragment::<S>(nal, budget, &mut payloads);
        }
        i += 1;
    }
    if let Some(last) = payloads.last_mut() {
        last.marker = true;
    }
    Ok(payloads)
}

/// How many leading parameter sets fit together in one aggregation packet.
fn aggregatable_run<S: NalSyntax>(units: &[Bytes], budget: usize) -> usize {
    let mut len = S::HEADER_LEN;
    units
        .iter()
        .take_while(|nal| {
            len += 2 + nal.len();
            nal.len() >= S::HEADER_LEN
                && nal.len() <= usize::from(u16::MAX)
                && S::parameter_set(S::nal_type(nal)).is_some()
                && len <= budget
        })
        .count()
}

fn aggregate<S: NalSyntax>(nals: &[Bytes]) -> Payload {
    let len = S::HEADER_LEN + nals.iter().map(|n| 2 + n.len()).sum::<usize>();
    let mut buf = BytesMut::with_capacity(len);
    buf.put_slice(&S::aggregation_header(nals)[..S::HEADER_LEN]);
    for nal in nals {
        // aggregatable_run only admits units whose size fits u16.
        buf.put_u16(nal.len() as u16);
        buf.put_slice(nal);
    }
    Payload {
        timestamp_offset: 0,
        marker: false,
        data: buf.freeze(),
    }
}

/// Splits one NAL unit into FU packets, all carved from one buffer.
fn fragment<S: NalSyntax>(nal: &Bytes, budget: usize, out: &mut Vec<Payload>) {
    let overhead = S::HEADER_LEN + 1;
    let chunk_len = budget - overhead;
    let data = &nal[S::HEADER_LEN..];
    let nal_type = S::nal_type(nal);
    let payload_header = S::with_type(nal, S::FRAGMENTATION);
    let count = data.len().div_ceil(chunk_len);
    let mut buf = BytesMut::with_capacity(data.len() + count * overhead);
    let mut chunks = data.chunks(chunk_len).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let fu_header = nal_type
            | if first { 0x80 } else { 0 }
            | if chunks.peek().is_none() { 0x40 } else { 0 };
        buf.put_slice(&payload_header[..S::HEADER_LEN]);
        buf.put_u8(fu_header);
        buf.put_slice(chunk);
        out.push(Payload {
            timestamp_offset: 0,
            marker: false,
            data: buf.split().freeze(),
        });
        first = false;
    }
}

/// Merges in-band parameter sets into `params`; see [`super::update_params`].
pub(super) fn update_params<S: NalSyntax>(units: &[Bytes], params: &mut CodecParams) -> bool {
    let mut changed = false;
    for unit in units.iter().filter(|u| u.len() >= S::HEADER_LEN) {
        let Some(kind) = S::parameter_set(S::nal_type(unit)) else {
            continue;
        };
        let slot = match kind {
            ParameterSet::Vps => &mut params.vps,
            ParameterSet::Sps => &mut params.sps,
            ParameterSet::Pps => &mut params.pps,
        };
        if slot.as_ref() == Some(unit) {
            continue;
        }
        *slot = Some(unit.clone());
        changed = true;
        if kind == ParameterSet::Sps {
            let dimensions = S::sps_dimensions(unit);
            if dimensions.is_none() {
                tracing::debug!(codec = ?S::CODEC, "in-band SPS did not parse; picture size unknown");
            }
            params.width = dimensions.map(|(w, _)| w);
            params.height = dimensions.map(|(_, h)| h);
        }
    }
    changed
}
