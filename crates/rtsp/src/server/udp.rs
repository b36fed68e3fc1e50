//! RTP/RTCP over UDP unicast: an even/odd server port pair per track, packets
//! sent with `sendmsg` (header and payload as two slices, via `socket2`) so the
//! payload is not copied here either. With a [`UdpPortRange`] the pairs come
//! from that range (what a firewall or container port mapping lets through);
//! without one they are ephemeral.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use socket2::{SockAddr, SockRef};
use streamgate_rtp::frame::RTP_HEADER_LEN;
use streamgate_rtp::OutPacket;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How many random ports to try before giving up on finding an even/odd pair.
const PORT_PAIR_ATTEMPTS: usize = 64;

/// Largest datagram read from a client's RTCP port (receiver reports are small).
const MAX_RTCP_DATAGRAM: usize = 1500;

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
    client_rtp: SockAddr,
    client_rtcp: SockAddr,
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
        let (rtp, rtcp) = match ports {
            Some(range) => bind_pair_in(local_ip, range).await?,
            None => bind_pair(local_ip).await?,
        };
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
            client_rtp: SockAddr::from(SocketAddr::new(client_ip, client_ports.0)),
            client_rtcp: SockAddr::from(SocketAddr::new(client_ip, client_ports.1)),
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

    /// Sends one RTP packet with its SSRC rewritten to this session's.
    pub async fn send_rtp(&self, packet: &OutPacket, ssrc: u32) -> io::Result<()> {
        let mut header: [u8; RTP_HEADER_LEN] = packet.header;
        header[8..12].copy_from_slice(&ssrc.to_be_bytes());
        send_vectored(
            &self.rtp,
            &[IoSlice::new(&header), IoSlice::new(&packet.payload)],
            &self.client_rtp,
        )
        .await
    }

    pub async fn send_rtcp(&self, data: &[u8]) -> io::Result<()> {
        send_vectored(&self.rtcp, &[IoSlice::new(data)], &self.client_rtcp).await
    }
}

async fn send_vectored(
    socket: &UdpSocket,
    slices: &[IoSlice<'_>],
    to: &SockAddr,
) -> io::Result<()> {
    loop {
        socket.writable().await?;
        match socket.try_io(Interest::WRITABLE, || {
            SockRef::from(socket).send_to_vectored(slices, to)
        }) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
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

        let packet = OutPacket::new(96, true, 7, 1234, 1, Bytes::from_static(b"payload"));
        track.send_rtp(&packet, 0xabcdef01).await.unwrap();
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
