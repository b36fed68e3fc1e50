//! RTCP (RFC 3550) parse and build: SR, RR, SDES, BYE, and the feedback
//! messages a gateway exchanges with cameras and players: PLI and FIR
//! (RFC 4585 / RFC 5104) to ask for keyframes, generic NACK (RFC 4585) for loss.
//!
//! [`parse_compound`] accepts RFC 3550 compound packets and RFC 5506
//! reduced-size ones (a lone PLI or NACK), so it does not insist that the first
//! packet be an SR or RR. Every length field is checked against the buffer;
//! types it does not model are kept as [`RtcpPacket::Unknown`].
//!
//! Hand-written rather than `webrtc-rtcp`: that crate boxes every packet behind a
//! trait object and pulls in `webrtc-util`; the handful of types here is small.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

use crate::ids::{SeqNo, Ssrc};

const VERSION: u8 = 2;
const HEADER_LEN: usize = 4;
/// The 5-bit count field (report blocks, SDES chunks, BYE sources).
const MAX_COUNT: usize = 31;
/// The 16-bit length field counts 32-bit words after the first.
const MAX_BODY_LEN: usize = 0xffff * 4;

const TYPE_SR: u8 = 200;
const TYPE_RR: u8 = 201;
const TYPE_SDES: u8 = 202;
const TYPE_BYE: u8 = 203;
/// Transport-layer feedback (RFC 4585 6.2); FMT 1 is generic NACK.
const TYPE_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585 6.3); FMT 1 is PLI, FMT 4 is FIR (RFC 5104).
const TYPE_PSFB: u8 = 206;
const FMT_NACK: u8 = 1;
const FMT_PLI: u8 = 1;
const FMT_FIR: u8 = 4;

/// SDES item type carrying the canonical name every compound packet should hold.
pub const SDES_CNAME: u8 = 1;

/// Why a buffer is not valid RTCP. `offset` is where the offending packet starts.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RtcpError {
    #[error("empty RTCP packet")]
    Empty,
    #[error("RTCP header at offset {offset} cut short: {available} bytes left, 4 needed")]
    TruncatedHeader { offset: usize, available: usize },
    #[error("RTCP version {version} at offset {offset}, expected 2")]
    BadVersion { offset: usize, version: u8 },
    #[error("RTCP packet type {packet_type} at offset {offset} claims {declared} bytes, {available} left")]
    LengthOverrun {
        offset: usize,
        packet_type: u8,
        declared: usize,
        available: usize,
    },
    #[error("RTCP packet type {packet_type} at offset {offset}: padding count {padding} is invalid for a {body_len}-byte body")]
    BadPadding {
        offset: usize,
        packet_type: u8,
        padding: usize,
        body_len: usize,
    },
    #[error("RTCP packet type {packet_type} at offset {offset}: body of {body_len} bytes too short, {needed} needed")]
    BodyTooShort {
        offset: usize,
        packet_type: u8,
        needed: usize,
        body_len: usize,
    },
}

/// One packet of a compound RTCP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    SourceDescription(Sdes),
    Goodbye(Goodbye),
    /// Picture Loss Indication: the receiver wants a keyframe.
    Pli {
        sender_ssrc: Ssrc,
        media_ssrc: Ssrc,
    },
    /// Full Intra Request: `(media ssrc, command sequence number)` per entry.
    Fir {
        sender_ssrc: Ssrc,
        entries: Vec<(Ssrc, u8)>,
    },
    /// Generic NACK with its PID/BLP pairs expanded to the lost sequence numbers.
    Nack {
        sender_ssrc: Ssrc,
        media_ssrc: Ssrc,
        lost: Vec<SeqNo>,
    },
    /// Any other type (APP, XR, REMB, transport-cc, …), kept verbatim without padding.
    /// `count` is the header's 5-bit count/FMT field.
    Unknown {
        packet_type: u8,
        count: u8,
        body: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: Ssrc,
    /// 64-bit NTP timestamp (see [`ntp_from_system_time`]).
    pub ntp_time: u64,
    /// The same instant on the RTP clock of this source.
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub reports: Vec<ReportBlock>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverReport {
    pub ssrc: Ssrc,
    pub reports: Vec<ReportBlock>,
}

/// Reception statistics about one source (RFC 3550 6.4.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: Ssrc,
    pub fraction_lost: u8,
    /// A signed 24-bit field on the wire; written clamped to its range.
    pub cumulative_lost: i32,
    pub highest_sequence: u32,
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received from this source.
    pub last_sr: u32,
    /// In units of 1/65536 s.
    pub delay_since_last_sr: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sdes {
    pub chunks: Vec<SdesChunk>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: Ssrc,
    pub items: Vec<SdesItem>,
}

/// One SDES item. Values are bytes: RFC 3550 says UTF-8, peers do not always comply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdesItem {
    /// Item type ([`SDES_CNAME`], …); type 0 ends a chunk and is never written.
    pub kind: u8,
    /// At most 255 bytes are written.
    pub value: Vec<u8>,
}

