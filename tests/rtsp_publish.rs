//! RTSP publish (`source = "publish"`): ffmpeg `-f rtsp` over TCP and UDP and
//! GStreamer `rtspclientsink` push the bundled media file into the gateway,
//! and ffmpeg and GStreamer read it back over RTSP and HLS; a publisher killed
//! and restarted within the grace leaves a reader connected with DTS strictly
//! increasing; one gone for longer closes its readers; one publisher per
//! stream (or replaced); publish credentials apart from read credentials; bad
//! publishers are refused or their input dropped and counted while another
//! stream's reader goes on.

use crate::support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::camera::{media, non_increasing_dts, parse_packet_dts, WAIT};
use support::{
    decoded_frames, error_lines, ffmpeg_decode, get, gst_plays, peer, run, sample, text,
    venv_python, Gateway, PEER_DEADLINE,
};

/// A publisher process, killed on drop.
struct Publisher(Child);

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ffmpeg pushing the media file in real time, looping, over `transport`.
fn ffmpeg_push(url: &str, transport: &str) -> Publisher {
    let file = media("ffmpeg_h264_aac.mkv");
    let child = Command::new(peer("ffmpeg"))
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(file)
        .args([
            "-c",
            "copy",
            "-f",
            "rtsp",
            "-rtsp_transport",
            transport,
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ffmpeg publisher");
    Publisher(child)
}

/// GStreamer `rtspclientsink` pushing the media file (looped 6 times into
/// `dir` first: a minute) over `transport`.
fn gst_push(url: &str, transport: &str, dir: &std::path::Path) -> Publisher {
    peer("gst-launch-1.0");
    let long = dir.join("minute.mkv");
    let made = run(
        Command::new(peer("ffmpeg"))
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-stream_loop",
                "5",
                "-i",
            ])
            .arg(media("ffmpeg_h264_aac.mkv"))
            .args(["-c", "copy", "-y"])
            .arg(&long),
        PEER_DEADLINE,
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let child = Command::new(venv_python())
        .arg(support::repo_path("tests/peers/gst_publish.py"))
        .arg(&long)
        .args([url, transport])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn GStreamer publisher");
    Publisher(child)
}

fn api(gateway: &Gateway, name: &str) -> String {
    get(gateway.http_port, &format!("/api/streams/{name}")).text()
}

fn wait_publishing(gateway: &Gateway, name: &str) {
    gateway.wait_for(
        || api(gateway, name).contains("\"source_state\":\"playing\""),
        "a publisher recording",
    );
}

fn metric(gateway: &Gateway, series: &str) -> f64 {
    sample(&get(gateway.http_port, "/metrics").text(), series).unwrap_or(0.0)
}

/// ffmpeg and GStreamer read `name` back over RTSP (TCP) and HLS: both tracks decode.
fn read_back(gateway: &Gateway, name: &str) {
    let url = gateway.rtsp_url(name);
    let output = ffmpeg_decode(&url, "tcp", 4, &[], &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "ffmpeg failed: {stderr}\n{}",
        gateway.log()
    );
    assert!(error_lines(&stderr).is_empty(), "ffmpeg errors:\n{stderr}");
    let frames = decoded_frames(&stdout);
    assert!(
        frames >= 50,
        "ffmpeg decoded {frames} frames of 4 s over RTSP"
    );

    gst_reads(gateway, &url, 25);

    let playlist = format!("/hls/{name}/index.m3u8");
    gateway.wait_ok(&playlist);
    let hls = gateway.http_url(&playlist);
    let output = run(
        Command::new(peer("ffmpeg"))
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-i",
                &hls,
                "-t",
                "4",
            ])
            .args(["-f", "null", "-", "-progress", "pipe:1"]),
        PEER_DEADLINE,
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "ffmpeg (HLS) failed: {stderr}");
    assert!(
        error_lines(&stderr).is_empty(),
        "ffmpeg (HLS) errors:\n{stderr}"
    );
    let frames = decoded_frames(&stdout);
    assert!(
        frames >= 50,
        "ffmpeg decoded {frames} frames of 4 s over HLS"
    );

    gst_reads(gateway, &hls, 25);
}

fn gst_reads(gateway: &Gateway, url: &str, at_least: u64) {
    gst_plays(gateway, url, "tcp", 6, at_least);
}

