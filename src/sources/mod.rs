//! Where streams come from. Each kind of source is one module implementing
//! [`SourceKind`] (its `source = "..."` form, the `[streams.NAME]` keys it owns,
//! how it plans and starts) and one line in [`KINDS`]. Everything else (the
//! config's key checks, the registry, the API, metrics) goes through [`Source`]
//! and the [`RunningSource`] a kind starts, with no per-kind code.
//!
//! Kinds that need a service the binary runs once (the Ring Partner API client)
//! get it from [`Services`] when they start. A publisher (`publish`, over
//! RTSP or WHIP) makes a publish point its servers find through the running
//! source and reports `idle` until a publisher pushes; the kind planned next,
//! a relay, pulls from a peer.

mod kind;
mod publish;
mod replay;
mod ring;
mod ring_link;
mod rtsp;
mod whep;

use std::fmt;
use std::path::Path;

pub use kind::{
    Failed, Feed, Form, Location, OptionError, Options, RunningSource, Services, SourceKind,
    SourceReport, StreamHealth,
};
pub use publish::feed as publish_feed;
pub use ring::{stream_name_for as ring_stream_name, PREFIX as RING_PREFIX};
pub use ring_link::{MotionAction, RingLink, RingSessions};

use streamgate_redact::{redact_unparsed, RedactedUrl};

/// Every source kind the gateway knows, in the order messages list them.
static KINDS: &[&dyn SourceKind] = &[
    &replay::Demo,
    &replay::Pcap,
    &rtsp::Rtsp,
    &whep::Whep,
    &ring::Ring,
    &publish::Publish,
];

/// Every kind's own keys, in [`KINDS`] order.
pub fn keys() -> impl Iterator<Item = &'static str> {
    KINDS.iter().flat_map(|kind| kind.keys().iter().copied())
}

/// Where a stream's media comes from (`source = "..."`): a kind and what it points at.
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    /// Index into [`KINDS`].
    kind: usize,
    location: Location,
}

impl Source {
    fn kind(&self) -> &'static dyn SourceKind {
        KINDS[self.kind]
    }

    /// The kind's name in messages: `demo`, `pcap:`, `rtsp://`, `whep://`.
    pub fn label(&self) -> String {
        self.kind().form().label()
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Checks a stream's kind-specific keys: each must be this kind's (the error
    /// names the kind that uses it), and the kind must accept its value.
    pub fn check(&self, options: &Options) -> Result<(), OptionError> {
        let own = self.kind().keys();
        if let Some((key, at)) = options.keys().find(|(key, _)| !own.contains(key)) {
            let owners: Vec<&dyn SourceKind> = KINDS
                .iter()
                .copied()
                .filter(|kind| kind.keys().contains(&key))
                .collect();
            let message = match owners.as_slice() {
                [] => format!("`{key}` is not used by {} sources", self.label()),
                [owner] => format!(
                    "{} only used by {} sources",
                    keys_phrase(owner.keys()),
                    owner.form().label()
                ),
                several => {
                    let labels: Vec<String> = several.iter().map(|k| k.form().label()).collect();
                    format!("`{key}` is only used by {} sources", labels.join(" and "))
                }
            };
            return Err(OptionError { at, message });
        }
        self.kind().check(options)
    }

    /// Loads and checks what the source needs (paths relative to `base`).
    pub fn plan(&self, options: &Options, base: &Path) -> Result<Box<dyn Feed>, String> {
        self.kind().plan(&self.location, options, base)
    }
}

/// "`sdp` is" or "`a`, `b` and `c` are".
fn keys_phrase(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|key| format!("`{key}`")).collect();
    match quoted.as_slice() {
        [one] => format!("{one} is"),
        [init @ .., last] => format!("{} and {last} are", init.join(", ")),
        [] => String::new(),
    }
}

/// `"demo", "pcap:PATH", "rtsp://…" or ...`: every form [`KINDS`] take.
fn expected_forms() -> String {
    let forms: Vec<String> = KINDS
        .iter()
        .flat_map(|kind| match kind.form() {
            Form::Word(word) => vec![format!("\"{word}\"")],
            Form::Path { prefix, .. } => vec![format!("\"{prefix}PATH\"")],
            Form::Url(schemes) => schemes.iter().map(|s| format!("\"{s}://…\"")).collect(),
        })
        .collect();
    match forms.as_slice() {
        [init @ .., last] => format!("expected {} or {last}", init.join(", ")),
        [] => String::new(),
    }
}

