//! Just enough fragmented-MP4 reading for the HLS reader's checks: which track
//! is video (init segment: `trak`/`tkhd` + `hdlr`), each fragment's decode time
//! per track (`tfdt`) and whether a fragment's first video sample is a sync
//! sample (`tfhd`/`trun` sample flags). Every length is checked; a malformed box
//! ends the walk instead of panicking.

/// `sample_is_non_sync_sample` in ISO/IEC 14496-12 sample flags.
const NON_SYNC: u32 = 0x0001_0000;

/// The boxes directly inside `data`: (type, payload).
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let header: [u8; 8] = rest.get(..8)?.try_into().ok()?;
        let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = [header[4], header[5], header[6], header[7]];
        let (start, end) = match size {
            1 => {
                let large: [u8; 8] = rest.get(8..16)?.try_into().ok()?;
                (16, usize::try_from(u64::from_be_bytes(large)).ok()?)
            }
            0 => (8, rest.len()),
            n => (8, n),
        };
        let payload = rest.get(start..end)?;
        rest = &rest[end..];
        Some((kind, payload))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, p)| p)
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn be64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// The video track's id, from an init segment.
pub fn video_track(init: &[u8]) -> Option<u32> {
    let moov = child(init, b"moov")?;
    boxes(moov)
        .filter(|(k, _)| k == b"trak")
        .find_map(|(_, trak)| {
            let tkhd = child(trak, b"tkhd")?;
            let track_id = be32(tkhd, if tkhd.first() == Some(&1) { 20 } else { 12 })?;
            let hdlr = child(child(trak, b"mdia")?, b"hdlr")?;
            (hdlr.get(8..12)? == b"vide").then_some(track_id)
        })
}

/// One track's part of a media segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub track_id: u32,
    pub decode_time: u64,
    /// Whether the fragment's first sample is a sync sample (None: not stated).
    pub starts_with_sync: Option<bool>,
}

/// Every track fragment of a media segment, in order.
pub fn fragments(segment: &[u8]) -> Vec<Fragment> {
    boxes(segment)
        .filter(|(k, _)| k == b"moof")
        .flat_map(|(_, moof)| boxes(moof).filter(|(k, _)| k == b"traf"))
        .filter_map(|(_, traf)| track_fragment(traf))
        .collect()
}

fn track_fragment(traf: &[u8]) -> Option<Fragment> {
    let tfhd = child(traf, b"tfhd")?;
    let tfhd_flags = be32(tfhd, 0)? & 0x00ff_ffff;
    let track_id = be32(tfhd, 4)?;
    // Optional tfhd fields in order: base offset (8), description index (4),
    // default duration (4), default size (4), default flags (4).
    let mut at = 8;
    let mut default_flags = None;
    for (flag, len) in [(0x01, 8), (0x02, 4), (0x08, 4), (0x10, 4), (0x20, 4)] {
        if tfhd_flags & flag != 0 {
            if flag == 0x20 {
                default_flags = be32(tfhd, at);
            }
            at += len;
        }
    }
    let tfdt = child(traf, b"tfdt")?;
    let decode_time = if tfdt.first() == Some(&1) {
        be64(tfdt, 4)?
    } else {
        u64::from(be32(tfdt, 4)?)
    };
    let first_flags = child(traf, b"trun").and_then(|trun| {
        let flags = be32(trun, 0)? & 0x00ff_ffff;
        let mut at = 8; // version/flags, sample count
        if flags & 0x01 != 0 {
            at += 4; // data offset
        }
        if flags & 0x04 != 0 {
            return be32(trun, at); // first-sample flags
        }
        if flags & 0x400 != 0 {
            // Per-sample flags: the first sample's follow its duration and size.
            let skip = 4 * [0x100, 0x200].iter().filter(|f| flags & **f != 0).count();
            return be32(trun, at + skip);
        }
        None
    });
    Some(Fragment {
        track_id,
        decode_time,
        starts_with_sync: first_flags.or(default_flags).map(|f| f & NON_SYNC == 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn reads_decode_time_and_first_sample_flags() {
        let tfhd = mp4_box(
            b"tfhd",
            &[0, 0x02, 0, 0x20, 0, 0, 0, 7, 0, 0, 0, 1, 0, 1, 0, 0],
        );
        let tfdt = mp4_box(b"tfdt", &[1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5]);
        // trun: data offset + first-sample flags (sync).
        let trun = mp4_box(
            b"trun",
            &[0, 0, 0, 0x05, 0, 0, 0, 1, 0, 0, 0, 8, 0x02, 0, 0, 0],
        );
        let traf = mp4_box(b"traf", &[tfhd, tfdt, trun].concat());
        let segment = mp4_box(b"moof", &traf);
        assert_eq!(
            fragments(&segment),
            vec![Fragment {
                track_id: 7,
                decode_time: (1 << 32) + 5,
                starts_with_sync: Some(true)
            }]
        );
        // Without trun flags the tfhd default (non-sync here) applies.
        let traf = mp4_box(b"traf", &[tfhd_only_default(), tfdt_v0()].concat());
        assert_eq!(
            fragments(&mp4_box(b"moof", &traf))[0].starts_with_sync,
            Some(false)
        );
    }

    fn tfhd_only_default() -> Vec<u8> {
        mp4_box(b"tfhd", &[0, 0, 0, 0x20, 0, 0, 0, 2, 0, 1, 0, 0])
    }

    fn tfdt_v0() -> Vec<u8> {
        mp4_box(b"tfdt", &[0, 0, 0, 0, 0, 0, 0, 9])
    }

    #[test]
    fn truncated_boxes_end_the_walk() {
        let mut data = mp4_box(b"moof", &[0; 40]);
        data.truncate(20);
        assert!(fragments(&data).is_empty());
        assert_eq!(video_track(&[0, 0, 0, 200, b'm', b'o', b'o', b'v']), None);
    }
}