fn publish_gateway(keys: &str) -> Gateway {
    Gateway::hls_with(
        &format!("[streams.pub]\nsource = \"publish\"\n{keys}\n"),
        "",
    )
}

#[test]
fn ffmpeg_pushes_over_tcp_and_is_read_back_over_rtsp_and_hls() {
    let gateway = publish_gateway("");
    let _publisher = ffmpeg_push(&gateway.rtsp_url("pub"), "tcp");
    wait_publishing(&gateway, "pub");
    read_back(&gateway, "pub");
}

#[test]
fn ffmpeg_pushes_over_udp_and_is_read_back_over_rtsp_and_hls() {
    let gateway = publish_gateway("");
    let _publisher = ffmpeg_push(&gateway.rtsp_url("pub"), "udp");
    wait_publishing(&gateway, "pub");
    read_back(&gateway, "pub");
    assert_eq!(
        metric(
            &gateway,
            "streamgate_publish_dropped_packets_total{stream=\"pub\",reason=\"foreign\"}"
        ),
        0.0
    );
}

#[test]
fn gstreamer_rtspclientsink_pushes_and_is_read_back_over_rtsp_and_hls() {
    let gateway = publish_gateway("");
    let _publisher = gst_push(&gateway.rtsp_url("pub"), "tcp", gateway.dir.path());
    wait_publishing(&gateway, "pub");
    read_back(&gateway, "pub");
}

#[test]
fn gstreamer_rtspclientsink_pushes_over_udp() {
    let gateway = publish_gateway("");
    let _publisher = gst_push(&gateway.rtsp_url("pub"), "udp", gateway.dir.path());
    wait_publishing(&gateway, "pub");
    let output = ffmpeg_decode(&gateway.rtsp_url("pub"), "tcp", 4, &[], &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "ffmpeg failed: {stderr}\n{}",
        gateway.log()
    );
    assert!(error_lines(&stderr).is_empty(), "ffmpeg errors:\n{stderr}");
    assert!(decoded_frames(&stdout) >= 50, "{stdout}");
    gst_reads(&gateway, &gateway.rtsp_url("pub"), 25);
}

/// ffprobe lists 16 s of packets while the publisher is killed ~4 s in and
/// restarted: it stays connected and every track's DTS strictly increases.
#[test]
fn publisher_restarted_within_the_grace_keeps_readers_with_increasing_dts() {
    let gateway = publish_gateway("publish_grace = \"20s\"");
    let url = gateway.rtsp_url("pub");
    let mut publisher = ffmpeg_push(&url, "tcp");
    wait_publishing(&gateway, "pub");
    let probe_url = url.clone();
    let prober = std::thread::spawn(move || {
        run(
            Command::new(peer("ffprobe"))
                .args([
                    "-v",
                    "error",
                    "-rtsp_transport",
                    "tcp",
                    "-read_intervals",
                    "%+16",
                ])
                .args(["-show_packets", "-show_entries", "packet=stream_index,dts"])
                .args(["-of", "csv=p=0", &probe_url]),
            PEER_DEADLINE,
        )
    });
    gateway.wait_for(
        || {
            metric(
                &gateway,
                "streamgate_readers{stream=\"pub\",protocol=\"rtsp\"}",
            ) >= 1.0
        },
        "ffprobe playing",
    );
    std::thread::sleep(Duration::from_secs(4));
    drop(publisher);
    gateway.wait_for(
        || api(&gateway, "pub").contains("\"source_state\":\"idle\""),
        "publisher gone",
    );
    publisher = ffmpeg_push(&url, "tcp");
    wait_publishing(&gateway, "pub");
    let probe = prober.join().expect("ffprobe thread");
    drop(publisher);
    assert!(
        probe.status.success(),
        "ffprobe failed: {}\n{}",
        text(&probe.stderr),
        gateway.log()
    );
    // Keep the two fields asked for: ffmpeg appends side data ("Producer
    // Reference Time") to packets that follow a sender report.
    let csv: String = text(&probe.stdout)
        .lines()
        .map(|line| line.splitn(3, ',').take(2).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    let packets = parse_packet_dts(&csv);
    assert!(
        packets.len() > 300,
        "ffprobe got only {} packets",
        packets.len()
    );
    let bad = non_increasing_dts(&packets);
    assert!(
        bad.is_empty(),
        "DTS not strictly increasing:\n{}",
        bad.join("\n")
    );
    assert!(
        api(&gateway, "pub").contains("\"reconnects\":1"),
        "{}",
        api(&gateway, "pub")
    );
}

/// Past the grace the reader gets its BYE and is closed: ffmpeg asked for 60 s
/// ends early, and the stream takes the next publisher.
#[test]
fn publisher_gone_past_the_grace_closes_readers() {
    let gateway = publish_gateway("publish_grace = \"1s\"");
    let url = gateway.rtsp_url("pub");
    let publisher = ffmpeg_push(&url, "tcp");
    wait_publishing(&gateway, "pub");
    let reader_url = url.clone();
    let reader = std::thread::spawn(move || ffmpeg_decode(&reader_url, "tcp", 60, &[], &[]));
    gateway.wait_for(
        || {
            metric(
                &gateway,
                "streamgate_readers{stream=\"pub\",protocol=\"rtsp\"}",
            ) >= 1.0
        },
        "ffmpeg playing",
    );
    drop(publisher);
    let started = Instant::now();
    let output = reader.join().expect("reader thread");
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the reader was not closed"
    );
    assert!(decoded_frames(&text(&output.stdout)) > 0);
    assert!(gateway
        .log()
        .contains("no publisher within the grace: readers closed"));
    assert_eq!(
        metric(
            &gateway,
            "streamgate_readers{stream=\"pub\",protocol=\"rtsp\"}"
        ),
        0.0
    );
    let _again = ffmpeg_push(&url, "tcp");
    wait_publishing(&gateway, "pub");
    let output = ffmpeg_decode(&url, "tcp", 3, &[], &[]);
    assert!(
        decoded_frames(&text(&output.stdout)) >= 25,
        "{}",
        text(&output.stderr)
    );
}

