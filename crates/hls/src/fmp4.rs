//! Fragmented MP4 (CMAF) writing: the init segment (`ftyp` + `moov`) and the
//! fragments (`moof` + `mdat`) that make up parts and segments.
//!
//! Boxes are encoded with `mp4-atom`; only the `mdat` header is written by hand so
//! that sample payloads are copied once, straight into the fragment buffer.

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::{
    Audio, Avc1, Avcc, Codec as SampleEntry, Dinf, Dops, Dref, Encode, Esds, Ftyp, Hdlr, Hvc1,
    HvcCArray, Hvcc, Matrix, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Opus, Smhd,
    Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, TrunSamples, Url,
    Visual, Vmhd,
};
use streamgate_rtp::{Codec, TrackInfo};

use crate::codecs::{aac_config, h264_sps, hevc_profile};
use crate::MuxError;

/// Sample flags (ISO/IEC 14496-12 §8.8.3.1): a sync sample depends on nothing.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// A non-sync sample depends on others and is marked `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// The `track_ID` of the `n`th muxed track (MP4 track ids start at 1).
pub fn track_id(index: usize) -> u32 {
    index as u32 + 1
}

fn encode_err(err: mp4_atom::Error) -> MuxError {
    MuxError::Encode(err.to_string())
}

/// `index` is the track's position in the init segment, which numbers it (`track_id`).
fn sample_entry(index: usize, track: &TrackInfo) -> Result<SampleEntry, MuxError> {
    let width = track.params.width.unwrap_or(0).min(u16::MAX as u32) as u16;
    let height = track.params.height.unwrap_or(0).min(u16::MAX as u32) as u16;
    let visual = Visual {
        data_reference_index: 1,
        width,
        height,
        ..Default::default()
    };
    let audio = Audio {
        data_reference_index: 1,
        channel_count: track.channels.max(1),
        sample_size: 16,
        // The field is 16.16 fixed point: rates above 65535 Hz cannot be written (none are used).
        sample_rate: (track.clock_rate.min(u16::MAX as u32) as u16).into(),
    };
    let param = |field: &Option<Bytes>, name| {
        field
            .clone()
            .ok_or(MuxError::MissingParameter {
                track: track.id,
                name,
            })
            .map(|b| b.to_vec())
    };
    Ok(match track.codec {
        Codec::H264 => {
            let sps = h264_sps(track)?;
            let pps = param(&track.params.pps, "PPS")?;
            let avcc = Avcc::new(&sps, &pps).map_err(encode_err)?;
            Avc1 {
                visual,
                avcc,
                ..Default::default()
            }
            .into()
        }
        Codec::H265 => {
            let profile = hevc_profile(track)?;
            let array = |nal_unit_type, nalu| HvcCArray {
                completeness: true,
                nal_unit_type,
                nalus: vec![nalu],
            };
            let hvcc = Hvcc {
                configuration_version: 1,
                general_profile_space: profile.profile_space,
                general_tier_flag: profile.tier_high,
                general_profile_idc: profile.profile_idc,
                general_profile_compatibility_flags: profile.compatibility_flags,
                general_constraint_indicator_flags: profile.constraint_flags,
                general_level_idc: profile.level_idc,
                // 4:2:0, 8 bit: what cameras send; decoders take the real values from the SPS.
                chroma_format_idc: 1,
                temporal_id_nested: true,
                num_temporal_layers: 1,
                length_size_minus_one: 3,
                arrays: vec![
                    array(32, param(&track.params.vps, "VPS")?),
                    array(33, param(&track.params.sps, "SPS")?),
                    array(34, param(&track.params.pps, "PPS")?),
                ],
                ..Default::default()
            };
            // `hvc1` (parameter sets only in the sample entry) rather than `hev1`: Safari requires it.
            Hvc1 {
                visual,
                hvcc,
                ..Default::default()
            }
            .into()
        }
        Codec::Aac | Codec::AacLatm => {
            let config = aac_config(track)?;
            let mut esds = Esds::default();
            esds.es_desc.es_id = track_id(index) as u16;
            esds.es_desc.dec_config.object_type_indication = 0x40; // MPEG-4 audio
            esds.es_desc.dec_config.stream_type = 5; // audio stream
            esds.es_desc.dec_config.dec_specific = Some(mp4_atom::esds::DecoderSpecific {
                profile: config[0] >> 3,
                freq_index: ((config[0] & 0x07) << 1) | (config[1] >> 7),
                chan_conf: (config[1] >> 3) & 0x0f,
                raw: config.to_vec(),
            });
            Mp4a {
                audio,
                esds,
                btrt: None,
                taic: None,
            }
            .into()
        }
        Codec::Opus => {
            let dops = Dops {
                output_channel_count: track.channels.clamp(1, 2) as u8,
                // RTP carries no pre-skip; 0 keeps the first samples rather than guessing.
                pre_skip: 0,
                input_sample_rate: 48_000,
                output_gain: 0,
                channel_mapping: None,
            };
            Opus {
                audio: Audio {
                    sample_rate: 48_000u16.into(),
                    ..audio
                },
                dops,
                btrt: None,
            }
            .into()
        }
        codec => return Err(MuxError::UnsupportedCodec(codec)),
    })
}

