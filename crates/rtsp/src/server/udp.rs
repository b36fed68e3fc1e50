//! RTP/RTCP over UDP unicast: an even/odd server port pair per track, packets
//! sent with `sendmsg` (header and payload as two slices, via `socket2`) so the
//! payload is not copied here either.

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
    /// Binds an even RTP port and the next odd one for RTCP on `local_ip`.
    /// `activity` is bumped (milliseconds since `epoch`) whenever the client
    /// sends RTCP from its address.
    pub async fn bind(
        local_ip: IpAddr,
        client_ip: IpAddr,
        client_ports: (u16, u16),
        activity: Arc<AtomicU64>,
        epoch: Instant,
    ) -> io::Result<UdpTrack> {
        let (rtp, rtcp) = bind_pair(local_ip).await?;
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
        let track = UdpTrack::bind(localhost, localhost, ports, Arc::clone(&activity), epoch)
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
}