impl TryFrom<String> for Source {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        for (kind, form) in KINDS.iter().map(|kind| kind.form()).enumerate() {
            match form {
                Form::Word(word) if text == word => {
                    let location = Location::Builtin;
                    return Ok(Source { kind, location });
                }
                Form::Path { prefix, example } => {
                    let Some(path) = text.strip_prefix(prefix) else {
                        continue;
                    };
                    if path.is_empty() {
                        return Err(format!(
                            "`{prefix}` needs a path, e.g. \"{prefix}{example}\""
                        ));
                    }
                    let location = Location::Path(path.into());
                    return Ok(Source { kind, location });
                }
                _ => {}
            }
        }
        let Some((scheme, _)) = text.split_once("://") else {
            return Err(format!(
                "unknown source {:?}: {}",
                redact_unparsed(&text),
                expected_forms()
            ));
        };
        let url = url::Url::parse(&text)
            .map_err(|e| format!("bad source URL {:?}: {e}", redact_unparsed(&text)))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("source URL {} has no host", RedactedUrl(&url)));
        }
        let scheme = scheme.to_ascii_lowercase();
        let kind = KINDS
            .iter()
            .position(|kind| matches!(kind.form(), Form::Url(schemes) if schemes.contains(&scheme.as_str())))
            .ok_or_else(|| format!("unknown source scheme `{scheme}://`: {}", expected_forms()))?;
        let location = Location::Url(url);
        Ok(Source { kind, location })
    }
}

impl<'de> serde::Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Source::try_from(text).map_err(serde::de::Error::custom)
    }
}

/// Shows the source with any password in its URL replaced by `***`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, self.kind().form()) {
            (Location::Path(path), Form::Path { prefix, .. }) => {
                write!(f, "{prefix}{}", path.display())
            }
            (Location::Url(url), _) => RedactedUrl(url).fmt(f),
            _ => f.write_str(&self.label()),
        }
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source::try_from(text.to_owned()).unwrap()
    }

    #[test]
    fn each_form_finds_its_kind() {
        assert_eq!(source("demo").label(), "demo");
        assert_eq!(source("pcap:a/b.pcap").to_string(), "pcap:a/b.pcap");
        assert_eq!(source("rtsps://cam/x").label(), "rtsp(s)://");
        assert_eq!(source("WHEPS://h/w").label(), "whep(s)://");
        let error = Source::try_from("cam".to_owned()).unwrap_err();
        assert!(
            error.ends_with(r#"expected "demo", "pcap:PATH", "rtsp://…", "rtsps://…", "whep://…", "wheps://…", "ring:PATH" or "publish""#),
            "{error}"
        );
    }

    #[test]
    fn a_key_of_another_kind_names_its_kind() {
        let options = |text: &str| Options(toml::from_str(text).unwrap());
        let demo = source("demo");
        let error = demo.check(&options("sdp = \"x.sdp\"")).unwrap_err();
        assert_eq!(error.message, "`sdp` is only used by pcap: sources");
        assert_eq!(error.at, 6);
        let error = source("pcap:x")
            .check(&options("trickle = true"))
            .unwrap_err();
        assert_eq!(
            error.message,
            "`bearer_token`, `max_session`, `webrtc_bind` and `trickle` are only used by whep(s):// sources"
        );
        let error = source("pcap:x")
            .check(&options("max_session = \"30s\""))
            .unwrap_err();
        assert_eq!(
            error.message,
            "`max_session` is only used by whep(s):// and ring: sources"
        );
        assert!(source("ring:ava1.ring.device.x")
            .check(&options("max_session = \"30s\""))
            .is_ok());
        let error = source("rtsp://cam/x")
            .check(&options("transport = \"carrier-pigeon\""))
            .unwrap_err();
        assert_eq!(error.at, 12);
        assert!(source("rtsp://cam/x")
            .check(&options("always_on = true"))
            .is_ok());
    }
}
