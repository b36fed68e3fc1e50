//! Still pictures of a stream: one H.264/H.265 keyframe access unit, as the
//! Hub's GOP cache holds it, decoded, scaled with swscale and encoded as JPEG or
//! PNG.
//!
//! One blocking call ([`render`]) with no I/O and no state: the caller decides
//! when to decode (once per cached keyframe), on which thread and how many at a
//! time. Every FFmpeg failure comes back as a [`SnapshotError`], never a panic,
//! since keyframes come from cameras and may be anything.

use bytes::Bytes;
use ffmpeg::codec::{self, packet::Packet};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{self, flag::Flags};
use ffmpeg::util::frame::video::Video;
use ffmpeg_next as ffmpeg;
use streamgate_rtp::{Codec, CodecParams};

/// Largest width or height a caller may ask for (and that is encoded).
pub const MAX_DIMENSION: u32 = 8192;

/// Why no picture came out.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshots are of H.264 or H.265 video, not {0:?}")]
    UnsupportedCodec(Codec),
    #[error("width and height are 1-{MAX_DIMENSION}, got {width}x{height}")]
    BadSize { width: u32, height: u32 },
    #[error("the keyframe did not decode into a picture")]
    NoPicture,
    #[error("ffmpeg {step}: {source}")]
    Ffmpeg {
        step: &'static str,
        source: ffmpeg::Error,
    },
}

/// Tags an FFmpeg error with the step that failed, so the message says where.
trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, SnapshotError>;
}

impl<T> Step<T> for Result<T, ffmpeg::Error> {
    fn step(self, step: &'static str) -> Result<T, SnapshotError> {
        self.map_err(|source| SnapshotError::Ffmpeg { step, source })
    }
}

/// The picture's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
}

/// The size asked for; `None` on a side follows the other side's scale (the
/// picture's own size when both are `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Size {
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl Size {
    /// Refuses 0 and sizes over [`MAX_DIMENSION`] before anything is decoded.
    pub fn validate(self) -> Result<Self, SnapshotError> {
        for side in [self.width, self.height].into_iter().flatten() {
            if side == 0 || side > MAX_DIMENSION {
                return Err(SnapshotError::BadSize {
                    width: self.width.unwrap_or(0),
                    height: self.height.unwrap_or(0),
                });
            }
        }
        Ok(self)
    }

    /// The output size for a `width`x`height` picture: the aspect ratio kept when
    /// one side is given; even sides, as yuvj420p needs.
    fn resolve(self, width: u32, height: u32) -> Result<(u32, u32), SnapshotError> {
        let scaled = |given: u32, from: u32, to: u32| {
            (u64::from(given) * u64::from(to) / u64::from(from.max(1))) as u32
        };
        let (w, h) = match (self.width, self.height) {
            (Some(w), Some(h)) => (w, h),
            (Some(w), None) => (w, scaled(w, width, height)),
            (None, Some(h)) => (scaled(h, height, width), h),
            (None, None) => (width, height),
        };
        let even = |side: u32| (side & !1).max(2);
        let (w, h) = (even(w), even(h));
        if w > MAX_DIMENSION || h > MAX_DIMENSION {
            return Err(SnapshotError::BadSize {
                width: w,
                height: h,
            });
        }
        Ok((w, h))
    }
}

/// One keyframe access unit: the track's parameter sets and the frame's NAL
/// units (no start codes), as `TrackInfo::params` and `Frame::units` hold them.
pub struct Keyframe<'a> {
    pub codec: Codec,
    pub params: &'a CodecParams,
    pub units: &'a [Bytes],
}

impl Keyframe<'_> {
    /// Annex B: the parameter sets first (in-band copies in `units` repeat them
    /// harmlessly), so the decoder needs no extradata.
    fn annex_b(&self) -> Vec<u8> {
        let params = [&self.params.vps, &self.params.sps, &self.params.pps];
        let units = params
            .into_iter()
            .flatten()
            .chain(self.units)
            .filter(|unit| !unit.is_empty());
        let mut out = Vec::with_capacity(self.units.iter().map(|u| u.len() + 4).sum());
        for unit in units {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(unit);
        }
        out
    }
}

