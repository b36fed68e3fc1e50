//! `source = "ring:<device id>"`: a Ring camera's live view through the Ring
//! Partner API (`streamgate-ring`), pulled as WHEP sessions by `streamgate-whep`'s
//! client with the linked account's current access token. Keys: `max_session`
//! (the device's session cap, when the device data does not tell it),
//! `webrtc_bind`, `on_motion` and `motion_hold` (defaults: `[ring]`'s).
//!
//! Ring caps live sessions at 30 s on battery devices and 60 s on wired ones; the
//! WHEP source rotates make-before-break before the cap, so readers see one
//! continuous stream. Sessions are non-trickle (Ring takes no PATCH) and open on
//! demand: no Ring session runs while nobody reads, unless `on_motion = "start"`:
//! then a `motion_detected` or `button_press` event of the device starts the live
//! view and holds it for `motion_hold` (rotating across caps as usual) with or
//! without readers, and each event during the hold extends it, so that an NVR
//! connecting on the event gets the moments after it from the GOP cache.
//!
//! A source finds its device, and the account it belongs to, in the [`RingLink`]
//! that discovery keeps up to date; until a linked account has the device, the
//! stream reports that it waits for it.

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use streamgate_pipeline::Hub;
use streamgate_redact::Secret;
use streamgate_ring::{AccountId, AccountState, DeviceId, RingClient};
use streamgate_whep::{BearerToken, TokenProvider, TrickleMode, WhepConfig, WhepSource};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::kind::{
    Feed, Form, Location, OptionError, Options, RunningSource, Services, SourceKind, SourceReport,
    StreamHealth,
};
use super::ring_link::{MotionAction, RingLink};

pub struct Ring;

/// The `source` prefix of a Ring device's stream.
pub const PREFIX: &str = "ring:";

#[derive(Deserialize)]
struct RingOptions {
    /// The device's session cap; default: from the device's power source.
    #[serde(default, with = "humantime_serde")]
    max_session: Option<Duration>,
    /// Local IP the WebRTC sockets bind to (default: `[ring] webrtc_bind`).
    webrtc_bind: Option<IpAddr>,
    /// `"start"`: a motion or ding event starts the live view (default: `[ring] on_motion`).
    on_motion: Option<MotionAction>,
    /// How long the live view runs after the last motion or ding event
    /// (default: `[ring] motion_hold`).
    #[serde(default, with = "humantime_serde")]
    motion_hold: Option<Duration>,
}

impl SourceKind for Ring {
    fn form(&self) -> Form {
        Form::Path {
            prefix: PREFIX,
            example: "ava1.ring.device.…",
        }
    }

    fn keys(&self) -> &'static [&'static str] {
        &["max_session", "webrtc_bind", "on_motion", "motion_hold"]
    }

    fn check(&self, options: &Options) -> Result<(), OptionError> {
        options.typed::<RingOptions>().map(drop)
    }

    fn plan(
        &self,
        location: &Location,
        options: &Options,
        _: &Path,
    ) -> Result<Box<dyn Feed>, String> {
        let Location::Path(id) = location else {
            return Err(format!("a ring: source without a device id: {location:?}"));
        };
        let device = id
            .to_str()
            .filter(|id| !id.is_empty())
            .ok_or("a ring: source needs a device id")?;
        Ok(Box::new(RingFeed {
            device: DeviceId::new(device),
            options: options.typed().map_err(|e| e.message)?,
        }))
    }
}

/// A planned Ring stream.
struct RingFeed {
    device: DeviceId,
    options: RingOptions,
}

impl Feed for RingFeed {
    fn start(
        self: Box<Self>,
        hub: Hub,
        services: &Services,
    ) -> Result<Box<dyn RunningSource>, String> {
        let link = services
            .ring
            .clone()
            .ok_or("ring: sources need a [ring] section with the Partner API credentials")?;
        let live = Arc::new(Mutex::new(None));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(link.clone(), *self, hub, live.clone(), stopped));
        Ok(Box::new(RingSource {
            link,
            live,
            stop,
            task: Some(task),
        }))
    }
}

/// The live view once the device is known: its WHEP source, and whose account it is.
struct Live {
    account: AccountId,
    whep: WhepSource,
}

