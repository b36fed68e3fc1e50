//! What a WHEP server sends the client: the SDP answer, trickle/ICE-restart
//! sdpfrags (RFC 8840) and `Link` headers naming ICE servers. Input: the three
//! texts separated by NUL bytes.
//!
//! Checks: no panic; an accepted answer yields one track per kind at most,
//! numbered from 0; the client's own sdpfrag (`LocalIce::fragment`) reads back
//! as the same credentials; an answer patched with a server fragment carries
//! that fragment's credentials, and its candidates when it has a media section.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_whep::session::answer_tracks;
use streamgate_whep::signal::parse_ice_server_links;
use streamgate_whep::trickle::{LocalIce, RemoteIce};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut pieces = text.split('\0');
    let answer = pieces.next().unwrap_or_default();
    let fragment = pieces.next().unwrap_or_default();
    let link = pieces.next().unwrap_or_default();

    if let Ok(tracks) = answer_tracks(answer.as_bytes()) {
        assert!(!tracks.is_empty() && tracks.len() <= 2);
        for (n, track) in tracks.iter().enumerate() {
            assert_eq!(track.id.get(), n);
        }
        assert!(tracks.len() < 2 || tracks[0].kind() != tracks[1].kind());
    }

    if let Some(local) = LocalIce::from_sdp(answer) {
        let own = local.fragment(&[], true);
        let read = RemoteIce::from_fragment(&own).expect("our own sdpfrag reads back");
        assert_eq!((read.ufrag, read.pwd), (local.ufrag, local.pwd));
    }

    if let Some(remote) = RemoteIce::from_fragment(fragment) {
        let patched = remote.patch_answer(answer);
        let has = |prefix: &str| answer.lines().any(|l| l.trim_end().starts_with(prefix));
        if has("a=ice-ufrag:") && has("a=ice-pwd:") {
            let read =
                RemoteIce::from_fragment(&patched).expect("the patched answer has ICE lines");
            assert_eq!((&read.ufrag, &read.pwd), (&remote.ufrag, &remote.pwd));
            if has("a=mid:") {
                assert_eq!(read.candidates, remote.candidates);
            }
        }
    }

    let _ = parse_ice_server_links(link);
});