/// A second publisher is refused (503); with `publish_replace` it takes over.
#[test]
fn one_publisher_per_stream_unless_replacing() {
    let gateway = Gateway::start(
        "[streams.pub]\nsource = \"publish\"\n\n\
         [streams.swap]\nsource = \"publish\"\npublish_replace = true\n",
    );
    let _first = ffmpeg_push(&gateway.rtsp_url("pub"), "tcp");
    wait_publishing(&gateway, "pub");
    let second = run(
        Command::new(peer("ffmpeg"))
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "3",
                "-i",
            ])
            .arg(media("ffmpeg_h264_aac.mkv"))
            .args([
                "-c",
                "copy",
                "-f",
                "rtsp",
                "-rtsp_transport",
                "tcp",
                &gateway.rtsp_url("pub"),
            ]),
        PEER_DEADLINE,
    );
    assert!(!second.status.success(), "a second publisher was let in");
    assert!(
        text(&second.stderr).contains("503"),
        "{}",
        text(&second.stderr)
    );

    let _old = ffmpeg_push(&gateway.rtsp_url("swap"), "tcp");
    wait_publishing(&gateway, "swap");
    let _new = ffmpeg_push(&gateway.rtsp_url("swap"), "tcp");
    gateway.wait_for(
        || gateway.log().contains("RTSP publisher replaced"),
        "replacement",
    );
    let output = ffmpeg_decode(&gateway.rtsp_url("swap"), "tcp", 3, &[], &[]);
    assert!(
        decoded_frames(&text(&output.stdout)) >= 25,
        "{}",
        text(&output.stderr)
    );
}