/// Waits until a linked account has the device, then runs its WHEP source until stopped.
async fn run(
    link: RingLink,
    feed: RingFeed,
    hub: Hub,
    live: Arc<Mutex<Option<Live>>>,
    mut stopped: watch::Receiver<bool>,
) {
    let on_motion = feed.options.on_motion.unwrap_or(link.sessions.on_motion);
    let hold = feed
        .options
        .motion_hold
        .unwrap_or(link.sessions.motion_hold);
    // Subscribed before the device is known, so no event after the start is missed.
    let mut motion = (on_motion == MotionAction::Start).then(|| link.watch_motion());
    let mut devices = link.watch_devices();
    let device = loop {
        if let Some(device) = devices.borrow_and_update().get(&feed.device).cloned() {
            break device;
        }
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            changed = devices.changed() => if changed.is_err() { return },
        }
    };
    let mut config = WhepConfig::new(link.client.whep_sessions_url(&device.id));
    config.bearer_token = Some(BearerToken::Provided(Arc::new(AccountToken {
        client: link.client.clone(),
        account: device.account.clone(),
    })));
    config.max_session = Some(link.max_session(&device, feed.options.max_session));
    // Ring takes no PATCH: every candidate goes in the offer.
    config.trickle = TrickleMode::Off;
    if let Some(ip) = feed.options.webrtc_bind.or(link.sessions.webrtc_bind) {
        config.bind_ip = ip;
    }
    tracing::info!(stream = %hub.name(), device = %device.id, name = %device.name, max_session = ?config.max_session, "starting Ring live view");
    let name = hub.name().to_string();
    match WhepSource::start(config, hub) {
        Ok(whep) => {
            let account = device.account.clone();
            *live.lock().unwrap_or_else(PoisonError::into_inner) = Some(Live { account, whep });
        }
        Err(error) => {
            tracing::error!(device = %device.id, "Ring live view cannot start: {error}");
            return;
        }
    }
    let Some(motion) = motion.as_mut() else {
        return;
    };
    loop {
        let seen = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            seen = motion.recv() => seen,
        };
        match seen {
            Ok(id) if id == device.id => {
                let until = Instant::now() + hold;
                tracing::info!(stream = %name, device = %device.id, ?hold, "motion: live view held");
                if let Some(live) = live.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                    live.whep.hold_until(until);
                }
            }
            Ok(_) => {}
            // Notices were skipped: any of them may have been this device's.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The account's access token, refreshed by the client as it nears expiry; each
/// WHEP request waits for the client's rate limiter, as the client's own calls do.
struct AccountToken {
    client: RingClient,
    account: AccountId,
}

#[async_trait::async_trait]
impl TokenProvider for AccountToken {
    async fn token(&self) -> Result<Secret, String> {
        self.client
            .token_for_request(&self.account)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A running Ring stream.
struct RingSource {
    link: RingLink,
    live: Arc<Mutex<Option<Live>>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RingSource {
    fn waiting(message: String, state: &str) -> SourceReport {
        SourceReport {
            health: StreamHealth::Failed(message.clone()),
            source_state: state.to_owned(),
            last_error: Some(message),
            reconnects: 0,
        }
    }
}

impl RunningSource for RingSource {
    fn report(&self) -> SourceReport {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(live) = live.as_ref() else {
            return RingSource::waiting(
                "the Ring device is in no linked account (yet)".into(),
                "waiting",
            );
        };
        let account = self
            .link
            .client
            .accounts()
            .into_iter()
            .find(|account| account.id == live.account);
        match account {
            Some(account) if account.state == AccountState::NeedsRelinking => RingSource::waiting(
                format!("the Ring account {} needs re-linking", account.name),
                AccountState::NeedsRelinking.as_str(),
            ),
            Some(_) => RunningSource::report(&live.whep),
            None => RingSource::waiting("the Ring account was unlinked".into(), "unlinked"),
        }
    }

    fn stop(mut self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.stop.send_replace(true);
        let task = self.task.take();
        let live = self.live.clone();
        Box::pin(async move {
            if let Some(task) = task {
                let _ = task.await;
            }
            let live = live.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(live) = live {
                // DELETEs the Ring sessions.
                live.whep.stop().await;
            }
        })
    }
}

/// A stream name for a device: `ring-` and the slug of its name (`Front Door` →
/// `ring-front-door`), within the 64 characters a stream name may have.
pub fn stream_name_for(device_name: &str) -> String {
    let mut slug = String::new();
    for c in device_name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let mut name = format!("ring-{}", slug.trim_end_matches('-'));
    name.truncate(58);
    let name = name.trim_end_matches('-');
    if name == "ring" {
        "ring-camera".to_owned()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_become_slugs() {
        assert_eq!(stream_name_for("Front Door"), "ring-front-door");
        assert_eq!(stream_name_for("  Garage / Side #2 "), "ring-garage-side-2");
        assert_eq!(stream_name_for("Café"), "ring-caf");
        assert_eq!(stream_name_for("???"), "ring-camera");
        let long = stream_name_for(&"x".repeat(200));
        assert!(long.len() <= 58 && long.starts_with("ring-xxx"), "{long}");
    }
}
