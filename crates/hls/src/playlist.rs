//! Playlist text (RFC 8216bis with the Low-Latency extensions) rendered from the
//! segmenter's current window.
//!
//! URIs are relative to the playlist: `init_V.mp4`, `seg_MSN.m4s`, `part_MSN_I.m4s`.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::segmenter::{Segment, Segmenter};

pub const MEDIA_PLAYLIST: &str = "stream.m3u8";

pub fn init_uri(version: u64) -> String {
    format!("init_{version}.mp4")
}

pub fn segment_uri(msn: u64) -> String {
    format!("seg_{msn}.m4s")
}

pub fn part_uri(msn: u64, part: usize) -> String {
    format!("part_{msn}_{part}.m4s")
}

/// `EXT-X-TARGETDURATION`: the configured target, raised to the longest segment
/// seen (a source whose GOP is longer than the target makes longer segments).
pub fn target_duration(segmenter: &Segmenter) -> u64 {
    let configured = segmenter.config().segment_target.as_secs_f64();
    configured
        .max(segmenter.max_segment_duration())
        .ceil()
        .max(1.0) as u64
}

/// `PART-TARGET`: parts are cut at the configured target, judged by the frame
/// interval so far; a tenth more leaves room for a source whose timestamps
/// jitter, whose last frame in a part can end a little late (RFC 8216bis: no
/// part may be longer than PART-TARGET). Frame rates that divide the target
/// exactly (25 fps into 0.2 s) would otherwise have no room at all.
pub fn part_target(segmenter: &Segmenter) -> f64 {
    1.1 * segmenter.config().part_target.as_secs_f64()
}

/// PART-HOLD-BACK: three part targets, the least RFC 8216bis recommends (it
/// requires two). hls.js in low-latency mode aims at this far behind live.
pub fn part_hold_back(segmenter: &Segmenter) -> f64 {
    3.0 * part_target(segmenter)
}

/// ISO 8601 UTC with milliseconds, e.g. `2026-11-26T07:44:18.123Z`.
pub fn format_date_time(time: SystemTime) -> String {
    let millis_total = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let (secs, millis) = ((millis_total / 1000) as i64, millis_total % 1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

fn write_parts(out: &mut String, segment: &Segment) {
    for (i, part) in segment.parts.iter().enumerate() {
        let independent = if part.independent {
            ",INDEPENDENT=YES"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "#EXT-X-PART:DURATION={:.5},URI=\"{}\"{independent}",
            part.duration,
            part_uri(segment.msn, i)
        );
    }
}

/// The media playlist. Parts are listed for the segments within three target
/// durations of the live edge (older ones are whole segments only), followed by
/// the in-progress segment's parts and a preload hint for its next part.
pub fn media_playlist(segmenter: &Segmenter) -> String {
    let target = target_duration(segmenter);
    let segments = segmenter.segments();
    let current = segmenter.current();
    let first = segments.front().or(current);
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:9");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}",
        part_hold_back(segmenter)
    );
    let _ = writeln!(
        out,
        "#EXT-X-PART-INF:PART-TARGET={:.5}",
        part_target(segmenter)
    );
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", first.map_or(0, |s| s.msn));
    let _ = writeln!(
        out,
        "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
        segmenter.discontinuity_sequence()
    );

    // Segments whose parts are still listed: those ending within 3 target durations of the edge.
    let mut parts_from = segments.len();
    let mut tail = current.map_or(0.0, |c| c.parts.iter().map(|p| p.duration).sum::<f64>());
    while parts_from > 0 && tail + segments[parts_from - 1].duration <= 3.0 * target as f64 {
        parts_from -= 1;
        tail += segments[parts_from].duration;
    }

    let mut init_version = None;
    for (i, segment) in segments.iter().chain(current).enumerate() {
        // Also on the first segment: EXT-X-DISCONTINUITY-SEQUENCE counts a tag only
        // once its segment scrolls out, so hiding it would renumber what follows.
        if segment.discontinuity {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
        }
        if init_version != Some(segment.init_version) {
            init_version = Some(segment.init_version);
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", init_uri(segment.init_version));
        }
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            format_date_time(segment.program_date_time)
        );
        if i >= parts_from {
            write_parts(&mut out, segment);
        }
        if i < segments.len() {
            let _ = writeln!(out, "#EXTINF:{:.5},", segment.duration);
            let _ = writeln!(out, "{}", segment_uri(segment.msn));
        }
    }
    if let Some(current) = current {
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
            part_uri(current.msn, current.parts.len())
        );
    }
    out
}

