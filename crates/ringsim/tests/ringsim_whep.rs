//! WHEP live view against a real WebRTC peer (the project's own webrtc-rs
//! receive-only peer, `streamgate_whep::peer::Peer`): H.264 (and Opus when
//! offered) arrive, and the simulator ends the session at the device's cap.
//! Timeouts here are hang guards only; nothing passes or fails on timing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use streamgate_ringsim::{SimConfig, Simulator};
use streamgate_rtp::{MediaKind, RtpPacket};
use streamgate_whep::peer::{Gathering, Peer, Received};
use tokio::sync::mpsc;
use webrtc::peer_connection::RTCPeerConnectionState;

/// A hang guard far beyond what any step needs on a busy machine.
const GUARD: Duration = Duration::from_secs(120);

fn config(cap: Duration, audio: bool) -> SimConfig {
    let mut config = SimConfig {
        audio,
        ..SimConfig::default()
    };
    for device in &mut config.accounts[0].devices {
        device.session_cap = Some(cap);
    }
    config
}

struct Session {
    peer: Peer,
    events: mpsc::Receiver<Received>,
    answer: String,
    location: String,
}

async fn open(sim: &Simulator, token: &str, device: &str) -> Session {
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let (peer, offer, events) = Peer::offer(
        bind,
        &[],
        Gathering::Full {
            timeout: Duration::from_secs(10),
        },
    )
    .await
    .expect("offer");
    let response = client()
        .post(url(
            sim,
            &format!("/v1/devices/{device}/media/streaming/whep/sessions"),
        ))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/sdp");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!(
            "/v1/devices/{device}/media/streaming/whep/sessions/"
        )),
        "{location}"
    );
    let answer = response.text().await.unwrap();
    assert!(answer.contains("profile-level-id=64001f"), "{answer}");
    assert!(answer.contains("packetization-mode=1"), "{answer}");
    assert!(answer.contains("a=candidate:"), "{answer}");
    peer.accept_answer(answer.clone())
        .await
        .expect("answer accepted");
    Session {
        peer,
        events,
        answer,
        location,
    }
}

/// The answer's audio `m=` section (empty if none).
fn audio_section(sdp: &str) -> &str {
    let Some(start) = sdp.find("m=audio") else {
        return "";
    };
    let rest = &sdp[start..];
    &rest[..rest[1..].find("m=").map_or(rest.len(), |end| end + 1)]
}

/// H.264 NAL unit types a packet's payload starts (single NAL, STAP-A, FU-A start).
fn h264_types(payload: &[u8]) -> Vec<u8> {
    let Some(first) = payload.first() else {
        return vec![];
    };
    match first & 0x1f {
        24 => {
            let mut types = Vec::new();
            let mut rest = &payload[1..];
            while rest.len() >= 3 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if rest.len() < 2 + len || len == 0 {
                    break;
                }
                types.push(rest[2] & 0x1f);
                rest = &rest[2 + len..];
            }
            types
        }
        28 => match payload.get(1) {
            Some(fu) if fu & 0x80 != 0 => vec![fu & 0x1f],
            _ => vec![],
        },
        other => vec![other],
    }
}

/// Reads media until `video` and `audio` packets arrived and a keyframe was seen.
async fn receive(
    events: &mut mpsc::Receiver<Received>,
    video: usize,
    audio: usize,
) -> (usize, usize, bool) {
    let (mut got_video, mut got_audio, mut keyframe) = (0, 0, false);
    let receiving = async {
        while got_video < video || got_audio < audio || !keyframe {
            let Some(event) = events.recv().await else {
                break;
            };
            if let Received::Rtp { kind, packet } = event {
                let packet = RtpPacket::parse(packet).expect("RTP");
                match kind {
                    MediaKind::Video => {
                        got_video += 1;
                        let types = h264_types(packet.payload_slice());
                        keyframe |= types.contains(&5) || types.contains(&7);
                    }
                    MediaKind::Audio => got_audio += 1,
                }
            }
        }
    };
    let _ = tokio::time::timeout(GUARD, receiving).await;
    (got_video, got_audio, keyframe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_streams_h264_and_opus_and_ends_at_the_cap() {
    let sim = start(config(Duration::from_secs(4), true)).await;
    let token = access_token(&sim).await;
    let mut session = open(&sim, &token, FRONT_DOOR).await;
    let audio = audio_section(&session.answer);
    assert!(
        audio.contains("opus/48000/2") && audio.contains("a=sendonly"),
        "{}",
        session.answer
    );

    let (video, audio, keyframe) = receive(&mut session.events, 50, 20).await;
    assert!(
        video >= 50 && audio >= 20 && keyframe,
        "video {video}, audio {audio}, keyframe {keyframe}"
    );

    // The simulator closes the session at its cap; the peer sees the connection end.
    let mut state = session.peer.state.clone();
    let ended = state.wait_for(|s| {
        matches!(
            s,
            RTCPeerConnectionState::Disconnected
                | RTCPeerConnectionState::Failed
                | RTCPeerConnectionState::Closed
        )
    });
    let ended = tokio::time::timeout(GUARD, ended).await;
    assert!(
        matches!(ended, Ok(Ok(_))),
        "the peer connection did not end"
    );
    let mut closed = false;
    for _ in 0..1200 {
        let stats = sim.stats().whep_sessions;
        if stats.closed_at_cap == 1 {
            assert_eq!((stats.opened, stats.active), (1, 0), "{stats:?}");
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "{:?}", sim.stats().whep_sessions);
    // Its Location no longer names a session.
    let response = client()
        .delete(url(&sim, &session.location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    session.peer.close().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_without_audio_and_delete_ends_the_session() {
    // Audio off in the simulator: the answer grants video only, however the offer asks.
    let sim = start(config(Duration::from_secs(600), false)).await;
    let token = access_token(&sim).await;
    let mut session = open(&sim, &token, "ava1.ring.device.driveway").await;
    let audio = audio_section(&session.answer);
    assert!(
        !(audio.contains("opus/48000/2") && audio.contains("a=sendonly")),
        "{}",
        session.answer
    );
    let (video, _, keyframe) = receive(&mut session.events, 20, 0).await;
    assert!(
        video >= 20 && keyframe,
        "video {video}, keyframe {keyframe}"
    );

    let response = client()
        .delete(url(&sim, &session.location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stats = sim.stats().whep_sessions;
    assert_eq!(
        (stats.opened, stats.deleted, stats.active),
        (1, 1, 0),
        "{stats:?}"
    );
    let mut state = session.peer.state.clone();
    let ended = state.wait_for(|s| {
        matches!(
            s,
            RTCPeerConnectionState::Disconnected
                | RTCPeerConnectionState::Failed
                | RTCPeerConnectionState::Closed
        )
    });
    assert!(matches!(
        tokio::time::timeout(GUARD, ended).await,
        Ok(Ok(_))
    ));
    session.peer.close().await;
    sim.stop().await;
}
