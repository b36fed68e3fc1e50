//! The server's limits over raw TCP, each against a server playing the demo
//! capture to a reader that must keep receiving packets meanwhile: lying
//! lengths (413/400 at once), slow requests (408), interleaved frames on
//! channels never set up (counted, dropped), and the connection caps per client
//! address and in total (503). Every refusal closes its connection (read gives 0).
//!
//! No wall-clock thresholds: "at once" is shown by the answer arriving although
//! the request deadline is far off (a server that waited would answer 408), and
//! every read has a generous hang guard.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use streamgate_pipeline::{Hub, HubConfig, StreamIngest};
use streamgate_replay::demo_capture;
use streamgate_rtsp::server::{LimitCounts, Readers, ServerConfig};

mod common;

use common::{exchange, read_head, read_interleaved, session_id};

/// Hang guard for every read: far beyond any answer the tests wait for.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A request deadline the tests never reach: answers that come are "at once".
const FAR_DEADLINE: Duration = Duration::from_secs(30);

/// The demo capture replayed in real time (looped) into a Hub named "demo".
fn demo_hub() -> Hub {
    let capture = demo_capture().expect("demo capture");
    let hub = Hub::new("demo", HubConfig::default());
    let mut ingest = StreamIngest::new(
        hub.clone(),
        capture.tracks.iter().map(|t| t.info.clone()).collect(),
    );
    tokio::spawn(async move {
        loop {
            let start = tokio::time::Instant::now();
            for (offset, track, packet) in &capture.packets {
                tokio::time::sleep_until(start + *offset).await;
                let _ = ingest.push_rtp(*track, packet.clone(), Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
            ingest.source_restarted();
        }
    });
    hub
}

/// A server over the demo stream with `config`; its reader registry (and limit counters).
async fn serve_demo(config: ServerConfig) -> (SocketAddr, Readers) {
    let readers = Readers::default();
    let config = ServerConfig {
        readers: readers.clone(),
        ..config
    };
    let (addr, _server) = common::serve(vec![demo_hub()], config).await;
    (addr, readers)
}

/// Connects from `from` (any 127.x.y.z: loopback takes them all, so each is a
/// client address of its own).
fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket
        .bind(&SockAddr::from(SocketAddrV4::new(from, 0)))
        .expect("bind client address");
    socket.connect(&SockAddr::from(addr)).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    stream
}

fn connect(addr: SocketAddr) -> TcpStream {
    connect_from(Ipv4Addr::LOCALHOST, addr)
}

/// Reads what the server sends until it closes (0 or a reset); panics on the
/// hang guard (the server kept the connection open).
fn read_until_closed(stream: &mut TcpStream, what: &str) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "{what}: connection not closed ({e}) after {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// SETUP + PLAY of the demo's video over TCP interleaved 0-1; returns the
/// stream positioned after the PLAY answer, and the session id.
fn play(addr: SocketAddr, stream: &mut TcpStream) -> String {
    let url = format!("rtsp://{addr}/demo");
    let reply = exchange(
        stream,
        &format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"),
    );
    assert!(reply.starts_with("RTSP/1.0 200"), "{reply}");
    let session = session_id(&reply);
    stream
        .write_all(
            format!("PLAY {url} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n").as_bytes(),
        )
        .expect("PLAY");
    let reply = read_head(stream);
    assert!(reply.starts_with("RTSP/1.0 200"), "{reply}");
    session
}

/// A reader playing the demo stream on its own thread, counting RTP packets.
struct Player {
    packets: Arc<AtomicU64>,
    _thread: JoinHandle<()>,
}

impl Player {
    fn start(addr: SocketAddr) -> Player {
        let mut stream = connect(addr);
        play(addr, &mut stream);
        let packets = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&packets);
        let thread = std::thread::spawn(move || {
            while let Some((channel, _)) = read_interleaved(&mut stream) {
                if channel == 0 {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let player = Player {
            packets,
            _thread: thread,
        };
        player.assert_receiving("after PLAY");
        player
    }

    /// Waits (up to the hang guard) for packets beyond those counted now.
    fn assert_receiving(&self, when: &str) {
        let before = self.packets.load(Ordering::Relaxed);
        let since = Instant::now();
        while self.packets.load(Ordering::Relaxed) <= before {
            assert!(
                since.elapsed() < HANG_GUARD,
                "{when}: the playing reader stopped receiving packets"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs blocking socket code off the runtime the server runs on.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("test body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_lengths_are_answered_at_once_and_closed() {
    let config = ServerConfig {
        request_timeout: FAR_DEADLINE,
        ..ServerConfig::default()
    };
    let (addr, readers) = serve_demo(config).await;
    blocking(move || {
        let player = Player::start(addr);
        let request = |length: &str| {
            format!("SET_PARAMETER rtsp://{addr}/demo RTSP/1.0\r\nCSeq: 7\r\n{length}\r\n")
        };
        let cases = [
            // The case: a huge length, then three bytes of body.
            (
                "Content-Length over the cap",
                request("Content-Length: 99999999999\r\n") + "abc",
                "413",
            ),
            (
                "Content-Length just over the cap",
                request("Content-Length: 16384\r\n"),
                "413",
            ),
            ("negative Content-Length", request("Content-Length: -5\r\n"), "400"),
            (
                "non-numeric Content-Length",
                request("Content-Length: twelve\r\n"),
                "400",
            ),
            (
                "Content-Length twice, differently",
                request("Content-Length: 4\r\nContent-Length: 5\r\n") + "abcd",
                "400",
            ),
        ];
        for (what, request, status) in &cases {
            let mut stream = connect(addr);
            stream.write_all(request.as_bytes()).expect("write");
            let answer = read_until_closed(&mut stream, what);
            assert!(
                answer.starts_with(&format!("RTSP/1.0 {status} ")),
                "{what}: expected {status} (before the {FAR_DEADLINE:?} request deadline), got {answer:?}"
            );
            player.assert_receiving(what);
        }
        // An honest length is still served, on a connection that stays open.
        let mut stream = connect(addr);
        let answer = exchange(&mut stream, &(request("Content-Length: 2\r\n") + "ok"));
        assert!(answer.starts_with("RTSP/1.0 200 "), "{answer}");
        let counts = readers.limit_counts();
        assert_eq!((counts.body_too_large, counts.bad_content_length), (2, 3));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_get_408_and_idle_keep_alives_do_not() {
    let config = ServerConfig {
        request_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let (addr, readers) = serve_demo(config).await;
    blocking(move || {
        let player = Player::start(addr);
        // A head that trickles in, a byte at a time, never ending.
        let mut slow = connect(addr);
        slow.write_all(format!("OPTIONS rtsp://{addr}/demo RTSP/1.0\r\nCSeq: 1\r\nX-Pad: ").as_bytes())
            .expect("write");
        let mut trickle = slow.try_clone().expect("clone");
        let trickler = std::thread::spawn(move || {
            while trickle.write_all(b"a").is_ok() {
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let answer = read_until_closed(&mut slow, "trickled head");
        assert!(answer.starts_with("RTSP/1.0 408 "), "{answer:?}");
        drop(slow);
        trickler.join().expect("trickler");
        // A body that never comes.
        let mut stalled = connect(addr);
        stalled
            .write_all(
                format!("SET_PARAMETER rtsp://{addr}/demo RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 10\r\n\r\nabc")
                    .as_bytes(),
            )
            .expect("write");
        let answer = read_until_closed(&mut stalled, "stalled body");
        assert!(answer.starts_with("RTSP/1.0 408 "), "{answer:?}");
        player.assert_receiving("after the slow requests");

        // Between requests the session timeout rules, not the request deadline.
        let mut idle = connect(addr);
        let options = format!("OPTIONS rtsp://{addr}/demo RTSP/1.0\r\nCSeq: 2\r\n\r\n");
        assert!(exchange(&mut idle, &options).starts_with("RTSP/1.0 200 "));
        idle.write_all(b"\r\n").expect("keep-alive CRLF");
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            exchange(&mut idle, &options).starts_with("RTSP/1.0 200 "),
            "an idle connection was cut off by the request deadline"
        );
        assert_eq!(readers.limit_counts().request_timeouts, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_on_channels_never_set_up_are_counted_and_dropped() {
    let (addr, readers) = serve_demo(ServerConfig::default()).await;
    blocking(move || {
        let player = Player::start(addr);
        let frame = |channel: u8| [b'$', channel, 0, 4, 0x80, 201, 0, 1];
        let url = format!("rtsp://{addr}/demo");

        // Before any SETUP, every channel is unknown.
        let mut fresh = connect(addr);
        fresh.write_all(&frame(0)).expect("frame");
        fresh.write_all(&frame(7)).expect("frame");
        let answer = exchange(
            &mut fresh,
            &format!("OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
        );
        assert!(answer.starts_with("RTSP/1.0 200 "), "{answer}");
        assert_eq!(readers.limit_counts().unknown_channel_frames, 2);

        // A playing session: its RTCP channel is fine, others are dropped,
        // and the session goes on (requests answered, packets flowing).
        let mut playing = connect(addr);
        let session = play(addr, &mut playing);
        for channel in [1, 5, 1, 200] {
            playing.write_all(&frame(channel)).expect("frame");
        }
        playing
            .write_all(
                format!("GET_PARAMETER {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n")
                    .as_bytes(),
            )
            .expect("GET_PARAMETER");
        let mut got_answer = false;
        let mut packets_after = 0;
        let mut buf = [0u8; 1];
        while !got_answer || packets_after < 10 {
            // Interleaved frames and the answer share the connection.
            playing.read_exact(&mut buf).expect("still open");
            if buf[0] == b'$' {
                let mut head = [0u8; 3];
                playing.read_exact(&mut head).expect("frame head");
                let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[1], head[2]]))];
                playing.read_exact(&mut body).expect("frame body");
                packets_after += usize::from(got_answer && head[0] == 0);
            } else {
                let rest = read_head(&mut playing);
                let answer = format!("{}{rest}", buf[0] as char);
                assert!(answer.starts_with("RTSP/1.0 200 "), "{answer}");
                assert!(answer.contains("CSeq: 3"), "{answer}");
                got_answer = true;
            }
        }
        assert_eq!(readers.limit_counts().unknown_channel_frames, 4);
        player.assert_receiving("after the stray frames");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_get_503_and_close() {
    let config = ServerConfig {
        request_timeout: FAR_DEADLINE,
        max_connections_per_client: 2,
        max_connections: 3,
        ..ServerConfig::default()
    };
    let (addr, readers) = serve_demo(config).await;
    let a = Ipv4Addr::new(127, 0, 0, 1);
    let b = Ipv4Addr::new(127, 0, 0, 2);
    let c = Ipv4Addr::new(127, 0, 0, 3);
    blocking(move || {
        let options =
            |cseq: u32| format!("OPTIONS rtsp://{addr}/demo RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n");
        let refused = |from: Ipv4Addr, what: &str| {
            let mut stream = connect_from(from, addr);
            stream.write_all(options(9).as_bytes()).expect("write");
            let answer = read_until_closed(&mut stream, what);
            assert!(answer.starts_with("RTSP/1.0 503 "), "{what}: {answer:?}");
            assert!(answer.contains("\r\nCSeq: 9\r\n"), "{what}: {answer:?}");
        };
        // a: the player and one more (its cap of 2).
        let player = Player::start(addr);
        let mut second = connect_from(a, addr);
        assert!(exchange(&mut second, &options(1)).starts_with("RTSP/1.0 200 "));
        refused(a, "third connection from one address");
        player.assert_receiving("after the per-client refusal");
        // b takes the last slot of 3; c finds the server full.
        let mut from_b = connect_from(b, addr);
        assert!(exchange(&mut from_b, &options(1)).starts_with("RTSP/1.0 200 "));
        refused(c, "connection over the total cap");
        player.assert_receiving("after the total refusal");
        // The admitted connections were unaffected and still work.
        assert!(exchange(&mut second, &options(2)).starts_with("RTSP/1.0 200 "));
        assert!(exchange(&mut from_b, &options(2)).starts_with("RTSP/1.0 200 "));
        let counts = readers.limit_counts();
        assert_eq!((counts.refused_per_client, counts.refused_total), (1, 1));
        // A closed connection gives its slot back (to its address and in total).
        drop(second);
        let since = Instant::now();
        loop {
            let mut again = connect_from(a, addr);
            again.write_all(options(3).as_bytes()).expect("write");
            let answer = read_head(&mut again);
            if answer.starts_with("RTSP/1.0 200 ") {
                break;
            }
            // The server may not have seen the close yet.
            assert!(
                since.elapsed() < HANG_GUARD,
                "slot never given back: {answer}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        player.assert_receiving("at the end");
    })
    .await;
}

/// Over the cap, a client that sends nothing is closed unanswered once the
/// request deadline passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_over_the_cap_is_just_closed() {
    let config = ServerConfig {
        request_timeout: Duration::from_secs(1),
        max_connections_per_client: 1,
        ..ServerConfig::default()
    };
    let (addr, readers) = serve_demo(config).await;
    blocking(move || {
        let player = Player::start(addr);
        let mut silent = connect(addr);
        let answer = read_until_closed(&mut silent, "silent connection over the cap");
        assert_eq!(answer, "", "nothing to answer");
        player.assert_receiving("after the silent refusal");
        assert_eq!(readers.limit_counts(), {
            let mut expected = LimitCounts::default();
            expected.refused_per_client = 1;
            expected
        });
    })
    .await;
}
