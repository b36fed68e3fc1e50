//! A stream replaced while an HLS viewer watches (through the API, then by a
//! SIGHUP reload): the same playlist goes on with the new source after an
//! EXT-X-DISCONTINUITY (sequence numbers continue, a new init segment), ffprobe
//! reading its live edge sees the new codec, and one muxer reads the new Hub.

use crate::support;

use support::{fixture, run_peer, Gateway};

const MEDIA: &str = "/hls/cam/stream.m3u8";

fn pcap_stream(name: &str) -> String {
    format!("source = \"pcap:{}\"\n", fixture(name))
}

fn media_playlist(text: &str) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(playlist)) => playlist,
        other => panic!("not a media playlist: {other:?}\n{text}"),
    }
}

fn msn_of(uri: &str) -> u64 {
    uri.trim_start_matches("seg_")
        .trim_end_matches(".m4s")
        .parse()
        .unwrap_or_else(|_| panic!("not a segment URI: {uri}"))
}

/// A player's number for each listed segment: (msn, discontinuity number).
fn numbered(playlist: &m3u8_rs::MediaPlaylist) -> Vec<(u64, u64)> {
    let mut number = playlist.discontinuity_sequence;
    playlist
        .segments
        .iter()
        .map(|s| {
            number += u64::from(s.discontinuity);
            (msn_of(&s.uri), number)
        })
        .collect()
}

/// Reloads the media playlist, as a player does, until `done` holds for it.
fn watch_until(
    gateway: &Gateway,
    what: &str,
    done: impl Fn(&m3u8_rs::MediaPlaylist) -> bool,
) -> m3u8_rs::MediaPlaylist {
    let mut seen = None;
    gateway.wait_for(
        || {
            let (status, text) = gateway.request("GET", MEDIA, None);
            seen = (status == 200)
                .then(|| media_playlist(&text))
                .filter(|p| done(p));
            seen.is_some()
        },
        what,
    );
    seen.expect("wait_for returns once the playlist was seen")
}

/// Checks that the segments after the last discontinuity continue the ones
/// before it: the next sequence numbers, one discontinuity number on.
fn assert_continues(before: &m3u8_rs::MediaPlaylist, after: &m3u8_rs::MediaPlaylist) {
    let (old_msn, old_number) = *numbered(before).last().expect("segments before");
    let after_numbers = numbered(after);
    let first_new = after
        .segments
        .iter()
        .rposition(|s| s.discontinuity)
        .expect("a discontinuity");
    let (new_msn, new_number) = after_numbers[first_new];
    assert!(
        new_msn > old_msn && new_msn <= old_msn + 10,
        "numbering continues: {old_msn} then {new_msn}\n{after_numbers:?}"
    );
    assert_eq!(new_number, old_number + 1, "{after_numbers:?}");
    assert_eq!(
        after.segments[first_new]
            .map
            .as_ref()
            .map(|m| m.uri.as_str()),
        Some(format!("init_{new_msn}.mp4").as_str()),
        "the new source's init segment"
    );
}

/// ffprobe reading the playlist from its last segment: `codec_name` lines.
fn live_edge_codecs(gateway: &Gateway) -> String {
    let url = gateway.http_url(MEDIA);
    let (ok, stdout, stderr) = run_peer(
        "ffprobe",
        &[
            "-v",
            "error",
            "-live_start_index",
            "-1",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &url,
        ],
    );
    assert!(ok, "ffprobe failed: {stderr}\n{}", gateway.log());
    stdout
}

#[test]
fn hls_viewers_follow_a_stream_replaced_through_the_api_and_by_reload() {
    let first_table = pcap_stream("ffmpeg_h264_aac.pcap");
    let gateway = Gateway::hls_with(&format!("[streams.cam]\n{first_table}"), "");
    gateway.wait_ok(MEDIA);
    let before = watch_until(&gateway, "a first segment", |p| !p.segments.is_empty());
    assert!(live_edge_codecs(&gateway).contains("h264"));

    let (status, body) = gateway.request(
        "PUT",
        "/api/streams/cam",
        Some(&pcap_stream("ffmpeg_h265.pcap")),
    );
    assert_eq!(status, 200, "PUT: {body}\n{}", gateway.log());
    let after = watch_until(&gateway, "the H.265 source's first segment", |p| {
        p.segments.iter().any(|s| s.discontinuity)
    });
    assert_continues(&before, &after);
    let (_, multivariant) = gateway.request("GET", "/hls/cam/index.m3u8", None);
    assert!(multivariant.contains("CODECS=\"hvc1."), "{multivariant}");
    let codecs = live_edge_codecs(&gateway);
    assert!(
        codecs.lines().any(|l| l == "hevc") && !codecs.contains("h264"),
        "{codecs}"
    );
    let (_, view) = gateway.request("GET", "/api/streams/cam", None);
    assert!(
        view.contains("\"subscribers\":1"),
        "one muxer reads the new Hub: {view}"
    );

    let h265_first = msn_of(
        &after.segments[after
            .segments
            .iter()
            .rposition(|s| s.discontinuity)
            .unwrap()]
        .uri,
    );
    let before_reload = watch_until(&gateway, "a playlist", |_| true);
    gateway.reload(&format!(
        "[streams.cam]\n{}",
        pcap_stream("ffmpeg_h264_opus.pcap")
    ));
    let reloaded = watch_until(&gateway, "the reloaded source's first segment", |p| {
        p.segments
            .iter()
            .any(|s| s.discontinuity && msn_of(&s.uri) > h265_first)
    });
    assert_continues(&before_reload, &reloaded);
    let (_, multivariant) = gateway.request("GET", "/hls/cam/index.m3u8", None);
    assert!(multivariant.contains("opus"), "{multivariant}");
    assert!(live_edge_codecs(&gateway).contains("opus"));
}
