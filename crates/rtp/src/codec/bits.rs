//! A big-endian bit reader for the few header fields the codecs parse
//! themselves (H.265 SPS picture size, AAC `AudioSpecificConfig`, LATM
//! `StreamMuxConfig`).
//!
//! Every read is bounds-checked and returns `None` past the end, so a truncated
//! or hostile parameter set just fails to parse.

use std::borrow::Cow;

/// `Clone` lets a parser peek ahead (LATM's optional sync extensions).
#[derive(Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits read so far (LATM copies the `AudioSpecificConfig` out by bit range).
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// Reads `n` ≤ 32 bits as an unsigned number.
    pub(crate) fn read_bits(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut value = 0u32;
        for _ in 0..n {
            value = (value << 1) | u32::from(self.read_bit()?);
        }
        Some(value)
    }

    pub(crate) fn skip_bits(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.data.len() * 8 {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Unsigned Exp-Golomb code (`ue(v)` in the H.26x specs), up to 32 bits.
    pub(crate) fn read_ue(&mut self) -> Option<u32> {
        let mut leading_zeros = 0u32;
        while !self.read_bit()? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return None;
            }
        }
        let suffix = self.read_bits(leading_zeros)?;
        // 2^lz - 1 + suffix fits in u32 for lz ≤ 31.
        ((1u64 << leading_zeros) - 1 + u64::from(suffix))
            .try_into()
            .ok()
    }
}

/// Removes H.26x emulation prevention bytes (`00 00 03` → `00 00`), borrowing
/// when there are none (the common case for parameter sets).
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Cow<'_, [u8]> {
    let has_escape = nal.windows(3).any(|w| w == [0, 0, 3]);
    if !has_escape {
        return Cow::Borrowed(nal);
    }
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bits_and_exp_golomb_and_stops_at_the_end() {
        // 1 | 010 (ue=1) | 011 (ue=2) | 00100 (ue=3) | 0...
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(r.read_bit(), Some(true));
        assert_eq!(r.read_ue(), Some(1));
        assert_eq!(r.read_ue(), Some(2));
        assert_eq!(r.read_ue(), Some(3));
        assert_eq!(r.read_bits(4), Some(0));
        assert_eq!(r.read_bit(), None);
        assert_eq!(BitReader::new(&[0, 0, 0, 0, 0]).read_ue(), None);
        assert_eq!(BitReader::new(&[0xff]).skip_bits(9), None);
    }

    #[test]
    fn unescapes_emulation_prevention() {
        assert_eq!(
            &*unescape_rbsp(&[1, 0, 0, 3, 1, 0, 0, 3]),
            &[1, 0, 0, 1, 0, 0]
        );
        assert!(matches!(unescape_rbsp(&[1, 2, 3]), Cow::Borrowed(_)));
    }
}
