//! RTP/RTCP over UDP unicast: an even/odd server port pair per track. A frame's
//! packets go out in one `sendmmsg` call (one datagram per packet, each the
//! session's rewritten header and the shared payload as two slices, so the
//! payload is not copied here either). `nix` supplies a safe `sendmmsg`:
//! socket2 has none, quinn-udp batches by GSO (equal-sized segments, which RTP
//! packets are not), and `libc` would need unsafe code here.
//!
//! Sending never waits long: a full socket buffer is waited for at most
//! [`SEND_WAIT`], then the rest of that frame is dropped (UDP is lossy anyway),
//! so a reader whose path is stuck cannot hold up its own session's keep-alive
//! handling; other readers have their own sockets and tasks.
//!
//! With a [`UdpPortRange`] the pairs come from that range (what a firewall or
//! container port mapping lets through); without one they are ephemeral.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use streamgate_rtp::RTP_HEADER_LEN;
use streamgate_rtp::{OutPacket, Ssrc};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How many random ports to try before giving up on finding an even/odd pair.
const PORT_PAIR_ATTEMPTS: usize = 64;

/// Largest datagram read from a client's RTCP port (receiver reports are small).
const MAX_RTCP_DATAGRAM: usize = 1500;

/// Most datagrams handed to one `sendmmsg` (Linux caps a call at 1024).
const MAX_DATAGRAMS_PER_CALL: usize = 256;

/// Longest wait for room in a socket's send buffer before the rest of a send is
/// dropped.
pub const SEND_WAIT: Duration = Duration::from_millis(250);

/// Inclusive server port range for RTP/RTCP pairs, e.g. `"8000-8099"`: the first
/// port is even and there are at least two, so it holds at least one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPortRange {
    first: u16,
    last: u16,
}

impl UdpPortRange {
    /// Even RTP ports whose odd RTCP port is also in the range, lowest first.
    fn rtp_ports(self) -> impl Iterator<Item = u16> {
        (self.first..self.last).step_by(2)
    }
}

impl fmt::Display for UdpPortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
#[error("UDP port range {text:?} must be \"FIRST-LAST\" with an even FIRST above 0 and LAST > FIRST, e.g. \"8000-8099\"")]
pub struct BadPortRange {
    text: String,
}

impl std::str::FromStr for UdpPortRange {
    type Err = BadPortRange;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadPortRange {
            text: text.to_owned(),
        };
        let (first, last) = text.split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || first % 2 != 0 || last <= first {
            return Err(bad());
        }
        Ok(UdpPortRange { first, last })
    }
}

/// Why a track's UDP ports could not be bound.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum UdpBindError {
    /// Every pair in the configured range is in use.
    #[error("every RTP/RTCP port pair in {0} is in use")]
    RangeExhausted(UdpPortRange),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One track's server-side UDP ports and the client's ports they send to.
#[derive(Debug)]
pub struct UdpTrack {
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    client_rtp: SockaddrStorage,
    client_rtcp: SockaddrStorage,
    /// Reads the client's RTCP (receiver reports) to keep the session alive.
    rtcp_reader: JoinHandle<()>,
}

impl Drop for UdpTrack {
    fn drop(&mut self) {
        self.rtcp_reader.abort();
    }
}

impl UdpTrack {
    /// Binds an even RTP port and the next odd one for RTCP on `local_ip`, in
    /// `ports` when given (else ephemeral). `activity` is bumped (milliseconds since `epoch`) whenever the client
    /// sends RTCP from its address.
    pub async fn bind(
        local_ip: IpAddr,
        ports: Option<UdpPortRange>,
        client_ip: IpAddr,
        client_ports: (u16, u16),
        activity: Arc<AtomicU64>,
        epoch: Instant,
    ) -> Result<UdpTrack, UdpBindError> {
        let (rtp, rtcp) = bind_ports(local_ip, ports).await?;
        let rtcp = Arc::new(rtcp);
        let reader_socket = Arc::clone(&rtcp);
        let rtcp_reader = tokio::spawn(async move {
            let mut buf = [0u8; MAX_RTCP_DATAGRAM];
            while let Ok((_, from)) = reader_socket.recv_from(&mut buf).await {
                if from.ip() == client_ip {
                    let millis = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                    activity.fetch_max(millis, Ordering::Relaxed);
                }
            }
        });
        Ok(UdpTrack {
            rtp: Arc::new(rtp),
            rtcp,
            client_rtp: SockaddrStorage::from(SocketAddr::new(client_ip, client_ports.0)),
            client_rtcp: SockaddrStorage::from(SocketAddr::new(client_ip, client_ports.1)),
            rtcp_reader,
        })
    }

