//! RTP over the RTSP connection (RFC 2326 §10.12): each packet is `$`, channel,
//! 16-bit length, then the packet.
//!
//! A [`Batch`] gathers several frames and writes them with one `write_vectored`
//! call (more when the kernel takes less): per packet one 16-byte slice (the
//! 4-byte interleave prefix and this session's 12-byte RTP header, built in the
//! batch) and one slice that is the shared payload `Bytes`, never copied.
//!
//! On a large fan-out, audio frames alone may wait up to [`AUDIO_HOLD`] for the
//! next video frame ([`Batch::due`]): on a 400-reader 1080p fan-out each write
//! (one system call, one loopback/TCP round through the kernel and one wake-up
//! of the reader) costs far more than the bytes it carries, and an audio packet
//! between two video frames would otherwise cost a write of its own. Players
//! place audio by its RTP timestamp, so the hold changes nothing they show; but
//! readers that timestamp by arrival (Frigate's `-use_wallclock_as_timestamps`)
//! would see it as jitter, so the connection only allows it from
//! [`AUDIO_BATCHING_FROM_READERS`] readers of a stream on.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use streamgate_rtp::RTP_HEADER_LEN;
use streamgate_rtp::{Frame, MediaKind, OutPacket, Ssrc};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Most slices handed to one `writev` (Linux's IOV_MAX is 1024).
const MAX_SLICES_PER_WRITE: usize = 1024;

const PREFIX_LEN: usize = 4;

/// Longest an audio frame waits in a batch for a video frame to share a write
/// with (a frame interval at 25 fps).
pub const AUDIO_HOLD: Duration = Duration::from_millis(40);

/// Readers of one stream from which its audio may wait for video: below that,
/// writes cost little in all and an NVR's few readers get audio as it comes.
pub const AUDIO_BATCHING_FROM_READERS: usize = 100;

/// How one track is rewritten for one session: its interleaved channel (TCP) and
/// the session's SSRC for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackOutput {
    pub channel: u8,
    pub ssrc: Ssrc,
}

/// The `$`-prefix and RTP header of one packet, as sent to one session.
pub fn packet_head(
    packet: &OutPacket,
    out: TrackOutput,
) -> Option<[u8; PREFIX_LEN + RTP_HEADER_LEN]> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut head = [0u8; PREFIX_LEN + RTP_HEADER_LEN];
    head[0] = b'$';
    head[1] = out.channel;
    head[2..4].copy_from_slice(&len.to_be_bytes());
    head[4..].copy_from_slice(&packet.header);
    head[12..16].copy_from_slice(&out.ssrc.get().to_be_bytes());
    Some(head)
}

/// Frames, RTCP packets and RTSP responses queued for one vectored write.
#[derive(Debug, Default)]
pub struct Batch {
    items: Vec<Item>,
    packets: usize,
    bytes: usize,
    /// When the first of the audio frames queued alone was queued; `None` when
    /// the batch is empty or holds something that goes at once.
    audio_only_since: Option<Instant>,
}

#[derive(Debug)]
enum Item {
    Frame(Arc<Frame>, TrackOutput),
    /// An RTCP packet on an interleaved channel.
    Control {
        channel: u8,
        data: Bytes,
    },
    /// Bytes written as they are (an RTSP response).
    Raw(Bytes),
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    pub fn push_frame(&mut self, frame: Arc<Frame>, out: TrackOutput) {
        self.audio_only_since = match frame.kind {
            MediaKind::Audio if self.items.is_empty() => Some(Instant::now()),
            MediaKind::Audio => self.audio_only_since,
            MediaKind::Video => None,
        };
        self.packets += frame.packets.len();
        self.bytes += frame
            .packets
            .iter()
            .map(|p| p.len() + PREFIX_LEN)
            .sum::<usize>();
        self.items.push(Item::Frame(frame, out));
    }

    pub fn push_rtcp(&mut self, channel: u8, data: Bytes) {
        self.audio_only_since = None;
        self.packets += 1;
        self.bytes += data.len() + PREFIX_LEN;
        self.items.push(Item::Control { channel, data });
    }

    pub fn push_raw(&mut self, data: Bytes) {
        self.audio_only_since = None;
        self.bytes += data.len();
        self.items.push(Item::Raw(data));
    }

    /// Packets queued (RTP and RTCP).
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Bytes on the wire once written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether to write the batch now. Audio frames queued alone wait for a
    /// video frame, at most [`AUDIO_HOLD`], and only when `audio_may_wait` (the
    /// session gets video, on a large fan-out): the caller asks on every frame
    /// it queues, so a held batch goes out with the next frame after that.
    pub fn due(&self, now: Instant, audio_may_wait: bool) -> bool {
        match self.audio_only_since {
            _ if self.items.is_empty() => false,
            Some(since) if audio_may_wait => now.saturating_duration_since(since) >= AUDIO_HOLD,
            _ => true,
        }
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.packets = 0;
        self.bytes = 0;
        self.audio_only_since = None;
    }