impl Sdes {
    /// The SDES a sender puts in every compound packet: its CNAME.
    pub fn cname(ssrc: Ssrc, cname: &str) -> Sdes {
        let item = SdesItem {
            kind: SDES_CNAME,
            value: cname.as_bytes().to_vec(),
        };
        Sdes {
            chunks: vec![SdesChunk {
                ssrc,
                items: vec![item],
            }],
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Goodbye {
    pub sources: Vec<Ssrc>,
    /// Empty when no reason was given; at most 255 bytes are written.
    pub reason: Vec<u8>,
}

/// Parses a compound RTCP packet (or an RFC 5506 reduced-size one) into its parts.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        let available = buf.len() - offset;
        let Some(header) = buf.get(offset..offset + HEADER_LEN) else {
            return Err(RtcpError::TruncatedHeader { offset, available });
        };
        let version = header[0] >> 6;
        if version != VERSION {
            return Err(RtcpError::BadVersion { offset, version });
        }
        let has_padding = header[0] & 0x20 != 0;
        let count = header[0] & 0x1f;
        let packet_type = header[1];
        let declared = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
        if declared > available {
            return Err(RtcpError::LengthOverrun {
                offset,
                packet_type,
                declared,
                available,
            });
        }
        let mut body = &buf[offset + HEADER_LEN..offset + declared];
        if has_padding {
            // RFC 3550 6.4.1: the last octet counts the padding, itself included.
            let padding = body.last().map_or(0, |&p| usize::from(p));
            if padding == 0 || padding > body.len() {
                return Err(RtcpError::BadPadding {
                    offset,
                    packet_type,
                    padding,
                    body_len: body.len(),
                });
            }
            body = &body[..body.len() - padding];
        }
        let reader = BodyReader {
            body,
            pos: 0,
            offset,
            packet_type,
        };
        packets.push(parse_packet(packet_type, count, reader)?);
        offset += declared;
    }
    Ok(packets)
}

fn parse_packet(
    packet_type: u8,
    count: u8,
    mut r: BodyReader<'_>,
) -> Result<RtcpPacket, RtcpError> {
    let count_usize = usize::from(count);
    Ok(match (packet_type, count) {
        (TYPE_SR, _) => RtcpPacket::SenderReport(SenderReport {
            ssrc: r.ssrc()?,
            ntp_time: (u64::from(r.u32()?) << 32) | u64::from(r.u32()?),
            rtp_time: r.u32()?,
            packet_count: r.u32()?,
            octet_count: r.u32()?,
            reports: r.report_blocks(count_usize)?,
        }),
        (TYPE_RR, _) => RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: r.ssrc()?,
            reports: r.report_blocks(count_usize)?,
        }),
        (TYPE_SDES, _) => {
            let chunks = (0..count_usize)
                .map(|_| r.sdes_chunk())
                .collect::<Result<_, _>>()?;
            RtcpPacket::SourceDescription(Sdes { chunks })
        }
        (TYPE_BYE, _) => {
            let sources = (0..count_usize)
                .map(|_| r.ssrc())
                .collect::<Result<_, _>>()?;
            let reason = if r.is_empty() {
                Vec::new()
            } else {
                let len = usize::from(r.u8()?);
                r.take(len)?.to_vec()
            };
            RtcpPacket::Goodbye(Goodbye { sources, reason })
        }
        (TYPE_PSFB, FMT_PLI) => RtcpPacket::Pli {
            sender_ssrc: r.ssrc()?,
            media_ssrc: r.ssrc()?,
        },
        (TYPE_PSFB, FMT_FIR) => {
            let sender_ssrc = r.ssrc()?;
            r.u32()?; // media source SSRC: unused by FIR (RFC 5104 4.3.1.2)
            let mut entries = Vec::new();
            while !r.is_empty() {
                let ssrc = r.ssrc()?;
                let sequence = r.u8()?;
                r.take(3)?; // reserved
                entries.push((ssrc, sequence));
            }
            RtcpPacket::Fir {
                sender_ssrc,
                entries,
            }
        }
        (TYPE_RTPFB, FMT_NACK) => {
            let sender_ssrc = r.ssrc()?;
            let media_ssrc = r.ssrc()?;
            let mut lost = Vec::new();
            while !r.is_empty() {
                let pid = SeqNo::new(r.u16()?);
                let blp = r.u16()?;
                lost.push(pid);
                let following = (0..16u16)
                    .filter(|bit| blp & (1 << bit) != 0)
                    .map(|bit| pid.wrapping_add(bit + 1));
                lost.extend(following);
            }
            RtcpPacket::Nack {
                sender_ssrc,
                media_ssrc,
                lost,
            }
        }
        _ => RtcpPacket::Unknown {
            packet_type,
            count,
            body: r.body.to_vec(),
        },
    })
}

