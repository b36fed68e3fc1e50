//! The RTP header's identifiers as their own types: an SSRC, a payload type and
//! a sequence number are all small integers on the wire, and newtypes keep one
//! from being passed where another (or a timestamp) is expected. Raw integers
//! appear only where a header is read or written.

use std::fmt;

/// Synchronization source (RFC 3550 5.1): which sender's numbering and clock a
/// packet or report belongs to. A newtype so an SSRC cannot be passed where a
/// timestamp or a count is expected.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ssrc(u32);

impl Ssrc {
    pub const fn new(ssrc: u32) -> Ssrc {
        Ssrc(ssrc)
    }

    /// The value as written on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// Eight upper-case hex digits, as RTSP `Transport` headers write it.
impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}", self.0)
    }
}

impl fmt::Debug for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ssrc({:08X})", self.0)
    }
}

/// RTP payload type: 7 bits, 0..=127 (the header's eighth bit is the marker).
/// Checked where it comes from text (SDP), so a value that does not fit the
/// header is rejected instead of being silently masked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PayloadType(u8);

impl PayloadType {
    /// `None` above 127.
    pub const fn new(pt: u8) -> Option<PayloadType> {
        if pt <= 0x7f {
            Some(PayloadType(pt))
        } else {
            None
        }
    }

    /// The payload type of a header byte (its marker bit dropped).
    pub(crate) const fn from_header_byte(byte: u8) -> PayloadType {
        PayloadType(byte & 0x7f)
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadType({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_type_is_seven_bits() {
        assert_eq!(PayloadType::new(127).map(PayloadType::get), Some(127));
        assert_eq!(PayloadType::new(128), None);
        assert_eq!(PayloadType::from_header_byte(0x80 | 96).get(), 96);
        assert_eq!(PayloadType::new(96).unwrap().to_string(), "96");
    }

    #[test]
    fn ssrc_displays_as_rtsp_writes_it() {
        assert_eq!(Ssrc::new(0xab).to_string(), "000000AB");
        assert_eq!(format!("{:?}", Ssrc::new(0xdead_beef)), "Ssrc(DEADBEEF)");
    }
}