/// Decodes `keyframe`, scales it to `size` and encodes it as `format`.
pub fn render(
    keyframe: &Keyframe<'_>,
    size: Size,
    format: ImageFormat,
) -> Result<Vec<u8>, SnapshotError> {
    let size = size.validate()?;
    let id = match keyframe.codec {
        Codec::H264 => codec::Id::H264,
        Codec::H265 => codec::Id::HEVC,
        other => return Err(SnapshotError::UnsupportedCodec(other)),
    };
    ffmpeg::init().step("init")?;
    let picture = decode(id, &keyframe.annex_b())?;
    let (width, height) = size.resolve(picture.width(), picture.height())?;
    let pixel = match format {
        ImageFormat::Jpeg => Pixel::YUVJ420P,
        ImageFormat::Png => Pixel::RGB24,
    };
    let mut scaler = scaling::Context::get(
        picture.format(),
        picture.width(),
        picture.height(),
        pixel,
        width,
        height,
        Flags::BILINEAR,
    )
    .step("swscale setup")?;
    let mut scaled = Video::empty();
    scaler.run(&picture, &mut scaled).step("swscale")?;
    encode(&scaled, format)
}

/// The one picture of an access unit: sent, then the decoder drained.
fn decode(id: codec::Id, annex_b: &[u8]) -> Result<Video, SnapshotError> {
    let codec = ffmpeg::decoder::find(id).ok_or(SnapshotError::Ffmpeg {
        step: "find decoder",
        source: ffmpeg::Error::DecoderNotFound,
    })?;
    let mut decoder = codec::Context::new_with_codec(codec)
        .decoder()
        .video()
        .step("open decoder")?;
    decoder.send_packet(&Packet::copy(annex_b)).step("decode")?;
    decoder.send_eof().step("decode")?;
    let mut picture = Video::empty();
    match decoder.receive_frame(&mut picture) {
        Ok(()) if picture.width() > 0 && picture.height() > 0 => Ok(picture),
        Ok(()) | Err(ffmpeg::Error::Eof) => Err(SnapshotError::NoPicture),
        Err(source) => Err(SnapshotError::Ffmpeg {
            step: "decode",
            source,
        }),
    }
}

/// `picture` (already in the encoder's pixel format) as one JPEG or PNG.
fn encode(picture: &Video, format: ImageFormat) -> Result<Vec<u8>, SnapshotError> {
    let id = match format {
        ImageFormat::Jpeg => codec::Id::MJPEG,
        ImageFormat::Png => codec::Id::PNG,
    };
    let codec = ffmpeg::encoder::find(id).ok_or(SnapshotError::Ffmpeg {
        step: "find encoder",
        source: ffmpeg::Error::EncoderNotFound,
    })?;
    let mut encoder = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .step("encoder setup")?;
    encoder.set_width(picture.width());
    encoder.set_height(picture.height());
    encoder.set_format(picture.format());
    encoder.set_time_base((1, 25));
    let mut encoder = encoder.open().step("open encoder")?;
    encoder.send_frame(picture).step("encode")?;
    encoder.send_eof().step("encode")?;
    let mut packet = Packet::empty();
    encoder.receive_packet(&mut packet).step("encode")?;
    packet
        .data()
        .map(<[u8]>::to_vec)
        .ok_or(SnapshotError::NoPicture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_keyframe_is_an_error() {
        let params = CodecParams {
            sps: Some(Bytes::from_static(&[0x67, 0xff, 0x00, 0x13, 0x37])),
            pps: Some(Bytes::from_static(&[0x68, 0xde, 0xad])),
            ..CodecParams::default()
        };
        let units = [Bytes::from_static(&[
            0x65, 0x88, 0x84, 0x00, 0xff, 0xff, 0x12,
        ])];
        let keyframe = Keyframe {
            codec: Codec::H264,
            params: &params,
            units: &units,
        };
        for format in [ImageFormat::Jpeg, ImageFormat::Png] {
            assert!(render(&keyframe, Size::default(), format).is_err());
        }
    }

    #[test]
    fn audio_is_refused() {
        let keyframe = Keyframe {
            codec: Codec::Opus,
            params: &CodecParams::default(),
            units: &[],
        };
        assert!(matches!(
            render(&keyframe, Size::default(), ImageFormat::Jpeg),
            Err(SnapshotError::UnsupportedCodec(Codec::Opus))
        ));
    }

    #[test]
    fn sizes() {
        let bad = |width, height| Size { width, height }.validate().is_err();
        assert!(bad(Some(0), None));
        assert!(bad(None, Some(100_000)));
        assert!(!bad(Some(8192), Some(1)));
        let size = |width, height| Size { width, height }.resolve(1280, 720).unwrap();
        assert_eq!(size(Some(320), None), (320, 180));
        assert_eq!(size(None, Some(360)), (640, 360));
        assert_eq!(size(None, None), (1280, 720));
        assert_eq!(size(Some(101), Some(51)), (100, 50));
        // One side at the cap can make the other too large.
        assert!(Size {
            width: None,
            height: Some(8192)
        }
        .resolve(1280, 10)
        .is_err());
    }
}
