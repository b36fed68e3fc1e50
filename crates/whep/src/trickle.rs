//! Trickle ICE by PATCH (RFC 9725 §4.3): the offer leaves before ICE gathering ends and
//! the candidates gathered afterwards follow in `application/trickle-ice-sdpfrag` bodies
//! (RFC 8840), `If-Match` carrying the session's `ETag`, the last one with
//! `a=end-of-candidates`.
//!
//! Servers that do not announce `Accept-Patch: application/trickle-ice-sdpfrag` get a
//! complete offer instead (full gathering, see [`crate::config::TrickleMode`]); a server
//! that answers 405 or 501 to a PATCH is not sent more of them.

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use url::Url;
use webrtc::peer_connection::RTCIceGatheringState;

use crate::config::redact_url;
use crate::signal::WhepClient;

/// The offer's ICE identity and the media section its candidates belong to (with
/// BUNDLE, the first one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIce {
    pub ufrag: String,
    pub pwd: String,
    /// The first `m=` line, as offered.
    pub media_line: String,
    pub mid: String,
}

impl LocalIce {
    /// Reads the first `a=ice-ufrag`, `a=ice-pwd`, `m=` and `a=mid` of an SDP.
    pub fn from_sdp(sdp: &str) -> Option<LocalIce> {
        let first = |prefix: &str| {
            sdp.lines()
                .find_map(|line| line.trim_end().strip_prefix(prefix))
                .map(str::to_owned)
        };
        Some(LocalIce {
            ufrag: first("a=ice-ufrag:")?,
            pwd: first("a=ice-pwd:")?,
            media_line: format!("m={}", first("m=")?),
            mid: first("a=mid:")?,
        })
    }

    /// An sdpfrag (RFC 8840 §9) carrying `candidates` (`candidate:…` values), ended by
    /// `a=end-of-candidates` when `end`.
    pub fn fragment(&self, candidates: &[String], end: bool) -> String {
        let mut fragment = format!(
            "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n{}\r\na=mid:{}\r\n",
            self.ufrag, self.pwd, self.media_line, self.mid
        );
        for candidate in candidates {
            fragment.push_str("a=");
            fragment.push_str(candidate);
            fragment.push_str("\r\n");
        }
        if end {
            fragment.push_str("a=end-of-candidates\r\n");
        }
        fragment
    }
}

/// A running trickle task; aborted when dropped (its session is gone).
#[derive(Debug)]
pub struct TrickleTask(JoinHandle<()>);

impl Drop for TrickleTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends the session's local candidates as they are gathered, until gathering completes
/// or the server refuses them.
pub fn spawn(
    client: WhepClient,
    session_url: Url,
    etag: Option<String>,
    ice: LocalIce,
    candidates: mpsc::Receiver<String>,
    gathering: watch::Receiver<RTCIceGatheringState>,
) -> TrickleTask {
    TrickleTask(tokio::spawn(trickle(
        client,
        session_url,
        etag,
        ice,
        candidates,
        gathering,
    )))
}

async fn trickle(
    client: WhepClient,
    session_url: Url,
    etag: Option<String>,
    ice: LocalIce,
    mut candidates: mpsc::Receiver<String>,
    mut gathering: watch::Receiver<RTCIceGatheringState>,
) {
    let session = redact_url(&session_url);
    loop {
        let mut batch = Vec::new();
        let mut end = tokio::select! {
            biased;
            candidate = candidates.recv() => match candidate {
                Some(candidate) => {
                    batch.push(candidate);
                    false
                }
                None => true,
            },
            // Complete, or the peer is gone (closed channel): end the list as it is.
            _ = gathering.wait_for(|s| *s == RTCIceGatheringState::Complete) => true,
        };
        // Candidates are queued before the gathering state changes: take all of them.
        while let Ok(candidate) = candidates.try_recv() {
            batch.push(candidate);
        }
        end |= *gathering.borrow() == RTCIceGatheringState::Complete;
        let fragment = ice.fragment(&batch, end);
        match client
            .patch_fragment(&session_url, etag.as_deref(), fragment)
            .await
        {
            Ok(_) => {
                tracing::debug!(%session, candidates = batch.len(), end, "trickled ICE candidates")
            }
            Err(error) if matches!(error.status(), Some(405 | 501)) => {
                tracing::info!(%session, %error, "the WHEP server takes no trickle ICE: the offer's candidates stand");
                return;
            }
            Err(error) if error.status() == Some(412) => {
                tracing::warn!(%session, %error, "the WHEP session's ETag changed (ICE restart needed): trickling stopped");
                return;
            }
            Err(error) => {
                tracing::warn!(%session, %error, "trickle ICE PATCH failed: trickling stopped");
                return;
            }
        }
        if end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:AbCd\r\n\
        a=ice-pwd:0123456789abcdefghijkl\r\na=mid:0\r\na=recvonly\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=mid:1\r\n";

    #[test]
    fn fragment_follows_rfc_8840() {
        let ice = LocalIce::from_sdp(OFFER).unwrap();
        assert_eq!(ice.mid, "0");
        let fragment = ice.fragment(
            &["candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".to_owned()],
            true,
        );
        assert_eq!(
            fragment,
            "a=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"
        );
        assert!(!ice.fragment(&[], false).contains("end-of-candidates"));
    }

    #[test]
    fn an_offer_without_ice_credentials_has_no_identity() {
        assert_eq!(LocalIce::from_sdp("v=0\r\nm=video 9 RTP/AVP 96\r\n"), None);
    }
}
