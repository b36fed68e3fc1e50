//! RTSP fan-out cost per RTP packet delivered, to 1, 10 and 50 readers on
//! loopback, through the real server: Hub → per-reader connection task →
//! kernel → a reader task that counts RTP packets. Over TCP (`rtsp_fanout_tcp`)
//! the server writes interleaved vectored writes and the reader parses the
//! interleaved stream; over UDP (`rtsp_fanout_udp`) the server sends a frame's
//! packets with one `sendmmsg` and the reader receives datagrams.
//!
//! Input: H.264 frames of 8 RTP packets with 1200-byte payloads (a ~10 KB
//! frame, 720p-P-frame sized), published 32 frames per iteration; an iteration
//! ends when every reader has counted all 256 packets. Throughput is packets ×
//! readers, so the reported time is per packet per reader (including the
//! reader's own read and parse, which a real client also pays).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_rtp::testing::{h264_track, video_frame};
use streamgate_rtsp::server::{RtspServer, ServerConfig, StreamEntry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Notify;

const PAYLOAD_BYTES: usize = 1200;
const PACKETS_PER_FRAME: usize = 8;
const FRAMES_PER_ITERATION: u64 = 32;
/// Longest an iteration waits for a reader to count one more packet: a lost
/// packet (UDP) fails the bench instead of hanging it.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// Receive buffer of a UDP reader: an iteration's packets fit several times.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

#[derive(Debug, Clone, Copy)]
enum Transport {
    Tcp,
    Udp,
}

/// Sends SETUP (with `transport`) and PLAY; returns the connection, to be read
/// (TCP) or kept open (UDP).
async fn play(addr: SocketAddr, transport: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let url = format!("rtsp://{addr}/bench");
    let setup =
        format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: {transport}\r\n\r\n");
    stream.write_all(setup.as_bytes()).await.expect("SETUP");
    let mut buf = vec![0u8; 256 * 1024];
    let n = stream.read(&mut buf).await.expect("SETUP reply");
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    let session = reply
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|v| v.split(';').next())
        .expect("Session header")
        .to_string();
    let play = format!("PLAY {url} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n");
    stream.write_all(play.as_bytes()).await.expect("PLAY");
    stream
}

/// Plays the stream over UDP and counts the RTP datagrams.
async fn udp_reader(addr: SocketAddr, counted: Arc<AtomicU64>, progress: Arc<Notify>) {
    let (rtp, _rtcp) = loop {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("bind RTP");
        let port = rtp.local_addr().expect("RTP port").port();
        if port % 2 == 0 {
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
                break (rtp, rtcp);
            }
        }
    };
    socket2::SockRef::from(&rtp)
        .set_recv_buffer_size(UDP_RECEIVE_BUFFER)
        .expect("receive buffer");
    let port = rtp.local_addr().expect("RTP port").port();
    let _session = play(
        addr,
        &format!("RTP/AVP;unicast;client_port={port}-{}", port + 1),
    )
    .await;
    let mut buf = vec![0u8; 2048];
    while rtp.recv(&mut buf).await.is_ok() {
        counted.fetch_add(1, Ordering::Relaxed);
        progress.notify_one();
    }
}

/// Plays the stream over TCP and counts RTP packets (interleaved channel 0).
async fn tcp_reader(addr: SocketAddr, counted: Arc<AtomicU64>, progress: Arc<Notify>) {
    let mut stream = play(addr, "RTP/AVP/TCP;unicast;interleaved=0-1").await;
    let mut buf = vec![0u8; 256 * 1024];
    let mut pending: Vec<u8> = Vec::with_capacity(512 * 1024);
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut at = 0;
        let mut packets = 0;
        while at < pending.len() {
            if pending[at] == b'$' {
                if pending.len() < at + 4 {
                    break;
                }
                let len = u16::from_be_bytes([pending[at + 2], pending[at + 3]]) as usize;
                if pending.len() < at + 4 + len {
                    break;
                }
                if pending[at + 1] == 0 {
                    packets += 1;
                }
                at += 4 + len;
            } else {
                // The PLAY response: skip to the end of its head.
                match pending[at..].windows(4).position(|w| w == b"\r\n\r\n") {
                    Some(end) => at += end + 4,
                    None => break,
                }
            }
        }
        pending.drain(..at);
        counted.fetch_add(packets, Ordering::Relaxed);
        progress.notify_one();
    }
}

fn fan_out(c: &mut Criterion) {
    fan_out_over(c, Transport::Tcp);
    fan_out_over(c, Transport::Udp);
}

fn fan_out_over(c: &mut Criterion, transport: Transport) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let payload = Bytes::from(vec![0x41; PAYLOAD_BYTES]);
    let mut group = c.benchmark_group(match transport {
        Transport::Tcp => "rtsp_fanout_tcp",
        Transport::Udp => "rtsp_fanout_udp",
    });
    group.sample_size(20);
    for readers in [1usize, 10, 50] {
        let hub = Hub::new("bench", HubConfig::default());
        hub.set_tracks(vec![h264_track()]);
        let directory_hub = hub.clone();
        let directory = move |_: &str| {
            Some(StreamEntry {
                hub: directory_hub.clone(),
                credentials: None,
                publish: None,
            })
        };
        let config = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ServerConfig::default()
        };
        let counters: Vec<Arc<AtomicU64>> =
            (0..readers).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let progress = Arc::new(Notify::new());
        let server = runtime
            .block_on(RtspServer::bind(config, Arc::new(directory)))
            .expect("bind");
        let addr = server.local_addr().expect("addr");
        let server_task = runtime.spawn(server.run());
        for counter in &counters {
            let (counter, progress) = (Arc::clone(counter), Arc::clone(&progress));
            match transport {
                Transport::Tcp => runtime.spawn(tcp_reader(addr, counter, progress)),
                Transport::Udp => runtime.spawn(udp_reader(addr, counter, progress)),
            };
        }
        runtime.block_on(async {
            while hub.subscriber_count() < readers {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut next_frame = 0u64;
        group.throughput(Throughput::Elements(
            FRAMES_PER_ITERATION * PACKETS_PER_FRAME as u64 * readers as u64,
        ));
        group.bench_with_input(
            BenchmarkId::new("packets_to_readers", readers),
            &readers,
            |b, _| {
                b.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iterations {
                            let baseline: Vec<u64> =
                                counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                            let target = FRAMES_PER_ITERATION * PACKETS_PER_FRAME as u64;
                            let start = Instant::now();
                            for _ in 0..FRAMES_PER_ITERATION {
                                hub.publish(video_frame(
                                    next_frame,
                                    &payload,
                                    PACKETS_PER_FRAME,
                                    50,
                                ));
                                next_frame += 1;
                            }
                            while counters
                                .iter()
                                .zip(&baseline)
                                .any(|(c, b)| c.load(Ordering::Relaxed) - b < target)
                            {
                                tokio::time::timeout(PROGRESS_TIMEOUT, progress.notified())
                                    .await
                                    .expect("a reader stopped counting (packets lost?)");
                            }
                            total += start.elapsed();
                        }
                        total
                    })
                })
            },
        );
        server_task.abort();
        hub.close();
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