/// Bounds-checked reads from one packet's body, with the context errors report.
struct BodyReader<'a> {
    body: &'a [u8],
    pos: usize,
    offset: usize,
    packet_type: u8,
}

impl<'a> BodyReader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], RtcpError> {
        let needed = self.pos + len; // pos <= body.len() and len <= 255 or a constant
        let Some(bytes) = self.body.get(self.pos..needed) else {
            let (offset, packet_type, body_len) = (self.offset, self.packet_type, self.body.len());
            return Err(RtcpError::BodyTooShort {
                offset,
                packet_type,
                needed,
                body_len,
            });
        };
        self.pos = needed;
        Ok(bytes)
    }

    fn is_empty(&self) -> bool {
        self.pos == self.body.len()
    }

    fn u8(&mut self) -> Result<u8, RtcpError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, RtcpError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, RtcpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn ssrc(&mut self) -> Result<Ssrc, RtcpError> {
        self.u32().map(Ssrc::new)
    }

    fn report_blocks(&mut self, count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
        (0..count)
            .map(|_| {
                let ssrc = self.ssrc()?;
                let lost = self.u32()?;
                Ok(ReportBlock {
                    ssrc,
                    fraction_lost: (lost >> 24) as u8,
                    // Shift the 24-bit field to the top, then back with sign extension.
                    cumulative_lost: ((lost << 8) as i32) >> 8,
                    highest_sequence: self.u32()?,
                    jitter: self.u32()?,
                    last_sr: self.u32()?,
                    delay_since_last_sr: self.u32()?,
                })
            })
            .collect()
    }

    fn sdes_chunk(&mut self) -> Result<SdesChunk, RtcpError> {
        let ssrc = self.ssrc()?;
        let mut items = Vec::new();
        loop {
            let kind = self.u8()?;
            if kind == 0 {
                break;
            }
            let len = usize::from(self.u8()?);
            items.push(SdesItem {
                kind,
                value: self.take(len)?.to_vec(),
            });
        }
        // Null octets pad the chunk to the next 32-bit boundary.
        self.take((4 - self.pos % 4) % 4)?;
        Ok(SdesChunk { ssrc, items })
    }
}