/// The multivariant playlist: one rendition carrying audio and video, with
/// `CODECS` taken from the init segment's sample entries.
pub fn multivariant_playlist(segmenter: &Segmenter) -> String {
    let init = segmenter.latest_init();
    let (bytes, seconds) = segmenter
        .segments()
        .iter()
        .fold((0usize, 0f64), |(b, s), seg| {
            (b + seg.byte_len(), s + seg.duration)
        });
    // Peak is unknown up front; twice the window's average is a safe BANDWIDTH.
    let bandwidth = if seconds > 0.0 {
        (bytes as f64 * 8.0 / seconds * 2.0) as u64
    } else {
        4_000_000
    };
    let mut out = String::new();
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:9");
    let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
    let _ = write!(
        out,
        "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},CODECS=\"{}\"",
        init.codecs.join(",")
    );
    if let (Some(w), Some(h)) = (init.width, init.height) {
        let _ = write!(out, ",RESOLUTION={w}x{h}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{MEDIA_PLAYLIST}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmenter::tests::{feed, tracks, Synthetic};
    use crate::segmenter::SegmenterConfig;

    #[test]
    fn dates_are_iso_8601_utc() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_795_679_058_123);
        assert_eq!(format_date_time(t), "2026-11-26T07:44:18.123Z");
        assert_eq!(format_date_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn media_playlist_parses_and_lists_parts_near_the_edge() {
        let mut segmenter = Segmenter::new(SegmenterConfig::default(), &tracks()).unwrap();
        feed(&mut segmenter, &Synthetic::new(30).next_seconds(17));
        let text = media_playlist(&segmenter);
        let playlist = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
            Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
            other => panic!("not a media playlist: {other:?}\n{text}"),
        };
        assert_eq!(playlist.target_duration, 2);
        assert_eq!(playlist.segments.len(), 7);
        assert_eq!(playlist.media_sequence, 1);
        assert!(playlist
            .segments
            .iter()
            .all(|s| s.program_date_time.is_some()));
        // Only the segments within 6 s of the edge carry parts.
        let with_parts = playlist
            .segments
            .iter()
            .filter(|s| s.unknown_tags.iter().any(|t| t.tag == "X-PART"))
            .count();
        assert_eq!(with_parts, 2, "{text}");
        assert!(text.contains("CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.660"));
        assert!(
            text.trim_end()
                .ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_8_4.m4s\""),
            "{text}"
        );
    }

    #[test]
    fn a_discontinuity_keeps_its_number_while_the_window_scrolls() {
        // A player numbers a segment by EXT-X-DISCONTINUITY-SEQUENCE plus the tags up to it.
        let number_of = |text: &str, uri: &str| {
            let Ok(m3u8_rs::Playlist::MediaPlaylist(playlist)) =
                m3u8_rs::parse_playlist_res(text.as_bytes())
            else {
                panic!("not a media playlist: {text}")
            };
            let index = playlist.segments.iter().position(|s| s.uri == uri)?;
            let tags = playlist.segments[..=index]
                .iter()
                .filter(|s| s.discontinuity)
                .count() as u64;
            Some(playlist.discontinuity_sequence + tags)
        };
        let config = SegmenterConfig {
            window: 3,
            ..Default::default()
        };
        let mut source = Synthetic::new(30);
        // Segment 2 (3 s to 5 s) follows a break; it is the oldest listed at 10 s.
        source.discontinuity_at_video_frame = Some(75);
        let mut segmenter = Segmenter::new(config, &tracks()).unwrap();
        let mut numbers = Vec::new();
        for _ in 0..10 {
            feed(&mut segmenter, &source.next_seconds(1));
            let text = media_playlist(&segmenter);
            if let Some(number) = number_of(&text, "seg_2.m4s") {
                numbers.push(number);
            }
        }
        assert_eq!(segmenter.segments().front().map(|s| s.msn), Some(2));
        assert_eq!(numbers, vec![1; numbers.len()]);
        assert!(numbers.len() >= 3, "{numbers:?}");
    }

    #[test]
    fn multivariant_declares_the_init_segments_codecs() {
        let mut segmenter = Segmenter::new(SegmenterConfig::default(), &tracks()).unwrap();
        feed(&mut segmenter, &Synthetic::new(30).next_seconds(5));
        let text = multivariant_playlist(&segmenter);
        let Ok(m3u8_rs::Playlist::MasterPlaylist(playlist)) =
            m3u8_rs::parse_playlist_res(text.as_bytes())
        else {
            panic!("not a multivariant playlist: {text}")
        };
        let variant = &playlist.variants[0];
        assert_eq!(variant.codecs.as_deref(), Some("avc1.42c01f,opus"));
        assert_eq!(variant.uri, MEDIA_PLAYLIST);
        assert!(variant.resolution.is_some());
    }
}
