//! The RTSP restream read by real clients: ffprobe, ffmpeg over TCP and UDP,
//! GStreamer rtspsrc over TCP and UDP, aiortsp, and ffmpeg with Frigate's input
//! arguments. The stream is the bundled demo capture (720p H.264 + AAC stereo,
//! 2 s GOP) replayed by the gateway at real time.

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::*;

#[test]
fn ffprobe_sees_both_tracks_with_codecs_and_resolution() {
    let gateway = Gateway::demo("", "");
    let output = ffprobe_streams(&gateway.rtsp_url("demo"), &[]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "ffprobe failed: {}\n{}",
        text(&output.stderr),
        gateway.log()
    );
    for expected in [
        "codec_type=video",
        "codec_name=h264",
        "width=1280",
        "height=720",
        "codec_type=audio",
        "codec_name=aac",
        "sample_rate=48000",
        "channels=2",
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "ffprobe output lacks {expected}:\n{stdout}"
        );
    }
}

fn assert_clean_decode(transport: &str) {
    let gateway = Gateway::demo("", "");
    let output = ffmpeg_decode(&gateway.rtsp_url("demo"), transport, 10, &[], &[]);
    let stderr = text(&output.stderr);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "ffmpeg over {transport} failed: {stderr}\n{}",
        gateway.log()
    );
    // Over TCP ffmpeg must print nothing at error level; over UDP its
    // video-first socket reading may add one muxer timestamp notice.
    let problems = match transport {
        "tcp" => error_lines(&stderr),
        _ => decode_errors(&stderr),
    };
    assert!(
        problems.is_empty(),
        "ffmpeg over {transport} reported decode errors:\n{stderr}"
    );
    let frames: u64 = decoded_frames(&stdout);
    // 10 s at 25 fps is 250 frames; allow ffmpeg's own start/end rounding.
    assert!(
        frames >= 240,
        "only {frames} video frames decoded over {transport}:\n{stdout}"
    );
}

#[test]
fn ffmpeg_over_tcp_decodes_10s_without_errors() {
    assert_clean_decode("tcp");
}

#[test]
fn ffmpeg_over_udp_decodes_10s_without_errors() {
    assert_clean_decode("udp");
}

#[test]
fn first_video_packet_is_a_keyframe_whenever_a_reader_joins() {
    let gateway = Gateway::demo("", "");
    let url = gateway.rtsp_url("demo");
    // Readers join at staggered moments across a 2 s GOP, over both transports.
    let joins: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(370 * i));
                let transport = if i % 2 == 0 { "tcp" } else { "udp" };
                let output = run(
                    Command::new(peer("ffprobe"))
                        .args([
                            "-v",
                            "error",
                            "-rtsp_transport",
                            transport,
                            "-select_streams",
                            "v:0",
                        ])
                        .args([
                            "-read_intervals",
                            "%+#3",
                            "-show_entries",
                            "packet=pts,flags",
                            "-of",
                            "csv=p=0",
                            &url,
                        ]),
                    PEER_DEADLINE,
                );
                (transport, output)
            })
        })
        .collect();
    for join in joins {
        let (transport, output) = join.join().expect("probe thread");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "ffprobe over {transport} failed: {}",
            text(&output.stderr)
        );
        // Lines are "pts,flags".
        let packets: Vec<(&str, &str)> = stdout
            .lines()
            .filter_map(|line| line.split_once(','))
            .collect();
        assert!(
            packets
                .first()
                .is_some_and(|(_, flags)| flags.starts_with('K')),
            "first video packet over {transport} is not a keyframe: {stdout:?}"
        );
        // ffmpeg's H.264 parser leaves the first access unit it assembles from RTP
        // without a pts whatever the server does (libavcodec/parser.c never matches
        // a timestamp to the first frame of packets without a byte position), and
        // ffmpeg then takes it as 0. RTP-Info's rtptime and the first sender report
        // name that very packet, so 0 is right: the next frame (25 fps) is at 3600.
        assert_eq!(
            packets.get(1).map(|(pts, _)| *pts),
            Some("3600"),
            "second video packet over {transport} is one frame after the first at 0: {stdout:?}"
        );
    }
}

#[test]
fn gstreamer_rtspsrc_plays_over_tcp() {
    gstreamer_plays("tcp");
}

#[test]
fn gstreamer_rtspsrc_plays_over_udp() {
    gstreamer_plays("udp");
}