impl RtcpPacket {
    /// Appends the wire form. Lists longer than the 5-bit count field allows
    /// are split over several packets (extra report blocks go into RRs, as
    /// RFC 3550 6.4 says); strings longer than 255 bytes are cut.
    pub fn write_to(&self, out: &mut BytesMut) {
        match self {
            RtcpPacket::SenderReport(sr) => {
                let mut blocks = sr.reports.chunks(MAX_COUNT);
                let first = blocks.next().unwrap_or_default();
                write_packet(out, first.len() as u8, TYPE_SR, |out| {
                    out.put_u32(sr.ssrc.get());
                    out.put_u64(sr.ntp_time);
                    out.put_u32(sr.rtp_time);
                    out.put_u32(sr.packet_count);
                    out.put_u32(sr.octet_count);
                    put_report_blocks(out, first);
                });
                for rest in blocks {
                    write_receiver_report(out, sr.ssrc, rest);
                }
            }
            RtcpPacket::ReceiverReport(rr) => {
                if rr.reports.is_empty() {
                    write_receiver_report(out, rr.ssrc, &[]);
                }
                for blocks in rr.reports.chunks(MAX_COUNT) {
                    write_receiver_report(out, rr.ssrc, blocks);
                }
            }
            RtcpPacket::SourceDescription(sdes) => {
                if sdes.chunks.is_empty() {
                    write_packet(out, 0, TYPE_SDES, |_| {});
                }
                for chunks in sdes.chunks.chunks(MAX_COUNT) {
                    write_packet(out, chunks.len() as u8, TYPE_SDES, |out| {
                        chunks.iter().for_each(|c| put_sdes_chunk(out, c))
                    });
                }
            }
            RtcpPacket::Goodbye(bye) => {
                let mut groups: Vec<&[Ssrc]> = bye.sources.chunks(MAX_COUNT).collect();
                if groups.is_empty() {
                    groups.push(&[]);
                }
                let last = groups.len() - 1;
                for (i, sources) in groups.into_iter().enumerate() {
                    write_packet(out, sources.len() as u8, TYPE_BYE, |out| {
                        sources.iter().for_each(|s| out.put_u32(s.get()));
                        if i == last && !bye.reason.is_empty() {
                            let reason = &bye.reason[..bye.reason.len().min(255)];
                            out.put_u8(reason.len() as u8);
                            out.put_slice(reason);
                            out.put_bytes(0, (4 - (1 + reason.len()) % 4) % 4);
                        }
                    });
                }
            }
            RtcpPacket::Pli {
                sender_ssrc,
                media_ssrc,
            } => write_packet(out, FMT_PLI, TYPE_PSFB, |out| {
                out.put_u32(sender_ssrc.get());
                out.put_u32(media_ssrc.get());
            }),
            RtcpPacket::Fir {
                sender_ssrc,
                entries,
            } => write_packet(out, FMT_FIR, TYPE_PSFB, |out| {
                out.put_u32(sender_ssrc.get());
                out.put_u32(0);
                for &(ssrc, sequence) in entries {
                    out.put_u32(ssrc.get());
                    out.put_u8(sequence);
                    out.put_bytes(0, 3);
                }
            }),
            RtcpPacket::Nack {
                sender_ssrc,
                media_ssrc,
                lost,
            } => write_packet(out, FMT_NACK, TYPE_RTPFB, |out| {
                out.put_u32(sender_ssrc.get());
                out.put_u32(media_ssrc.get());
                for (pid, blp) in nack_entries(lost) {
                    out.put_u16(pid.get());
                    out.put_u16(blp);
                }
            }),
            RtcpPacket::Unknown {
                packet_type,
                count,
                body,
            } => {
                write_packet(out, *count, *packet_type, |out| out.put_slice(body));
            }
        }
    }
}

/// Groups lost sequence numbers into PID/BLP pairs. A number joins the current
/// pair when it is 1..=16 after the PID and after the pair's previous number, so
/// expanding the pairs gives back exactly `lost`, in order.
fn nack_entries(lost: &[SeqNo]) -> Vec<(SeqNo, u16)> {
    let mut entries: Vec<(SeqNo, u16)> = Vec::new();
    let mut last_offset = 0;
    for &seq in lost {
        if let Some((pid, blp)) = entries.last_mut() {
            let offset = seq.diff(*pid);
            if offset > last_offset && offset <= 16 {
                *blp |= 1 << (offset - 1);
                last_offset = offset;
                continue;
            }
        }
        entries.push((seq, 0));
        last_offset = 0;
    }
    entries
}

fn write_receiver_report(out: &mut BytesMut, ssrc: Ssrc, blocks: &[ReportBlock]) {
    write_packet(out, blocks.len() as u8, TYPE_RR, |out| {
        out.put_u32(ssrc.get());
        put_report_blocks(out, blocks);
    });
}

fn put_report_blocks(out: &mut BytesMut, blocks: &[ReportBlock]) {
    for b in blocks {
        out.put_u32(b.ssrc.get());
        let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0xff_ffff;
        out.put_u32((u32::from(b.fraction_lost) << 24) | lost);
        out.put_u32(b.highest_sequence);
        out.put_u32(b.jitter);
        out.put_u32(b.last_sr);
        out.put_u32(b.delay_since_last_sr);
    }
}

