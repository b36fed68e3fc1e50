//! Session lifecycle through the real server: DESCRIBE waits (bounded) for
//! parameter sets, a silent session times out, and keep-alives hold it open.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use streamgate_rtp::{PayloadType, SeqNo, Ssrc, TrackId};
use streamgate_rtsp::server::ServerConfig;

use common::{exchange, h264_track, read_interleaved, session_id};

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_waits_for_parameter_sets_and_gives_up_with_503() {
    let late = common::hub("late", false);
    let never = common::hub("never", false);
    let config = ServerConfig {
        describe_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let (addr, server) = common::serve(vec![late.clone(), never], config).await;

    let describe = |name: &'static str| {
        tokio::task::spawn_blocking(move || {
            let mut stream = connect(addr);
            exchange(
                &mut stream,
                &format!("DESCRIBE rtsp://{addr}/{name} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
            )
        })
    };
    let waiting = describe("late");
    tokio::time::sleep(Duration::from_millis(300)).await;
    late.update_params(TrackId::new(0), h264_track(true).params);
    let answer = waiting.await.expect("describe late");
    assert!(answer.starts_with("RTSP/1.0 200 OK"), "{answer}");
    assert!(
        answer.contains("sprop-parameter-sets="),
        "SDP without parameter sets: {answer}"
    );
    assert!(
        answer.contains(&format!("Content-Base: rtsp://{addr}/late/")),
        "{answer}"
    );

    let answer = describe("never").await.expect("describe never");
    assert!(answer.starts_with("RTSP/1.0 503 "), "{answer}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_session_times_out_and_keep_alives_hold_one_open() {
    let config = ServerConfig {
        session_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    let (addr, server) = common::serve(vec![common::hub("cam", true)], config).await;
    let setup = format!(
        "SETUP rtsp://{addr}/cam/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
    );
    let (silent, kept) = tokio::task::spawn_blocking(move || {
        let mut silent = connect(addr);
        let answer = exchange(&mut silent, &setup);
        assert!(answer.contains("Session: ") && answer.contains(";timeout=2"), "{answer}");

        let mut kept = connect(addr);
        let session = session_id(&exchange(&mut kept, &setup));
        // Keep-alives at a fifth of the timeout, for three timeouts.
        for cseq in 2..17 {
            std::thread::sleep(Duration::from_millis(400));
            let request = format!("GET_PARAMETER rtsp://{addr}/cam RTSP/1.0\r\nCSeq: {cseq}\r\nSession: {session}\r\n\r\n");
            let answer = exchange(&mut kept, &request);
            assert!(answer.starts_with("RTSP/1.0 200 OK"), "keep-alive {cseq} refused: {answer}");
        }
        (silent, kept)
    })
    .await
    .expect("clients");
    // The silent session was closed by the server: its connection reads to the end.
    let mut silent = silent;
    let mut rest = Vec::new();
    let closed = silent.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "silent session's connection not closed: {closed:?}"
    );
    drop(kept);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_starts_at_the_cached_keyframe_that_rtp_info_announces() {
    use bytes::Bytes;
    use std::time::SystemTime;
    use streamgate_rtp::{Frame, MediaKind, OutPacket};

    let hub = common::hub("cam", true);
    let frame = |n: u16, keyframe: bool| Frame {
        track: TrackId::new(0),
        kind: MediaKind::Video,
        pts: u64::from(n) * 3600,
        dts: u64::from(n) * 3600,
        wallclock: SystemTime::now(),
        keyframe,
        discontinuity: false,
        random_access_skipped: false,
        units: vec![Bytes::from_static(b"slice")],
        packets: vec![OutPacket::new(
            PayloadType::new(96).unwrap(),
            true,
            SeqNo::new(1000 + n),
            90_000 + u32::from(n) * 3600,
            Ssrc::new(5),
            Bytes::from_static(b"slice"),
        )],
    };
    // A P-frame before the keyframe is not in the GOP cache; the keyframe and the one after are.
    for (n, keyframe) in [(0, false), (1, true), (2, false)] {
        hub.publish(frame(n, keyframe));
    }
    let (addr, server) = common::serve(vec![hub], ServerConfig::default()).await;
    let (rtp_info, first_channels, first_rtp) = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        let setup = format!(
            "SETUP rtsp://{addr}/cam/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        );
        let session = session_id(&exchange(&mut stream, &setup));
        let play = format!("PLAY rtsp://{addr}/cam/ RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n");
        let answer = exchange(&mut stream, &play);
        assert!(answer.contains("Range: npt=now-"), "{answer}");
        let rtp_info = answer.lines().find_map(|l| l.strip_prefix("RTP-Info: ")).expect("RTP-Info").to_string();
        let mut channels = Vec::new();
        loop {
            let (channel, body) = read_interleaved(&mut stream).expect("interleaved frame");
            channels.push(channel);
            if channel == 0 {
                return (rtp_info, channels, body);
            }
        }
    })
    .await
    .expect("client");
    assert_eq!(
        rtp_info,
        format!("url=rtsp://{addr}/cam/trackID=0;seq=1001;rtptime=93600")
    );
    assert_eq!(
        first_channels,
        [1, 0],
        "a sender report comes before the first RTP packet"
    );
    assert_eq!(
        u16::from_be_bytes([first_rtp[2], first_rtp[3]]),
        1001,
        "first packet is the cached keyframe's"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_stream_sends_rtcp_bye_then_closes_the_connection() {
    use bytes::Bytes;
    use std::time::SystemTime;
    use streamgate_rtp::rtcp::{parse_compound, RtcpPacket};
    use streamgate_rtp::{Frame, MediaKind, OutPacket};

    let hub = common::hub("cam", true);
    hub.publish(Frame {
        track: TrackId::new(0),
        kind: MediaKind::Video,
        pts: 0,
        dts: 0,
        wallclock: SystemTime::now(),
        keyframe: true,
        discontinuity: false,
        random_access_skipped: false,
        units: vec![Bytes::from_static(b"slice")],
        packets: vec![OutPacket::new(
            PayloadType::new(96).unwrap(),
            true,
            SeqNo::new(1),
            0,
            Ssrc::new(5),
            Bytes::from_static(b"slice"),
        )],
    });
    let (addr, server) = common::serve(vec![hub.clone()], ServerConfig::default()).await;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let client = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        let setup = format!(
            "SETUP rtsp://{addr}/cam/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        );
        let session = session_id(&exchange(&mut stream, &setup));
        let play =
            format!("PLAY rtsp://{addr}/cam/ RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n");
        exchange(&mut stream, &play);
        ready_tx.send(()).expect("test alive");
        // Every interleaved RTCP body until the server closes the connection.
        let mut rtcp = Vec::new();
        loop {
            let Some((channel, body)) = read_interleaved(&mut stream) else {
                return rtcp;
            };
            if channel == 1 {
                rtcp.push(body);
            }
        }
    });
    tokio::task::spawn_blocking(move || ready_rx.recv())
        .await
        .expect("client thread")
        .expect("client played");
    hub.close();
    let rtcp = client.await.expect("client");
    let last = parse_compound(rtcp.last().expect("RTCP before the close")).expect("valid RTCP");
    assert!(
        matches!(last.first(), Some(RtcpPacket::SenderReport(_))),
        "a compound RTCP packet starts with a report: {last:?}"
    );
    assert!(
        last.iter()
            .any(|p| matches!(p, RtcpPacket::Goodbye(bye) if !bye.sources.is_empty())),
        "the last RTCP before the close is a BYE: {last:?}"
    );
    server.abort();
}

/// A stream with few readers (an NVR's) gets each audio frame as it comes: it
/// does not wait for the next video frame to share a write, which readers that
/// timestamp by arrival (Frigate) would see as jitter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_readers_get_audio_without_waiting_for_video() {
    use bytes::Bytes;
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;
    use streamgate_pipeline::{Hub, HubConfig};
    use streamgate_rtp::testing::{h264_track, opus_track, video_frame};
    use streamgate_rtp::{Frame, MediaKind, OutPacket};

    let audio_frame = |n: u16| Frame {
        track: TrackId::new(1),
        kind: MediaKind::Audio,
        pts: u64::from(n) * 960,
        dts: u64::from(n) * 960,
        wallclock: SystemTime::now(),
        keyframe: true,
        discontinuity: false,
        random_access_skipped: false,
        units: vec![Bytes::from_static(b"opus")],
        packets: vec![OutPacket::new(
            PayloadType::new(111).unwrap(),
            true,
            SeqNo::new(n),
            u32::from(n) * 960,
            Ssrc::new(9),
            Bytes::from_static(b"opus"),
        )],
    };
    let hub = Hub::new("cam", HubConfig::default());
    hub.set_tracks(vec![h264_track(), opus_track()]);
    hub.publish(video_frame(0, &Bytes::from_static(b"idr"), 1, 50));
    let (addr, server) = common::serve(vec![hub.clone()], ServerConfig::default()).await;
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
    let client = tokio::task::spawn_blocking(move || {
        let mut stream = connect(addr);
        let mut session = String::new();
        for (cseq, (track, channels)) in [(0, "0-1"), (1, "2-3")].into_iter().enumerate() {
            let session_header = if session.is_empty() {
                String::new()
            } else {
                format!("Session: {session}\r\n")
            };
            let setup = format!(
                "SETUP rtsp://{addr}/cam/trackID={track} RTSP/1.0\r\nCSeq: {cseq}\r\n{session_header}Transport: RTP/AVP/TCP;unicast;interleaved={channels}\r\n\r\n"
            );
            session = session_id(&exchange(&mut stream, &setup));
        }
        let play =
            format!("PLAY rtsp://{addr}/cam/ RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n");
        exchange(&mut stream, &play);
        // Each RTP packet's channel as it arrives, until the second audio one.
        let mut audio = 0;
        while audio < 2 {
            let (channel, _) = read_interleaved(&mut stream).expect("interleaved frame");
            if channel % 2 == 0 {
                audio += usize::from(channel == 2);
                arrived_tx.send(channel).expect("test alive");
            }
        }
    });
    let arrived_rx = Arc::new(Mutex::new(arrived_rx));
    let next_arrival = || {
        let arrived_rx = Arc::clone(&arrived_rx);
        async move {
            tokio::task::spawn_blocking(move || arrived_rx.lock().unwrap().recv())
                .await
                .expect("client thread")
                .expect("the client read a packet")
        }
    };
    assert_eq!(next_arrival().await, 0, "the cached keyframe");
    // A live video frame (the session now expects video), then the first audio
    // frame, which goes out with its track's first sender report.
    hub.publish(video_frame(1, &Bytes::from_static(b"p"), 1, 50));
    assert_eq!(next_arrival().await, 0);
    hub.publish(audio_frame(1));
    assert_eq!(next_arrival().await, 2);
    // One more audio frame and nothing after it: it must go out on its own.
    hub.publish(audio_frame(2));
    assert_eq!(next_arrival().await, 2);
    client.await.expect("client");
    server.abort();
}
