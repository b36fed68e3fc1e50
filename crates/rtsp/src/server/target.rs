//! What a request URL points at: a stream (DESCRIBE, PLAY) or one of its tracks
//! (SETUP), and the URLs we hand back, built without the client's userinfo so a
//! password in the URL is never echoed.

use rtsp_types::Url;
use streamgate_rtp::TrackId;

use super::describe::track_from_control;

/// The stream (the `[streams.NAME]` key) and, for SETUP, the track a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub stream: String,
    pub track: Option<TrackId>,
}

impl Target {
    /// `rtsp://host/NAME`, `rtsp://host/NAME/`, `rtsp://host/NAME/trackID=1`;
    /// query strings are ignored. None for `*` or an empty path.
    pub fn parse(url: Option<&Url>) -> Option<Target> {
        let path = url?.path().trim_matches('/');
        let (stream, track) = match path.rsplit_once('/') {
            Some((stream, last)) => match track_from_control(last) {
                Some(track) => (stream, Some(track)),
                None => (path, None),
            },
            None => (path, None),
        };
        (!stream.is_empty()).then(|| Target {
            stream: stream.to_string(),
            track,
        })
    }
}

/// `rtsp://host[:port]/NAME/`, the Content-Base of a stream as the client
/// addressed it (host taken from its URL, userinfo and query dropped).
pub fn content_base(url: &Url, stream: &str) -> String {
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => "localhost".to_string(),
    };
    format!("{}://{host}/{stream}/", url.scheme())
}

/// Where a reader is redirected: the same path and query on the server at
/// `base` (`rtsp://host:port`); userinfo is dropped (the reader sends it again).
pub fn redirect_location(base: &str, url: Option<&Url>) -> String {
    let path = url.map_or("/", Url::path);
    match url.and_then(Url::query) {
        Some(query) => format!("{base}{path}?{query}"),
        None => format!("{base}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_path_and_query_on_the_other_server() {
        let url = Url::parse("rtsp://user:pw@gw-1:8554/cam/trackID=0?x=1").unwrap();
        assert_eq!(
            redirect_location("rtsp://gw-2:9554", Some(&url)),
            "rtsp://gw-2:9554/cam/trackID=0?x=1"
        );
        let url = Url::parse("rtsp://gw-1/cam").unwrap();
        assert_eq!(
            redirect_location("rtsp://gw-2:9554", Some(&url)),
            "rtsp://gw-2:9554/cam"
        );
    }

    fn target(s: &str) -> Option<Target> {
        Target::parse(Some(&Url::parse(s).unwrap()))
    }

    #[test]
    fn stream_and_track_from_urls() {
        let t = |stream: &str, track| {
            Some(Target {
                stream: stream.into(),
                track,
            })
        };
        assert_eq!(target("rtsp://h:8554/cam"), t("cam", None));
        assert_eq!(target("rtsp://h:8554/cam/"), t("cam", None));
        assert_eq!(
            target("rtsp://h/cam/trackID=1"),
            t("cam", Some(TrackId::new(1)))
        );
        assert_eq!(
            target("rtsp://h/site/cam/trackID=0?x=1"),
            t("site/cam", Some(TrackId::new(0)))
        );
        assert_eq!(target("rtsp://h/site/cam"), t("site/cam", None));
        assert_eq!(target("rtsp://h/"), None);
        assert_eq!(Target::parse(None), None);
    }

    #[test]
    fn content_base_drops_credentials() {
        let url = Url::parse("rtsp://admin:secret@10.0.0.1:8554/cam?token=x").unwrap();
        assert_eq!(content_base(&url, "cam"), "rtsp://10.0.0.1:8554/cam/");
    }
}
