//! A reader that stops reading is cut off by the write timeout while another
//! reader of the same stream keeps receiving every frame, through the real
//! server on loopback. The frozen reader shrinks its receive buffer so the
//! server's writes block quickly.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use socket2::SockRef;
use streamgate_rtp::testing::video_frame;
use streamgate_rtsp::server::ServerConfig;

mod common;

use common::{read_head, read_interleaved, session_id};

const PACKETS_PER_FRAME: usize = 20;
const PAYLOAD_BYTES: usize = 1400;

/// SETUP (TCP interleaved) + PLAY; returns the stream positioned after the PLAY reply.
fn play(addr: SocketAddr, receive_buffer: Option<usize>) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    if let Some(size) = receive_buffer {
        SockRef::from(&stream)
            .set_recv_buffer_size(size)
            .expect("SO_RCVBUF");
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut stream = stream;
    let url = format!("rtsp://{addr}/cam");
    let setup =
        format!("SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n");
    stream.write_all(setup.as_bytes()).expect("SETUP");
    let reply = read_head(&mut stream);
    assert!(reply.starts_with("RTSP/1.0 200"), "{reply}");
    let session = session_id(&reply);
    stream
        .write_all(
            format!("PLAY {url} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n").as_bytes(),
        )
        .expect("PLAY");
    let reply = read_head(&mut stream);
    assert!(reply.starts_with("RTSP/1.0 200"), "{reply}");
    stream
}

/// Reads interleaved frames until the RTP packet with `last_seq` arrives.
fn read_until(stream: &mut TcpStream, last_seq: u16) -> usize {
    let mut packets = 0;
    loop {
        let (channel, body) = read_interleaved(stream).expect("interleaved frame");
        if channel == 0 {
            packets += 1;
            if u16::from_be_bytes([body[2], body[3]]) == last_seq {
                return packets;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_reader_is_cut_off_and_the_other_gets_every_frame() {
    let hub = common::hub("cam", true);
    let config = ServerConfig {
        write_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let (addr, server) = common::serve(vec![hub.clone()], config).await;

    let (frozen, mut live) =
        tokio::task::spawn_blocking(move || (play(addr, Some(4096)), play(addr, None)))
            .await
            .expect("clients");
    let payload = Bytes::from(vec![0x41; PAYLOAD_BYTES]);
    // Publish about 60 MB: far more than the frozen reader's socket buffers hold,
    // paced so the live reader keeps up, while the live reader reads it all.
    let frames = 2000u64;
    let last_seq = ((frames as usize * PACKETS_PER_FRAME) - 1) as u16;
    let live_reader = tokio::task::spawn_blocking(move || {
        let packets = read_until(&mut live, last_seq);
        (live, packets)
    });
    for n in 0..frames {
        hub.publish(video_frame(n, &payload, PACKETS_PER_FRAME, 25));
        if n % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let (_live, live_packets) = live_reader.await.expect("live reader");
    // Every packet from the first keyframe on (no drops for a reader that keeps up).
    assert_eq!(
        live_packets,
        frames as usize * PACKETS_PER_FRAME,
        "the live reader missed packets"
    );

    // The server cut the frozen reader off: its connection task, the only
    // holder of its subscription, has ended. (Draining the frozen socket to see
    // the close would take minutes through its 4 KB window.)
    for _ in 0..300 {
        if hub.subscriber_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hub.subscriber_count(),
        1,
        "the frozen reader was not cut off"
    );
    drop(frozen);
    server.abort();
}