/// Publish credentials are not the read credentials: a publisher needs them
/// (Basic or Digest, as ffmpeg chooses), a reader needs the read ones.
#[test]
fn publishers_need_the_publish_credentials() {
    let secret = "pub-Secret-42";
    let gateway = Gateway::start(&format!(
        "[streams.pub]\nsource = \"publish\"\npublish_username = \"pusher\"\npublish_password = \"{secret}\"\n\
         rtsp_username = \"viewer\"\nrtsp_password = \"view-pw\"\n"
    ));
    let refused = run(
        Command::new(peer("ffmpeg"))
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-re",
                "-t",
                "2",
                "-i",
            ])
            .arg(media("ffmpeg_h264_aac.mkv"))
            .args(["-c", "copy", "-f", "rtsp"])
            .arg(gateway.url_with_credentials("viewer", "view-pw", "pub")),
        PEER_DEADLINE,
    );
    assert!(
        !refused.status.success(),
        "read credentials let a publisher in"
    );
    assert!(
        text(&refused.stderr).contains("401"),
        "{}",
        text(&refused.stderr)
    );

    let _publisher = ffmpeg_push(
        &gateway.url_with_credentials("pusher", secret, "pub"),
        "tcp",
    );
    wait_publishing(&gateway, "pub");
    let output = ffmpeg_decode(
        &gateway.url_with_credentials("viewer", "view-pw", "pub"),
        "tcp",
        3,
        &[],
        &[],
    );
    assert!(
        decoded_frames(&text(&output.stdout)) >= 25,
        "{}",
        text(&output.stderr)
    );
    assert!(
        !gateway.log().contains(secret),
        "the publish password is in the log"
    );
}

/// One request on a raw connection: the status code of its answer.
fn exchange(stream: &mut TcpStream, request: &str) -> u16 {
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("read answer");
        assert!(
            n > 0,
            "connection closed without an answer to {request:.40}"
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&answer).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{head}"))
}

fn connect(gateway: &Gateway) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", gateway.rtsp_port)).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
}

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
    m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n";