    /// Writes everything queued, then empties the batch.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> io::Result<()> {
        let mut heads: Vec<[u8; PREFIX_LEN + RTP_HEADER_LEN]> = Vec::with_capacity(self.packets);
        for item in &self.items {
            match item {
                Item::Frame(frame, out) => {
                    heads.extend(frame.packets.iter().filter_map(|p| packet_head(p, *out)))
                }
                Item::Control { channel, data } => {
                    let len = u16::try_from(data.len()).unwrap_or(0);
                    let mut head = [0u8; PREFIX_LEN + RTP_HEADER_LEN];
                    head[0] = b'$';
                    head[1] = *channel;
                    head[2..4].copy_from_slice(&len.to_be_bytes());
                    heads.push(head);
                }
                Item::Raw(_) => {}
            }
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(self.packets * 2 + self.items.len());
        let mut heads_iter = heads.iter();
        for item in &self.items {
            match item {
                Item::Frame(frame, _) => {
                    for packet in frame
                        .packets
                        .iter()
                        .filter(|p| u16::try_from(p.len()).is_ok())
                    {
                        let Some(head) = heads_iter.next() else { break };
                        slices.push(IoSlice::new(head));
                        slices.push(IoSlice::new(&packet.payload));
                    }
                }
                Item::Control { data, .. } => {
                    if let (Some(head), Ok(_)) = (heads_iter.next(), u16::try_from(data.len())) {
                        slices.push(IoSlice::new(&head[..PREFIX_LEN]));
                        slices.push(IoSlice::new(data));
                    }
                }
                Item::Raw(data) => slices.push(IoSlice::new(data)),
            }
        }
        slices.retain(|s| !s.is_empty());
        let result = write_all_vectored(writer, &mut slices).await;
        self.clear();
        result
    }
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    let mut remaining: &mut [IoSlice<'_>] = slices;
    while !remaining.is_empty() {
        let window = remaining.len().min(MAX_SLICES_PER_WRITE);
        let written = writer.write_vectored(&remaining[..window]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut remaining, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use streamgate_rtp::{MediaKind, PayloadType, SeqNo, TrackId};

    fn frame(payloads: &[&'static [u8]]) -> Arc<Frame> {
        frame_of(MediaKind::Video, payloads)
    }

    fn frame_of(kind: MediaKind, payloads: &[&'static [u8]]) -> Arc<Frame> {
        Arc::new(Frame {
            track: TrackId::new(0),
            kind,
            pts: 0,
            dts: 0,
            wallclock: SystemTime::UNIX_EPOCH,
            keyframe: true,
            discontinuity: false,
            random_access_skipped: false,
            units: Vec::new(),
            packets: payloads
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    OutPacket::new(
                        PayloadType::new(96).unwrap(),
                        i + 1 == payloads.len(),
                        SeqNo::new(100 + i as u16),
                        9000,
                        Ssrc::new(1),
                        Bytes::from_static(p),
                    )
                })
                .collect(),
        })
    }

    /// Accepts at most 7 bytes per call, to exercise partial vectored writes.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_prefix_rewritten_header_and_payload() {
        let mut batch = Batch::new();
        batch.push_raw(Bytes::from_static(b"RTSP/1.0 200 OK\r\n\r\n"));
        batch.push_frame(
            frame(&[b"abc", b"defg"]),
            TrackOutput {
                channel: 2,
                ssrc: Ssrc::new(0xdeadbeef),
            },
        );
        batch.push_rtcp(3, Bytes::from_static(&[0x80, 200, 0, 0]));
        assert_eq!(batch.packets(), 3);
        let expected_len = batch.bytes();
        let mut out = Trickle(Vec::new());
        batch.write_to(&mut out).await.unwrap();
        let out = out.0;
        assert_eq!(out.len(), expected_len);
        let rest = out
            .strip_prefix(b"RTSP/1.0 200 OK\r\n\r\n".as_slice())
            .unwrap();
        assert_eq!(&rest[..4], &[b'$', 2, 0, 15]);
        assert_eq!(&rest[4..6], &[0x80, 96]);
        assert_eq!(&rest[6..8], &100u16.to_be_bytes());
        assert_eq!(&rest[12..16], &0xdeadbeefu32.to_be_bytes());
        assert_eq!(&rest[16..19], b"abc");
        assert_eq!(&rest[19..23], &[b'$', 2, 0, 16]);
        assert_eq!(rest[24], 0x80 | 96, "marker on the last packet");
        assert_eq!(&rest[35..39], b"defg");
        assert_eq!(&rest[39..], &[b'$', 3, 0, 4, 0x80, 200, 0, 0]);
        assert!(batch.is_empty());
    }

    /// Audio alone waits for video (bounded); video, RTCP and responses go at once.
    #[test]
    fn audio_alone_waits_for_video_at_most_the_hold() {
        let out = TrackOutput {
            channel: 2,
            ssrc: Ssrc::new(1),
        };
        let now = Instant::now();
        let mut batch = Batch::new();
        assert!(!batch.due(now, true), "nothing to write");
        batch.push_frame(frame_of(MediaKind::Audio, &[b"aac"]), out);
        assert!(!batch.due(now, true), "audio waits for video");
        assert!(batch.due(now, false), "no video coming: audio goes at once");
        let held_long_enough = Instant::now() + AUDIO_HOLD;
        assert!(batch.due(held_long_enough, true), "held long enough");
        batch.push_frame(frame_of(MediaKind::Audio, &[b"aac"]), out);
        assert!(
            batch.due(held_long_enough, true),
            "a later audio frame does not extend the hold"
        );
        batch.push_frame(frame(&[b"idr"]), out);
        assert!(batch.due(now, true), "video goes at once, with the audio");

        for push in [
            |b: &mut Batch| b.push_rtcp(3, Bytes::from_static(&[0x80, 200, 0, 0])),
            |b: &mut Batch| b.push_raw(Bytes::from_static(b"RTSP/1.0 200 OK\r\n\r\n")),
        ] {
            let mut batch = Batch::new();
            batch.push_frame(frame_of(MediaKind::Audio, &[b"aac"]), out);
            push(&mut batch);
            assert!(batch.due(now, true));
            batch.clear();
            assert!(!batch.due(now, true));
        }
    }
}
