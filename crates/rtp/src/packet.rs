//! RTP packet view (RFC 3550) over a received `Bytes` buffer.
//!
//! [`RtpPacket::parse`] checks every length the peer sent (CSRC count, header
//! extension length, padding) once; afterwards the accessors only index into
//! ranges already proven in bounds, and [`RtpPacket::payload`] is a cheap
//! `Bytes` slice of the received buffer, never a copy.
//!
//! Hand-written rather than taken from `webrtc-rtp` or `rtp-rs`: the former
//! allocates `Vec`s of CSRCs and extensions per packet and drops the raw buffer
//! that pass-through outputs want, the latter borrows a `&[u8]` and cannot hand
//! out `Bytes` that outlive the parse.

use bytes::{BufMut, Bytes, BytesMut};

use crate::ids::{PayloadType, SeqNo, Ssrc};

/// Length of the fixed part of every RTP header.
const FIXED_HEADER_LEN: usize = 12;
/// The most CSRCs a header can list (4-bit count).
const MAX_CSRCS: usize = 15;
/// `defined by profile` value of an RFC 8285 one-byte header extension.
pub const ONE_BYTE_EXTENSION_PROFILE: u16 = 0xBEDE;
/// `defined by profile` value of an RFC 8285 two-byte header extension; the low
/// four bits are application bits and may be anything.
pub const TWO_BYTE_EXTENSION_PROFILE: u16 = 0x1000;
/// Mask selecting the part of the profile that identifies the two-byte form.
const TWO_BYTE_PROFILE_MASK: u16 = 0xFFF0;

/// Why a buffer is not a valid RTP packet (or a builder's fields cannot be encoded).
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RtpError {
    #[error("RTP packet of {len} bytes is shorter than the 12-byte fixed header")]
    TooShort { len: usize },
    #[error("RTP version {version}, expected 2")]
    BadVersion { version: u8 },
    #[error("RTP packet seq {sequence_number}: {csrc_count} CSRCs need {needed} header bytes, packet has {len}")]
    CsrcsTruncated {
        sequence_number: SeqNo,
        csrc_count: usize,
        needed: usize,
        len: usize,
    },
    #[error(
        "RTP packet seq {sequence_number}: header extension needs {needed} bytes, packet has {len}"
    )]
    ExtensionTruncated {
        sequence_number: SeqNo,
        needed: usize,
        len: usize,
    },
    #[error("RTP packet seq {sequence_number}: padding count {padding} is invalid for {available} bytes after the header")]
    BadPadding {
        sequence_number: SeqNo,
        padding: usize,
        available: usize,
    },
    #[error("{count} CSRCs given, an RTP header holds at most {MAX_CSRCS}")]
    TooManyCsrcs { count: usize },
    #[error("header extension of {len} bytes exceeds the 65535-word limit")]
    ExtensionTooLong { len: usize },
    #[error("header extension element id {id} with {len} data bytes does not fit the {form} form")]
    BadExtensionElement {
        id: u8,
        len: usize,
        form: &'static str,
    },
}

/// A validated RTP packet. Cloning is cheap (a `Bytes` refcount plus offsets).
#[derive(Clone, Debug)]
pub struct RtpPacket {
    raw: Bytes,
    /// Offset of the 4-byte extension header, when the X bit is set.
    extension_start: Option<usize>,
    payload_start: usize,
    payload_end: usize,
}