fn gstreamer_plays(protocols: &str) {
    peer("gst-launch-1.0");
    let gateway = Gateway::demo("", "");
    gst_plays(&gateway, &gateway.rtsp_url("demo"), protocols, 8, 25);
}

fn aiortsp_reads(url: &str) {
    let output = run_python_peer("aiortsp_read.py", &[url, "4"]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "aiortsp_read.py failed: {}",
        text(&output.stderr)
    );
    let packets: u64 = progress_number(&stdout, "packets");
    assert!(
        packets >= 50,
        "aiortsp got only {packets} RTP packets from {url}:\n{stdout}"
    );
    let sequences: Vec<u16> = progress_value(&stdout, "sequences")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let in_order = sequences
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    assert!(
        in_order + 1 >= sequences.len() * 9 / 10,
        "aiortsp saw sequence numbers out of order: {sequences:?}"
    );
}

#[test]
fn aiortsp_reads_over_tcp_and_udp() {
    let gateway = Gateway::demo("", "");
    // aiortsp picks the transport from the scheme: rtspt:// is TCP, rtsp:// UDP.
    aiortsp_reads(&gateway.rtsp_url("demo").replacen("rtsp://", "rtspt://", 1));
    aiortsp_reads(&gateway.rtsp_url("demo"));
}

#[test]
fn frigate_detect_and_record_at_once_make_valid_mp4_segments() {
    let gateway = Gateway::demo("", "");
    let dir = TempDir::new("frigate");
    let segments = dir.path().join("seg%03d.mp4");
    // Frigate's RTSP input preset, one detect output (scaled raw frames) and its
    // `-c copy` segment recorder, from one ffmpeg process as Frigate runs them.
    let frigate_input = "-rtsp_transport tcp -timeout 5000000 -use_wallclock_as_timestamps 1 \
                         -fflags +genpts+discardcorrupt";
    let detect = "-map 0:v -r 5 -vf scale=320:180 -f rawvideo -pix_fmt yuv420p -y";
    let record = "-map 0:v -map 0:a -c copy -f segment -segment_time 4 -segment_format mp4 \
                  -reset_timestamps 1 -y";
    let output = run(
        Command::new(peer("ffmpeg"))
            .args(["-hide_banner", "-nostats", "-v", "error"])
            .args(frigate_input.split_whitespace())
            // Bounded as an input option, so both outputs stop.
            .args(["-t", "13", "-i", &gateway.rtsp_url("demo")])
            .args(detect.split_whitespace())
            .arg(dir.path().join("detect.yuv"))
            .args(record.split_whitespace())
            .arg(&segments),
        PEER_DEADLINE,
    );
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "Frigate-style ffmpeg failed: {stderr}\n{}",
        gateway.log()
    );
    assert!(
        error_lines(&stderr).is_empty(),
        "Frigate-style ffmpeg reported errors:\n{stderr}"
    );
    let detect_len = std::fs::metadata(dir.path().join("detect.yuv"))
        .map(|m| m.len())
        .unwrap_or(0);
    let frame_len = 320 * 180 * 3 / 2;
    assert!(
        detect_len >= 20 * frame_len,
        "detect output has only {} frames",
        detect_len / frame_len
    );

    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read segment dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "expected several segments, got {files:?}");
    for file in &files {
        let probe = run(
            Command::new(peer("ffprobe"))
                .args([
                    "-v",
                    "error",
                    "-show_entries",
                    "stream=codec_type,codec_name",
                    "-of",
                    "csv=p=0",
                ])
                .arg(file),
            PEER_DEADLINE,
        );
        let streams = text(&probe.stdout);
        assert!(
            probe.status.success() && error_lines(&text(&probe.stderr)).is_empty(),
            "{file:?} is not valid MP4: {}",
            text(&probe.stderr)
        );
        assert!(
            streams.contains("h264,video") && streams.contains("aac,audio"),
            "{file:?} lacks audio or video: {streams}"
        );
        // Every segment decodes from its first frame (it starts at a keyframe with SPS/PPS).
        let decode = run(
            Command::new(peer("ffmpeg"))
                .args(["-v", "error", "-i"])
                .arg(file)
                .args(["-f", "null", "-"]),
            PEER_DEADLINE,
        );
        assert!(
            decode.status.success() && decode_errors(&text(&decode.stderr)).is_empty(),
            "{file:?} does not decode cleanly: {}",
            text(&decode.stderr)
        );
    }
}
