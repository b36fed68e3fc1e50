//! The `/hls/NAME/...` routes: playlists (with blocking reload), init segments,
//! segments, parts, and a player page with the bundled hls.js.
//!
//! `router` returns a stateless-from-outside `axum::Router` so the binary can merge
//! it with its other routes (API, dashboard).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::time::Instant;

use crate::config::HlsConfig;
use crate::muxer::{HubLookup, Muxer, MuxerState, Muxers};
use crate::playlist::{media_playlist, multivariant_playlist, MEDIA_PLAYLIST};
use crate::segmenter::Segmenter;

const HLS_JS: &[u8] = include_bytes!("../assets/hls.min.js");
const HLS_JS_LICENSE: &[u8] = include_bytes!("../assets/hls.js.LICENSE");
const PLAYER_PAGE: &str = include_str!("../assets/player.html");
/// The pages' shared hls.js set-up (config and live catch-up).
const LIVE_JS: &[u8] = include_bytes!("../assets/live.js");

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Segments and parts never change once listed; URIs are never reused (sequence
/// numbers start from wall-clock seconds), so caches may keep them for a while.
const MEDIA_CACHE: &str = "public, max-age=60";

/// The HLS routes, looking streams up by name through `lookup`.
pub fn router(lookup: impl HubLookup, config: HlsConfig) -> Router {
    let muxers = Muxers::new(lookup, config);
    Router::new()
        .route("/hls/{name}", get(|Path(name): Path<String>| async move { Redirect::permanent(&format!("/hls/{name}/")) }))
        .route("/hls/{name}/", get(player_page))
        .route("/hls/{name}/{file}", get(file))
        .with_state(muxers)
}

/// One response type for every outcome; all carry the CORS header so another
/// origin's dashboard can embed the stream.
struct Reply(Response);

impl Reply {
    fn new(
        status: StatusCode,
        content_type: &'static str,
        cache: &'static str,
        body: impl Into<Body>,
    ) -> Reply {
        let mut response = (status, body.into()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        Reply(response)
    }

    fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply::new(
            status,
            "text/plain; charset=utf-8",
            "no-cache",
            format!("{}\n", message.into()),
        )
    }

    fn retry_later(message: &str) -> Reply {
        let mut reply = Reply::error(StatusCode::SERVICE_UNAVAILABLE, message);
        reply
            .0
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        reply
    }

    fn playlist(text: String) -> Reply {
        Reply::new(StatusCode::OK, PLAYLIST_TYPE, "no-cache", text)
    }

    fn media(content_type: &'static str, chunks: Vec<Bytes>) -> Reply {
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let body = Body::from_stream(futures_util::stream::iter(
            chunks.into_iter().map(Ok::<_, Infallible>),
        ));
        let mut reply = Reply::new(StatusCode::OK, content_type, MEDIA_CACHE, body);
        reply
            .0
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        reply
    }
}

impl IntoResponse for Reply {
    fn into_response(mut self) -> Response {
        self.0.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        self.0
    }
}

async fn player_page(State(muxers): State<Arc<Muxers>>, Path(name): Path<String>) -> Reply {
    if muxers.get_or_start(&name).is_none() {
        return Reply::error(StatusCode::NOT_FOUND, format!("no stream named {name:?}"));
    }
    Reply::new(
        StatusCode::OK,
        "text/html; charset=utf-8",
        "no-cache",
        PLAYER_PAGE.replace("{{NAME}}", &html_escape::encode_safe(&name)),
    )
}

/// What a request names inside a stream's folder.
#[derive(Debug, PartialEq, Eq)]
enum File {
    Multivariant,
    Media,
    Init(u64),
    Segment(u64),
    Part(u64, usize),
    HlsJs,
    HlsJsLicense,
    LiveJs,
}

fn parse_file(file: &str) -> Option<File> {
    Some(match file {
        "index.m3u8" => File::Multivariant,
        MEDIA_PLAYLIST => File::Media,
        "hls.min.js" => File::HlsJs,
        "hls.js.LICENSE" => File::HlsJsLicense,
        "live.js" => File::LiveJs,
        _ => {
            if let Some(v) = file
                .strip_prefix("init_")
                .and_then(|f| f.strip_suffix(".mp4"))
            {
                File::Init(v.parse().ok()?)
            } else if let Some(msn) = file
                .strip_prefix("seg_")
                .and_then(|f| f.strip_suffix(".m4s"))
            {
                File::Segment(msn.parse().ok()?)
            } else {
                let (msn, part) = file
                    .strip_prefix("part_")?
                    .strip_suffix(".m4s")?
                    .split_once('_')?;
                File::Part(msn.parse().ok()?, part.parse().ok()?)
            }
        }
    })
}

async fn file(
    State(muxers): State<Arc<Muxers>>,
    Path((name, file)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let Some(file) = parse_file(&file) else {
        return Reply::error(StatusCode::NOT_FOUND, "no such file");
    };
    match file {
        File::HlsJs | File::LiveJs => {
            return Reply::new(
                StatusCode::OK,
                "text/javascript",
                "public, max-age=86400",
                if file == File::HlsJs { HLS_JS } else { LIVE_JS },
            )
        }
        File::HlsJsLicense => {
            return Reply::new(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "public, max-age=86400",
                HLS_JS_LICENSE,
            )
        }
        _ => {}
    }
    let muxer = match file {
        File::Multivariant | File::Media => muxers.get_or_start(&name),
        _ => muxers.get(&name),
    };
    let Some(muxer) = muxer else {
        return Reply::error(
            StatusCode::NOT_FOUND,
            format!("no stream named {name:?} (or no HLS session for it)"),
        );
    };
    let config = muxers.config();
    match file {
        File::Multivariant => serve_playlist(&muxer, |s| Reply::playlist(multivariant_playlist(s))),
        File::Media => media_with_blocking_reload(&muxer, config, &query).await,
        File::Init(version) => serve(&muxer, |s| {
            s.init(version)
                .map(|i| Reply::media("video/mp4", vec![i.data.clone()]))
        }),
        File::Segment(msn) => {
            let deadline = Instant::now() + config.blocking_timeout();
            let found = wait_for(&muxer, deadline, |s| match s.current() {
                Some(current) if current.msn == msn => Wait::NotYet,
                _ => Wait::Done,
            })
            .await;
            if !found {
                return Reply::retry_later("segment not finished in time");
            }
            serve(&muxer, |s| {
                let segment = s.segments().iter().find(|seg| seg.msn == msn)?;
                Some(Reply::media(
                    "video/iso.segment",
                    segment.parts.iter().map(|p| p.data.clone()).collect(),
                ))
            })
        }
        File::Part(msn, part) => {
            let deadline = Instant::now() + config.blocking_timeout();
            // Wait for a hinted (or soon to be hinted) part; answer 404 if the segment ends without it.
            let found = wait_for(&muxer, deadline, |s| match s.current() {
                Some(current) if current.msn == msn && part >= current.parts.len() => {
                    if part > current.parts.len() + 2 {
                        Wait::Done
                    } else {
                        Wait::NotYet
                    }
                }
                Some(current) if msn == current.msn + 1 && part == 0 => Wait::NotYet,
                _ => Wait::Done,
            })
            .await;
            if !found {
                return Reply::retry_later("part not made in time");
            }
            serve(&muxer, |s| {
                let part = s.segment(msn)?.parts.get(part)?;
                Some(Reply::media("video/iso.segment", vec![part.data.clone()]))
            })
        }
        File::HlsJs | File::HlsJsLicense | File::LiveJs => unreachable!("answered above"),
    }
}

/// Renders from a running muxer's segmenter once its first segment exists; 503 before.
fn serve_playlist(muxer: &Muxer, render: impl FnOnce(&Segmenter) -> Reply) -> Reply {
    match &*muxer.state() {
        MuxerState::Running(s) if !s.segments().is_empty() => render(s),
        MuxerState::Failed(why) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, why.clone()),
        _ => Reply::retry_later("the stream's first segment is being made"),
    }
}

fn serve(muxer: &Muxer, find: impl FnOnce(&Segmenter) -> Option<Reply>) -> Reply {
    match &*muxer.state() {
        MuxerState::Running(s) => {
            find(s).unwrap_or_else(|| Reply::error(StatusCode::NOT_FOUND, "not in the window"))
        }
        _ => Reply::error(StatusCode::NOT_FOUND, "the stream's muxer is not running"),
    }
}

enum Wait {
    Done,
    NotYet,
}

/// Holds until `check` says done (re-checked after each completed part) or the
/// deadline passes; false on timeout. A muxer that is not running ends the wait.
async fn wait_for(muxer: &Muxer, deadline: Instant, check: impl Fn(&Segmenter) -> Wait) -> bool {
    let mut progress = muxer.watch_progress();
    loop {
        let done = match &*muxer.state() {
            MuxerState::Running(s) => matches!(check(s), Wait::Done),
            MuxerState::Starting => false,
            MuxerState::Failed(_) => true,
        };
        if done {
            return true;
        }
        match tokio::time::timeout_at(deadline, progress.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// The requested `_HLS_msn` / `_HLS_part`, validated.
fn blocking_request(
    query: &HashMap<String, String>,
) -> Result<Option<(u64, Option<usize>)>, &'static str> {
    let msn = query
        .get("_HLS_msn")
        .map(|v| v.parse::<u64>())
        .transpose()
        .map_err(|_| "invalid _HLS_msn")?;
    let part = query
        .get("_HLS_part")
        .map(|v| v.parse::<usize>())
        .transpose()
        .map_err(|_| "invalid _HLS_part")?;
    match (msn, part) {
        (None, Some(_)) => Err("_HLS_part without _HLS_msn"),
        (None, None) => Ok(None),
        (Some(msn), part) => Ok(Some((msn, part))),
    }
}

/// RFC 8216bis §6.2.5.2: hold the request until the playlist contains segment
/// `msn` (part `part` of it, or anything later), answer 400 for a segment more
/// than two past the last one, 503 after three target durations.
async fn media_with_blocking_reload(
    muxer: &Muxer,
    config: &HlsConfig,
    query: &HashMap<String, String>,
) -> Reply {
    let request = match blocking_request(query) {
        Ok(request) => request,
        Err(why) => return Reply::error(StatusCode::BAD_REQUEST, why),
    };
    if let Some((msn, part)) = request {
        let too_far = match &*muxer.state() {
            MuxerState::Running(s) => s.current().is_some_and(|current| msn > current.msn + 1),
            _ => false,
        };
        if too_far {
            return Reply::error(StatusCode::BAD_REQUEST, "_HLS_msn is too far in the future");
        }
        let deadline = Instant::now() + config.blocking_timeout();
        let reached = wait_for(muxer, deadline, |s| {
            let Some(current) = s.current() else {
                return Wait::Done;
            };
            let ready = match part {
                Some(part) => (msn, part) < (current.msn, current.parts.len()),
                None => msn < current.msn,
            };
            if ready && !s.segments().is_empty() {
                Wait::Done
            } else {
                Wait::NotYet
            }
        })
        .await;
        if !reached {
            return Reply::retry_later("the requested part was not made in time");
        }
    }
    serve_playlist(muxer, |s| Reply::playlist(media_playlist(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_strictly() {
        assert_eq!(parse_file("index.m3u8"), Some(File::Multivariant));
        assert_eq!(parse_file("stream.m3u8"), Some(File::Media));
        assert_eq!(parse_file("init_17.mp4"), Some(File::Init(17)));
        assert_eq!(parse_file("seg_5.m4s"), Some(File::Segment(5)));
        assert_eq!(parse_file("part_5_2.m4s"), Some(File::Part(5, 2)));
        assert_eq!(parse_file("part_5.m4s"), None);
        assert_eq!(parse_file("seg_-1.m4s"), None);
        assert_eq!(parse_file("seg_99999999999999999999999.m4s"), None);
        assert_eq!(parse_file("../etc/passwd"), None);
    }

    #[test]
    fn blocking_parameters_are_validated() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(matches!(blocking_request(&q(&[])), Ok(None)));
        assert!(matches!(
            blocking_request(&q(&[("_HLS_msn", "4"), ("_HLS_part", "2")])),
            Ok(Some((4, Some(2))))
        ));
        assert!(blocking_request(&q(&[("_HLS_part", "2")])).is_err());
        assert!(blocking_request(&q(&[("_HLS_msn", "x")])).is_err());
    }

    mod with_hub {
        use std::time::Duration;

        use axum::http::Request;
        use streamgate_pipeline::{Hub, HubConfig};
        use streamgate_rtp::TrackInfo;
        use tower::ServiceExt;

        use super::super::*;
        use crate::segmenter::tests::{tracks, Synthetic};

        async fn get(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
            (
                parts.status,
                parts.headers,
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        }

        /// A Hub fed by the synthetic source at 10x real time.
        fn fed_hub() -> Hub {
            fed_hub_with(tracks()).0
        }

        /// A Hub with `tracks` fed like [`fed_hub`]; aborting the feeder lets its Hub go.
        fn fed_hub_with(tracks: Vec<TrackInfo>) -> (Hub, tokio::task::JoinHandle<()>) {
            let hub = Hub::new("cam", HubConfig::default());
            hub.set_tracks(tracks);
            let feeder = hub.clone();
            let task = tokio::spawn(async move {
                let mut source = Synthetic::new(30);
                for _ in 0..600 {
                    for frame in source.next_seconds(1).into_iter().take(80) {
                        feeder.publish(frame);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            (hub, task)
        }

        /// Polls `uri` until it answers 200 with a body `done` accepts.
        async fn playlist_when(app: &Router, uri: &str, done: impl Fn(&str) -> bool) -> String {
            let mut text = String::new();
            for _ in 0..500 {
                let (status, _, body) = get(app, uri).await;
                text = body;
                if status == StatusCode::OK && done(&text) {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("{uri} never became what was expected; last:\n{text}")
        }

        fn media_playlist(text: &str) -> m3u8_rs::MediaPlaylist {
            match m3u8_rs::parse_playlist_res(text.as_bytes()) {
                Ok(m3u8_rs::Playlist::MediaPlaylist(playlist)) => playlist,
                other => panic!("not a media playlist: {other:?}\n{text}"),
            }
        }

        /// The stream is replaced under the same name (the old Hub stays open, as
        /// when its source is slow to stop): the muxer lets the old Hub go and the
        /// same playlist continues from the new Hub after a discontinuity.
        #[tokio::test]
        async fn a_replaced_stream_continues_the_playlist_and_frees_the_old_hub() {
            let (old, old_feeder) = fed_hub_with(tracks());
            let registry = Arc::new(std::sync::Mutex::new(old.clone()));
            let lookup = {
                let registry = registry.clone();
                move |name: &str| (name == "cam").then(|| registry.lock().unwrap().clone())
            };
            let app = router(lookup, HlsConfig::default());
            let before = playlist_when(&app, "/hls/cam/stream.m3u8", |_| true).await;
            assert!(!before.contains("#EXT-X-DISCONTINUITY\n"), "{before}");

            let mut bigger = tracks();
            bigger[0].params.width = Some(1920);
            bigger[0].params.height = Some(1080);
            let (new, _new_feeder) = fed_hub_with(bigger);
            let mut old_alive = old.watch_subscribers();
            *registry.lock().unwrap() = new.clone();
            old_feeder.abort();
            drop(old);
            // The watch's sender lives in the Hub: it closes once no handle is left.
            let released = tokio::time::timeout(Duration::from_secs(10), async {
                while old_alive.changed().await.is_ok() {}
            })
            .await;
            assert!(released.is_ok(), "the muxer let the old Hub go");

            let after = playlist_when(&app, "/hls/cam/stream.m3u8", |text| {
                text.contains("#EXT-X-DISCONTINUITY\n")
            })
            .await;
            let (before, after) = (media_playlist(&before), media_playlist(&after));
            let old_last = before.segments.last().unwrap().uri.clone();
            let first_new = after.segments.iter().position(|s| s.discontinuity).unwrap();
            let new_first_msn = after.media_sequence + first_new as u64;
            let old_last_msn: u64 = old_last
                .trim_start_matches("seg_")
                .trim_end_matches(".m4s")
                .parse()
                .unwrap();
            assert!(
                new_first_msn > old_last_msn && new_first_msn <= old_last_msn + 8,
                "numbering continues: {old_last} then {new_first_msn}"
            );
            assert_eq!(
                after.segments[first_new]
                    .map
                    .as_ref()
                    .map(|m| m.uri.clone()),
                Some(format!("init_{new_first_msn}.mp4")),
                "the new source's init segment"
            );
            let breaks = |p: &m3u8_rs::MediaPlaylist, upto: usize| {
                p.discontinuity_sequence
                    + p.segments[..=upto]
                        .iter()
                        .filter(|s| s.discontinuity)
                        .count() as u64
            };
            assert_eq!(
                breaks(&after, first_new),
                breaks(&before, before.segments.len() - 1) + 1,
                "players number the new segments one discontinuity past the old ones"
            );
            let (_, _, multivariant) = get(&app, "/hls/cam/index.m3u8").await;
            assert!(
                multivariant.contains("RESOLUTION=1920x1080"),
                "{multivariant}"
            );
            assert_eq!(new.subscriber_count(), 1, "one muxer, now on the new Hub");
        }

        fn app(hub: Hub) -> Router {
            router(
                move |name: &str| (name == "cam").then(|| hub.clone()),
                HlsConfig::default(),
            )
        }

        #[tokio::test]
        async fn one_muxer_serves_every_viewer_and_stops_when_idle() {
            let hub = fed_hub();
            let lookup = {
                let hub = hub.clone();
                move |name: &str| (name == "cam").then(|| hub.clone())
            };
            let app = router(
                lookup,
                HlsConfig {
                    idle_grace: 0.3,
                    ..Default::default()
                },
            );
            for _ in 0..5 {
                get(&app, "/hls/cam/stream.m3u8").await;
                get(&app, "/hls/cam/index.m3u8").await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(
                hub.subscriber_count(),
                1,
                "ten playlist requests share one muxer"
            );
            let mut subscribers = hub.watch_subscribers();
            // (The watch's read guard is dropped at once: holding it would block the next subscribe.)
            let stopped =
                tokio::time::timeout(Duration::from_secs(5), subscribers.wait_for(|&n| n == 0))
                    .await
                    .is_ok();
            assert!(
                stopped,
                "the muxer stopped after the idle grace, releasing the stream"
            );
            // The next viewer starts a fresh muxer.
            let (status, _, _) = get(&app, "/hls/cam/index.m3u8").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(hub.subscriber_count(), 1);
        }

        #[tokio::test]
        async fn unknown_stream_is_404_with_cors() {
            let app = app(Hub::new("cam", HubConfig::default()));
            let (status, headers, _) = get(&app, "/hls/nope/index.m3u8").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        }

        #[tokio::test]
        async fn first_request_gets_503_then_playlists_with_codecs() {
            let hub = Hub::new("cam", HubConfig::default());
            let app = app(hub.clone());
            let (status, headers, _) = get(&app, "/hls/cam/index.m3u8").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(headers[header::RETRY_AFTER], "1");
            // The muxer subscribed on that first request (an on-demand source would start now).
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(hub.subscriber_count(), 1);

            hub.set_tracks(tracks());
            let mut source = Synthetic::new(30);
            for frame in source.next_seconds(3) {
                hub.publish(frame);
            }
            let text = playlist_when(&app, "/hls/cam/index.m3u8", |_| true).await;
            assert!(text.contains("CODECS=\"avc1.42c01f,opus\""), "{text}");
            let (status, headers, media) = get(&app, "/hls/cam/stream.m3u8").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[header::CONTENT_TYPE], PLAYLIST_TYPE);
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            let init = media
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
                .unwrap()
                .trim_end_matches('"');
            let (status, headers, _) = get(&app, &format!("/hls/cam/{init}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[header::CONTENT_TYPE], "video/mp4");
        }

        #[tokio::test]
        async fn blocking_reload_returns_the_requested_part() {
            let app = app(fed_hub());
            let text = playlist_when(&app, "/hls/cam/stream.m3u8", |_| true).await;
            let hint = text
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
                .unwrap();
            let hint = hint.trim_end_matches('"').to_owned();
            let (msn, part) = match parse_file(&hint) {
                Some(File::Part(msn, part)) => (msn, part),
                other => panic!("hint {hint} parsed as {other:?}"),
            };
            assert!(
                !text.contains(&format!("URI=\"{hint}\",")),
                "the hinted part is not listed yet"
            );
            let (status, _, reloaded) = get(
                &app,
                &format!("/hls/cam/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                reloaded.contains(&format!("URI=\"{hint}\""))
                    || reloaded.contains(&format!("seg_{msn}.m4s")),
                "{reloaded}"
            );
            // The hinted part itself is served once made.
            let (status, headers, _) = get(&app, &format!("/hls/cam/{hint}")).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[header::CONTENT_TYPE], "video/iso.segment");
            // Far in the future: 400, not a hang.
            let (status, _, _) =
                get(&app, &format!("/hls/cam/stream.m3u8?_HLS_msn={}", msn + 10)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn player_name_is_escaped() {
        assert_eq!(
            html_escape::encode_safe("<a href='x'>&"),
            "&lt;a href=&#x27;x&#x27;&gt;&amp;"
        );
    }
}