impl RtpPacket {
    /// Validates `raw` as an RTP packet: version 2, CSRC list, header extension
    /// and padding all within the buffer. Takes ownership so the payload can be
    /// handed out without copying.
    pub fn parse(raw: Bytes) -> Result<RtpPacket, RtpError> {
        let len = raw.len();
        if len < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort { len });
        }
        let version = raw[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion { version });
        }
        let has_padding = raw[0] & 0x20 != 0;
        let has_extension = raw[0] & 0x10 != 0;
        let csrc_count = usize::from(raw[0] & 0x0f);
        let sequence_number = SeqNo::new(u16::from_be_bytes([raw[2], raw[3]]));

        // Bounded by 12 + 15 * 4 + 4 + 65535 * 4: no overflow on any target.
        let csrc_end = FIXED_HEADER_LEN + csrc_count * 4;
        if csrc_end > len {
            return Err(RtpError::CsrcsTruncated {
                sequence_number,
                csrc_count,
                needed: csrc_end,
                len,
            });
        }
        let (extension_start, header_end) = if has_extension {
            let words = match raw.get(csrc_end + 2..csrc_end + 4) {
                Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
                None => {
                    return Err(RtpError::ExtensionTruncated {
                        sequence_number,
                        needed: csrc_end + 4,
                        len,
                    })
                }
            };
            let end = csrc_end + 4 + words * 4;
            if end > len {
                return Err(RtpError::ExtensionTruncated {
                    sequence_number,
                    needed: end,
                    len,
                });
            }
            (Some(csrc_end), end)
        } else {
            (None, csrc_end)
        };
        let available = len - header_end;
        let padding = if has_padding {
            // RFC 3550 5.1: the last octet counts the padding, itself included.
            let padding = usize::from(raw[len - 1]);
            if padding == 0 || padding > available {
                return Err(RtpError::BadPadding {
                    sequence_number,
                    padding,
                    available,
                });
            }
            padding
        } else {
            0
        };
        Ok(RtpPacket {
            raw,
            extension_start,
            payload_start: header_end,
            payload_end: len - padding,
        })
    }

    pub fn marker(&self) -> bool {
        self.raw[1] & 0x80 != 0
    }

    pub fn payload_type(&self) -> PayloadType {
        PayloadType::from_header_byte(self.raw[1])
    }

    pub fn sequence_number(&self) -> SeqNo {
        SeqNo::new(u16::from_be_bytes([self.raw[2], self.raw[3]]))
    }

    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.raw[4], self.raw[5], self.raw[6], self.raw[7]])
    }

    pub fn ssrc(&self) -> Ssrc {
        Ssrc::new(u32::from_be_bytes([
            self.raw[8],
            self.raw[9],
            self.raw[10],
            self.raw[11],
        ]))
    }

    /// Contributing sources, in header order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        let count = usize::from(self.raw[0] & 0x0f);
        self.raw[FIXED_HEADER_LEN..FIXED_HEADER_LEN + count * 4]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The header extension, when the X bit is set.
    pub fn extension(&self) -> Option<HeaderExtension<'_>> {
        let start = self.extension_start?;
        Some(HeaderExtension {
            profile: u16::from_be_bytes([self.raw[start], self.raw[start + 1]]),
            data: &self.raw[start + 4..self.payload_start],
        })
    }

    /// Number of padding bytes at the end of the packet (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        self.raw.len() - self.payload_end
    }

    /// The payload as a slice of the received buffer (no copy). May be empty.
    pub fn payload(&self) -> Bytes {
        self.raw.slice(self.payload_start..self.payload_end)
    }

    pub fn payload_slice(&self) -> &[u8] {
        &self.raw[self.payload_start..self.payload_end]
    }

    /// The whole packet as received, header and padding included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }
}

/// A header extension: the 16-bit `defined by profile` field and its data
/// (a whole number of 32-bit words, as the length field said).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderExtension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

impl<'a> HeaderExtension<'a> {
    /// Iterates RFC 8285 elements when the profile is the one-byte (`0xBEDE`) or
    /// two-byte (`0x100X`) form; other profiles yield nothing.
    ///
    /// Padding bytes are skipped. Iteration stops at a one-byte id 15 (RFC 8285
    /// 4.2: "stop processing") or at an element whose length runs past the data,
    /// so a malformed element never hides the media payload behind an error.
    pub fn elements(&self) -> ExtensionElements<'a> {
        let form = if self.profile == ONE_BYTE_EXTENSION_PROFILE {
            Some(ElementForm::OneByte)
        } else if self.profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_EXTENSION_PROFILE {
            Some(ElementForm::TwoByte)
        } else {
            None
        };
        ExtensionElements {
            form,
            rest: self.data,
        }
    }
}

/// One RFC 8285 header extension element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtensionElement<'a> {
    /// Local identifier negotiated in SDP (`a=extmap`), 1..=14 or 1..=255.
    pub id: u8,
    pub data: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElementForm {
    OneByte,
    TwoByte,
}

/// Iterator over RFC 8285 elements; see [`HeaderExtension::elements`].
#[derive(Clone, Debug)]
pub struct ExtensionElements<'a> {
    form: Option<ElementForm>,
    rest: &'a [u8],
}

