//! The RTP header's identifiers as their own types: an SSRC, a payload type and
//! a sequence number are all small integers on the wire, and newtypes keep one
//! from being passed where another (or a timestamp) is expected. Raw integers
//! appear only where a header is read or written. A receiver's extended
//! sequence number ([`ExtSeqNo`]) is a type of its own too: it orders packets,
//! the 16-bit [`SeqNo`] does not.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

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

/// RTP sequence number (RFC 3550 5.1): 16 bits that wrap from 65535 to 0, so
/// two of them have no order of their own. Compare them by their distance
/// ([`SeqNo::diff`]) or extend them ([`ExtSeqNo::extend`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct SeqNo(u16);

impl SeqNo {
    pub const fn new(seq: u16) -> SeqNo {
        SeqNo(seq)
    }

    /// The value as written on the wire.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The number after this one: 0 follows 65535.
    pub const fn next(self) -> SeqNo {
        SeqNo(self.0.wrapping_add(1))
    }

    /// `n` numbers on, modulo 2^16.
    pub const fn wrapping_add(self, n: u16) -> SeqNo {
        SeqNo(self.0.wrapping_add(n))
    }

    /// How many numbers on from `earlier` this one is, modulo 2^16: the span
    /// from `earlier` counting forward only (0..=65535).
    pub const fn wrapping_sub(self, earlier: SeqNo) -> u16 {
        self.0.wrapping_sub(earlier.0)
    }

    /// Signed distance from `other` the short way round: positive when this
    /// number comes after `other`, negative when before (-32768..=32767).
    pub const fn diff(self, other: SeqNo) -> i16 {
        self.wrapping_sub(other) as i16
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Extended sequence number (RFC 3550 A.1): a [`SeqNo`] plus 65536 for every
/// wrap the receiver counted, so it never wraps and orders packets. Only a
/// receiver makes one, from the first number it saw (`From<SeqNo>`, no wrap
/// counted yet) and then by [`ExtSeqNo::extend`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ExtSeqNo(u64);

/// [`ExtSeqNo::extend`] of a number sent before extended number 0: the
/// reference is still in its first cycle and the packet precedes it by more
/// than the reference's own value, i.e. it is older than the first packet the
/// numbering started from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Before {
    /// How far before 0 it is: 1 for the number just before (1..=32768).
    pub by: u16,
}

impl ExtSeqNo {
    pub const fn new(extended: u64) -> ExtSeqNo {
        ExtSeqNo(extended)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The 16 bits written on the wire.
    pub const fn seq(self) -> SeqNo {
        // Truncation drops the wrap count, which is the intent.
        SeqNo(self.0 as u16)
    }

    /// `seq` extended to the number nearest this one (at most 32768 away
    /// either side), so a wrap from 65535 to 0 goes on to 65536.
    pub fn extend(self, seq: SeqNo) -> Result<ExtSeqNo, Before> {
        let delta = seq.diff(self.seq());
        let back = u64::from(delta.unsigned_abs());
        if delta < 0 && back > self.0 {
            // back - self.0 <= 32768 because back is.
            return Err(Before {
                by: (back - self.0) as u16,
            });
        }
        Ok(ExtSeqNo(self.0.saturating_add_signed(i64::from(delta))))
    }
}

impl From<SeqNo> for ExtSeqNo {
    fn from(seq: SeqNo) -> ExtSeqNo {
        ExtSeqNo(u64::from(seq.0))
    }
}

/// `n` numbers later.
impl Add<u64> for ExtSeqNo {
    type Output = ExtSeqNo;

    fn add(self, n: u64) -> ExtSeqNo {
        ExtSeqNo(self.0 + n)
    }
}

impl AddAssign<u64> for ExtSeqNo {
    fn add_assign(&mut self, n: u64) {
        self.0 += n;
    }
}

/// How many numbers `earlier` comes before `self`; `earlier` must not be later.
impl Sub for ExtSeqNo {
    type Output = u64;

    fn sub(self, earlier: ExtSeqNo) -> u64 {
        self.0 - earlier.0
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

    #[test]
    fn sequence_numbers_wrap_from_65535_to_0() {
        assert_eq!(SeqNo::new(65_535).next(), SeqNo::new(0));
        assert_eq!(SeqNo::new(7).next(), SeqNo::new(8));
        assert_eq!(SeqNo::new(65_530).wrapping_add(10), SeqNo::new(4));
        assert_eq!(SeqNo::new(4).wrapping_sub(SeqNo::new(65_530)), 10);
        assert_eq!(SeqNo::new(65_530).wrapping_sub(SeqNo::new(4)), 65_526);
        assert_eq!(SeqNo::new(1001).to_string(), "1001");
    }

    #[test]
    fn distance_is_signed_and_short_way_round() {
        let (a, b) = (SeqNo::new(65_534), SeqNo::new(2));
        assert_eq!(b.diff(a), 4, "across the wrap");
        assert_eq!(a.diff(b), -4);
        assert_eq!(a.diff(a), 0);
        assert_eq!(SeqNo::new(32_767).diff(SeqNo::new(0)), 32_767);
        assert_eq!(SeqNo::new(32_768).diff(SeqNo::new(0)), -32_768);
        assert_eq!(SeqNo::new(0).diff(SeqNo::new(32_768)), -32_768);
    }

    #[test]
    fn extension_counts_wraps_both_ways() {
        // Forward through three wraps, 30 000 at a time (less than half a cycle).
        let mut extended = ExtSeqNo::from(SeqNo::new(65_000));
        let mut seq = SeqNo::new(65_000);
        for _ in 0..7 {
            seq = seq.wrapping_add(30_000);
            let next = extended.extend(seq).unwrap();
            assert_eq!(next - extended, 30_000);
            assert_eq!(next.seq(), seq);
            extended = next;
        }
        assert_eq!(extended, ExtSeqNo::new(65_000 + 7 * 30_000));
        assert_eq!(extended.get() >> 16, 4, "four wraps counted");
        // A late packet from before the last wrap extends below it.
        let last_wrap = ExtSeqNo::new(4 << 16);
        let late = (last_wrap + 3).extend(SeqNo::new(65_534)).unwrap();
        assert_eq!(late, ExtSeqNo::new((4 << 16) - 2));
        // Exactly half a cycle away counts as behind, as `diff` does.
        assert_eq!(
            ExtSeqNo::new(100_000).extend(SeqNo::new(100_000u32.wrapping_add(32_768) as u16)),
            Ok(ExtSeqNo::new(100_000 - 32_768))
        );
        let mut n = ExtSeqNo::new(9);
        n += 2;
        assert_eq!(n, ExtSeqNo::new(9) + 2);
    }

    #[test]
    fn a_number_from_before_the_first_is_explicit() {
        let first = ExtSeqNo::from(SeqNo::new(5));
        assert_eq!(first.extend(SeqNo::new(0)), Ok(ExtSeqNo::new(0)));
        assert_eq!(first.extend(SeqNo::new(65_535)), Err(Before { by: 1 }));
        assert_eq!(first.extend(SeqNo::new(65_534)), Err(Before { by: 2 }));
        // The farthest back a number can extend: half a cycle before the reference.
        assert_eq!(
            ExtSeqNo::new(0).extend(SeqNo::new(32_768)),
            Err(Before { by: 32_768 })
        );
        // Once past the first cycle the same numbers are just late.
        let later = ExtSeqNo::new(65_536 + 5);
        assert_eq!(later.extend(SeqNo::new(65_535)), Ok(ExtSeqNo::new(65_535)));
    }
}
