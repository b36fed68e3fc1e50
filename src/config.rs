//! The gateway's TOML configuration (`gateway.toml`).
//!
//! Read with `serde` + `toml`: every table denies unknown keys so a typo is an
//! error, not a silently ignored setting, and errors name the file, line and
//! column (from toml's spans). Outputs add their own section as another field of
//! [`Config`] (e.g. `#[serde(default)] pub rtsp: RtspConfig`), each a struct with
//! `deny_unknown_fields` and defaults, and document it in README.md.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Longest stream name: names appear in RTSP and HTTP paths.
const MAX_STREAM_NAME_LEN: usize = 64;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[rtsp]`: the RTSP restream server.
    #[serde(default)]
    pub rtsp: RtspConfig,
    /// `[http]`: the HTTP server (HLS now; the API and dashboard later).
    #[serde(default)]
    pub http: HttpConfig,
    /// `[hls]`: low-latency HLS segmenting (see `streamgate_hls::HlsConfig`).
    #[serde(default)]
    pub hls: streamgate_hls::HlsConfig,
    /// `[streams.NAME]` tables: the stream registry.
    #[serde(default)]
    pub streams: BTreeMap<StreamName, StreamConfig>,
}

/// `[rtsp]`: where NVRs and players read `rtsp://HOST:PORT/NAME`, and who may.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspConfig {
    #[serde(default = "default_rtsp_listen")]
    pub listen: std::net::SocketAddr,
    /// Credentials every stream requires unless it sets its own (Basic or Digest).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Server ports for UDP readers' RTP/RTCP pairs, e.g. `"8000-8099"` (default: ephemeral).
    #[serde(default, deserialize_with = "udp_port_range")]
    pub udp_ports: Option<streamgate_rtsp::server::udp::UdpPortRange>,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            listen: default_rtsp_listen(),
            username: None,
            password: None,
            udp_ports: None,
        }
    }
}

fn udp_port_range<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<streamgate_rtsp::server::udp::UdpPortRange>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

fn default_rtsp_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 8554))
}

/// `[http]`: where dashboards fetch `http://HOST:PORT/hls/NAME/index.m3u8`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    #[serde(default = "default_http_listen")]
    pub listen: std::net::SocketAddr,
    /// When set, `/api/*` requires `Authorization: Bearer TOKEN`
    /// (environment override: [`API_TOKEN_ENV`]).
    pub api_token: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            api_token: None,
        }
    }
}

/// Environment variable that overrides `[http] api_token`, so the token need not sit in the file.
pub const API_TOKEN_ENV: &str = "STREAMGATE_API_TOKEN";
/// Environment variable that overrides `[rtsp] password`.
pub const RTSP_PASSWORD_ENV: &str = "STREAMGATE_RTSP_PASSWORD";

fn default_http_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 8080))
}

/// A password from the config: shown as `***` in Debug output and logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One `[streams.NAME]` table. `PartialEq` tells a reload which streams changed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Where the stream comes from.
    pub source: Source,
    /// SDP describing a `pcap:` capture; default: the capture's path with `.sdp`.
    /// Spanned so that setting it on another kind of source is reported by line.
    pub sdp: Option<toml::Spanned<PathBuf>>,
    /// RTSP credentials for this stream only (override `[rtsp]`'s).
    pub rtsp_username: Option<String>,
    pub rtsp_password: Option<Secret>,
    /// WHEP sources: `Authorization: Bearer` token for the endpoint (never logged).
    pub bearer_token: Option<Secret>,
    /// WHEP sources: the server's session cap (e.g. "60s"); sessions are rotated
    /// make-before-break before they reach it.
    #[serde(default, with = "humantime_serde")]
    pub max_session: Option<std::time::Duration>,
    /// WHEP sources: local IP the WebRTC sockets bind to (default: every interface
    /// except loopback; a loopback address keeps a local test on 127.0.0.1).
    pub webrtc_bind: Option<std::net::IpAddr>,
    /// WHEP sources: trickle ICE by PATCH: `"auto"` (default: once the server announces
    /// it), `true` (always) or `false` (never: full gathering).
    pub trickle: Option<crate::whep::WhepTrickle>,
    /// RTSP sources: `tcp` (default), `udp`, or `auto` (UDP, falling back to TCP).
    pub transport: Option<crate::rtsp_source::RtspTransport>,
    /// RTSP sources: stay connected with no reader (default: connect on the first one).
    pub always_on: Option<bool>,
    /// RTSP sources: how long to stay connected after the last reader leaves (default 10s).
    #[serde(default, with = "humantime_serde")]
    pub idle_grace: Option<std::time::Duration>,
}

