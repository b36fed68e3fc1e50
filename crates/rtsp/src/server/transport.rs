//! The `Transport` header of SETUP: what the client asked for and what we answer.
//!
//! Parsed with `rtsp-types`' typed `Transports` header; the reply is written by
//! hand because players are picky about its exact shape (ffmpeg wants
//! `server_port` and `ssrc` back, GStreamer wants `interleaved=` echoed).

use rtsp_types::headers::{RtpLowerTransport, RtpProfile, Transport, Transports};
use rtsp_types::Request;
use streamgate_rtp::Ssrc;

/// The delivery a client asked for in SETUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportRequest {
    /// RTP/RTCP interleaved on the RTSP connection, on these two channels.
    Interleaved { rtp_channel: u8, rtcp_channel: u8 },
    /// RTP/RTCP over UDP to these client ports (sent to the connection's peer
    /// address only: a `destination=` parameter is ignored so the server cannot
    /// be used to flood a third party).
    Udp { rtp_port: u16, rtcp_port: u16 },
}

/// Why a SETUP's Transport header cannot be served (answered with 461).
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransportError {
    #[error("no Transport header")]
    Missing,
    #[error("Transport header does not parse")]
    Malformed,
    #[error("no supported transport offered (RTP/AVP unicast over TCP interleaved or UDP)")]
    Unsupported,
}

/// Picks the first transport in the client's list that we serve. `next_channel`
/// is the first interleaved channel not yet used on this connection, used when
/// the client asks for TCP without naming channels.
pub fn negotiate(
    request: &Request<Vec<u8>>,
    next_channel: u8,
) -> Result<TransportRequest, TransportError> {
    let transports = match request.typed_header::<Transports>() {
        Ok(Some(t)) => t,
        Ok(None) => return Err(TransportError::Missing),
        Err(_) => return Err(TransportError::Malformed),
    };
    transports
        .iter()
        .find_map(|t| choose(t, next_channel))
        .ok_or(TransportError::Unsupported)
}

fn choose(transport: &Transport, next_channel: u8) -> Option<TransportRequest> {
    let Transport::Rtp(rtp) = transport else {
        return None;
    };
    if rtp.profile != RtpProfile::Avp || rtp.params.multicast {
        return None;
    }
    match rtp.lower_transport {
        Some(RtpLowerTransport::Tcp) => {
            let (rtp_channel, rtcp_channel) = match rtp.params.interleaved {
                Some((first, second)) => (first, second.unwrap_or(first.checked_add(1)?)),
                None => (next_channel, next_channel.checked_add(1)?),
            };
            Some(TransportRequest::Interleaved {
                rtp_channel,
                rtcp_channel,
            })
        }
        Some(RtpLowerTransport::Udp) | None => {
            let (rtp_port, rtcp_port) = rtp.params.client_port?;
            if rtp_port == 0 {
                return None;
            }
            let rtcp_port = rtcp_port.unwrap_or(rtp_port.checked_add(1)?);
            Some(TransportRequest::Udp {
                rtp_port,
                rtcp_port,
            })
        }
        Some(_) => None,
    }
}

/// The Transport header value of the SETUP reply of a reader.
pub fn reply(chosen: TransportRequest, server_ports: Option<(u16, u16)>, ssrc: Ssrc) -> String {
    with_mode(chosen, server_ports, &format!(";ssrc={ssrc}"), "PLAY")
}

/// The Transport header value of the SETUP reply of a publisher (`mode=record`).
pub fn record_reply(chosen: TransportRequest, server_ports: Option<(u16, u16)>) -> String {
    with_mode(chosen, server_ports, "", "RECORD")
}

