//! LL-HLS reading, as hls.js does in low-latency mode: each next part is asked
//! for with a blocking playlist reload (`_HLS_msn`, `_HLS_part`) and fetched
//! once listed, from the newest independent part on. Besides the HLS checks
//! (loss, here in parts; decode times; a keyframe start) each blocking reload is
//! timed against the moment its part was ready: the wall-clock end of the part's
//! media by the segment's PROGRAM-DATE-TIME, which the server set from its own
//! clock (the load tool runs on the same machine). A part is cut when the next
//! frame arrives, so that is when it can be listed at the earliest.
//!
//! The playlist is read with a small line scanner, not m3u8-rs: m3u8-rs 6 drops
//! the tags after the last segment's URI, which is where the parts of the
//! segment in progress are listed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;

use crate::hls_reader::{get, HlsCheck};
use crate::reader::LiveCounters;

/// Latency samples kept per reader (one per blocking reload).
const MAX_LATENCY_SAMPLES: usize = 100_000;

/// A part by its segment's media sequence number and its index in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartId {
    pub msn: u64,
    pub index: usize,
}

/// One `EXT-X-PART` of a media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPart {
    pub id: PartId,
    pub uri: String,
    pub independent: bool,
    /// When its media ends on the server's clock (PROGRAM-DATE-TIME plus the
    /// durations so far); `None` without a PROGRAM-DATE-TIME.
    pub ends_at: Option<SystemTime>,
}

/// What a media playlist says about its parts.
#[derive(Debug, Default, PartialEq)]
pub struct PartPlaylist {
    pub parts: Vec<ListedPart>,
    /// Finished segments (their URI is listed): how many parts each had.
    pub finished: HashMap<u64, usize>,
    pub end_list: bool,
}

impl PartPlaylist {
    pub fn parse(text: &str) -> Result<PartPlaylist, String> {
        if !text.starts_with("#EXTM3U") {
            return Err("not a playlist".to_owned());
        }
        let mut playlist = PartPlaylist::default();
        let mut msn: Option<u64> = None;
        let mut index = 0;
        // The current segment's PROGRAM-DATE-TIME, and its media so far.
        let mut starts_at: Option<SystemTime> = None;
        let mut offset = Duration::ZERO;
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                msn = Some(value.parse().map_err(|_| "bad EXT-X-MEDIA-SEQUENCE")?);
            } else if let Some(value) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                let date = chrono::DateTime::parse_from_rfc3339(value)
                    .map_err(|_| format!("bad PROGRAM-DATE-TIME {value:?}"))?;
                starts_at = Some(SystemTime::from(date));
                offset = Duration::ZERO;
            } else if let Some(value) = line.strip_prefix("#EXT-X-PART:") {
                let attributes = attributes(value);
                let duration = attributes
                    .get("DURATION")
                    .and_then(|d| d.parse::<f64>().ok())
                    .and_then(|d| Duration::try_from_secs_f64(d).ok())
                    .ok_or("EXT-X-PART without a DURATION")?;
                let uri = attributes.get("URI").ok_or("EXT-X-PART without a URI")?;
                offset += duration;
                playlist.parts.push(ListedPart {
                    id: PartId {
                        msn: msn.unwrap_or(0),
                        index,
                    },
                    uri: (*uri).to_owned(),
                    independent: attributes.get("INDEPENDENT") == Some(&"YES"),
                    ends_at: starts_at.map(|start| start + offset),
                });
                index += 1;
            } else if line == "#EXT-X-ENDLIST" {
                playlist.end_list = true;
            } else if !line.is_empty() && !line.starts_with('#') {
                let finished = msn.unwrap_or(0);
                playlist.finished.insert(finished, index);
                msn = Some(finished + 1);
                index = 0;
                starts_at = None;
            }
        }
        Ok(playlist)
    }

    pub fn find(&self, id: PartId) -> Option<&ListedPart> {
        self.parts.iter().find(|part| part.id == id)
    }

    /// Where a player joining now starts: the newest independent part.
    pub fn start(&self) -> Option<PartId> {
        self.parts
            .iter()
            .rev()
            .find(|p| p.independent)
            .map(|p| p.id)
    }

    /// The part after `id`: the next of its segment, or the next segment's
    /// first once this playlist shows its segment finished with `id`.
    pub fn after(&self, id: PartId) -> PartId {
        match self.finished.get(&id.msn) {
            Some(&count) if id.index + 1 >= count => PartId {
                msn: id.msn + 1,
                index: 0,
            },
            _ => PartId {
                msn: id.msn,
                index: id.index + 1,
            },
        }
    }

    /// Whether `id` can no longer be listed: before every part listed, or past
    /// the end of its finished segment.
    pub fn passed(&self, id: PartId) -> bool {
        self.parts.first().is_some_and(|first| id < first.id)
            || self
                .finished
                .get(&id.msn)
                .is_some_and(|&count| id.index >= count)
    }
}

/// An attribute list (`KEY=value,KEY="quoted, value"`), quotes removed.
fn attributes(list: &str) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    let mut rest = list;
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, next)) => (value, next.trim_start_matches(',')),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.insert(key.trim(), value);
        rest = next;
    }
    out
}