/// A stream's name: 1–64 ASCII letters, digits, `_` or `-` (it is used in URLs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct StreamName(String);

impl StreamName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || name.len() > MAX_STREAM_NAME_LEN || !name.chars().all(valid_char) {
            return Err(format!(
                "stream name {name:?} must be 1-{MAX_STREAM_NAME_LEN} ASCII letters, digits, '_' or '-'"
            ));
        }
        Ok(StreamName(name))
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a stream's media comes from (`source = "..."`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Source {
    /// The bundled H.264 + AAC capture, replayed in a loop.
    Demo,
    /// A pcap/pcapng capture of RTP over UDP, replayed in a loop.
    Pcap(PathBuf),
    /// An RTSP camera (`rtsp://` or `rtsps://`); credentials may be in the URL.
    Rtsp(url::Url),
    /// A WHEP endpoint (`whep://` = http, `wheps://` = https).
    Whep(url::Url),
}

impl TryFrom<String> for Source {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text == "demo" {
            return Ok(Source::Demo);
        }
        if let Some(path) = text.strip_prefix("pcap:") {
            if path.is_empty() {
                return Err("`pcap:` needs a path, e.g. \"pcap:captures/cam.pcap\"".into());
            }
            return Ok(Source::Pcap(PathBuf::from(path)));
        }
        let expected = "expected \"demo\", \"pcap:PATH\", \"rtsp://…\", \"rtsps://…\", \"whep://…\" or \"wheps://…\"";
        let Some((scheme, _)) = text.split_once("://") else {
            return Err(format!(
                "unknown source {:?}: {expected}",
                redact_text(&text)
            ));
        };
        let url = url::Url::parse(&text)
            .map_err(|e| format!("bad source URL {:?}: {e}", redact_text(&text)))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("source URL {} has no host", Redacted(&url)));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "rtsp" | "rtsps" => Ok(Source::Rtsp(url)),
            "whep" | "wheps" => Ok(Source::Whep(url)),
            _ => Err(format!("unknown source scheme `{scheme}://`: {expected}")),
        }
    }
}

/// Shows the source with any password in its URL replaced by `***`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Demo => f.write_str("demo"),
            Source::Pcap(path) => write!(f, "pcap:{}", path.display()),
            Source::Rtsp(url) | Source::Whep(url) => Redacted(url).fmt(f),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({self})")
    }
}

/// A URL shown without its password (and without a query, which may hold tokens).
pub struct Redacted<'a>(pub &'a url::Url);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Only fails for URLs that cannot have credentials, which have no password.
            let _ = url.set_password(Some("***"));
        }
        if url.query().is_some() {
            url.set_query(Some("***"));
        }
        f.write_str(url.as_str())
    }
}

/// Redacts the `user:password@` part of text that did not parse as a URL.
fn redact_text(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***@{}", &text[..scheme_end + 3], &text[at + 1..])
        }
        _ => text.to_owned(),
    }
}

/// Why the configuration cannot be used; the message names the file (and line).
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {len} bytes exceeds the {MAX_CONFIG_BYTES}-byte limit for a config file", path.display())]
    TooLarge { path: PathBuf, len: u64 },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                len,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let mut config = Config::parse(&text, path)?;
        config.apply_env(|name| std::env::var(name).ok());
        Ok(config)
    }

    /// Secrets from the environment (see [`API_TOKEN_ENV`], [`RTSP_PASSWORD_ENV`])
    /// replace the file's; `var` looks a variable up.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(token) = var(API_TOKEN_ENV).filter(|t| !t.is_empty()) {
            self.http.api_token = Some(Secret(token));
        }
        if let Some(password) = var(RTSP_PASSWORD_ENV).filter(|p| !p.is_empty()) {
            self.rtsp.password = Some(Secret(password));
        }
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_column(text, offset);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            invalid(
                e.span().map_or(0, |span| span.start),
                e.message().trim().to_owned(),
            )
        })?;
        if let Err(e) = config.hls.validate() {
            return Err(invalid(0, format!("[hls]: {e}")));
        }
        if config.rtsp.username.is_some() != config.rtsp.password.is_some() {
            return Err(invalid(
                0,
                "[rtsp]: set both `username` and `password`, or neither".into(),
            ));
        }
        for (name, stream) in &config.streams {
            if stream.rtsp_username.is_some() != stream.rtsp_password.is_some() {
                return Err(invalid(
                    0,
                    format!(
                        "stream {name}: set both `rtsp_username` and `rtsp_password`, or neither"
                    ),
                ));
            }
            let whep_options = stream.bearer_token.is_some()
                || stream.max_session.is_some()
                || stream.webrtc_bind.is_some()
                || stream.trickle.is_some();
            if whep_options && !matches!(stream.source, Source::Whep(_)) {
                return Err(invalid(
                    0,
                    format!("stream {name}: `bearer_token`, `max_session`, `webrtc_bind` and `trickle` are only used by whep:// sources"),
                ));
            }
            let rtsp_options = stream.transport.is_some()
                || stream.always_on.is_some()
                || stream.idle_grace.is_some();
            if rtsp_options && !matches!(stream.source, Source::Rtsp(_)) {
                return Err(invalid(
                    0,
                    format!("stream {name}: `transport`, `always_on` and `idle_grace` are only used by rtsp:// sources"),
                ));
            }
            if let (Some(sdp), false) = (&stream.sdp, matches!(stream.source, Source::Pcap(_))) {
                return Err(invalid(
                    sdp.span().start,
                    format!("stream {name}: `sdp` is only used by pcap: sources"),
                ));
            }
        }
        Ok(config)
    }
}