impl<'a> Iterator for ExtensionElements<'a> {
    type Item = ExtensionElement<'a>;

    fn next(&mut self) -> Option<ExtensionElement<'a>> {
        let form = self.form?;
        loop {
            let (&first, after) = self.rest.split_first()?;
            // Id 0 is padding; in the one-byte form its length nibble is ignored
            // (as libwebrtc does), so the byte alone is skipped.
            let padding = match form {
                ElementForm::OneByte => first >> 4 == 0,
                ElementForm::TwoByte => first == 0,
            };
            if padding {
                self.rest = after;
                continue;
            }
            let (id, len, data_start) = match form {
                ElementForm::OneByte => {
                    let id = first >> 4;
                    if id == 15 {
                        self.rest = &[];
                        return None;
                    }
                    (id, usize::from(first & 0x0f) + 1, 1)
                }
                ElementForm::TwoByte => (first, usize::from(*after.first()?), 2),
            };
            let Some(data) = self.rest.get(data_start..data_start + len) else {
                self.rest = &[];
                return None;
            };
            self.rest = &self.rest[data_start + len..];
            return Some(ExtensionElement { id, data });
        }
    }
}

/// Encodes RFC 8285 elements in the one-byte form (ids 1..=14, 1..=16 data
/// bytes each); returns the `(profile, data)` pair for [`RtpPacketBuilder::extension`].
pub fn one_byte_extension(elements: &[ExtensionElement<'_>]) -> Result<(u16, Bytes), RtpError> {
    let mut data = BytesMut::new();
    for e in elements {
        if !(1..=14).contains(&e.id) || !(1..=16).contains(&e.data.len()) {
            return Err(RtpError::BadExtensionElement {
                id: e.id,
                len: e.data.len(),
                form: "one-byte",
            });
        }
        // The range checks above make `len - 1` fit in the low nibble.
        data.put_u8((e.id << 4) | (e.data.len() - 1) as u8);
        data.put_slice(e.data);
    }
    Ok((ONE_BYTE_EXTENSION_PROFILE, data.freeze()))
}

/// Encodes RFC 8285 elements in the two-byte form (ids 1..=255, up to 255 data
/// bytes each); returns the `(profile, data)` pair for [`RtpPacketBuilder::extension`].
pub fn two_byte_extension(elements: &[ExtensionElement<'_>]) -> Result<(u16, Bytes), RtpError> {
    let mut data = BytesMut::new();
    for e in elements {
        let len = u8::try_from(e.data.len()).ok().filter(|_| e.id != 0);
        let Some(len) = len else {
            return Err(RtpError::BadExtensionElement {
                id: e.id,
                len: e.data.len(),
                form: "two-byte",
            });
        };
        data.put_u8(e.id);
        data.put_u8(len);
        data.put_slice(e.data);
    }
    Ok((TWO_BYTE_EXTENSION_PROFILE, data.freeze()))
}

/// Serializes an RTP packet with any header features; used by tests and by
/// packetizers that need more than [`crate::OutPacket`]'s fixed header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpPacketBuilder {
    pub payload_type: PayloadType,
    pub marker: bool,
    pub sequence_number: SeqNo,
    pub timestamp: u32,
    pub ssrc: Ssrc,
    pub csrcs: Vec<u32>,
    /// `(profile, data)`; data is zero-padded to a 32-bit boundary, which
    /// RFC 8285 readers skip as padding bytes.
    pub extension: Option<(u16, Bytes)>,
    /// Padding bytes to append (0 = P bit clear); the last one holds the count.
    pub padding: u8,
    pub payload: Bytes,
}

impl RtpPacketBuilder {
    pub fn build(&self) -> Result<Bytes, RtpError> {
        if self.csrcs.len() > MAX_CSRCS {
            return Err(RtpError::TooManyCsrcs {
                count: self.csrcs.len(),
            });
        }
        let extension_words = match &self.extension {
            Some((_, data)) => {
                let words = u16::try_from(data.len().div_ceil(4));
                Some(words.map_err(|_| RtpError::ExtensionTooLong { len: data.len() })?)
            }
            None => None,
        };
        let extension_len = extension_words.map_or(0, |w| 4 + usize::from(w) * 4);
        let mut out = BytesMut::with_capacity(
            FIXED_HEADER_LEN
                + self.csrcs.len() * 4
                + extension_len
                + self.payload.len()
                + usize::from(self.padding),
        );
        let padding_bit = if self.padding > 0 { 0x20 } else { 0 };
        let extension_bit = if self.extension.is_some() { 0x10 } else { 0 };
        // TooManyCsrcs was checked above, so the count fits in four bits.
        out.put_u8(0x80 | padding_bit | extension_bit | self.csrcs.len() as u8);
        out.put_u8(self.payload_type.get() | if self.marker { 0x80 } else { 0 });
        out.put_u16(self.sequence_number.get());
        out.put_u32(self.timestamp);
        out.put_u32(self.ssrc.get());
        for &csrc in &self.csrcs {
            out.put_u32(csrc);
        }
        if let (Some((profile, data)), Some(words)) = (&self.extension, extension_words) {
            out.put_u16(*profile);
            out.put_u16(words);
            out.put_slice(data);
            out.put_bytes(0, usize::from(words) * 4 - data.len());
        }
        out.put_slice(&self.payload);
        if self.padding > 0 {
            out.put_bytes(0, usize::from(self.padding) - 1);
            out.put_u8(self.padding);
        }
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic() -> RtpPacketBuilder {
        RtpPacketBuilder {
            payload_type: PayloadType::new(96).unwrap(),
            marker: true,
            sequence_number: SeqNo::new(0xfffe),
            timestamp: 0x1234_5678,
            ssrc: Ssrc::new(0xdead_beef),
            payload: Bytes::from_static(b"hello"),
            ..Default::default()
        }
    }

    #[test]
    fn fixed_header_fields_and_zero_copy_payload() {
        let raw = basic().build().unwrap();
        let pkt = RtpPacket::parse(raw.clone()).unwrap();
        assert!(pkt.marker());
        assert_eq!(pkt.payload_type().get(), 96);
        assert_eq!(pkt.sequence_number(), SeqNo::new(0xfffe));
        assert_eq!(pkt.timestamp(), 0x1234_5678);
        assert_eq!(pkt.ssrc().get(), 0xdead_beef);
        assert_eq!(pkt.csrcs().count(), 0);
        assert!(pkt.extension().is_none());
        assert_eq!(pkt.padding_len(), 0);
        assert_eq!(pkt.payload_slice(), b"hello");
        // The payload points into the received buffer: no copy was made.
        assert_eq!(pkt.payload().as_ptr(), raw[12..].as_ptr());
        assert_eq!(pkt.raw(), &raw);
    }

    #[test]
    fn csrcs_are_listed_in_order() {
        let raw = RtpPacketBuilder {
            csrcs: vec![1, 2, 0xffff_ffff],
            ..basic()
        }
        .build()
        .unwrap();
        let pkt = RtpPacket::parse(raw).unwrap();
        assert_eq!(pkt.csrcs().collect::<Vec<_>>(), [1, 2, 0xffff_ffff]);
        assert_eq!(pkt.payload_slice(), b"hello");
    }

    #[test]
    fn padding_is_stripped_from_payload() {
        let raw = RtpPacketBuilder {
            padding: 7,
            ..basic()
        }
        .build()
        .unwrap();
        assert_eq!(raw.len(), 12 + 5 + 7);
        let pkt = RtpPacket::parse(raw).unwrap();
        assert_eq!(pkt.padding_len(), 7);
        assert_eq!(pkt.payload_slice(), b"hello");
    }

    #[test]
    fn padding_only_packet_has_empty_payload() {
        let raw = RtpPacketBuilder {
            padding: 4,
            payload: Bytes::new(),
            ..basic()
        }
        .build()
        .unwrap();
        let pkt = RtpPacket::parse(raw).unwrap();
        assert_eq!(pkt.padding_len(), 4);
        assert!(pkt.payload().is_empty());
    }

    #[test]
    fn padding_longer_than_payload_is_rejected() {
        let mut raw = BytesMut::from(
            &RtpPacketBuilder {
                padding: 2,
                ..basic()
            }
            .build()
            .unwrap()[..],
        );
        let last = raw.len() - 1;
        raw[last] = 8; // 5 payload + 2 padding bytes follow the header, not 8
        let err = RtpPacket::parse(raw.freeze()).unwrap_err();
        assert_eq!(
            err,
            RtpError::BadPadding {
                sequence_number: SeqNo::new(0xfffe),
                padding: 8,
                available: 7
            }
        );
    }

    #[test]
    fn zero_padding_count_is_rejected() {
        let mut raw = BytesMut::from(
            &RtpPacketBuilder {
                padding: 1,
                ..basic()
            }
            .build()
            .unwrap()[..],
        );
        let last = raw.len() - 1;
        raw[last] = 0;
        assert!(matches!(
            RtpPacket::parse(raw.freeze()),
            Err(RtpError::BadPadding { padding: 0, .. })
        ));
    }

    #[test]
    fn padding_bit_on_bare_header_is_rejected() {
        let mut raw = BytesMut::from(
            &RtpPacketBuilder {
                payload: Bytes::new(),
                ..basic()
            }
            .build()
            .unwrap()[..],
        );
        raw[0] |= 0x20; // the last header byte (an SSRC byte, 0xef) would be read as the count
        assert!(matches!(
            RtpPacket::parse(raw.freeze()),
            Err(RtpError::BadPadding { available: 0, .. })
        ));
    }

    #[test]
    fn zero_length_payload() {
        let raw = RtpPacketBuilder {
            payload: Bytes::new(),
            ..basic()
        }
        .build()
        .unwrap();
        let pkt = RtpPacket::parse(raw).unwrap();
        assert!(pkt.payload().is_empty());
        assert!(pkt.payload_slice().is_empty());
    }

    #[test]
    fn one_byte_extension_elements() {
        let elements = [
            ExtensionElement {
                id: 1,
                data: &[0xaa],
            },
            ExtensionElement {
                id: 3,
                data: &[1, 2, 3],
            },
            ExtensionElement {
                id: 14,
                data: &[7; 16],
            },
        ];
        let extension = Some(one_byte_extension(&elements).unwrap());
        let raw = RtpPacketBuilder {
            csrcs: vec![9],
            extension,
            ..basic()
        }
        .build()
        .unwrap();
        let pkt = RtpPacket::parse(raw).unwrap();
        let ext = pkt.extension().unwrap();
        assert_eq!(ext.profile, ONE_BYTE_EXTENSION_PROFILE);
        assert_eq!(ext.data.len() % 4, 0);
        assert_eq!(ext.elements().collect::<Vec<_>>(), elements);
        assert_eq!(pkt.csrcs().collect::<Vec<_>>(), [9]);
        assert_eq!(pkt.payload_slice(), b"hello");
    }

    #[test]
    fn one_byte_extension_skips_padding_and_stops_at_id_15() {
        let data = [0, 0x05, 0x10, 0x55, 0, 0xf0, 0x20, 0x66];
        let ext = HeaderExtension {
            profile: ONE_BYTE_EXTENSION_PROFILE,
            data: &data,
        };
        assert_eq!(
            ext.elements().collect::<Vec<_>>(),
            [ExtensionElement {
                id: 1,
                data: &[0x55]
            }]
        );
    }

    #[test]
    fn two_byte_extension_elements_including_empty_ones() {
        let big = [5u8; 255];
        let elements = [
            ExtensionElement { id: 200, data: &[] },
            ExtensionElement { id: 1, data: &big },
            ExtensionElement {
                id: 17,
                data: &[1, 2],
            },
        ];
        let (_, data) = two_byte_extension(&elements).unwrap();
        // Application bits in the low nibble keep the two-byte form.
        let extension = Some((TWO_BYTE_EXTENSION_PROFILE | 0x5, data));
        let raw = RtpPacketBuilder {
            extension,
            ..basic()
        }
        .build()
        .unwrap();
        let pkt = RtpPacket::parse(raw).unwrap();
        assert_eq!(
            pkt.extension().unwrap().elements().collect::<Vec<_>>(),
            elements
        );
        assert_eq!(pkt.payload_slice(), b"hello");
    }

    #[test]
    fn truncated_extension_element_ends_iteration() {
        // The second element claims 4 data bytes where 3 are left.
        let one = HeaderExtension {
            profile: ONE_BYTE_EXTENSION_PROFILE,
            data: &[0x12, 1, 2, 3, 0x13, 1, 2, 0],
        };
        assert_eq!(
            one.elements().collect::<Vec<_>>(),
            [ExtensionElement {
                id: 1,
                data: &[1, 2, 3]
            }]
        );
        let one = HeaderExtension {
            profile: ONE_BYTE_EXTENSION_PROFILE,
            data: &[0x33, 1, 2, 3],
        };
        assert_eq!(one.elements().count(), 0);
        let two = HeaderExtension {
            profile: TWO_BYTE_EXTENSION_PROFILE,
            data: &[4, 9, 1, 2],
        };
        assert_eq!(two.elements().count(), 0);
        let two = HeaderExtension {
            profile: TWO_BYTE_EXTENSION_PROFILE,
            data: &[0, 0, 0, 4],
        };
        assert_eq!(two.elements().count(), 0);
    }

    #[test]
    fn other_extension_profiles_expose_raw_data_only() {
        let extension = Some((0x1234, Bytes::from_static(&[1, 2, 3, 4, 5])));
        let raw = RtpPacketBuilder {
            extension,
            ..basic()
        }
        .build()
        .unwrap();
        let pkt = RtpPacket::parse(raw).unwrap();
        let ext = pkt.extension().unwrap();
        assert_eq!(ext.profile, 0x1234);
        assert_eq!(ext.data, [1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(ext.elements().count(), 0);
        assert_eq!(pkt.payload_slice(), b"hello");
    }

    #[test]
    fn lying_extension_length_is_rejected() {
        let extension =
            Some(one_byte_extension(&[ExtensionElement { id: 1, data: &[1] }]).unwrap());
        let mut raw = BytesMut::from(
            &RtpPacketBuilder {
                extension,
                ..basic()
            }
            .build()
            .unwrap()[..],
        );
        raw[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        let err = RtpPacket::parse(raw.freeze()).unwrap_err();
        assert_eq!(
            err,
            RtpError::ExtensionTruncated {
                sequence_number: SeqNo::new(0xfffe),
                needed: 16 + 0xffff * 4,
                len: 25
            }
        );
    }

    #[test]
    fn extension_header_cut_short_is_rejected() {
        let raw = Bytes::from_static(&[0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde]);
        assert!(matches!(
            RtpPacket::parse(raw),
            Err(RtpError::ExtensionTruncated {
                needed: 16,
                len: 14,
                ..
            })
        ));
    }

    #[test]
    fn truncated_headers_are_rejected() {
        let full = RtpPacketBuilder {
            csrcs: vec![1, 2],
            ..basic()
        }
        .build()
        .unwrap();
        for len in 0..12 {
            assert_eq!(
                RtpPacket::parse(full.slice(..len)).unwrap_err(),
                RtpError::TooShort { len }
            );
        }
        for len in 12..20 {
            assert!(matches!(
                RtpPacket::parse(full.slice(..len)),
                Err(RtpError::CsrcsTruncated { csrc_count: 2, .. })
            ));
        }
        assert!(RtpPacket::parse(full.slice(..20))
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn versions_other_than_2_are_rejected() {
        for version in [0u8, 1, 3] {
            let mut raw = BytesMut::from(&basic().build().unwrap()[..]);
            raw[0] = (raw[0] & 0x3f) | (version << 6);
            assert_eq!(
                RtpPacket::parse(raw.freeze()).unwrap_err(),
                RtpError::BadVersion { version }
            );
        }
    }

    #[test]
    fn builder_rejects_what_cannot_be_encoded() {
        let too_many = RtpPacketBuilder {
            csrcs: vec![0; 16],
            ..basic()
        };
        assert_eq!(
            too_many.build().unwrap_err(),
            RtpError::TooManyCsrcs { count: 16 }
        );
        let huge = RtpPacketBuilder {
            extension: Some((0, Bytes::from(vec![0; 65536 * 4]))),
            ..basic()
        };
        assert!(matches!(
            huge.build(),
            Err(RtpError::ExtensionTooLong { .. })
        ));
        assert!(one_byte_extension(&[ExtensionElement { id: 15, data: &[1] }]).is_err());
        assert!(one_byte_extension(&[ExtensionElement { id: 1, data: &[] }]).is_err());
        assert!(one_byte_extension(&[ExtensionElement {
            id: 1,
            data: &[0; 17]
        }])
        .is_err());
        assert!(two_byte_extension(&[ExtensionElement { id: 0, data: &[1] }]).is_err());
        assert!(two_byte_extension(&[ExtensionElement {
            id: 1,
            data: &[0; 256]
        }])
        .is_err());
    }
}
