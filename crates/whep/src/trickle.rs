//! ICE by PATCH (RFC 9725 §4.3–4.4), in `application/trickle-ice-sdpfrag` bodies (RFC 8840).
//!
//! Trickle: the offer leaves before ICE gathering ends and the candidates gathered
//! afterwards follow, `If-Match` carrying the session's `ETag`, the last PATCH with
//! `a=end-of-candidates`. A 412 (the server's ETag moved on) stops trickling and
//! restarts ICE; any other refusal stops trickling.
//!
//! Restart: when a connected session drops to disconnected/failed and the server takes
//! PATCH, webrtc-rs restarts ICE on the live connection (new ufrag/pwd, same sockets,
//! DTLS/SRTP kept); the new credentials and candidates go in a PATCH with `If-Match: "*"`,
//! and the server's answer sdpfrag (its new credentials and candidates) is patched into
//! the previous answer, which is applied; its `ETag` replaces the old one. A refusal
//! (405/501/4xx) leaves the session to the source, which opens the next one.
//!
//! Servers that do not announce `Accept-Patch: application/trickle-ice-sdpfrag` get a
//! complete offer instead (full gathering, see [`crate::config::TrickleMode`]); a server
//! that answers 405 or 501 to a PATCH is not sent more of them.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use url::Url;
use webrtc::peer_connection::{RTCIceGatheringState, RTCPeerConnectionState};

use crate::config::redact_url;
use crate::peer::{IceControl, PeerError};
use crate::signal::{SignalError, WhepClient};

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

/// What the server answered an ICE restart with (RFC 8840 sdpfrag): its new ICE
/// credentials and candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIce {
    pub ufrag: String,
    pub pwd: String,
    /// `candidate:…` values.
    pub candidates: Vec<String>,
}

impl RemoteIce {
    pub fn from_fragment(fragment: &str) -> Option<RemoteIce> {
        let first = |prefix: &str| {
            fragment
                .lines()
                .find_map(|line| line.trim_end().strip_prefix(prefix))
                .map(str::to_owned)
        };
        Some(RemoteIce {
            ufrag: first("a=ice-ufrag:")?,
            pwd: first("a=ice-pwd:")?,
            candidates: fragment
                .lines()
                .filter_map(|line| line.trim_end().strip_prefix("a="))
                .filter(|value| value.starts_with("candidate:"))
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The previous answer with these credentials and candidates in place of the old
    /// ones (the candidates go to the first media section: BUNDLE) and its `o=` version
    /// one higher.
    pub fn patch_answer(&self, answer: &str) -> String {
        let mut patched = String::with_capacity(answer.len() + 256);
        let mut candidates_placed = false;
        for line in answer.lines().map(str::trim_end) {
            if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
                continue;
            }
            if line.starts_with("a=ice-ufrag:") {
                patched.push_str(&format!("a=ice-ufrag:{}\r\n", self.ufrag));
            } else if line.starts_with("a=ice-pwd:") {
                patched.push_str(&format!("a=ice-pwd:{}\r\n", self.pwd));
            } else if let Some(origin) = line.strip_prefix("o=") {
                patched.push_str("o=");
                patched.push_str(&bump_version(origin));
                patched.push_str("\r\n");
            } else {
                patched.push_str(line);
                patched.push_str("\r\n");
            }
            if line.starts_with("a=mid:") && !candidates_placed {
                candidates_placed = true;
                for candidate in &self.candidates {
                    patched.push_str(&format!("a={candidate}\r\n"));
                }
                patched.push_str("a=end-of-candidates\r\n");
            }
        }
        patched
    }
}

/// `o=` fields with the session version (the third) incremented.
fn bump_version(origin: &str) -> String {
    let mut fields: Vec<String> = origin.split(' ').map(str::to_owned).collect();
    if let Some(version) = fields.get_mut(2) {
        if let Some(next) = version.parse::<u64>().ok().and_then(|v| v.checked_add(1)) {
            *version = next.to_string();
        }
    }
    fields.join(" ")
}

/// A session's ICE-by-PATCH task; aborted when dropped (its session is gone).
#[derive(Debug)]
pub struct IceTask(JoinHandle<()>);

impl Drop for IceTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a session's PATCHes go.
#[derive(Debug, Clone)]
pub struct PatchTarget {
    pub client: WhepClient,
    pub session_url: Url,
    pub etag: Option<String>,
}

/// What the task trickles: the offer's ICE identity and the candidates gathered after it.
pub struct Trickle {
    pub ice: LocalIce,
    pub candidates: mpsc::Receiver<String>,
}

/// Trickles the candidates gathered after the offer (when `trickle` is given), then, when
/// `restarts` is set, restarts ICE by PATCH whenever the connection drops to disconnected
/// or failed. A refused restart (405/501/4xx) ends the task: the source then replaces the
/// session.
pub fn spawn(
    target: PatchTarget,
    trickle: Option<Trickle>,
    restarts: Option<(IceControl, Duration)>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    state: watch::Receiver<RTCPeerConnectionState>,
) -> IceTask {
    IceTask(tokio::spawn(async move {
        let mut target = target;
        let stale = match trickle {
            Some(trickle) => trickle_candidates(&target, trickle, gathering).await,
            None => false,
        };
        let Some((control, gather_timeout)) = restarts else {
            return;
        };
        restart_when_dropped(&mut target, control, gather_timeout, state, stale).await;
    }))
}

/// Returns true when the server answered 412 (its ETag moved on: RFC 9725 asks for an
/// ICE restart).
async fn trickle_candidates(
    target: &PatchTarget,
    trickle: Trickle,
    mut gathering: watch::Receiver<RTCIceGatheringState>,
) -> bool {
    let Trickle {
        ice,
        mut candidates,
    } = trickle;
    let session = redact_url(&target.session_url);
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
        match target
            .client
            .patch_fragment(&target.session_url, target.etag.as_deref(), fragment)
            .await
        {
            Ok(_) => {
                tracing::debug!(%session, candidates = batch.len(), end, "trickled ICE candidates")
            }
            Err(error) if matches!(error.status(), Some(405 | 501)) => {
                tracing::info!(%session, %error, "the WHEP server takes no trickle ICE: the offer's candidates stand");
                return false;
            }
            Err(error) if error.status() == Some(412) => {
                tracing::warn!(%session, %error, "the session's ETag changed: ICE restart needed");
                return true;
            }
            Err(error) => {
                tracing::warn!(%session, %error, "trickle ICE PATCH failed: trickling stopped");
                return false;
            }
        }
        if end {
            return false;
        }
    }
}

async fn restart_when_dropped(
    target: &mut PatchTarget,
    control: IceControl,
    gather_timeout: Duration,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    stale_etag: bool,
) {
    let session = redact_url(&target.session_url);
    // Only a connection that was up is restarted; a failed first connect fails the open.
    if state
        .wait_for(|s| *s == RTCPeerConnectionState::Connected)
        .await
        .is_err()
    {
        return;
    }
    // A stale ETag is restarted once connected: restarting mid-check races the first one.
    let mut restart_now = stale_etag;
    loop {
        if !std::mem::take(&mut restart_now) {
            let dropped = state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed
                )
            });
            if dropped.await.is_err() {
                return;
            }
        }
        tracing::info!(%session, "restarting ICE by PATCH");
        match restart(target, &control, gather_timeout).await {
            Ok(()) => tracing::info!(%session, "ICE restarted"),
            Err(error) => {
                tracing::warn!(%session, %error, "ICE restart failed: the session will be replaced");
                return;
            }
        }
        // One restart per drop: wait until it is connected again.
        if state
            .wait_for(|s| *s == RTCPeerConnectionState::Connected)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Why an ICE restart did not happen.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error("the ICE restart offer has no ICE credentials")]
    NoLocalIce,
    #[error("the ICE restart answer is not an sdpfrag with ICE credentials")]
    BadAnswer,
}

