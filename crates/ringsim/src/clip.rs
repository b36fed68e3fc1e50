//! Clips of any length made from one short MP4, as Ring serves a clip of the
//! requested (or the recorded) duration: the source's samples are repeated with
//! continuous decode times, each repeat starting on the source's first sample (a
//! keyframe), and each track is cut where its decode time reaches the length (past
//! its edit's start, so each track presents the whole length). The result is a
//! progressive MP4, `moov` before `mdat` so a player can start before the end, the
//! source's chunks interleaved as they were; its sample tables, durations and edits
//! are rebuilt. Sans-IO: bytes in, bytes out, the same bytes for the same length.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use mp4_atom::{
    Any, Atom, Co64, Ctts, CttsEntry, Decode, Encode, Ftyp, Header, Mdat, Moov, SbgpEntry, Stco,
    StscEntry, Stss, StszSamples, SttsEntry, Trak,
};

/// Ring's longest clip (`duration` ≤ 900000 ms).
pub const MAX_CLIP_MS: u64 = 900_000;

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("a clip is 1-{MAX_CLIP_MS} ms long, not {0} ms")]
    Length(u64),
    #[error("the source MP4: {0}")]
    Source(&'static str),
    #[error("MP4: {0}")]
    Mp4(#[from] mp4_atom::Error),
}

/// An MP4 of `length_ms` (1 to [`MAX_CLIP_MS`]) made of `source`'s samples.
pub fn clip(source: &[u8], length_ms: u64) -> Result<Vec<u8>, ClipError> {
    if !(1..=MAX_CLIP_MS).contains(&length_ms) {
        return Err(ClipError::Length(length_ms));
    }
    let (ftyp, mut moov) = top_level(source)?;
    let tracks = moov
        .trak
        .iter()
        .map(|trak| Track::read(trak, source.len(), length_ms))
        .collect::<Result<Vec<_>, _>>()?;
    let layout = interleave(&tracks);
    let movie_length = length_ms * u64::from(moov.mvhd.timescale) / 1000;
    moov.mvhd.duration = movie_length;
    for (trak, track) in moov.trak.iter_mut().zip(&tracks) {
        track.write(trak, movie_length);
    }

    // Chunk offsets count from the file's start, so they depend on the `moov`
    // holding them: its size is the same whatever the offsets (not whatever their width).
    let mdat = Header {
        kind: Mdat::KIND,
        size: Some(layout.len),
    };
    let before_mdat = encoded(&ftyp)?.len() + encoded(&mdat)?.len();
    let start = |moov: &mut Moov, wide| -> Result<usize, ClipError> {
        place(moov, &layout.chunks, 0, wide);
        Ok(before_mdat + encoded(moov)?.len())
    };
    let wide = start(&mut moov, false)? + layout.len > u32::MAX as usize;
    let start = start(&mut moov, wide)?;
    place(&mut moov, &layout.chunks, start as u64, wide);

    let mut out = Vec::with_capacity(start + layout.len);
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    mdat.encode(&mut out)?;
    for piece in layout.pieces {
        out.extend_from_slice(
            source
                .get(piece)
                .ok_or(ClipError::Source("a chunk lies beyond the end of the file"))?,
        );
    }
    Ok(out)
}

/// The last few clips made from one source, by length: built once for a
/// download and the `Range` requests that resume it.
pub(crate) struct Clips {
    source: &'static [u8],
    recent: Mutex<VecDeque<(u64, Bytes)>>,
}

impl Clips {
    /// Clips kept (a 15 min clip of the bundled source is about 21 MB).
    const RECENT: usize = 4;

    pub fn new(source: &'static [u8]) -> Clips {
        Clips {
            source,
            recent: Mutex::new(VecDeque::with_capacity(Self::RECENT + 1)),
        }
    }

    pub fn of(&self, length_ms: u64) -> Result<Bytes, ClipError> {
        let found = self
            .recent()
            .iter()
            .find(|(length, _)| *length == length_ms)
            .map(|(_, clip)| clip.clone());
        if let Some(clip) = found {
            return Ok(clip);
        }
        // Built outside the lock: two requests for one length build the same bytes.
        let clip = Bytes::from(clip(self.source, length_ms)?);
        let mut recent = self.recent();
        recent.push_back((length_ms, clip.clone()));
        if recent.len() > Self::RECENT {
            recent.pop_front();
        }
        Ok(clip)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Bytes)>> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn encoded(atom: &impl Encode) -> Result<Vec<u8>, ClipError> {
    let mut out = Vec::new();
    atom.encode(&mut out)?;
    Ok(out)
}

fn top_level(source: &[u8]) -> Result<(Ftyp, Moov), ClipError> {
    let (mut ftyp, mut moov) = (None, None);
    let mut rest = source;
    while !rest.is_empty() {
        match Any::decode(&mut rest)? {
            Any::Ftyp(found) => ftyp = Some(found),
            Any::Moov(found) => moov = Some(found),
            _ => {}
        }
    }
    Ok((
        ftyp.ok_or(ClipError::Source("no ftyp"))?,
        moov.ok_or(ClipError::Source("no moov"))?,
    ))
}

const UNEVEN: ClipError = ClipError::Source("sample tables of different lengths");

/// A chunk: samples stored one after the other at `offset`.
struct Chunk {
    offset: u64,
    /// Its first sample (the source's) and how many.
    first: usize,
    count: usize,
    description: u32,
}

/// One track of the source, a value per sample in decode order, and how much of
/// it repeated the clip takes.
struct Track {
    durations: Vec<u32>,
    /// Composition offsets, when the track has a `ctts`.
    offsets: Option<Vec<i64>>,
    /// Sync samples, when the track has an `stss` (without one every sample is).
    sync: Option<Vec<bool>>,
    sizes: Vec<u32>,
    /// Each `sbgp`'s group description index.
    groups: Vec<Vec<u32>>,
    chunks: Vec<Chunk>,
    /// Where the clip's decode time ends, in the track's timescale.
    end: u64,
    /// The clip's samples: the source's `n` repeated, the `g`th being `g % n`.
    kept: usize,
}

/// One value per sample from `(count, value)` runs, if they cover `n` samples.
fn expand<T: Copy>(runs: impl IntoIterator<Item = (u32, T)>, n: usize) -> Option<Vec<T>> {
    let values: Vec<T> = runs
        .into_iter()
        .flat_map(|(count, value)| std::iter::repeat_n(value, count as usize))
        .take(n)
        .collect();
    (values.len() == n).then_some(values)
}

/// Values as `(count, value)` runs.
fn runs<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<(u32, T)> {
    let mut out: Vec<(u32, T)> = Vec::new();
    for value in values {
        match out.last_mut() {
            Some((count, last)) if *last == value => *count += 1,
            _ => out.push((1, value)),
        }
    }
    out
}

impl Track {
    fn read(trak: &Trak, file_len: usize, length_ms: u64) -> Result<Track, ClipError> {
        let stbl = &trak.mdia.minf.stbl;
        let sizes = match &stbl.stsz.samples {
            StszSamples::Identical { count, size } if *count as usize <= file_len => {
                vec![*size; *count as usize]
            }
            StszSamples::Identical { .. } => return Err(ClipError::Source("too many samples")),
            StszSamples::Different { sizes } => sizes.clone(),
        };
        let n = sizes.len();
        let durations = expand(
            stbl.stts
                .entries
                .iter()
                .map(|e| (e.sample_count, e.sample_delta)),
            n,
        )
        .ok_or(UNEVEN)?;
        let offsets = match &stbl.ctts {
            Some(ctts) => Some(
                expand(
                    ctts.entries
                        .iter()
                        .map(|e| (e.sample_count, e.sample_offset)),
                    n,
                )
                .ok_or(UNEVEN)?,
            ),
            None => None,
        };
        let sync = stbl.stss.as_ref().map(|stss| {
            let mut sync = vec![false; n];
            for number in &stss.entries {
                if let Some(sample) = number.checked_sub(1).and_then(|i| sync.get_mut(i as usize)) {
                    *sample = true;
                }
            }
            sync
        });
        // Samples past an `sbgp`'s entries are in no group (index 0).
        let groups = stbl
            .sbgp
            .iter()
            .map(|sbgp| {
                let entries = sbgp
                    .entries
                    .iter()
                    .map(|e| (e.sample_count, e.group_description_index));
                expand(entries.chain([(u32::MAX, 0)]), n).ok_or(UNEVEN)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let offsets_of_chunks: Vec<u64> = match (&stbl.stco, &stbl.co64) {
            (Some(stco), _) => stco.entries.iter().map(|&o| u64::from(o)).collect(),
            (None, Some(co64)) => co64.entries.clone(),
            (None, None) => return Err(ClipError::Source("a track without chunk offsets")),
        };
        let mut chunks = Vec::with_capacity(offsets_of_chunks.len());
        let mut first = 0;
        for (i, entry) in stbl.stsc.entries.iter().enumerate() {
            let next = stbl
                .stsc
                .entries
                .get(i + 1)
                .map_or(offsets_of_chunks.len() as u64 + 1, |e| e.first_chunk.into());
            for number in u64::from(entry.first_chunk)..next {
                let offset = number
                    .checked_sub(1)
                    .and_then(|i| offsets_of_chunks.get(i as usize))
                    .ok_or(ClipError::Source("an stsc naming chunks that do not exist"))?;
                let count = entry.samples_per_chunk as usize;
                chunks.push(Chunk {
                    offset: *offset,
                    first,
                    count,
                    description: entry.sample_description_index,
                });
                first += count;
            }
        }
        if first != n {
            return Err(UNEVEN);
        }

        let timescale = u64::from(trak.mdia.mdhd.timescale);
        let edit_start = trak
            .edts
            .iter()
            .filter_map(|edts| edts.elst.as_ref())
            .flat_map(|elst| &elst.entries)
            .find_map(|entry| entry.media_time)
            .unwrap_or(0);
        let end = edit_start + length_ms * timescale / 1000;
        let period: u64 = durations.iter().map(|&d| u64::from(d)).sum();
        if period == 0 {
            return Err(ClipError::Source("a track that lasts no time"));
        }
        let starts = durations.iter().scan(0, |at, &d| {
            let start = *at;
            *at += u64::from(d);
            Some(start)
        });
        let last_starts = starts.take_while(|&at| at < end % period).count();
        let kept = (end / period) as usize * n + last_starts;
        if u32::try_from(kept).is_err() {
            return Err(ClipError::Source("too many samples"));
        }
        Ok(Track {
            durations,
            offsets,
            sync,
            sizes,
            groups,
            chunks,
            end,
            kept,
        })
    }

    /// `values` (one per source sample) for each of the clip's samples.
    fn each<'a, T: Copy>(&self, values: &'a [T]) -> impl Iterator<Item = T> + 'a {
        (0..self.kept).map(move |g| values[g % values.len()])
    }

    /// The clip's sample tables (but the chunk offsets: [`place`]) and durations
    /// into `trak`, the source's.
    fn write(&self, trak: &mut Trak, movie_length: u64) {
        trak.tkhd.duration = movie_length;
        if let Some(elst) = trak.edts.as_mut().and_then(|edts| edts.elst.as_mut()) {
            if let Some((last, earlier)) = elst.entries.split_last_mut() {
                let before: u64 = earlier.iter().map(|e| e.segment_duration).sum();
                last.segment_duration = movie_length.saturating_sub(before);
            }
        }
        trak.mdia.mdhd.duration = self.end;

        let stbl = &mut trak.mdia.minf.stbl;
        let mut durations: Vec<u32> = self.each(&self.durations).collect();
        let total: u64 = durations.iter().map(|&d| u64::from(d)).sum();
        // The last sample starts before the end: it is shortened to end there.
        if let Some(last) = durations.last_mut() {
            *last -= (total - self.end) as u32;
        }
        stbl.stts.entries = runs(durations)
            .into_iter()
            .map(|(sample_count, sample_delta)| SttsEntry {
                sample_count,
                sample_delta,
            })
            .collect();
        if let Some(offsets) = &self.offsets {
            stbl.ctts = Some(Ctts {
                entries: runs(self.each(offsets))
                    .into_iter()
                    .map(|(sample_count, sample_offset)| CttsEntry {
                        sample_count,
                        sample_offset,
                    })
                    .collect(),
            });
        }
        if let Some(sync) = &self.sync {
            stbl.stss = Some(Stss {
                entries: (1..)
                    .zip(self.each(sync))
                    .filter_map(|(number, sync)| sync.then_some(number))
                    .collect(),
            });
        }
        stbl.stsz.samples = match stbl.stsz.samples {
            StszSamples::Identical { size, .. } => StszSamples::Identical {
                count: self.kept as u32,
                size,
            },
            StszSamples::Different { .. } => StszSamples::Different {
                sizes: self.each(&self.sizes).collect(),
            },
        };
        for (sbgp, groups) in stbl.sbgp.iter_mut().zip(&self.groups) {
            sbgp.entries = runs(self.each(groups))
                .into_iter()
                .map(|(sample_count, group_description_index)| SbgpEntry {
                    sample_count,
                    group_description_index,
                })
                .collect();
        }
    }
}

/// A chunk of the clip: where in its `mdat`, how many samples, their description.
struct ClipChunk {
    offset: u64,
    count: u32,
    description: u32,
}

/// The clip's `mdat`: the source's byte ranges to copy, one after the other.
struct Layout {
    pieces: Vec<Range<usize>>,
    len: usize,
    /// Each track's chunks.
    chunks: Vec<Vec<ClipChunk>>,
}

/// Repeats the source's chunks in their order in the file, each track's until
/// it has its samples (the repeat that cuts it: a chunk's first samples).
fn interleave(tracks: &[Track]) -> Layout {
    let mut order: Vec<(usize, &Chunk)> = tracks
        .iter()
        .enumerate()
        .flat_map(|(t, track)| track.chunks.iter().map(move |chunk| (t, chunk)))
        .collect();
    order.sort_by_key(|(_, chunk)| chunk.offset);
    let mut layout = Layout {
        pieces: Vec::new(),
        len: 0,
        chunks: tracks.iter().map(|_| Vec::new()).collect(),
    };
    for repeat in 0.. {
        let base = |track: &Track| repeat * track.sizes.len();
        if tracks.iter().all(|track| base(track) >= track.kept) {
            break;
        }
        for &(t, chunk) in &order {
            let track = &tracks[t];
            let count = chunk
                .count
                .min(track.kept.saturating_sub(base(track) + chunk.first));
            if count == 0 {
                continue;
            }
            let bytes: usize = track.sizes[chunk.first..chunk.first + count]
                .iter()
                .map(|&s| s as usize)
                .sum();
            layout.chunks[t].push(ClipChunk {
                offset: layout.len as u64,
                count: count as u32,
                description: chunk.description,
            });
            let from = chunk.offset as usize;
            layout.pieces.push(from..from.saturating_add(bytes));
            layout.len += bytes;
        }
    }
    layout
}

/// Each track's `stsc` and chunk offsets, `start` being where the `mdat`'s
/// payload begins; `wide`: `co64` rather than `stco`.
fn place(moov: &mut Moov, chunks: &[Vec<ClipChunk>], start: u64, wide: bool) {
    for (trak, chunks) in moov.trak.iter_mut().zip(chunks) {
        let stbl = &mut trak.mdia.minf.stbl;
        let mut first_chunk = 1;
        stbl.stsc.entries = runs(chunks.iter().map(|c| (c.count, c.description)))
            .into_iter()
            .map(|(run, (samples_per_chunk, sample_description_index))| {
                let entry = StscEntry {
                    first_chunk,
                    samples_per_chunk,
                    sample_description_index,
                };
                first_chunk += run;
                entry
            })
            .collect();
        let offsets = chunks.iter().map(|c| start + c.offset);
        (stbl.stco, stbl.co64) = if wide {
            (
                None,
                Some(Co64 {
                    entries: offsets.collect(),
                }),
            )
        } else {
            (
                Some(Stco {
                    entries: offsets.map(|o| o as u32).collect(),
                }),
                None,
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    static SOURCE: &[u8] = include_bytes!("../../../fixtures/media/ring_clip_4s.mp4");

    fn parse(mp4: &[u8]) -> (Moov, Vec<u8>, usize) {
        let mut rest = mp4;
        let (mut moov, mut mdat) = (None, None);
        while !rest.is_empty() {
            let at = mp4.len() - rest.len();
            match Any::decode(&mut rest).unwrap() {
                Any::Moov(found) => moov = Some(found),
                // The payload starts after the 8-byte header.
                Any::Mdat(found) => mdat = Some((found.data, at + 8)),
                _ => {}
            }
        }
        let (data, start) = mdat.expect("an mdat");
        (moov.expect("a moov"), data, start)
    }

    fn chunk_offsets(trak: &Trak) -> Vec<u64> {
        let stbl = &trak.mdia.minf.stbl;
        stbl.stco
            .as_ref()
            .map(|stco| stco.entries.iter().map(|&o| u64::from(o)).collect())
            .unwrap_or_else(|| stbl.co64.as_ref().unwrap().entries.clone())
    }

    fn sample_sizes(trak: &Trak) -> Vec<u32> {
        match &trak.mdia.minf.stbl.stsz.samples {
            StszSamples::Different { sizes } => sizes.clone(),
            StszSamples::Identical { count, size } => vec![*size; *count as usize],
        }
    }

    #[test]
    fn a_clip_repeats_the_source_to_the_length_in_every_track() {
        let (source, _, _) = parse(SOURCE);
        for length_ms in [1, 2500, 4000, 7300, 61_000] {
            let clip = clip(SOURCE, length_ms).unwrap();
            let (moov, mdat, mdat_start) = parse(&clip);
            assert_eq!(
                moov.mvhd.duration,
                length_ms * u64::from(moov.mvhd.timescale) / 1000
            );
            assert_eq!(moov.trak.len(), source.trak.len());
            for (trak, original) in moov.trak.iter().zip(&source.trak) {
                let stbl = &trak.mdia.minf.stbl;
                let timescale = u64::from(trak.mdia.mdhd.timescale);
                let elst = &trak.edts.as_ref().unwrap().elst.as_ref().unwrap().entries;
                assert_eq!(elst.len(), 1);
                assert_eq!(elst[0].segment_duration, moov.mvhd.duration);
                assert_eq!(trak.tkhd.duration, moov.mvhd.duration);
                let end = elst[0].media_time.unwrap() + length_ms * timescale / 1000;
                assert_eq!(trak.mdia.mdhd.duration, end, "length {length_ms}");
                let decode_time: u64 = stbl
                    .stts
                    .entries
                    .iter()
                    .map(|e| u64::from(e.sample_count) * u64::from(e.sample_delta))
                    .sum();
                assert_eq!(decode_time, end, "length {length_ms}");

                // As many samples as start before the end, the source's repeated.
                let source_durations: Vec<u64> = original
                    .mdia
                    .minf
                    .stbl
                    .stts
                    .entries
                    .iter()
                    .flat_map(|e| {
                        std::iter::repeat_n(u64::from(e.sample_delta), e.sample_count as usize)
                    })
                    .collect();
                let (mut expected, mut at) = (0, 0);
                while at < end {
                    at += source_durations[expected % source_durations.len()];
                    expected += 1;
                }
                let sizes = sample_sizes(trak);
                assert_eq!(sizes.len(), expected, "length {length_ms}");
                let source_sizes = sample_sizes(original);
                for (g, size) in sizes.iter().enumerate() {
                    assert_eq!(*size, source_sizes[g % source_sizes.len()]);
                }
                let counted: u32 = stbl.stts.entries.iter().map(|e| e.sample_count).sum();
                assert_eq!(counted as usize, expected);
                if let Some(ctts) = &stbl.ctts {
                    let counted: u32 = ctts.entries.iter().map(|e| e.sample_count).sum();
                    assert_eq!(counted as usize, expected);
                }
                // Each repeat starts on a keyframe.
                if let Some(stss) = &stbl.stss {
                    for repeat in (0..expected).step_by(source_sizes.len()) {
                        assert!(stss.entries.contains(&(repeat as u32 + 1)));
                    }
                }

                // The chunks hold the samples' bytes, the source's.
                let offsets = chunk_offsets(trak);
                let mut per_chunk = Vec::new();
                for (i, entry) in stbl.stsc.entries.iter().enumerate() {
                    let next = stbl
                        .stsc
                        .entries
                        .get(i + 1)
                        .map_or(offsets.len() as u32 + 1, |e| e.first_chunk);
                    per_chunk.extend(
                        (entry.first_chunk..next).map(|_| entry.samples_per_chunk as usize),
                    );
                }
                assert_eq!(per_chunk.iter().sum::<usize>(), expected);
                let source_offsets = chunk_offsets(original);
                let (mut sample, mut source_sample) = (0, 0);
                let first_source_chunk = source_offsets[0] as usize;
                for (offset, count) in offsets.iter().zip(&per_chunk) {
                    let at = *offset as usize - mdat_start;
                    let len: usize = sizes[sample..sample + count]
                        .iter()
                        .map(|&s| s as usize)
                        .sum();
                    assert!(at + len <= mdat.len());
                    if sample % source_sizes.len() == 0 {
                        // A repeat's first chunk is the source's first.
                        let first = source_sizes[0] as usize;
                        assert_eq!(
                            mdat[at..at + first],
                            SOURCE[first_source_chunk..first_source_chunk + first]
                        );
                        source_sample += 1;
                    }
                    sample += count;
                }
                assert_eq!(source_sample, expected.div_ceil(source_sizes.len()));
            }
        }
    }

    #[test]
    fn the_same_length_gives_the_same_bytes_and_bounds_are_kept() {
        let clips = Clips::new(SOURCE);
        let first = clips.of(7300).unwrap();
        assert_eq!(first, clip(SOURCE, 7300).unwrap());
        for length in [1000, 2000, 3000, 4000] {
            clips.of(length).unwrap();
        }
        assert_eq!(clips.recent().len(), Clips::RECENT);
        assert_eq!(clips.of(7300).unwrap(), first);
        assert!(matches!(clip(SOURCE, 0), Err(ClipError::Length(0))));
        assert!(matches!(
            clip(SOURCE, MAX_CLIP_MS + 1),
            Err(ClipError::Length(_))
        ));
        let longest = clip(SOURCE, MAX_CLIP_MS).unwrap();
        let (moov, _, _) = parse(&longest);
        assert_eq!(moov.mvhd.duration, MAX_CLIP_MS);
    }

    /// ffprobe's `key=value` lines of `entries`.
    fn ffprobe(path: &std::path::Path, args: &[&str]) -> String {
        let output = Command::new("ffprobe")
            .args(["-v", "error", "-of", "default=nw=1"])
            .args(args)
            .arg(path)
            .output()
            .expect("ffprobe runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    fn value(text: &str, key: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    }

    #[test]
    fn ffmpeg_reads_a_clip_of_the_length_and_decodes_it_without_errors() {
        let path = std::env::temp_dir().join(format!("ringsim-clip-{}.mp4", std::process::id()));
        std::fs::write(&path, clip(SOURCE, 7300).unwrap()).unwrap();
        let format = ffprobe(&path, &["-show_entries", "format=duration"]);
        let seconds = value(&format, "duration");
        assert!((seconds - 7.3).abs() < 0.03, "{seconds} s");
        let video = ffprobe(
            &path,
            &[
                "-count_frames",
                "-select_streams",
                "v",
                "-show_entries",
                "stream=duration,nb_read_frames",
            ],
        );
        assert!((value(&video, "duration") - 7.3).abs() < 0.03, "{video}");
        // 25 fps: a frame every 40 ms, 7.3 s of them.
        let frames = value(&video, "nb_read_frames");
        assert!((182.0..=183.0).contains(&frames), "{video}");
        let audio = ffprobe(
            &path,
            &["-select_streams", "a", "-show_entries", "stream=duration"],
        );
        assert!((value(&audio, "duration") - 7.3).abs() < 0.03, "{audio}");

        let decoded = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg runs");
        std::fs::remove_file(&path).unwrap();
        assert!(decoded.status.success(), "{decoded:?}");
        assert_eq!(String::from_utf8_lossy(&decoded.stderr), "");
        assert_eq!(String::from_utf8_lossy(&decoded.stdout), "");
    }
}