fn announce(url: &str, sdp: &str) -> String {
    format!(
        "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// Malformed and oversized SDP, RECORD without SETUP, frames on channels never
/// set up, UDP from another address and 50 Mbit/s of garbage RTP: refused or
/// dropped and counted, while ffmpeg reads another stream without errors.
#[test]
fn bad_publishers_are_refused_or_dropped_and_others_unaffected() {
    let gateway = Gateway::demo("", "[streams.pub]\nsource = \"publish\"\n");
    let url = gateway.rtsp_url("pub");
    let demo = gateway.rtsp_url("demo");
    let reader = std::thread::spawn(move || ffmpeg_decode(&demo, "tcp", 8, &[], &[]));

    let mut c = connect(&gateway);
    assert_eq!(exchange(&mut c, &announce(&url, "this is not SDP")), 400);
    let mut c = connect(&gateway);
    let huge = format!(
        "{SDP}{}",
        "a=x-padding:0123456789abcdef\r\n".repeat(1 << 15)
    );
    assert_eq!(exchange(&mut c, &announce(&url, &huge)), 413);
    let mut c = connect(&gateway);
    assert_eq!(exchange(&mut c, &announce(&url, SDP)), 200);
    assert_eq!(
        exchange(&mut c, &format!("RECORD {url} RTSP/1.0\r\nCSeq: 2\r\n\r\n")),
        455,
        "RECORD without SETUP"
    );
    drop(c);

    // UDP: SETUP gives server ports; a datagram from 127.0.0.2 is foreign.
    gateway.wait_for(
        || api(&gateway, "pub").contains("\"source_state\":\"idle\""),
        "first publisher gone",
    );
    let mut c = connect(&gateway);
    assert_eq!(exchange(&mut c, &announce(&url, SDP)), 200);
    c.write_all(
        format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;client_port=40000-40001;mode=record\r\n\r\n")
            .as_bytes(),
    )
    .expect("setup");
    let mut answer = vec![0u8; 4096];
    let n = c.read(&mut answer).expect("setup answer");
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    let ports = answer
        .split("server_port=")
        .nth(1)
        .and_then(|rest| rest.split(['-', ';']).next())
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no server_port in {answer}"));
    let foreign = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    foreign
        .send_to(&[0x80; 64], ("127.0.0.1", ports))
        .expect("send");
    gateway.wait_for(
        || {
            metric(
                &gateway,
                "streamgate_publish_dropped_packets_total{stream=\"pub\",reason=\"foreign\"}",
            ) >= 1.0
        },
        "the foreign datagram counted",
    );
    drop(c);

    // TCP: frames on a channel never set up, then 50 Mbit/s of garbage RTP for 3 s.
    gateway.wait_for(
        || api(&gateway, "pub").contains("\"source_state\":\"idle\""),
        "UDP publisher gone",
    );
    let unknown_before = metric(
        &gateway,
        "streamgate_rtsp_refused_total{reason=\"unknown_channel\"}",
    );
    let mut c = connect(&gateway);
    assert_eq!(exchange(&mut c, &announce(&url, SDP)), 200);
    let setup = format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n");
    assert_eq!(exchange(&mut c, &setup), 200);
    c.write_all(&[b'$', 7, 0, 4, 1, 2, 3, 4])
        .expect("unknown channel");
    assert_eq!(
        exchange(&mut c, &format!("RECORD {url} RTSP/1.0\r\nCSeq: 3\r\n\r\n")),
        200
    );
    // 64 different frames of 1400 random bytes, sent over and over.
    let mut x: u32 = 0x1234_5678;
    let frames: Vec<Vec<u8>> = (0..64)
        .map(|_| {
            let mut frame = vec![b'$', 0, 0x05, 0x78];
            frame.extend((0..1400).map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            }));
            frame
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(3);
    let per_tick = 50_000_000 / 8 / 100 / frames[0].len();
    while Instant::now() < until {
        for frame in frames.iter().cycle().take(per_tick) {
            c.write_all(frame).expect("garbage");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    gateway.wait_for(
        || {
            metric(
                &gateway,
                "streamgate_publish_dropped_packets_total{stream=\"pub\",reason=\"bad\"}",
            ) >= 100.0
        },
        "garbage counted",
    );
    assert!(
        metric(
            &gateway,
            "streamgate_rtsp_refused_total{reason=\"unknown_channel\"}"
        ) > unknown_before,
        "the frame on channel 7 was not counted"
    );

    let output = reader.join().expect("reader");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(
        error_lines(&stderr).is_empty(),
        "the demo reader saw errors:\n{stderr}"
    );
    assert!(
        decoded_frames(&stdout) >= 150,
        "the demo reader decoded {}",
        decoded_frames(&stdout)
    );
}

fn listed(gateway: &Gateway, name: &str) -> bool {
    get(gateway.http_port, "/api/streams")
        .text()
        .contains(&format!("\"name\":\"{name}\""))
}

/// `[rtsp] publish = "any"`: ffmpeg pushes to a path nobody configured, which
/// is a stream (listed, read back) while it publishes; once it is killed and
/// the grace passed, the reader is closed and the stream is gone.
#[test]
fn publish_any_makes_a_stream_for_as_long_as_its_publisher() {
    let gateway = Gateway::demo("publish = \"any\"\npublish_grace = \"1s\"", "");
    let name = "anything/new";
    let url = gateway.rtsp_url(name);
    assert!(!listed(&gateway, name));
    let publisher = ffmpeg_push(&url, "tcp");
    gateway.wait_for(|| listed(&gateway, name), "the stream listed");
    let output = ffmpeg_decode(&url, "tcp", 3, &[], &[]);
    assert!(
        decoded_frames(&text(&output.stdout)) >= 25,
        "{}\n{}",
        text(&output.stderr),
        gateway.log()
    );

    let reader_url = url.clone();
    let reader = std::thread::spawn(move || ffmpeg_decode(&reader_url, "tcp", 60, &[], &[]));
    gateway.wait_for(
        || {
            metric(
                &gateway,
                "streamgate_readers{stream=\"anything/new\",protocol=\"rtsp\"}",
            ) >= 1.0
        },
        "ffmpeg playing",
    );
    drop(publisher);
    let started = Instant::now();
    let output = reader.join().expect("reader thread");
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the reader was not closed"
    );
    assert!(decoded_frames(&text(&output.stdout)) > 0);
    gateway.wait_for(|| !listed(&gateway, name), "the stream removed");
    assert!(gateway.log().contains("publisher gone: stream removed"));
    let mut c = connect(&gateway);
    assert_eq!(
        exchange(
            &mut c,
            &format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")
        ),
        404,
        "a reader of the removed stream"
    );
}

/// Without `publish = "any"`, an ANNOUNCE to a path no stream has is 404 and
/// makes no stream.
#[test]
fn unconfigured_paths_are_refused_without_publish_any() {
    let gateway = Gateway::demo("", "");
    let mut c = connect(&gateway);
    let url = gateway.rtsp_url("anything/new");
    assert_eq!(exchange(&mut c, &announce(&url, SDP)), 404);
    assert!(!listed(&gateway, "anything/new"));
}
