//! The simulator's snapshots: a test picture (colour bars over a grey ramp)
//! drawn at whatever size a request asks for, as Ring answers at the requested
//! resolution. Encoded with `jpeg-encoder` and `png`, pure-Rust encoders with no
//! system libraries, so the simulator still builds anywhere.

/// Size when a request names none (Ring documents no default [guess]).
pub const DEFAULT_SIZE: (u16, u16) = (640, 360);

/// The picture formats Ring serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }
}

const BARS: [[u8; 3]; 7] = [
    [192, 192, 192],
    [192, 192, 0],
    [0, 192, 192],
    [0, 192, 0],
    [192, 0, 192],
    [192, 0, 0],
    [0, 0, 192],
];

/// RGB pixels of the test picture: bars in the top two thirds, a ramp below.
fn pixels(width: u16, height: u16) -> Vec<u8> {
    let (w, h) = (usize::from(width), usize::from(height));
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let pixel = if y * 3 < h * 2 {
                BARS[x * BARS.len() / w]
            } else {
                let level = (x * 255 / w.max(1)) as u8;
                [level; 3]
            };
            rgb.extend_from_slice(&pixel);
        }
    }
    rgb
}

/// The test picture at `width` x `height` (each at least 1), encoded.
pub fn render(format: Format, width: u16, height: u16) -> Result<Vec<u8>, String> {
    let rgb = pixels(width, height);
    let mut out = Vec::new();
    match format {
        Format::Jpeg => jpeg_encoder::Encoder::new(&mut out, 85)
            .encode(&rgb, width, height, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| e.to_string())?,
        Format::Png => {
            let mut encoder = png::Encoder::new(&mut out, width.into(), height.into());
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
            writer.write_image_data(&rgb).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_come_at_the_size_asked_for() {
        let jpeg = render(Format::Jpeg, 333, 77).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "JPEG SOI");
        // The baseline frame header (SOF0) holds height then width.
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        let size = |at: usize| u16::from_be_bytes([jpeg[at], jpeg[at + 1]]);
        assert_eq!((size(sof + 7), size(sof + 5)), (333, 77));

        let png = render(Format::Png, 1, 1080).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // IHDR: width and height as 32-bit big-endian after the chunk type.
        let ihdr = png.windows(4).position(|w| w == b"IHDR").unwrap();
        let size = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        assert_eq!((size(ihdr + 4), size(ihdr + 8)), (1, 1080));
    }
}