fn trak(index: usize, track: &TrackInfo) -> Result<Trak, MuxError> {
    let video = track.codec.kind() == streamgate_rtp::MediaKind::Video;
    let stbl = Stbl {
        stsd: Stsd {
            codecs: vec![sample_entry(index, track)?],
        },
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let minf = Minf {
        vmhd: video.then(Vmhd::default),
        smhd: (!video).then(Smhd::default),
        dinf: Dinf {
            dref: Dref {
                entries: vec![Url::default().into()],
            },
        },
        stbl,
        ..Default::default()
    };
    let width = track.params.width.unwrap_or(0).min(u16::MAX as u32) as u16;
    let height = track.params.height.unwrap_or(0).min(u16::MAX as u32) as u16;
    Ok(Trak {
        tkhd: Tkhd {
            track_id: track_id(index),
            enabled: true,
            in_movie: true,
            alternate_group: if video { 0 } else { 1 },
            volume: if video { 0.into() } else { 1.into() },
            matrix: Matrix::default(),
            width: if video { width.into() } else { 0.into() },
            height: if video { height.into() } else { 0.into() },
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: track.clock_rate,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: if video {
                    b"vide".into()
                } else {
                    b"soun".into()
                },
                name: if video {
                    "VideoHandler"
                } else {
                    "SoundHandler"
                }
                .to_owned(),
            },
            minf,
        },
        ..Default::default()
    })
}

/// `ftyp` + `moov` for the given tracks (track ids are their positions + 1).
pub fn init_segment(tracks: &[TrackInfo]) -> Result<Bytes, MuxError> {
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            next_track_id: track_id(tracks.len()),
            ..Default::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: (0..tracks.len())
                .map(|i| Trex {
                    track_id: track_id(i),
                    default_sample_description_index: 1,
                    ..Default::default()
                })
                .collect(),
        }),
        trak: tracks
            .iter()
            .enumerate()
            .map(|(i, t)| trak(i, t))
            .collect::<Result<_, _>>()?,
        ..Default::default()
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out).map_err(encode_err)?;
    moov.encode(&mut out).map_err(encode_err)?;
    Ok(out.into())
}

/// One sample, timed in its track's timescale.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Decode time (the muxer's output clock, starting near 0).
    pub dts: u64,
    pub duration: u32,
    /// Presentation minus decode time (non-zero with B-frames).
    pub composition_offset: i32,
    pub keyframe: bool,
    /// Video: NAL units (written length-prefixed); audio: one frame.
    pub units: Vec<Bytes>,
    /// Video samples are length-prefixed NAL units, audio samples are raw frames.
    pub video: bool,
}

impl Sample {
    /// Bytes this sample takes in `mdat`.
    pub fn size(&self) -> usize {
        let prefix = if self.video { 4 } else { 0 };
        self.units.iter().map(|u| u.len() + prefix).sum()
    }
}

/// The samples of one track in a fragment.
pub struct TrackRun<'a> {
    pub track_index: usize,
    pub samples: &'a [Sample],
}

