//! Replayed captures: `source = "demo"` (the bundled capture) and `"pcap:PATH"`
//! (a capture file with its SDP, key `sdp`), both replayed in real time in a loop.
//! Planning loads and checks the capture, so `check-config` catches a bad file.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::Deserialize;
use streamgate_pipeline::Hub;
use streamgate_replay::Capture;
use tokio::task::JoinHandle;

use super::kind::{
    Feed, Form, Location, OptionError, Options, RunningSource, Services, SourceKind, SourceReport,
    StreamHealth,
};

/// `source = "demo"`.
pub struct Demo;

impl SourceKind for Demo {
    fn form(&self) -> Form {
        Form::Word("demo")
    }

    fn keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn plan(&self, _: &Location, _: &Options, _: &Path) -> Result<Box<dyn Feed>, String> {
        // Parsed once per process: every demo stream shares the capture.
        static DEMO: OnceLock<Arc<Capture>> = OnceLock::new();
        let capture = match DEMO.get() {
            Some(capture) => capture.clone(),
            None => {
                let capture =
                    Arc::new(streamgate_replay::demo_capture().map_err(|e| e.to_string())?);
                DEMO.get_or_init(|| capture).clone()
            }
        };
        Ok(Box::new(Replay(capture)))
    }
}

/// `source = "pcap:PATH"`, with `sdp = "PATH"` (default: the capture's path with `.sdp`).
pub struct Pcap;

#[derive(Deserialize)]
struct PcapOptions {
    sdp: Option<PathBuf>,
}

impl Pcap {
    /// The capture and SDP files, relative paths resolved against `base`.
    fn files(pcap: &Path, options: &PcapOptions, base: &Path) -> (PathBuf, PathBuf) {
        let sdp = options
            .sdp
            .clone()
            .unwrap_or_else(|| pcap.with_extension("sdp"));
        (base.join(pcap), base.join(sdp))
    }
}

impl SourceKind for Pcap {
    fn form(&self) -> Form {
        Form::Path {
            prefix: "pcap:",
            example: "captures/cam.pcap",
        }
    }

    fn keys(&self) -> &'static [&'static str] {
        &["sdp"]
    }

    fn check(&self, options: &Options) -> Result<(), OptionError> {
        options.typed::<PcapOptions>().map(drop)
    }

    fn plan(
        &self,
        location: &Location,
        options: &Options,
        base: &Path,
    ) -> Result<Box<dyn Feed>, String> {
        let Location::Path(pcap) = location else {
            return Err(format!("pcap: source without a path: {location:?}"));
        };
        let options = options.typed().map_err(|e| e.message)?;
        let (pcap, sdp) = Pcap::files(pcap, &options, base);
        let capture = Capture::load(&pcap, &sdp).map_err(|e| e.to_string())?;
        Ok(Box::new(Replay(Arc::new(capture))))
    }
}

/// A loaded capture, to be replayed.
struct Replay(Arc<Capture>);

impl Feed for Replay {
    fn start(self: Box<Self>, hub: Hub, _: &Services) -> Result<Box<dyn RunningSource>, String> {
        let Replay(capture) = *self;
        tracing::info!(stream = %hub.name(), tracks = capture.tracks.len(), "starting replay source");
        let failure = Arc::new(Mutex::new(None));
        let task = tokio::spawn({
            let failure = failure.clone();
            async move {
                let name = hub.name().to_owned();
                if let Err(error) = streamgate_replay::run(capture, hub, 1.0, true).await {
                    tracing::error!(stream = %name, %error, "replay source failed");
                    *failure.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(error.to_string());
                }
            }
        });
        Ok(Box::new(Replaying { task, failure }))
    }
}

struct Replaying {
    task: JoinHandle<()>,
    /// Set when the replay ended with an error.
    failure: Arc<Mutex<Option<String>>>,
}

impl RunningSource for Replaying {
    fn report(&self) -> SourceReport {
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        SourceReport::of_health(match &*failure {
            Some(message) => StreamHealth::Failed(message.clone()),
            None => StreamHealth::Running,
        })
    }

    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.task.abort();
        Box::pin(async move {
            // A cancelled task's JoinError is the expected outcome here.
            let _ = self.task.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_files_are_relative_to_the_config() {
        let base = Path::new("/etc/sg");
        let files = |pcap: &str, sdp: Option<&str>| {
            let options = PcapOptions {
                sdp: sdp.map(PathBuf::from),
            };
            Pcap::files(Path::new(pcap), &options, base)
        };
        assert_eq!(
            files("caps/cam.pcap", None),
            (
                PathBuf::from("/etc/sg/caps/cam.pcap"),
                PathBuf::from("/etc/sg/caps/cam.sdp")
            )
        );
        assert_eq!(
            files("/abs/cam.pcapng", Some("other.sdp")),
            (
                PathBuf::from("/abs/cam.pcapng"),
                PathBuf::from("/etc/sg/other.sdp")
            )
        );
    }
}
