//! A publisher's RTP and RTCP over UDP: one even/odd server port pair per
//! track, read by one task that accepts datagrams only from the publisher's
//! address (the RTSP connection's peer) and hands them to the connection task
//! through a bounded queue. Datagrams from anyone else, and datagrams over a
//! full queue (a flood), are dropped and counted; nothing blocks.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use streamgate_rtp::TrackId;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::publish::PublishPoint;
use super::udp::{bind_ports, UdpBindError, UdpPortRange};

/// Largest datagram read (RTP over UDP stays under the path MTU; this is generous).
const MAX_DATAGRAM: usize = 65536;

/// Datagrams waiting for the connection task, for all of a session's tracks.
pub const QUEUE_LEN: usize = 4096;

/// One datagram from the publisher.
#[derive(Debug)]
pub struct Datagram {
    pub track: TrackId,
    pub rtcp: bool,
    pub data: Bytes,
}

/// Where the datagrams of a session's UDP tracks go.
pub fn queue() -> (mpsc::Sender<Datagram>, mpsc::Receiver<Datagram>) {
    mpsc::channel(QUEUE_LEN)
}

/// What a received datagram's sender means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Publisher,
    Foreign,
}

/// Only the RTSP connection's peer may send media (the ports it gave are not
/// checked: NATs rewrite them).
pub fn origin(from: SocketAddr, publisher: IpAddr) -> Origin {
    if canonical(from.ip()) == canonical(publisher) {
        Origin::Publisher
    } else {
        Origin::Foreign
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One track's server ports for a publisher; dropping it stops its reader task.
#[derive(Debug)]
pub struct UdpRecordTrack {
    rtcp: Arc<UdpSocket>,
    ports: (u16, u16),
    client_rtcp: SocketAddr,
    reader: JoinHandle<()>,
}

impl Drop for UdpRecordTrack {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What the reader task needs besides its sockets.
pub struct Receiving {
    pub track: TrackId,
    pub publisher: IpAddr,
    pub queue: mpsc::Sender<Datagram>,
    pub point: PublishPoint,
    /// Bumped (ms since `epoch`) per accepted datagram: the session is alive.
    pub activity: Arc<AtomicU64>,
    pub epoch: Instant,
}

impl UdpRecordTrack {
    pub async fn bind(
        local_ip: IpAddr,
        ports: Option<UdpPortRange>,
        client_ports: (u16, u16),
        receiving: Receiving,
    ) -> Result<UdpRecordTrack, UdpBindError> {
        let (rtp, rtcp) = bind_ports(local_ip, ports).await?;
        let ports = (rtp.local_addr()?.port(), rtcp.local_addr()?.port());
        let rtcp = Arc::new(rtcp);
        let client_rtcp = SocketAddr::new(receiving.publisher, client_ports.1);
        let reader = tokio::spawn(read(rtp, Arc::clone(&rtcp), receiving));
        Ok(UdpRecordTrack {
            rtcp,
            ports,
            client_rtcp,
            reader,
        })
    }

    pub fn server_ports(&self) -> (u16, u16) {
        self.ports
    }

    /// Sends an RTCP receiver report to the publisher's RTCP port.
    pub async fn send_rtcp(&self, report: &[u8]) -> io::Result<()> {
        self.rtcp.send_to(report, self.client_rtcp).await.map(drop)
    }
}

async fn read(rtp: UdpSocket, rtcp: Arc<UdpSocket>, receiving: Receiving) {
    let mut rtp_buf = vec![0u8; MAX_DATAGRAM];
    let mut rtcp_buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (received, is_rtcp) = tokio::select! {
            r = rtp.recv_from(&mut rtp_buf) => (r, false),
            r = rtcp.recv_from(&mut rtcp_buf) => (r, true),
        };
        let buf = if is_rtcp { &rtcp_buf } else { &rtp_buf };
        let Ok((len, from)) = received else {
            // ICMP port unreachable and friends: the next datagram may be fine.
            continue;
        };
        let counts = receiving.point.counts();
        if origin(from, receiving.publisher) == Origin::Foreign {
            counts.foreign_packets.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let millis = u64::try_from(receiving.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        receiving.activity.fetch_max(millis, Ordering::Relaxed);
        // One copy of the datagram into its own buffer, sliced from then on.
        let data = Bytes::copy_from_slice(&buf[..len]);
        let datagram = Datagram {
            track: receiving.track,
            rtcp: is_rtcp,
            data,
        };
        match receiving.queue.try_send(datagram) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                counts.overflow_packets.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_publishers_address_is_accepted() {
        let publisher: IpAddr = "192.0.2.7".parse().unwrap();
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(origin(at("192.0.2.7:5000"), publisher), Origin::Publisher);
        // Another source port of the same host (NAT) is still the publisher.
        assert_eq!(origin(at("192.0.2.7:41000"), publisher), Origin::Publisher);
        assert_eq!(
            origin(at("[::ffff:192.0.2.7]:5000"), publisher),
            Origin::Publisher
        );
        assert_eq!(origin(at("192.0.2.8:5000"), publisher), Origin::Foreign);
    }
}
