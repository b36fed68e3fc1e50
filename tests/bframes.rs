//! Cameras that send B-frames: an RTSP camera (the GStreamer fake camera looping
//! x264 `-bf 2` High profile + AAC) and the x265 B-pyramid capture replayed as a
//! `pcap:` source. Their RTP timestamps step back at every B-frame; the gateway
//! derives decode times at ingest, so its HLS output (fMP4 with composition
//! offsets) and its RTSP restream (the source's presentation timestamps, as
//! sent) are read by ffmpeg with rising decode times and in the source's frame
//! order, and hls.js plays the HLS stream in Chromium.

use crate::support;

use support::camera::{media, Camera};
use support::player::{list, number, play_from_start};
use support::{repo_path, run_peer, Gateway, TempDir};

/// What ffmpeg logs when the decode times it reads or writes are wrong.
const TIMESTAMP_WARNINGS: [&str; 3] = [
    "non monotonically increasing dts",
    "Non-monotonous DTS",
    "Invalid DTS",
];

/// Which of ffmpeg's timestamp warnings fail a copy.
#[derive(Clone, Copy)]
enum Warnings {
    AllFail,
    /// All but those of ffmpeg's RTSP reader's start-up on a B-pyramid: that
    /// reader gives the first picture no timestamp (as it does with
    /// gst-rtsp-server as the camera) and guesses decode times for the picture
    /// group around it, so such warnings name only times within the first second.
    ExceptReaderStartUp,
}

/// Whether `warning` names only times within the first second (90 kHz ticks).
fn within_first_second(warning: &str) -> bool {
    let Some((_, message)) = warning.split_once("] ") else {
        return false;
    };
    let mut times = message
        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter_map(|word| word.parse::<i64>().ok());
    times.all(|t| t.abs() < 90_000)
}

/// Seconds each reader copies.
const SECONDS: &str = "8";

fn camera_gateway(camera: &Camera) -> Gateway {
    let gateway = Gateway::hls_with(
        &format!(
            "[streams.cam]\nsource = \"{}\"\nalways_on = true\n",
            camera.url()
        ),
        "",
    );
    gateway.wait_ok("/hls/cam/index.m3u8");
    gateway
}