    /// The server ports for the Transport reply.
    pub fn server_ports(&self) -> io::Result<(u16, u16)> {
        Ok((
            self.rtp.local_addr()?.port(),
            self.rtcp.local_addr()?.port(),
        ))
    }

    /// Sends RTP packets (a frame's) with their SSRC rewritten to this
    /// session's, one datagram each, in as few `sendmmsg` calls as the kernel
    /// allows. Err (nothing more sent) after [`SEND_WAIT`] without room.
    pub async fn send_rtp(&self, packets: &[OutPacket], ssrc: Ssrc) -> io::Result<()> {
        let headers: Vec<[u8; RTP_HEADER_LEN]> = packets
            .iter()
            .map(|packet| {
                let mut header = packet.header;
                header[8..12].copy_from_slice(&ssrc.get().to_be_bytes());
                header
            })
            .collect();
        let datagrams: Vec<[IoSlice<'_>; 2]> = headers
            .iter()
            .zip(packets)
            .map(|(header, packet)| [IoSlice::new(header), IoSlice::new(&packet.payload)])
            .collect();
        send_datagrams(&self.rtp, &datagrams, &self.client_rtp).await
    }

    pub async fn send_rtcp(&self, data: &[u8]) -> io::Result<()> {
        send_datagrams(&self.rtcp, &[[IoSlice::new(data)]], &self.client_rtcp).await
    }
}

/// Sends every datagram (each a list of slices) to `to`: `sendmmsg` until all
/// are taken, waiting at most [`SEND_WAIT`] each time the send buffer is full.
async fn send_datagrams<const SLICES: usize>(
    socket: &UdpSocket,
    datagrams: &[[IoSlice<'_>; SLICES]],
    to: &SockaddrStorage,
) -> io::Result<()> {
    let mut sent = 0;
    while sent < datagrams.len() {
        let batch = &datagrams[sent..datagrams.len().min(sent + MAX_DATAGRAMS_PER_CALL)];
        match socket.try_io(Interest::WRITABLE, || send_batch(socket, batch, to)) {
            Ok(count) => sent += count,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(SEND_WAIT, socket.writable())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "UDP send buffer full for {SEND_WAIT:?}: {} datagrams dropped",
                                datagrams.len() - sent
                            ),
                        )
                    })??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One `sendmmsg` call; the number of datagrams the kernel took (at least one).
fn send_batch<const SLICES: usize>(
    socket: &UdpSocket,
    datagrams: &[[IoSlice<'_>; SLICES]],
    to: &SockaddrStorage,
) -> io::Result<usize> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(datagrams.len(), None);
    let addresses = vec![Some(*to); datagrams.len()];
    let results = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        datagrams,
        &addresses,
        [],
        MsgFlags::empty(),
    )?;
    match results.count() {
        0 => Err(io::ErrorKind::WouldBlock.into()),
        count => Ok(count),
    }
}

/// An even RTP port and the next odd one for RTCP on `local_ip`, in `ports`
/// when given (else ephemeral).
pub(super) async fn bind_ports(
    local_ip: IpAddr,
    ports: Option<UdpPortRange>,
) -> Result<(UdpSocket, UdpSocket), UdpBindError> {
    Ok(match ports {
        Some(range) => bind_pair_in(local_ip, range).await?,
        None => bind_pair(local_ip).await?,
    })
}

async fn bind_pair(local_ip: IpAddr) -> io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..PORT_PAIR_ATTEMPTS {
        let rtp = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(local_ip, port + 1)).await {
            return Ok((rtp, rtcp));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free even/odd UDP port pair",
    ))
}