fn with_mode(
    chosen: TransportRequest,
    server_ports: Option<(u16, u16)>,
    ssrc: &str,
    mode: &str,
) -> String {
    match chosen {
        TransportRequest::Interleaved {
            rtp_channel,
            rtcp_channel,
        } => {
            format!("RTP/AVP/TCP;unicast;interleaved={rtp_channel}-{rtcp_channel}{ssrc};mode=\"{mode}\"")
        }
        TransportRequest::Udp {
            rtp_port,
            rtcp_port,
        } => {
            let (server_rtp, server_rtcp) = server_ports.unwrap_or((0, 0));
            format!(
                "RTP/AVP;unicast;client_port={rtp_port}-{rtcp_port};server_port={server_rtp}-{server_rtcp}{ssrc};mode=\"{mode}\""
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtsp_types::{headers, Method, Url, Version};

    fn setup(transport: &str) -> Request<Vec<u8>> {
        Request::builder(Method::Setup, Version::V1_0)
            .request_uri(Url::parse("rtsp://h/s/trackID=0").unwrap())
            .header(headers::TRANSPORT, transport)
            .build(Vec::new())
    }

    #[test]
    fn ffmpeg_tcp_and_udp() {
        assert_eq!(
            negotiate(&setup("RTP/AVP/TCP;unicast;interleaved=2-3"), 0),
            Ok(TransportRequest::Interleaved {
                rtp_channel: 2,
                rtcp_channel: 3
            })
        );
        assert_eq!(
            negotiate(&setup("RTP/AVP/UDP;unicast;client_port=5000-5001"), 0),
            Ok(TransportRequest::Udp {
                rtp_port: 5000,
                rtcp_port: 5001
            })
        );
        assert_eq!(
            negotiate(&setup("RTP/AVP;unicast;client_port=6000"), 0),
            Ok(TransportRequest::Udp {
                rtp_port: 6000,
                rtcp_port: 6001
            })
        );
    }

    #[test]
    fn gstreamer_lists_alternatives() {
        // rtspsrc offers several; the first one we serve wins.
        let t = "RTP/SAVP;unicast;client_port=1-2,RTP/AVP/TCP;unicast;interleaved=0-1";
        assert_eq!(
            negotiate(&setup(t), 0),
            Ok(TransportRequest::Interleaved {
                rtp_channel: 0,
                rtcp_channel: 1
            })
        );
        assert_eq!(
            negotiate(&setup("RTP/AVP/TCP;unicast"), 4),
            Ok(TransportRequest::Interleaved {
                rtp_channel: 4,
                rtcp_channel: 5
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        assert_eq!(
            negotiate(&setup("RTP/AVP;multicast"), 0),
            Err(TransportError::Unsupported)
        );
        assert_eq!(
            negotiate(&setup("RTP/AVP;unicast"), 0),
            Err(TransportError::Unsupported)
        );
        assert_eq!(
            negotiate(&setup("RTP/AVP/TCP;interleaved=255"), 0),
            Err(TransportError::Unsupported)
        );
        let no_header = Request::builder(Method::Setup, Version::V1_0).build(Vec::new());
        assert_eq!(negotiate(&no_header, 0), Err(TransportError::Missing));
    }

    #[test]
    fn record_replies_echo_the_publishers_transport() {
        let tcp = TransportRequest::Interleaved {
            rtp_channel: 2,
            rtcp_channel: 3,
        };
        assert_eq!(
            record_reply(tcp, None),
            "RTP/AVP/TCP;unicast;interleaved=2-3;mode=\"RECORD\""
        );
        let udp = TransportRequest::Udp {
            rtp_port: 5000,
            rtcp_port: 5001,
        };
        assert_eq!(
            record_reply(udp, Some((7000, 7001))),
            "RTP/AVP;unicast;client_port=5000-5001;server_port=7000-7001;mode=\"RECORD\""
        );
        // ffmpeg's and GStreamer's SETUP of a publisher parse as usual.
        assert_eq!(
            negotiate(
                &setup("RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record"),
                0
            ),
            Ok(udp)
        );
    }

    #[test]
    fn replies() {
        let tcp = TransportRequest::Interleaved {
            rtp_channel: 0,
            rtcp_channel: 1,
        };
        assert_eq!(
            reply(tcp, None, Ssrc::new(0xab)),
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=000000AB;mode=\"PLAY\""
        );
        let udp = TransportRequest::Udp {
            rtp_port: 5000,
            rtcp_port: 5001,
        };
        assert!(reply(udp, Some((7000, 7001)), Ssrc::new(1))
            .contains("client_port=5000-5001;server_port=7000-7001;ssrc=00000001"));
    }
}