/// ffmpeg copies the video of `url` (no re-encode) into an MP4 file, whose muxer
/// checks the decode times it is given; returns the file. Fails on any timestamp
/// warning ffmpeg logs, reading or writing.
fn copy_video(
    url: &str,
    input_options: &[&str],
    failing: Warnings,
    dir: &TempDir,
    name: &str,
) -> String {
    let out = dir.path().join(format!("{name}.mp4"));
    let out = out.to_str().expect("utf-8 path").to_owned();
    let mut args = vec!["-nostdin", "-hide_banner", "-nostats", "-v", "warning"];
    args.extend(input_options);
    args.extend([
        "-i", url, "-map", "0:v:0", "-c", "copy", "-t", SECONDS, "-y", &out,
    ]);
    let (ok, _, stderr) = run_peer("ffmpeg", &args);
    assert!(ok, "ffmpeg reading {url} failed:\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| TIMESTAMP_WARNINGS.iter().any(|w| l.contains(w)))
        .filter(|l| matches!(failing, Warnings::AllFail) || !within_first_second(l))
        .collect();
    assert!(
        warnings.is_empty(),
        "ffmpeg reading {url}:\n{}",
        warnings.join("\n")
    );
    out
}

/// ffprobe's `entries` of the first video stream of `path`, one CSV line each;
/// `decode_errors_fail`: any message on stderr fails the test.
fn ffprobe_video_csv(path: &str, entries: &str, decode_errors_fail: bool) -> Vec<String> {
    let args = [
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        entries,
        "-of",
        "csv=p=0",
        path,
    ];
    let (ok, stdout, stderr) = run_peer("ffprobe", &args);
    assert!(
        ok && (!decode_errors_fail || stderr.trim().is_empty()),
        "ffprobe {path}:\n{stderr}"
    );
    stdout.lines().map(str::to_owned).collect()
}

/// Picture types in presentation order (ffprobe decodes `path`), e.g. "IBBPBBP…";
/// fails on any decoding error.
fn picture_types(path: &str) -> String {
    ffprobe_video_csv(path, "frame=pict_type", true)
        .iter()
        .filter_map(|l| l.split(',').next()?.trim().chars().next())
        .collect()
}

/// `(pts, dts)` of every video packet of `path`.
fn packet_times(path: &str) -> Vec<(i64, i64)> {
    ffprobe_video_csv(path, "packet=pts,dts", false)
        .iter()
        .filter_map(|l| {
            let (pts, dts) = l.split_once(',')?;
            Some((pts.trim().parse().ok()?, dts.trim().parse().ok()?))
        })
        .collect()
}

/// What a reader got of the source `media` (a looping file) through one output:
/// decode times rise and precede presentation, B-frames are there, and the
/// pictures come in the source's order from a keyframe on. (From the first
/// keyframe decoded: ffmpeg's RTSP reader cannot time the packets before the
/// stream's first sender report, and discards the keyframe the restream starts
/// with, so the B-frames after it come out first.)
fn assert_same_pictures(copied: &str, media_name: &str, output: &str) {
    let times = packet_times(copied);
    assert!(times.len() >= 100, "{output}: {} packets", times.len());
    for (i, pair) in times.windows(2).enumerate() {
        assert!(pair[1].1 > pair[0].1, "{output}: packet {i}: dts {pair:?}");
    }
    assert!(
        times.iter().all(|(pts, dts)| dts <= pts),
        "{output}: dts after pts: {times:?}"
    );
    // Presentation times step back at each B-frame, as the source's RTP
    // timestamps do (the restream forwards them as they came).
    let steps_back = times.windows(2).filter(|w| w[1].0 < w[0].0).count();
    assert!(
        steps_back >= times.len() / 4,
        "{output}: pts stepped back {steps_back} times in {} packets",
        times.len()
    );

    let source = picture_types(media(media_name).to_str().expect("utf-8 path"));
    let got = picture_types(copied);
    let keyframe = got.find('I').unwrap_or(got.len());
    // The copy may end inside a B-frame group: compare all but its last few pictures.
    let compared = &got[keyframe..got.len().saturating_sub(8)];
    assert!(compared.len() >= 90, "{output}: {got}");
    assert!(compared.contains('B'), "{output} has B-frames: {got}");
    assert!(
        source.repeat(3).contains(compared),
        "{output} pictures differ from the source's:\n got    {compared}\n source {source}"
    );
}

#[test]
fn h264_b_frame_camera_reads_in_order_over_rtsp_and_hls() {
    let camera = Camera::with_media("ffmpeg_h264_bframes.mp4", &[]);
    let gateway = camera_gateway(&camera);
    let dir = TempDir::new("bframes");

    // RTSP: the source's presentation timestamps go out untouched; ffmpeg
    // derives its own decode times from them.
    let rtsp = copy_video(
        &gateway.rtsp_url("cam"),
        &["-rtsp_transport", "tcp"],
        Warnings::AllFail,
        &dir,
        "rtsp",
    );
    assert_same_pictures(&rtsp, "ffmpeg_h264_bframes.mp4", "RTSP restream");

    // HLS: fMP4 timed by the decode times derived at ingest.
    let hls = copy_video(
        &gateway.http_url("/hls/cam/index.m3u8"),
        &[],
        Warnings::AllFail,
        &dir,
        "hls",
    );
    assert_same_pictures(&hls, "ffmpeg_h264_bframes.mp4", "HLS");
}

#[test]
fn h265_b_pyramid_capture_reads_in_order_over_hls_and_rtsp() {
    let capture = repo_path("fixtures/ffmpeg_h265_bframes.pcap");
    let gateway = Gateway::hls_with(
        &format!("[streams.h265]\nsource = \"pcap:{}\"\n", capture.display()),
        "",
    );
    gateway.wait_ok("/hls/h265/index.m3u8");
    let dir = TempDir::new("bframes-h265");
    let hls = copy_video(
        &gateway.http_url("/hls/h265/index.m3u8"),
        &[],
        Warnings::AllFail,
        &dir,
        "hls",
    );
    assert_same_pictures(&hls, "ffmpeg_h265_bframes.mp4", "HLS");
    let rtsp = copy_video(
        &gateway.rtsp_url("h265"),
        &["-rtsp_transport", "tcp"],
        Warnings::ExceptReaderStartUp,
        &dir,
        "rtsp",
    );
    assert_same_pictures(&rtsp, "ffmpeg_h265_bframes.mp4", "RTSP restream");
}

#[test]
fn chromium_plays_a_b_frame_camera_over_hls() {
    let camera = Camera::with_media("ffmpeg_h264_bframes.mp4", &[]);
    let gateway = camera_gateway(&camera);
    let report = play_from_start(&gateway.http_url("/hls/cam/"), 8);
    println!("chromium report: {report}");
    assert_eq!(
        list(&report, "fatalErrors"),
        "",
        "hls.js fatal errors: {report}"
    );
    let seconds = number(&report, "mediaSecondsPlayed");
    assert!(
        seconds >= 8.0,
        "played {seconds} s: {report}\n{}",
        gateway.log()
    );
    // Every picture reaches the video element: 25 per second of media time
    // (a count of the stream's frames, not a rate: the element counts late
    // frames as dropped, not missing). Without decode times the muxer cannot
    // place the B-frames and 2 of 3 pictures are missing.
    let frames = number(&report, "framesPlayed");
    assert!(
        frames >= 20.0 * seconds,
        "{frames} frames in {seconds} s of media: {report}"
    );
}
