//! ffprobe and ffmpeg (what Frigate and most tools run) read the gateway's LL-HLS
//! output of the demo stream and decode it without errors.

use crate::support;

use support::{run_peer, Gateway};

#[test]
fn ffprobe_sees_h264_and_aac_in_the_playlist() {
    let gateway = Gateway::hls("");
    gateway.wait_ok("/hls/demo/index.m3u8");
    let url = gateway.http_url("/hls/demo/index.m3u8");
    let (ok, stdout, stderr) = run_peer(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,sample_rate",
            "-of",
            "csv=p=0",
            &url,
        ],
    );
    assert!(ok, "ffprobe failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "ffprobe reported errors: {stderr}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("h264,1280,720")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("aac,48000")),
        "{stdout}"
    );
}

/// Decodes 12 s of both tracks to `framecrc` and checks that at least 10 s of
/// each were decoded, with nothing on ffmpeg's error log.
#[test]
fn ffmpeg_decodes_ten_seconds_of_video_and_audio() {
    let gateway = Gateway::hls("");
    gateway.wait_ok("/hls/demo/index.m3u8");
    let url = gateway.http_url("/hls/demo/index.m3u8");
    let (ok, stdout, stderr) = run_peer(
        "ffmpeg",
        &[
            "-nostdin", "-v", "error", "-i", &url, "-t", "12", "-map", "0:v", "-map", "0:a", "-f",
            "framecrc", "-",
        ],
    );
    assert!(ok, "ffmpeg failed: {stderr}\n{}", gateway.log());
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg reported errors:\n{stderr}"
    );

    // framecrc: "#tb N: num/den" headers, then "stream, dts, pts, duration, size, crc".
    let mut timebases = Vec::new();
    let mut decoded = [0f64; 2];
    for line in stdout.lines() {
        if let Some(tb) = line.strip_prefix("#tb ") {
            let (_, ratio) = tb.split_once(": ").unwrap();
            let (num, den) = ratio.split_once('/').unwrap();
            timebases.push(num.trim().parse::<f64>().unwrap() / den.trim().parse::<f64>().unwrap());
        } else if !line.starts_with('#') {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let stream: usize = fields[0].parse().unwrap();
            let duration: f64 = fields[3].parse().unwrap();
            decoded[stream] += duration * timebases[stream];
        }
    }
    println!(
        "decoded: video {:.2} s, audio {:.2} s",
        decoded[0], decoded[1]
    );
    assert!(
        decoded[0] >= 10.0,
        "only {:.2} s of video decoded",
        decoded[0]
    );
    assert!(
        decoded[1] >= 10.0,
        "only {:.2} s of audio decoded",
        decoded[1]
    );
}

/// The bundled H.264 + Opus and H.265 captures: the playlist declares `opus` and
/// `hvc1.…`, and ffmpeg decodes them without errors.
#[test]
fn opus_and_hevc_captures_play() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let gateway = Gateway::hls_with(
        &format!(
            "[streams.opus]\nsource = \"pcap:{fixtures}/ffmpeg_h264_opus.pcap\"\n\n\
             [streams.hevc]\nsource = \"pcap:{fixtures}/ffmpeg_h265.pcap\"\n"
        ),
        "",
    );
    for (name, codec, expected) in [("opus", "opus", "h264"), ("hevc", "hvc1.", "hevc")] {
        let multivariant = gateway.wait_ok(&format!("/hls/{name}/index.m3u8")).text();
        assert!(
            multivariant.contains(codec),
            "{name}: CODECS lacks {codec}:\n{multivariant}"
        );
        let url = gateway.http_url(&format!("/hls/{name}/index.m3u8"));
        let (ok, stdout, stderr) = run_peer(
            "ffmpeg",
            &[
                "-nostdin", "-v", "error", "-i", &url, "-t", "4", "-f", "framecrc", "-",
            ],
        );
        assert!(
            ok && stderr.trim().is_empty(),
            "{name}: ffmpeg errors:\n{stderr}"
        );
        let (_, probe, _) = run_peer(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
                &url,
            ],
        );
        assert!(
            probe.lines().any(|l| l == expected),
            "{name}: ffprobe saw {probe}"
        );
        if name == "opus" {
            assert!(
                probe.lines().any(|l| l == "opus"),
                "{name}: ffprobe saw {probe}"
            );
        }
        let frames = stdout.lines().filter(|l| !l.starts_with('#')).count();
        assert!(frames > 50, "{name}: only {frames} frames decoded");
    }
}