/// The first free even/odd pair in `range`.
async fn bind_pair_in(
    local_ip: IpAddr,
    range: UdpPortRange,
) -> Result<(UdpSocket, UdpSocket), UdpBindError> {
    for port in range.rtp_ports() {
        let Ok(rtp) = UdpSocket::bind(SocketAddr::new(local_ip, port)).await else {
            continue;
        };
        if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(local_ip, port + 1)).await {
            return Ok((rtp, rtcp));
        }
    }
    Err(UdpBindError::RangeExhausted(range))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::net::Ipv4Addr;
    use streamgate_rtp::{PayloadType, SeqNo};

    #[tokio::test]
    async fn sends_rtp_and_counts_rtcp_as_activity() {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let client_rtp = UdpSocket::bind((localhost, 0)).await.unwrap();
        let client_rtcp = UdpSocket::bind((localhost, 0)).await.unwrap();
        let ports = (
            client_rtp.local_addr().unwrap().port(),
            client_rtcp.local_addr().unwrap().port(),
        );
        let activity = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now() - std::time::Duration::from_secs(5);
        let track = UdpTrack::bind(
            localhost,
            None,
            localhost,
            ports,
            Arc::clone(&activity),
            epoch,
        )
        .await
        .unwrap();
        let (server_rtp, server_rtcp) = track.server_ports().unwrap();
        assert_eq!(server_rtp % 2, 0);
        assert_eq!(server_rtcp, server_rtp + 1);

        let packet = OutPacket::new(
            PayloadType::new(96).unwrap(),
            true,
            SeqNo::new(7),
            1234,
            Ssrc::new(1),
            Bytes::from_static(b"payload"),
        );
        track
            .send_rtp(std::slice::from_ref(&packet), Ssrc::new(0xabcdef01))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = client_rtp.recv(&mut buf).await.unwrap();
        assert_eq!(n, 12 + 7);
        assert_eq!(&buf[8..12], &0xabcdef01u32.to_be_bytes());
        assert_eq!(&buf[12..n], b"payload");

        client_rtcp
            .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], (localhost, server_rtcp))
            .await
            .unwrap();
        for _ in 0..100 {
            if activity.load(Ordering::Relaxed) > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(activity.load(Ordering::Relaxed) >= 5000);
    }

    async fn track_to(client: &UdpSocket) -> UdpTrack {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let port = client.local_addr().unwrap().port();
        let activity = Arc::new(AtomicU64::new(0));
        UdpTrack::bind(
            localhost,
            None,
            localhost,
            (port, port + 1),
            activity,
            Instant::now(),
        )
        .await
        .unwrap()
    }

    /// More packets than one `sendmmsg` takes: every one arrives, in order,
    /// as its own datagram with the session's SSRC.
    #[tokio::test]
    async fn a_frame_goes_out_as_one_datagram_per_packet_in_order() {
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::RcvBuf, &(4 << 20))
            .unwrap();
        let track = track_to(&client).await;
        let count = MAX_DATAGRAMS_PER_CALL * 2 + 3;
        let packets: Vec<OutPacket> = (0..count)
            .map(|i| {
                let payload = Bytes::from(vec![i as u8; 100 + i % 7]);
                OutPacket::new(
                    PayloadType::new(96).unwrap(),
                    i + 1 == count,
                    SeqNo::new(i as u16),
                    90_000,
                    Ssrc::new(1),
                    payload,
                )
            })
            .collect();
        track
            .send_rtp(&packets, Ssrc::new(0x0102_0304))
            .await
            .unwrap();
        let mut buf = [0u8; 2048];
        for (i, packet) in packets.iter().enumerate() {
            let n = client.recv(&mut buf).await.unwrap();
            assert_eq!(n, packet.len(), "datagram {i}");
            assert_eq!(&buf[2..4], &(i as u16).to_be_bytes());
            assert_eq!(&buf[8..12], &0x0102_0304u32.to_be_bytes());
            assert_eq!(&buf[12..n], &packet.payload[..]);
        }
    }

    /// A reader that never reads (its receive buffer overflows) or has gone
    /// away does not make sends wait: UDP drops at the receiver.
    #[tokio::test]
    async fn a_reader_that_never_reads_or_left_does_not_block_sends() {
        let stalled = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        nix::sys::socket::setsockopt(&stalled, nix::sys::socket::sockopt::RcvBuf, &(4096)).unwrap();
        let gone = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let to_stalled = track_to(&stalled).await;
        let to_gone = track_to(&gone).await;
        drop(gone);
        let payload = Bytes::from(vec![0u8; 1200]);
        let frame: Vec<OutPacket> = (0..64)
            .map(|i| {
                OutPacket::new(
                    PayloadType::new(96).unwrap(),
                    i == 63,
                    SeqNo::new(i),
                    0,
                    Ssrc::new(1),
                    payload.clone(),
                )
            })
            .collect();
        let bounded = std::time::Duration::from_secs(20);
        for _ in 0..50 {
            tokio::time::timeout(bounded, to_stalled.send_rtp(&frame, Ssrc::new(1)))
                .await
                .expect("send to a stalled reader returns")
                .unwrap();
            // Sends to a closed port may report ECONNREFUSED; they must not hang.
            let _ = tokio::time::timeout(bounded, to_gone.send_rtp(&frame, Ssrc::new(1)))
                .await
                .expect("send to a departed reader returns");
        }
    }

    #[test]
    fn port_ranges_parse_or_say_why_not() {
        let range: UdpPortRange = "8000-8099".parse().unwrap();
        assert_eq!(range.to_string(), "8000-8099");
        assert_eq!(range.rtp_ports().count(), 50);
        let two: UdpPortRange = "8000-8001".parse().unwrap();
        assert_eq!(two.rtp_ports().collect::<Vec<_>>(), [8000]);
        for bad in [
            "9000-8000",
            "8001-8099",
            "8000-8000",
            "0-9",
            "8000",
            "a-b",
            "8000-70000",
        ] {
            let err = bad.parse::<UdpPortRange>().expect_err(bad).to_string();
            assert!(err.contains(bad) && err.contains("FIRST-LAST"), "{err}");
        }
    }

    /// Pairs come from the range, lowest free first, and a full range is an error.
    #[tokio::test]
    async fn pairs_come_from_the_range_until_it_is_exhausted() {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Four free ports starting at an even one (probed, then released).
        let mut first = None;
        for _ in 0..PORT_PAIR_ATTEMPTS {
            let (rtp, _rtcp) = bind_pair(localhost).await.unwrap();
            let port = rtp.local_addr().unwrap().port();
            let Some(next) = port.checked_add(2).filter(|p| *p < u16::MAX) else {
                continue;
            };
            if bind_pair_in(
                localhost,
                UdpPortRange {
                    first: next,
                    last: next + 1,
                },
            )
            .await
            .is_ok()
            {
                first = Some(port);
                break;
            }
        }
        let first = first.expect("four free consecutive UDP ports");
        let range: UdpPortRange = format!("{first}-{}", first + 3).parse().unwrap();
        // Someone else holds the first RTCP port: the first pair is skipped.
        let squatter = match UdpSocket::bind((localhost, first + 1)).await {
            Ok(socket) => socket,
            Err(e) => panic!("port {} taken by another process: {e}", first + 1),
        };
        let (rtp, rtcp) = bind_pair_in(localhost, range).await.unwrap();
        assert_eq!(rtp.local_addr().unwrap().port(), first + 2);
        assert_eq!(rtcp.local_addr().unwrap().port(), first + 3);
        let err = bind_pair_in(localhost, range).await.unwrap_err();
        assert!(
            matches!(err, UdpBindError::RangeExhausted(r) if r == range),
            "{err}"
        );
        assert!(err.to_string().contains(&range.to_string()), "{err}");
        drop(squatter);
        let (rtp, rtcp) = bind_pair_in(localhost, range).await.unwrap();
        assert_eq!(rtp.local_addr().unwrap().port(), first);
        assert_eq!(rtcp.local_addr().unwrap().port(), first + 1);
    }
}