/// RFC 9725 §4.4: a PATCH with `If-Match: "*"` carries the new offer's ICE credentials
/// and candidates; the 200 answer carries the server's, and a new `ETag`.
async fn restart(
    target: &mut PatchTarget,
    control: &IceControl,
    gather_timeout: Duration,
) -> Result<(), RestartError> {
    let offer = control.restart_offer(gather_timeout).await?;
    let ice = LocalIce::from_sdp(&offer).ok_or(RestartError::NoLocalIce)?;
    let mut candidates: Vec<String> = Vec::new();
    for candidate in offer
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("a="))
        .filter(|value| value.starts_with("candidate:"))
    {
        if !candidates.iter().any(|c| c == candidate) {
            candidates.push(candidate.to_owned());
        }
    }
    tracing::debug!(?candidates, "ICE restart offer candidates");
    let (answer, etag) = target
        .client
        .patch_fragment(
            &target.session_url,
            Some("*"),
            ice.fragment(&candidates, true),
        )
        .await?;
    let remote = RemoteIce::from_fragment(&answer).ok_or(RestartError::BadAnswer)?;
    let previous = control.remote_sdp().await.ok_or(RestartError::BadAnswer)?;
    control
        .accept_answer(remote.patch_answer(&previous))
        .await?;
    if etag.is_some() {
        target.etag = etag;
    }
    Ok(())
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
    fn restart_answer_takes_the_new_credentials_and_candidates() {
        let answer = "v=0\r\no=- 42 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=ice-ufrag:old1\r\na=ice-pwd:oldpassword\r\n\
            a=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 1000 typ host\r\na=end-of-candidates\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:old1\r\na=ice-pwd:oldpassword\r\na=mid:1\r\n";
        let remote = RemoteIce::from_fragment(
            "a=ice-ufrag:new2\r\na=ice-pwd:newpassword\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n\
             a=mid:0\r\na=candidate:2 1 udp 1 127.0.0.1 2000 typ host\r\na=end-of-candidates\r\n",
        )
        .unwrap();
        assert_eq!(remote.ufrag, "new2");
        assert_eq!(remote.candidates.len(), 1);
        let patched = remote.patch_answer(answer);
        assert!(patched.contains("o=- 42 3 IN IP4"), "{patched}");
        assert_eq!(patched.matches("a=ice-ufrag:new2").count(), 2, "{patched}");
        assert_eq!(patched.matches("a=ice-pwd:newpassword").count(), 2);
        assert!(!patched.contains("old"), "{patched}");
        assert!(!patched.contains(" 1000 "), "{patched}");
        assert!(
            patched.contains("a=mid:0\r\na=candidate:2 1 udp 1 127.0.0.1 2000 typ host\r\na=end-of-candidates\r\n"),
            "{patched}"
        );
        assert_eq!(RemoteIce::from_fragment("a=mid:0\r\n"), None);
    }

    #[test]
    fn an_offer_without_ice_credentials_has_no_identity() {
        assert_eq!(LocalIce::from_sdp("v=0\r\nm=video 9 RTP/AVP 96\r\n"), None);
    }
}
