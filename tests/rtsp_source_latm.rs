//! A camera that sends its AAC as RFC 6416 `MP4A-LATM` (gst-rtsp-server with
//! GStreamer's `rtpmp4apay`, tests/peers/gst_camera.py `--aac-latm`), as most IP
//! cameras do: the Hub gets raw AAC frames with the AudioSpecificConfig from the
//! StreamMuxConfig; the binary re-serves the LATM packets over RTSP (DESCRIBE
//! states the camera's config) and muxes the audio into HLS; ffmpeg decodes both
//! with audio and without errors, and GStreamer's `rtspsrc` (whose LATM
//! depayloader reads the config itself) decodes the RTSP restream too.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use streamgate_rtp::{Codec, MediaKind};
use streamgate_rtsp::client::RtspSource;
use support::camera::*;
use support::{progress_number, run_peer, run_python_peer, text, Gateway};

/// GStreamer's StreamMuxConfig for the fixture's AAC-LC 48 kHz stereo.
const CAMERA_CONFIG: &str = "40002320ADCA00";
/// The AudioSpecificConfig inside it (the same as the mpeg4-generic camera's).
const AUDIO_SPECIFIC_CONFIG: &[u8] = &[0x11, 0x90, 0x56, 0xe5, 0x00];

fn latm_camera() -> Camera {
    Camera::start(&["--aac-latm"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_gets_raw_aac_frames_from_a_latm_camera() {
    init();
    let camera = latm_camera();
    let hub = hub("cam-latm");
    let mut config = source_config(&camera.url(), "tcp");
    config.always_on = true;
    let source = RtspSource::spawn(hub.clone(), config).expect("spawn source");
    let tracks = hub.wait_ready(WAIT).await.expect("tracks never ready");
    let audio = &tracks[1];
    assert_eq!(
        (
            tracks[0].codec,
            audio.codec,
            audio.clock_rate,
            audio.channels
        ),
        (Codec::H264, Codec::AacLatm, 48_000, 2),
        "{tracks:?}"
    );
    assert_eq!(
        audio.params.audio_config.as_deref(),
        Some(AUDIO_SPECIFIC_CONFIG)
    );

    // 50 audio frames: one AAC frame each (no LATM length bytes: an AAC-LC raw data
    // block of a stereo stream starts with a CPE, or, in the encoder's first frame
    // at each loop of the file, a FIL element naming the encoder), 1024 ticks
    // apart, each with the one packet GStreamer sends it in.
    const CPE: u8 = 1;
    const FIL: u8 = 6;
    let mut subscription = hub.subscribe();
    let mut audio_dts = Vec::new();
    while audio_dts.len() < 50 {
        let frame = tokio::time::timeout(WAIT, subscription.recv())
            .await
            .expect("no frame")
            .expect("hub closed");
        if frame.kind != MediaKind::Audio {
            continue;
        }
        assert_eq!(frame.units.len(), 1);
        assert!(
            matches!(frame.units[0][0] >> 5, CPE | FIL),
            "not a raw AAC frame: {:02x?}",
            &frame.units[0][..4]
        );
        assert_eq!(frame.packets.len(), 1);
        audio_dts.push(frame.dts);
    }
    let steps: Vec<u64> = audio_dts.windows(2).map(|w| w[1] - w[0]).collect();
    // Once, when the camera's first sender reports arrive, the ingest may delay a
    // track to keep the camera's audio/video offset: one longer step at most.
    let regular = steps.iter().filter(|&&s| s == 1024).count();
    assert!(
        regular + 1 >= steps.len() && steps.iter().all(|&s| s >= 1024),
        "{steps:?}"
    );
    source.stop().await;
    assert!(
        !PANICKED.load(std::sync::atomic::Ordering::SeqCst),
        "a task panicked; log:\n{}",
        logs()
    );
}

#[test]
fn latm_camera_is_restreamed_over_rtsp_and_hls_with_audio() {
    let camera = latm_camera();
    let gateway = Gateway::hls_with(
        &format!(
            "[streams.cam]\nsource = \"{}\"\nalways_on = true\n",
            camera.url()
        ),
        "",
    );

    // The restream describes the forwarded packets with the camera's own config.
    let multivariant = gateway.wait_ok("/hls/cam/index.m3u8").text();
    let sdp = describe(gateway.rtsp_port, "cam");
    assert!(
        sdp.contains("a=rtpmap:97 MP4A-LATM/48000/2\r\n")
            && sdp.contains(&format!("a=fmtp:97 cpresent=0;config={CAMERA_CONFIG}\r\n")),
        "{sdp}"
    );
    let (video, audio) = decode(&gateway.rtsp_url("cam"), &["-rtsp_transport", "tcp"]);
    assert!(
        video >= 6.0 && audio >= 6.0,
        "RTSP: decoded only {video:.2} s of video, {audio:.2} s of audio"
    );
    let output = run_python_peer("gst_play.py", &[&gateway.rtsp_url("cam"), "tcp", "6"]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success() && !stdout.contains("error="),
        "GStreamer failed on the restream:\n{stdout}\n{}",
        text(&output.stderr)
    );
    let audio_buffers: u64 = progress_number(&stdout, "audio");
    assert!(
        audio_buffers >= 100,
        "GStreamer decoded only {audio_buffers} audio buffers in 6 s:\n{stdout}"
    );

    assert!(
        multivariant.contains("mp4a.40.2"),
        "CODECS lacks mp4a.40.2:\n{multivariant}"
    );
    let (video, audio) = decode(&gateway.http_url("/hls/cam/index.m3u8"), &[]);
    assert!(
        video >= 6.0 && audio >= 6.0,
        "HLS: decoded only {video:.2} s of video, {audio:.2} s of audio"
    );
    let (ok, probe, stderr) = run_peer(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "csv=p=0",
            &gateway.http_url("/hls/cam/index.m3u8"),
        ],
    );
    assert!(ok && stderr.trim().is_empty(), "ffprobe: {stderr}");
    assert!(probe.lines().any(|l| l == "aac,48000,2"), "{probe}");
}

/// ffmpeg decodes 8 s of both tracks of `url` to `framecrc`, with nothing on its
/// error log; returns the seconds of video and audio it decoded.
fn decode(url: &str, input_options: &[&str]) -> (f64, f64) {
    let mut args = vec!["-nostdin", "-v", "error"];
    args.extend_from_slice(input_options);
    args.extend_from_slice(&[
        "-i", url, "-t", "8", "-map", "0:v", "-map", "0:a", "-f", "framecrc", "-",
    ]);
    let (ok, stdout, stderr) = run_peer("ffmpeg", &args);
    assert!(ok, "ffmpeg failed on {url}: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg reported errors decoding {url}:\n{stderr}"
    );
    // framecrc: "#tb N: num/den" headers, then "stream, dts, pts, duration, size, crc".
    let mut timebases = Vec::new();
    let mut decoded = [0f64; 2];
    for line in stdout.lines() {
        if let Some(tb) = line.strip_prefix("#tb ") {
            let (_, ratio) = tb.split_once(": ").expect("timebase line");
            let (num, den) = ratio.split_once('/').expect("timebase ratio");
            timebases.push(num.trim().parse::<f64>().unwrap() / den.trim().parse::<f64>().unwrap());
        } else if !line.starts_with('#') {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let stream: usize = fields[0].parse().expect("stream index");
            let duration: f64 = fields[3].parse().expect("duration");
            decoded[stream] += duration * timebases[stream];
        }
    }
    println!(
        "{url}: decoded video {:.2} s, audio {:.2} s",
        decoded[0], decoded[1]
    );
    (decoded[0], decoded[1])
}

/// The SDP body of a DESCRIBE of `rtsp://127.0.0.1:{port}/{path}`.
fn describe(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "DESCRIBE rtsp://127.0.0.1:{port}/{path} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    )
    .expect("send DESCRIBE");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("read DESCRIBE response");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                assert!(head.starts_with("RTSP/1.0 200"), "{text}");
                return body.to_owned();
            }
        }
    }
}