/// Follows `url`'s parts from `playlist` (its first text) until the playlist
/// ends or a fetch fails.
pub async fn follow(
    client: &reqwest::Client,
    url: &url::Url,
    playlist: Bytes,
    check: &mut HlsCheck,
    live: &LiveCounters,
) -> Result<(), String> {
    let mut playlist = PartPlaylist::parse(&String::from_utf8_lossy(&playlist))?;
    let mut next = playlist.start().ok_or("no independent part listed")?;
    // Parts fetched, as the loss check's sequence numbers.
    let mut fetched = 0;
    loop {
        if let Some(part) = playlist.find(next) {
            let part_url = url.join(&part.uri).map_err(|e| format!("part URI: {e}"))?;
            let media = get(client, &part_url).await?;
            check.on_media(fetched, &media, Instant::now(), live);
            fetched += 1;
            next = playlist.after(next);
            continue;
        }
        if playlist.end_list {
            return Err("the playlist ended (EXT-X-ENDLIST)".to_owned());
        }
        if playlist.passed(next) {
            let past_its_segment = PartId {
                msn: next.msn + 1,
                index: 0,
            };
            if playlist.finished.contains_key(&next.msn) && !playlist.passed(past_its_segment) {
                next = past_its_segment;
                continue;
            }
            return Err(format!(
                "fell behind: part {}.{} is no longer listed",
                next.msn, next.index
            ));
        }
        let mut reload = url.clone();
        reload
            .query_pairs_mut()
            .append_pair("_HLS_msn", &next.msn.to_string())
            .append_pair("_HLS_part", &next.index.to_string());
        let text = get(client, &reload).await?;
        let answered = SystemTime::now();
        playlist = PartPlaylist::parse(&String::from_utf8_lossy(&text))?;
        if playlist.find(next).is_none() && !playlist.passed(next) {
            // A server that does not block: poll it, but not in a hot loop.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let ready = playlist.find(next).and_then(|part| part.ends_at);
        if let Some(ready) = ready.filter(|_| check.latency_ms.len() < MAX_LATENCY_SAMPLES) {
            // Negative when the server's dates run ahead of its clock.
            let ms = match answered.duration_since(ready) {
                Ok(late) => late.as_secs_f64() * 1000.0,
                Err(early) => -early.duration().as_secs_f64() * 1000.0,
            };
            check.latency_ms.push(ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYLIST: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.660
#EXT-X-PART-INF:PART-TARGET=0.22000
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI=\"init_0.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T10:00:00.000Z
#EXTINF:2.00000,
seg_7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T10:00:02.000Z
#EXT-X-PART:DURATION=0.20000,URI=\"part_8_0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part_8_1.m4s\"
#EXTINF:0.40000,
seg_8.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-02T10:00:02.400Z
#EXT-X-PART:DURATION=0.20000,URI=\"part_9_0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.15000,URI=\"part_9_1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_9_2.m4s\"
";

    fn id(msn: u64, index: usize) -> PartId {
        PartId { msn, index }
    }

    #[test]
    fn parts_of_finished_segments_and_of_the_one_in_progress_are_listed() {
        let playlist = PartPlaylist::parse(PLAYLIST).unwrap();
        let ids: Vec<PartId> = playlist.parts.iter().map(|p| p.id).collect();
        assert_eq!(ids, [id(8, 0), id(8, 1), id(9, 0), id(9, 1)]);
        assert_eq!(playlist.finished, HashMap::from([(7, 0), (8, 2)]));
        assert_eq!(playlist.find(id(9, 1)).unwrap().uri, "part_9_1.m4s");
        assert!(!playlist.find(id(9, 1)).unwrap().independent);
        let start = SystemTime::from(
            chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:02.400Z").unwrap(),
        );
        assert_eq!(
            playlist.find(id(9, 1)).unwrap().ends_at,
            Some(start + Duration::from_millis(350))
        );
    }

    #[test]
    fn a_player_starts_at_the_newest_independent_part_and_steps_over_segment_ends() {
        let playlist = PartPlaylist::parse(PLAYLIST).unwrap();
        assert_eq!(playlist.start(), Some(id(9, 0)));
        assert_eq!(playlist.after(id(8, 0)), id(8, 1));
        assert_eq!(playlist.after(id(8, 1)), id(9, 0));
        // Segment 9 is in progress: its next part is waited for.
        assert_eq!(playlist.after(id(9, 1)), id(9, 2));
        assert!(!playlist.passed(id(9, 2)));
        assert!(playlist.passed(id(8, 2)));
        assert!(playlist.passed(id(7, 0)));
    }

    #[test]
    fn bad_playlists_are_errors() {
        assert!(PartPlaylist::parse("hello").is_err());
        assert!(PartPlaylist::parse("#EXTM3U\n#EXT-X-PART:URI=\"p.m4s\"\n").is_err());
        assert!(PartPlaylist::parse("#EXTM3U\n#EXT-X-PART:DURATION=-1,URI=\"p\"\n").is_err());
        assert!(PartPlaylist::parse("#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n").is_err());
    }

    #[test]
    fn attribute_lists_keep_quoted_commas() {
        let list = attributes("DURATION=0.2,URI=\"a,b.m4s\",INDEPENDENT=YES");
        assert_eq!(list["URI"], "a,b.m4s");
        assert_eq!(list["INDEPENDENT"], "YES");
        assert_eq!(list["DURATION"], "0.2");
    }
}