fn put_sdes_chunk(out: &mut BytesMut, chunk: &SdesChunk) {
    let start = out.len();
    out.put_u32(chunk.ssrc.get());
    for item in chunk.items.iter().filter(|i| i.kind != 0) {
        let value = &item.value[..item.value.len().min(255)];
        out.put_u8(item.kind);
        out.put_u8(value.len() as u8);
        out.put_slice(value);
    }
    // The null item ends the chunk; more nulls pad it to 32 bits.
    let len = out.len() - start + 1;
    out.put_bytes(0, 1 + (4 - len % 4) % 4);
}

/// Writes header + body, padding the body to 32 bits with the P bit when the body
/// is not already aligned (only [`RtcpPacket::Unknown`] bodies can be). A body
/// over the 16-bit length limit is cut there; only absurd hand-built packets get there.
fn write_packet(out: &mut BytesMut, count: u8, packet_type: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_bytes(0, HEADER_LEN);
    body(out);
    let mut body_len = out.len() - start - HEADER_LEN;
    if body_len > MAX_BODY_LEN {
        tracing::warn!(
            packet_type,
            body_len,
            "RTCP packet body cut to the 16-bit length limit"
        );
        out.truncate(start + HEADER_LEN + MAX_BODY_LEN);
        body_len = MAX_BODY_LEN;
    }
    let padding = (4 - body_len % 4) % 4;
    if padding > 0 {
        out.put_bytes(0, padding - 1);
        out.put_u8(padding as u8);
    }
    let words = ((body_len + padding) / 4) as u16;
    let padding_bit = if padding > 0 { 0x20 } else { 0 };
    out[start] = (VERSION << 6) | padding_bit | (count & 0x1f);
    out[start + 1] = packet_type;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: i64 = 2_208_988_800;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// 64-bit NTP timestamp (32.32 fixed point seconds since 1900, wrapping in 2036
/// as RFC 5905 eras do) for a wall-clock time. Times before 1900 give 0.
pub fn ntp_from_system_time(t: SystemTime) -> u64 {
    let (since_unix_secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(before) => {
            let d = before.duration();
            let (secs, nanos) = (d.as_secs() as i64, d.subsec_nanos());
            if nanos == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - nanos)
            }
        }
    };
    let Some(ntp_secs) = since_unix_secs
        .checked_add(NTP_UNIX_OFFSET_SECS)
        .filter(|s| *s >= 0)
    else {
        return 0;
    };
    let fraction = ((u64::from(nanos) << 32) + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
    ((ntp_secs as u64 & 0xffff_ffff) << 32) | fraction.min(0xffff_ffff)
}