impl StreamConfig {
    /// The capture and SDP files of this stream's `pcap:` source `pcap`, relative
    /// paths resolved against `base` (the config file's directory).
    pub fn capture_files(&self, pcap: &Path, base: &Path) -> (PathBuf, PathBuf) {
        let sdp = self
            .sdp
            .as_ref()
            .map_or_else(|| pcap.with_extension("sdp"), |sdp| sdp.get_ref().clone());
        (base.join(pcap), base.join(sdp))
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("gw.toml"))
    }

    /// Bad configs and the `file:line:column: message` each must give.
    #[test]
    fn bad_configs_name_file_line_and_problem() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "unknown top-level key",
                "[streams.a]\nsource = \"demo\"\n\n[rtps]\nport = 1\n",
                "gw.toml:4:2: unknown field `rtps`",
            ),
            (
                "unknown stream key",
                "[streams.a]\nsource = \"demo\"\nsorce = \"demo\"\n",
                "gw.toml:3:1: unknown field `sorce`, expected one of `source`, `sdp`, ",
            ),
            (
                "missing source",
                "[streams.a]\nsdp = \"x.sdp\"\n",
                "gw.toml:1:1: missing field `source`",
            ),
            (
                "bad scheme",
                "[streams.a]\nsource = \"http://cam/x\"\n",
                "gw.toml:2:10: unknown source scheme `http://`",
            ),
            (
                "no scheme",
                "[streams.a]\nsource = \"camera1\"\n",
                "gw.toml:2:10: unknown source \"camera1\"",
            ),
            (
                "empty pcap",
                "[streams.a]\nsource = \"pcap:\"\n",
                "gw.toml:2:10: `pcap:` needs a path",
            ),
            (
                "no host",
                "[streams.a]\nsource = \"rtsp://\"\n",
                "gw.toml:2:10: source URL rtsp:// has no host",
            ),
            (
                "wrong type",
                "[streams.a]\nsource = 5\n",
                "gw.toml:2:10: invalid type: integer `5`",
            ),
            (
                "bad name",
                "[streams.\"a b\"]\nsource = \"demo\"\n",
                "gw.toml:1:10: stream name \"a b\" must be",
            ),
            ("syntax", "[streams.a\nsource = \"demo\"\n", "gw.toml:1:11:"),
            (
                "rtsp user without password",
                "[rtsp]\nusername = \"u\"\n",
                "gw.toml:1:1: [rtsp]: set both `username` and `password`",
            ),
            (
                "stream rtsp password without user",
                "[streams.a]\nsource = \"demo\"\nrtsp_password = \"p\"\n",
                "gw.toml:1:1: stream a: set both `rtsp_username` and `rtsp_password`",
            ),
            (
                "bad rtsp listen",
                "[rtsp]\nlisten = \"8554\"\n",
                "gw.toml:2:10: invalid socket address",
            ),
            (
                "reversed udp_ports",
                "[rtsp]\nudp_ports = \"9000-8000\"\n",
                "gw.toml:2:13: UDP port range \"9000-8000\" must be \"FIRST-LAST\" with an even FIRST",
            ),
            (
                "odd udp_ports start",
                "[rtsp]\nudp_ports = \"8001-8099\"\n",
                "gw.toml:2:13: UDP port range \"8001-8099\" must be",
            ),
            (
                "sdp on demo",
                "[streams.a]\nsource = \"demo\"\nsdp = \"x.sdp\"\n",
                "gw.toml:3:7: stream a: `sdp` is only used by pcap: sources",
            ),
        ];
        for (what, text, expected) in cases {
            let err = parse(text).expect_err(what).to_string();
            assert!(
                err.starts_with(expected),
                "{what}: got {err:?}, want prefix {expected:?}"
            );
        }
    }

    #[test]
    fn sources_parse() {
        let config = parse(
            "[streams.demo]\nsource = \"demo\"\n\
             [streams.file]\nsource = \"pcap:caps/cam.pcap\"\n\
             [streams.file2]\nsource = \"pcap:/abs/cam.pcapng\"\nsdp = \"other.sdp\"\n\
             [streams.cam]\nsource = \"rtsp://admin:hunter2@192.0.2.1:554/stream1\"\n\
             [streams.ring]\nsource = \"wheps://example.com/whep/front?token=abc\"\n",
        )
        .unwrap();
        let get = |name: &str| &config.streams[&StreamName(name.into())];
        assert_eq!(get("demo").source, Source::Demo);
        let base = Path::new("/etc/sg");
        let files = |name: &str| {
            let stream = get(name);
            let Source::Pcap(pcap) = &stream.source else {
                panic!("{name} is not pcap")
            };
            stream.capture_files(pcap, base)
        };
        assert_eq!(
            files("file"),
            (
                PathBuf::from("/etc/sg/caps/cam.pcap"),
                PathBuf::from("/etc/sg/caps/cam.sdp")
            )
        );
        assert_eq!(
            files("file2"),
            (
                PathBuf::from("/abs/cam.pcapng"),
                PathBuf::from("/etc/sg/other.sdp")
            )
        );
        assert!(matches!(get("cam").source, Source::Rtsp(_)));
        assert!(matches!(get("ring").source, Source::Whep(_)));
    }

    #[test]
    fn secrets_never_show_in_display_debug_or_errors() {
        let config = parse(
            "[streams.cam]\nsource = \"rtsp://admin:hunter2@192.0.2.1/s\"\n[streams.w]\nsource = \"wheps://h/whep?token=sekrit\"\n",
        )
        .unwrap();
        let shown = format!(
            "{:?} {}",
            config,
            config.streams[&StreamName("cam".into())].source
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("sekrit"),
            "{shown}"
        );
        assert!(shown.contains("rtsp://admin:***@192.0.2.1/s"), "{shown}");

        let err = parse("[streams.cam]\nsource = \"ftp://admin:hunter2@host/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse("[streams.cam]\nsource = \"rtsp://admin:hunter2@[::1/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("hunter2") && err.contains("rtsp://***@"),
            "{err}"
        );
    }

    #[test]
    fn shipped_gateway_toml_is_valid_and_runs_the_demo() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
        let config = Config::load(&path).unwrap();
        let demo = config
            .streams
            .get(&StreamName("demo".into()))
            .expect("a demo stream");
        assert_eq!(demo.source, Source::Demo);
    }

    /// The values gateway.toml states (set or commented out) are the defaults, so
    /// the shipped file documents what an empty config does.
    #[test]
    fn shipped_gateway_toml_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
        let shipped = std::fs::read_to_string(&path).unwrap();
        let uncommented: String = shipped
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest == "[hls]" || rest.contains(" = ") && !rest.contains('"') => {
                    rest
                }
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(
            uncommented.contains("\n[hls]\n"),
            "gateway.toml lost its [hls] block"
        );
        let stated = Config::parse(&uncommented, &path).unwrap();
        let defaults = Config::parse("", &path).unwrap();
        assert_eq!(stated.hls, defaults.hls);
        assert_eq!(stated.rtsp.listen, defaults.rtsp.listen);
        assert_eq!(stated.http.listen, defaults.http.listen);
        // Everything else: the defaults plus the demo stream, nothing more.
        let demo_only = Config::parse("[streams.demo]\nsource = \"demo\"\n", &path).unwrap();
        assert_eq!(format!("{stated:?}"), format!("{demo_only:?}"));
    }

    /// Every ```toml example in README.md is a valid config.
    #[test]
    fn readme_examples_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let examples: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split_once("```").map(|(example, _)| example))
            .collect();
        assert!(!examples.is_empty(), "README.md has no toml example");
        for example in examples {
            Config::parse(example, &path).unwrap_or_else(|e| panic!("{e}\n{example}"));
        }
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