/// `moof` + `mdat` holding each run's samples, runs laid out one after the other.
pub fn fragment(sequence_number: u32, runs: &[TrackRun<'_>]) -> Result<Bytes, MuxError> {
    let runs: Vec<&TrackRun<'_>> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let sizes: Vec<usize> = runs
        .iter()
        .map(|r| r.samples.iter().map(Sample::size).sum())
        .collect();
    let payload_len: usize = sizes.iter().sum();
    let mdat_len = payload_len
        .checked_add(8)
        .filter(|&l| l <= u32::MAX as usize)
        .ok_or(MuxError::TooLarge)?;

    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: runs
            .iter()
            .map(|run| {
                let with_cts = run.samples.iter().any(|s| s.composition_offset != 0);
                let entries = run
                    .samples
                    .iter()
                    .map(|s| TrunEntry {
                        duration: Some(s.duration),
                        size: Some(s.size() as u32),
                        flags: Some(if s.keyframe {
                            SYNC_SAMPLE_FLAGS
                        } else {
                            NON_SYNC_SAMPLE_FLAGS
                        }),
                        cts: with_cts.then_some(s.composition_offset as i64),
                    })
                    .collect();
                Traf {
                    tfhd: Tfhd {
                        track_id: track_id(run.track_index),
                        default_base_is_moof: true,
                        ..Default::default()
                    },
                    tfdt: Some(Tfdt {
                        base_media_decode_time: run.samples[0].dts,
                    }),
                    trun: vec![Trun {
                        data_offset: Some(0),
                        samples: TrunSamples::Explicit(entries),
                    }],
                    ..Default::default()
                }
            })
            .collect(),
    };
    // Data offsets are relative to the moof's start; its size does not depend on their values.
    let mut probe = Vec::new();
    moof.encode(&mut probe).map_err(encode_err)?;
    let mut offset = probe.len() + 8;
    for (traf, size) in moof.traf.iter_mut().zip(&sizes) {
        traf.trun[0].data_offset = Some(i32::try_from(offset).map_err(|_| MuxError::TooLarge)?);
        offset += size;
    }

    let mut moof_bytes = Vec::with_capacity(probe.len());
    moof.encode(&mut moof_bytes).map_err(encode_err)?;
    let mut out = BytesMut::with_capacity(moof_bytes.len() + mdat_len);
    out.put_slice(&moof_bytes);
    out.put_u32(mdat_len as u32);
    out.put_slice(b"mdat");
    for run in &runs {
        for sample in run.samples {
            for unit in &sample.units {
                if sample.video {
                    out.put_u32(unit.len() as u32);
                }
                out.put_slice(unit);
            }
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use mp4_atom::{Any, Decode};
    use streamgate_rtp::testing::{h264_track, opus_track};

    use super::*;

    #[test]
    fn init_segment_decodes_back_with_both_sample_entries() {
        let init = init_segment(&[h264_track(), opus_track()]).unwrap();
        let mut cursor = std::io::Cursor::new(init.as_ref());
        assert!(matches!(Any::decode(&mut cursor).unwrap(), Any::Ftyp(_)));
        let Any::Moov(moov) = Any::decode(&mut cursor).unwrap() else {
            panic!("no moov")
        };
        assert_eq!(moov.trak.len(), 2);
        assert!(matches!(
            moov.trak[0].mdia.minf.stbl.stsd.codecs[0],
            SampleEntry::Avc1(_)
        ));
        assert!(matches!(
            moov.trak[1].mdia.minf.stbl.stsd.codecs[0],
            SampleEntry::Opus(_)
        ));
        assert_eq!(moov.trak[1].mdia.mdhd.timescale, 48_000);
    }

    #[test]
    fn fragment_offsets_point_at_each_tracks_samples() {
        let video = [Sample {
            dts: 9000,
            duration: 3000,
            composition_offset: 0,
            keyframe: true,
            units: vec![Bytes::from_static(&[0x65, 1, 2, 3])],
            video: true,
        }];
        let audio = [Sample {
            dts: 4800,
            duration: 960,
            composition_offset: 0,
            keyframe: true,
            units: vec![Bytes::from_static(&[0xaa, 0xbb])],
            video: false,
        }];
        let bytes = fragment(
            7,
            &[
                TrackRun {
                    track_index: 0,
                    samples: &video,
                },
                TrackRun {
                    track_index: 1,
                    samples: &audio,
                },
            ],
        )
        .unwrap();
        let mut cursor = std::io::Cursor::new(bytes.as_ref());
        let Any::Moof(moof) = Any::decode(&mut cursor).unwrap() else {
            panic!("no moof")
        };
        let moof_len = cursor.position() as usize;
        assert_eq!(moof.mfhd.sequence_number, 7);
        assert_eq!(
            moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time,
            9000
        );
        let video_at = moof.traf[0].trun[0].data_offset.unwrap() as usize;
        let audio_at = moof.traf[1].trun[0].data_offset.unwrap() as usize;
        assert_eq!(video_at, moof_len + 8);
        assert_eq!(&bytes[video_at..video_at + 8], &[0, 0, 0, 4, 0x65, 1, 2, 3]);
        assert_eq!(&bytes[audio_at..audio_at + 2], &[0xaa, 0xbb]);
        assert_eq!(bytes.len(), audio_at + 2);
    }

    #[test]
    fn composition_offsets_are_signed_in_a_version_1_trun() {
        let samples: Vec<Sample> = [3000, 9000, 0, -3000]
            .into_iter()
            .enumerate()
            .map(|(n, cts)| Sample {
                dts: 3000 * n as u64,
                duration: 3000,
                composition_offset: cts,
                keyframe: n == 0,
                units: vec![Bytes::from_static(&[0x41, 1])],
                video: true,
            })
            .collect();
        let bytes = fragment(
            1,
            &[TrackRun {
                track_index: 0,
                samples: &samples,
            }],
        )
        .unwrap();
        let at = bytes.windows(4).position(|w| w == b"trun").unwrap();
        assert_eq!(bytes[at + 4], 1, "trun version 1: signed offsets");
        let mut cursor = std::io::Cursor::new(bytes.as_ref());
        let Any::Moof(moof) = Any::decode(&mut cursor).unwrap() else {
            panic!("no moof")
        };
        let TrunSamples::Explicit(entries) = &moof.traf[0].trun[0].samples else {
            panic!("explicit samples")
        };
        let cts: Vec<Option<i64>> = entries.iter().map(|e| e.cts).collect();
        assert_eq!(cts, [Some(3000), Some(9000), Some(0), Some(-3000)]);
    }
}