/// Wall-clock time of an NTP timestamp. Following RFC 4330 3, a timestamp whose
/// top bit is clear is taken to be in era 1 (2036–2104), so times keep working
/// past the 2036 wrap (timestamps from 1900–1968 are never sent by live peers).
pub fn system_time_from_ntp(ntp: u64) -> SystemTime {
    let mut ntp_secs = (ntp >> 32) as i64;
    if ntp_secs & 0x8000_0000 == 0 {
        ntp_secs += 1 << 32;
    }
    let nanos = (((ntp & 0xffff_ffff) * NANOS_PER_SEC + (1 << 31)) >> 32) as u32;
    let since_unix = ntp_secs - NTP_UNIX_OFFSET_SECS;
    let whole = Duration::from_secs(since_unix.unsigned_abs());
    // Both ends are within ±2^33 s of 1970, which every platform's SystemTime holds.
    let base = if since_unix >= 0 {
        UNIX_EPOCH + whole
    } else {
        UNIX_EPOCH - whole
    };
    base + Duration::from_nanos(u64::from(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(numbers: &[u16]) -> Vec<SeqNo> {
        numbers.iter().copied().map(SeqNo::new).collect()
    }

    fn block(ssrc: u32, cumulative_lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc: Ssrc::new(ssrc),
            fraction_lost: 12,
            cumulative_lost,
            highest_sequence: 0x0001_fffe,
            jitter: 345,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        }
    }

    fn sender_report(reports: Vec<ReportBlock>) -> SenderReport {
        SenderReport {
            ssrc: Ssrc::new(0x1111_2222),
            ntp_time: 0xe8a1_0000_8000_0000,
            rtp_time: 90_000,
            packet_count: 42,
            octet_count: 42_000,
            reports,
        }
    }

    fn write_all(packets: &[RtcpPacket]) -> BytesMut {
        let mut out = BytesMut::new();
        packets.iter().for_each(|p| p.write_to(&mut out));
        out
    }

    fn round_trip(packets: &[RtcpPacket]) {
        let wire = write_all(packets);
        assert_eq!(wire.len() % 4, 0);
        assert_eq!(parse_compound(&wire).unwrap(), packets);
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(&[RtcpPacket::SenderReport(sender_report(vec![]))]);
        round_trip(&[RtcpPacket::SenderReport(sender_report(vec![
            block(1, -5),
            block(2, 0x7f_ffff),
        ]))]);
        round_trip(&[RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: Ssrc::new(7),
            reports: vec![],
        })]);
        round_trip(&[RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: Ssrc::new(7),
            reports: vec![block(3, -0x80_0000)],
        })]);
        round_trip(&[RtcpPacket::SourceDescription(Sdes::cname(
            Ssrc::new(5),
            "streamgate@example",
        ))]);
        round_trip(&[RtcpPacket::Goodbye(Goodbye {
            sources: vec![Ssrc::new(1), Ssrc::new(2)],
            reason: b"shutdown".to_vec(),
        })]);
        round_trip(&[RtcpPacket::Goodbye(Goodbye {
            sources: vec![Ssrc::new(3)],
            reason: vec![],
        })]);
        round_trip(&[RtcpPacket::Pli {
            sender_ssrc: Ssrc::new(1),
            media_ssrc: Ssrc::new(2),
        }]);
        round_trip(&[RtcpPacket::Fir {
            sender_ssrc: Ssrc::new(1),
            entries: vec![(Ssrc::new(2), 7), (Ssrc::new(3), 255)],
        }]);
        round_trip(&[RtcpPacket::Nack {
            sender_ssrc: Ssrc::new(1),
            media_ssrc: Ssrc::new(2),
            lost: seqs(&[100, 101, 116, 117, 5, 5, 65535, 0]),
        }]);
        round_trip(&[RtcpPacket::Unknown {
            packet_type: 204,
            count: 3,
            body: b"nameapp!".to_vec(),
        }]);
        // An unaligned body gets RTCP padding, which the parser strips again.
        round_trip(&[RtcpPacket::Unknown {
            packet_type: 207,
            count: 0,
            body: vec![1, 2, 3, 4, 5],
        }]);
    }

    #[test]
    fn compound_sender_report_with_sdes() {
        let packets = [
            RtcpPacket::SenderReport(sender_report(vec![block(9, 1)])),
            RtcpPacket::SourceDescription(Sdes {
                chunks: vec![
                    SdesChunk {
                        ssrc: Ssrc::new(0x1111_2222),
                        items: vec![
                            SdesItem {
                                kind: SDES_CNAME,
                                value: b"cam1".to_vec(),
                            },
                            SdesItem {
                                kind: 6,
                                value: b"streamgate".to_vec(),
                            },
                        ],
                    },
                    SdesChunk {
                        ssrc: Ssrc::new(3),
                        items: vec![],
                    },
                ],
            }),
        ];
        let wire = write_all(&packets);
        // SR: 4 + 24 + 24; SDES: 4 + (4 + 6 + 12 + 1 -> 24) + (4 + 1 -> 8)
        assert_eq!(wire.len(), 52 + 36);
        assert_eq!(parse_compound(&wire).unwrap(), packets);
    }

    #[test]
    fn ffmpeg_sender_report_from_capture() {
        // The second SR of fixtures/ffmpeg_h264_aac.pcap, UDP port 5005 (video RTCP).
        let wire = [
            0x80, 0xc8, 0x00, 0x06, 0x95, 0xc8, 0x32, 0x06, 0xee, 0xb2, 0x61, 0xee, 0xf2, 0xf1,
            0xa9, 0xfb, 0x97, 0xe5, 0xc7, 0xbb, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x03, 0x10, 0x2a,
        ];
        let sr = SenderReport {
            ssrc: Ssrc::new(0x95c8_3206),
            ntp_time: 0xeeb2_61ee_f2f1_a9fb,
            rtp_time: 0x97e5_c7bb,
            packet_count: 253,
            octet_count: 200_746,
            reports: vec![],
        };
        assert_eq!(
            parse_compound(&wire).unwrap(),
            [RtcpPacket::SenderReport(sr.clone())]
        );
        let wall = system_time_from_ntp(sr.ntp_time)
            .duration_since(UNIX_EPOCH)
            .unwrap();
        assert_eq!(wall.as_secs(), 0xeeb2_61ee - 2_208_988_800); // 2026-11-26, when it was captured
        assert_eq!(&write_all(&[RtcpPacket::SenderReport(sr)])[..], wire);
    }

    #[test]
    fn reduced_size_pli_is_accepted() {
        // RFC 5506: a lone PLI, not preceded by SR/RR. Bytes as a browser sends them.
        let wire = [0x81, 206, 0, 2, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78];
        let packets = parse_compound(&wire).unwrap();
        assert_eq!(
            packets,
            [RtcpPacket::Pli {
                sender_ssrc: Ssrc::new(1),
                media_ssrc: Ssrc::new(0x1234_5678)
            }]
        );
    }

    #[test]
    fn nack_pid_and_blp_expand_to_lost_sequence_numbers() {
        let wire = [
            0x81,
            205,
            0,
            4,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            2, //
            0,
            100,
            0b1000_0000,
            0b0000_0101, // PID 100, BLP bits 0, 2, 15
            0xff,
            0xff,
            0,
            1, // PID 65535, BLP bit 0 wraps to 0
        ];
        let packets = parse_compound(&wire).unwrap();
        let lost = seqs(&[100, 101, 103, 116, 65535, 0]);
        assert_eq!(
            packets,
            [RtcpPacket::Nack {
                sender_ssrc: Ssrc::new(1),
                media_ssrc: Ssrc::new(2),
                lost: lost.clone()
            }]
        );
        assert_eq!(
            nack_entries(&lost),
            [
                (SeqNo::new(100), 0b1000_0000_0000_0101),
                (SeqNo::new(65535), 1)
            ]
        );
    }

    #[test]
    fn unknown_feedback_formats_are_kept() {
        // PSFB FMT 15 (REMB) and RTPFB FMT 15 (transport-cc) are not modelled.
        let remb = RtcpPacket::Unknown {
            packet_type: TYPE_PSFB,
            count: 15,
            body: vec![0; 16],
        };
        let twcc = RtcpPacket::Unknown {
            packet_type: TYPE_RTPFB,
            count: 15,
            body: vec![1; 12],
        };
        round_trip(&[
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: Ssrc::new(1),
                reports: vec![],
            }),
            remb,
            twcc,
        ]);
    }

    #[test]
    fn long_lists_are_split_over_several_packets() {
        let blocks: Vec<_> = (0..40).map(|i| block(i, 0)).collect();
        let wire = write_all(&[RtcpPacket::SenderReport(sender_report(blocks.clone()))]);
        let parsed = parse_compound(&wire).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0],
            RtcpPacket::SenderReport(sender_report(blocks[..31].to_vec()))
        );
        assert_eq!(
            parsed[1],
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: Ssrc::new(0x1111_2222),
                reports: blocks[31..].to_vec()
            })
        );

        let sources: Vec<Ssrc> = (0..33).map(Ssrc::new).collect();
        let wire = write_all(&[RtcpPacket::Goodbye(Goodbye {
            sources: sources.clone(),
            reason: b"bye".to_vec(),
        })]);
        let expected = [
            RtcpPacket::Goodbye(Goodbye {
                sources: sources[..31].to_vec(),
                reason: vec![],
            }),
            RtcpPacket::Goodbye(Goodbye {
                sources: sources[31..].to_vec(),
                reason: b"bye".to_vec(),
            }),
        ];
        assert_eq!(parse_compound(&wire).unwrap(), expected);
    }

    #[test]
    fn padding_is_stripped_and_checked() {
        let mut wire = write_all(&[RtcpPacket::Pli {
            sender_ssrc: Ssrc::new(1),
            media_ssrc: Ssrc::new(2),
        }])
        .to_vec();
        wire[0] |= 0x20;
        wire[3] = 3;
        wire.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(
            parse_compound(&wire).unwrap(),
            [RtcpPacket::Pli {
                sender_ssrc: Ssrc::new(1),
                media_ssrc: Ssrc::new(2)
            }]
        );
        let last = wire.len() - 1;
        wire[last] = 13; // more than the 12-byte body
        assert!(matches!(
            parse_compound(&wire),
            Err(RtcpError::BadPadding {
                padding: 13,
                body_len: 12,
                ..
            })
        ));
        wire[last] = 9; // leaves 3 bytes, too few for a PLI
        assert!(matches!(
            parse_compound(&wire),
            Err(RtcpError::BodyTooShort {
                needed: 4,
                body_len: 3,
                ..
            })
        ));
        wire[last] = 0;
        assert!(matches!(
            parse_compound(&wire),
            Err(RtcpError::BadPadding { padding: 0, .. })
        ));
    }

    #[test]
    fn malformed_input_is_an_error() {
        let good = write_all(&[
            RtcpPacket::SenderReport(sender_report(vec![block(1, 0)])),
            RtcpPacket::SourceDescription(Sdes::cname(Ssrc::new(1), "a")),
        ]);
        assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
        // Every truncation but the one right after the SR is rejected, never a panic.
        for len in (1..good.len()).filter(|&len| len != 52) {
            assert!(parse_compound(&good[..len]).is_err(), "{len}");
        }
        let mut bad = good.to_vec();
        bad[0] = 0x41;
        assert_eq!(
            parse_compound(&bad),
            Err(RtcpError::BadVersion {
                offset: 0,
                version: 1
            })
        );
        // Length field lies: claims more words than the buffer holds.
        let mut bad = good.to_vec();
        bad[3] = 0xff;
        assert!(matches!(
            parse_compound(&bad),
            Err(RtcpError::LengthOverrun {
                offset: 0,
                packet_type: 200,
                ..
            })
        ));
        // Count lies: two report blocks announced, one present.
        let mut bad = good.to_vec();
        bad[0] = 0x82;
        assert!(matches!(
            parse_compound(&bad),
            Err(RtcpError::BodyTooShort {
                packet_type: 200,
                ..
            })
        ));
        // SDES item length runs past the chunk.
        let mut bad = good.to_vec();
        bad[52 + 9] = 200;
        assert!(matches!(
            parse_compound(&bad),
            Err(RtcpError::BodyTooShort {
                offset: 52,
                packet_type: 202,
                ..
            })
        ));
        // BYE reason length runs past the packet.
        let bye = [0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'a', b'b', b'c'];
        assert!(matches!(
            parse_compound(&bye),
            Err(RtcpError::BodyTooShort {
                packet_type: 203,
                ..
            })
        ));
        // PLI with no media SSRC.
        let pli = [0x81, 206, 0, 1, 0, 0, 0, 1];
        assert!(matches!(
            parse_compound(&pli),
            Err(RtcpError::BodyTooShort {
                needed: 8,
                body_len: 4,
                ..
            })
        ));
    }

    #[test]
    fn ntp_conversions() {
        assert_eq!(ntp_from_system_time(UNIX_EPOCH), 2_208_988_800 << 32);
        let half = UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(
            ntp_from_system_time(half),
            ((2_208_988_800 + 1) << 32) | 0x8000_0000
        );
        assert_eq!(
            system_time_from_ntp(((2_208_988_800 + 1) << 32) | 0x8000_0000),
            half
        );
        // Round trip to the nanosecond (one NTP fraction unit is ~0.23 ns).
        let now = UNIX_EPOCH + Duration::new(1_764_000_000, 123_456_789);
        assert_eq!(system_time_from_ntp(ntp_from_system_time(now)), now);
        // Across the 2036 era wrap: NTP seconds restart at 0.
        let wrap = UNIX_EPOCH + Duration::from_secs((1 << 32) - 2_208_988_800 + 5);
        assert_eq!(ntp_from_system_time(wrap) >> 32, 5);
        assert_eq!(system_time_from_ntp(ntp_from_system_time(wrap)), wrap);
        assert_eq!(
            ntp_from_system_time(UNIX_EPOCH - Duration::from_secs(3_000_000_000)),
            0
        );
    }
}
