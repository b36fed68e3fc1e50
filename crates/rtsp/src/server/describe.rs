//! The SDP answer to DESCRIBE, written with `sdp-types` (the SDP model and
//! writer from the gstreamer-rs authors, so lines come out in RFC 8866 order).
//!
//! Shaped for what NVRs need (see PEER_NOTES): a live range (`npt=now-`), port 0
//! and `c=IN IP4 0.0.0.0` per media, a relative `a=control` per track resolved
//! against the `Content-Base`, and the codec's `rtpmap`/`fmtp` from the
//! pipeline's SDP module (H.264 `sprop-parameter-sets`, AAC `config`, the
//! LATM `StreamMuxConfig` of forwarded MP4A-LATM packets, …).

use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Origin, Session, Time};
use streamgate_rtp::{sdp, MediaKind, TrackId, TrackInfo};

/// The relative control URL of a track (`Content-Base` + this = the SETUP URL).
pub fn track_control(track: &TrackInfo) -> String {
    format!("trackID={}", track.id)
}

/// Parses the track id from the last path segment of a SETUP URL.
pub fn track_from_control(segment: &str) -> Option<TrackId> {
    segment
        .strip_prefix("trackID=")?
        .parse()
        .ok()
        .map(TrackId::new)
}

/// The SDP describing `tracks` of stream `name`.
pub fn session_description(name: &str, session_id: u64, tracks: &[TrackInfo]) -> String {
    let zero_addr = || Connection {
        nettype: NetType::In,
        addrtype: AddrType::Ip4,
        connection_address: "0.0.0.0".into(),
    };
    let attribute = |name: &str, value: String| Attribute {
        attribute: name.into(),
        value: Some(value),
    };
    let medias = tracks
        .iter()
        .map(|track| {
            let mut attributes = vec![attribute("rtpmap", rtpmap_value(track))];
            if let Some(fmtp) = sdp::fmtp(track) {
                attributes.push(attribute("fmtp", fmtp));
            }
            attributes.push(attribute("control", track_control(track)));
            Media {
                media: match track.kind() {
                    MediaKind::Video => "video",
                    MediaKind::Audio => "audio",
                }
                .into(),
                port: 0,
                num_ports: None,
                proto: "RTP/AVP".into(),
                fmt: track.payload_type.to_string(),
                media_title: None,
                connections: vec![zero_addr()],
                bandwidths: Vec::new(),
                key: None,
                attributes,
            }
        })
        .collect();
    let session = Session {
        origin: Origin {
            username: None,
            sess_id: session_id.to_string(),
            sess_version: 1,
            nettype: NetType::In,
            addrtype: AddrType::Ip4,
            unicast_address: "0.0.0.0".into(),
        },
        session_name: sanitize_name(name),
        session_description: None,
        uri: None,
        emails: Vec::new(),
        phones: Vec::new(),
        connection: None,
        bandwidths: Vec::new(),
        times: vec![Time {
            start_time: 0,
            stop_time: 0,
            repeats: Vec::new(),
        }],
        time_zones: Vec::new(),
        key: None,
        attributes: vec![
            attribute("tool", "streamgate".into()),
            attribute("range", "npt=now-".into()),
            attribute("control", "*".into()),
        ],
        medias,
    };
    let mut out = Vec::with_capacity(512);
    // Writing to a Vec cannot fail.
    let _ = session.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `sdp::rtpmap` may or may not lead with the payload type; the attribute must.
fn rtpmap_value(track: &TrackInfo) -> String {
    let map = sdp::rtpmap(track);
    if map.starts_with(|c: char| c.is_ascii_digit()) {
        map
    } else {
        format!("{} {map}", track.payload_type)
    }
}

fn sanitize_name(name: &str) -> String {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    if cleaned.is_empty() {
        "streamgate".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_rtp::testing::{h264_track, opus_track};

    fn tracks() -> Vec<TrackInfo> {
        vec![h264_track(), opus_track()]
    }

    #[test]
    fn describes_every_track_for_live_playback() {
        let sdp = session_description("front door", 42, &tracks());
        assert!(
            sdp.starts_with("v=0\r\no=- 42 1 IN IP4 0.0.0.0\r\ns=front door\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("a=range:npt=now-\r\n"));
        let video = sdp
            .find("m=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n")
            .unwrap();
        let audio = sdp
            .find("m=audio 0 RTP/AVP 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 ")
            .unwrap();
        assert!(video < audio);
        assert!(sdp.contains("a=fmtp:96 "));
        assert!(sdp.contains("sprop-parameter-sets="));
        assert!(sdp.contains("a=control:trackID=0\r\n") && sdp.contains("a=control:trackID=1\r\n"));
    }

    /// A camera's MP4A-LATM packets are forwarded as they came: the answer states
    /// LATM with the camera's StreamMuxConfig, not the AAC it carries.
    #[test]
    fn latm_audio_is_described_with_the_cameras_config() {
        let camera_sdp = "v=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MP4A-LATM/16000/1\r\n\
                          a=fmtp:97 profile-level-id=15;object=2;cpresent=0;config=400028103FC0\r\n";
        let tracks: Vec<TrackInfo> = sdp::parse_tracks(camera_sdp.as_bytes())
            .unwrap()
            .into_iter()
            .map(|t| t.info)
            .collect();
        let answer = session_description("cam", 1, &tracks);
        assert!(
            answer.contains(
                "a=rtpmap:97 MP4A-LATM/16000/1\r\na=fmtp:97 cpresent=0;config=400028103FC0\r\n"
            ),
            "{answer}"
        );
    }

    #[test]
    fn control_round_trips() {
        for t in tracks() {
            assert_eq!(track_from_control(&track_control(&t)), Some(t.id));
        }
        assert_eq!(track_from_control("trackID=x"), None);
        assert_eq!(track_from_control("stream"), None);
    }
}
