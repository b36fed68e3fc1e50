//! `floor`: the simplest RTSP server that moves the same bytes, as the baseline
//! the real servers are measured against (the kernel's own cost of copying each
//! frame into every reader's socket).
//!
//! It replays the capture into one Hub (the ingest a camera costs any server),
//! answers just enough RTSP for a reader to PLAY over TCP interleaved
//! (OPTIONS, DESCRIBE, SETUP, PLAY), and then one task writes every frame to
//! every reader with one `writev` per reader per frame: no per-reader queue, no
//! task per reader, no RTCP, no keyframe start, no slow-reader handling (a
//! reader whose socket is full is waited for, stalling the rest). Readers join
//! mid-GOP and must wait for the next keyframe.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use streamgate_pipeline::{Hub, HubConfig};
use streamgate_rtp::{TrackId, TrackInfo};
use streamgate_rtsp::server::describe::{session_description, track_from_control};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

/// Largest RTSP request head read from a reader.
const MAX_REQUEST: usize = 16 * 1024;

#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8556")]
    pub listen: SocketAddr,
    /// pcap/pcapng of RTP over UDP; default: the bundled 720p H.264 + AAC capture.
    #[arg(long, requires = "sdp")]
    pub pcap: Option<std::path::PathBuf>,
    #[arg(long, requires = "pcap")]
    pub sdp: Option<std::path::PathBuf>,
    /// Serve only the video track (no audio packets, no audio in the SDP).
    #[arg(long)]
    pub video_only: bool,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct FloorSummary {
    pub url: String,
    pub readers: usize,
    pub frames: u64,
    pub bytes: u64,
}

/// A playing reader: its socket and the interleaved channel of each track.
struct Reader {
    socket: OwnedWriteHalf,
    channels: Vec<(TrackId, u8)>,
}

type Readers = Arc<Mutex<Vec<Reader>>>;

pub async fn run(args: FloorArgs) -> Result<FloorSummary, Box<dyn std::error::Error>> {
    let capture = Arc::new(crate::cameras::load_capture(
        args.pcap.as_deref(),
        args.sdp.as_deref(),
        args.video_only,
    )?);
    let hub = Hub::new("floor", HubConfig::default());
    tokio::spawn(streamgate_replay::run(capture, hub.clone(), 1.0, true));
    let tracks: Vec<TrackInfo> = hub
        .wait_ready(Duration::from_secs(10))
        .await
        .ok_or("the capture gave no tracks")?
        .to_vec();
    let listener = TcpListener::bind(args.listen).await?;
    let url = format!("rtsp://{}/floor", listener.local_addr()?);
    eprintln!("floor server at {url}");
    let readers: Readers = Arc::default();
    let sdp = Arc::new(session_description("floor", 1, &tracks));
    let accepting = {
        let readers = readers.clone();
        let tracks = tracks.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = socket.set_nodelay(true);
                tokio::spawn(handshake(
                    socket,
                    sdp.clone(),
                    tracks.clone(),
                    readers.clone(),
                ));
            }
        })
    };
    let counts: Arc<[AtomicU64; 2]> = Arc::default();
    let writing = tokio::spawn(write_frames(hub, readers.clone(), counts.clone()));
    match args.duration {
        Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds)).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    accepting.abort();
    writing.abort();
    let readers = readers.lock().unwrap_or_else(PoisonError::into_inner).len();
    Ok(FloorSummary {
        url,
        readers,
        frames: counts[0].load(Ordering::Relaxed),
        bytes: counts[1].load(Ordering::Relaxed),
    })
}

/// Writes each frame to every reader: one `writev` per reader per frame.
/// `counts`: frames seen and bytes written.
async fn write_frames(hub: Hub, readers: Readers, counts: Arc<[AtomicU64; 2]>) {
    let mut subscription = hub.subscribe();
    let mut prefixes: Vec<[u8; 4]> = Vec::new();
    while let Some(frame) = subscription.recv().await {
        counts[0].fetch_add(1, Ordering::Relaxed);
        let mut playing =
            std::mem::take(&mut *readers.lock().unwrap_or_else(PoisonError::into_inner));
        let mut kept = Vec::with_capacity(playing.len());
        for mut reader in playing.drain(..) {
            let Some(&(_, channel)) = reader.channels.iter().find(|(t, _)| *t == frame.track)
            else {
                kept.push(reader);
                continue;
            };
            prefixes.clear();
            prefixes.extend(frame.packets.iter().map(|p| {
                let len = (p.header.len() + p.payload.len()) as u16;
                let [hi, lo] = len.to_be_bytes();
                [b'$', channel, hi, lo]
            }));
            let mut slices: Vec<IoSlice> = Vec::with_capacity(frame.packets.len() * 3);
            for (prefix, packet) in prefixes.iter().zip(&frame.packets) {
                slices.extend([
                    IoSlice::new(prefix),
                    IoSlice::new(&packet.header),
                    IoSlice::new(&packet.payload),
                ]);
            }
            // A reader whose write fails has left: it is not kept.
            if let Ok(written) = write_all_vectored(&mut reader.socket, &mut slices).await {
                counts[1].fetch_add(written as u64, Ordering::Relaxed);
                kept.push(reader);
            }
        }
        readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(kept);
    }
}

/// `writev` until every slice is written (one call when the socket has room).
async fn write_all_vectored(
    socket: &mut OwnedWriteHalf,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<usize> {
    let mut total = 0;
    while !slices.is_empty() {
        let written = socket.write_vectored(slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        total += written;
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(total)
}

/// Answers OPTIONS, DESCRIBE, SETUP (TCP interleaved) and PLAY, then hands the
/// socket to the writer.
async fn handshake(socket: TcpStream, sdp: Arc<String>, tracks: Vec<TrackInfo>, readers: Readers) {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    let mut channels = Vec::new();
    loop {
        let Some(request) = read_request(&mut read).await else {
            return;
        };
        let first = request.lines().next().unwrap_or_default();
        let method = first.split(' ').next().unwrap_or_default();
        let url = first.split(' ').nth(1).unwrap_or_default();
        let cseq = header(&request, "cseq").unwrap_or("0");
        let answer = match method {
            "OPTIONS" => format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n"),
            "DESCRIBE" => format!(
                "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Base: {url}/\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ),
            "SETUP" => {
                let track = url.rsplit('/').next().and_then(track_from_control);
                match track.filter(|id| tracks.iter().any(|t| t.id == *id)) {
                    Some(track) => {
                        let channel = (channels.len() * 2) as u8;
                        channels.push((track, channel));
                        format!(
                            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved={channel}-{}\r\n\r\n",
                            channel + 1
                        )
                    }
                    None => format!("RTSP/1.0 404 Not Found\r\nCSeq: {cseq}\r\n\r\n"),
                }
            }
            "PLAY" => format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 1\r\nRange: npt=now-\r\n\r\n"),
            _ => format!("RTSP/1.0 405 Method Not Allowed\r\nCSeq: {cseq}\r\n\r\n"),
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if method == "PLAY" {
            readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Reader {
                    socket: write,
                    channels,
                });
            // Drain what the reader sends (RTCP receiver reports) until it leaves.
            let mut sink = [0u8; 4096];
            while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
    }
}

/// One request head (and its body, skipped), or None when the reader left.
async fn read_request(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.ok()? == 0 || head.len() > MAX_REQUEST {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            if head.is_empty() {
                continue;
            }
            break;
        }
        head.push_str(&line);
    }
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(MAX_REQUEST)];
    read.read_exact(&mut body).await.ok()?;
    Some(head)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}
