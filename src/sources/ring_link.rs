//! What the Ring sources share, apart from the source kind itself (which
//! `sources::kind` must not depend on): the Partner API client, the devices
//! discovery last saw per linked account, the session caps, and the devices'
//! motion and ding events (sent on by the event bus, for `on_motion`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use streamgate_ring::{AccountId, Device, DeviceId, PowerSource, RingClient};
use tokio::sync::{broadcast, watch};

/// Motion notices buffered per Ring source before it lags (and skips some: a
/// later notice extends the hold just the same).
const MOTION_CHANNEL: usize = 256;

/// What a motion or ding event does to its device's stream (`on_motion`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MotionAction {
    /// Nothing: the live view runs only while someone reads (the default).
    #[default]
    None,
    /// Start the live view and keep it running for `motion_hold`, readers or not.
    Start,
}

/// Session caps and WebRTC settings every Ring stream shares (`[ring]`).
#[derive(Debug, Clone)]
pub struct RingSessions {
    /// Cap of a battery device (Ring documents 30 s).
    pub battery: Duration,
    /// Cap of a wired device (Ring documents 60 s).
    pub wired: Duration,
    /// Cap when the device data does not say how the device is powered: the
    /// shorter one, as rotating early costs nothing.
    pub unknown: Duration,
    pub webrtc_bind: Option<IpAddr>,
    /// `[ring] on_motion` and `motion_hold`: what streams that set neither do.
    pub on_motion: MotionAction,
    pub motion_hold: Duration,
}

/// What the Ring sources share: the Partner API client and the devices that
/// discovery last saw in each linked account.
#[derive(Clone)]
pub struct RingLink {
    pub client: RingClient,
    pub sessions: RingSessions,
    devices: Arc<watch::Sender<BTreeMap<DeviceId, Device>>>,
    /// Whether a discovery pass has listed every linked account's devices:
    /// before that, a device missing from `devices` may exist all the same.
    listed: Arc<watch::Sender<bool>>,
    /// Devices that saw motion or a ding, as the events come.
    motion: broadcast::Sender<DeviceId>,
}

impl RingLink {
    pub fn new(client: RingClient, sessions: RingSessions) -> RingLink {
        RingLink {
            client,
            sessions,
            devices: Arc::new(watch::Sender::new(BTreeMap::new())),
            listed: Arc::new(watch::Sender::new(false)),
            motion: broadcast::channel(MOTION_CHANNEL).0,
        }
    }

    /// Replaces the devices known for `account` with `devices`.
    pub fn set_devices(&self, account: &AccountId, devices: Vec<Device>) {
        self.devices.send_modify(|known| {
            known.retain(|_, device| device.account != *account);
            known.extend(devices.into_iter().map(|d| (d.id.clone(), d)));
        });
    }

    /// `device` saw motion or a ding (the event bus calls this for every
    /// `motion_detected` and `button_press` event it stores).
    pub fn notify_motion(&self, device: DeviceId) {
        // No receiver: no Ring stream runs; nothing to do.
        let _ = self.motion.send(device);
    }

    /// The devices that see motion or a ding from now on.
    pub(super) fn watch_motion(&self) -> broadcast::Receiver<DeviceId> {
        self.motion.subscribe()
    }

    /// Forgets the devices of an account that is gone (unlinked).
    pub fn forget_account(&self, account: &AccountId) {
        self.set_devices(account, Vec::new());
    }

    /// The known devices by id, as they change.
    pub fn watch_devices(&self) -> watch::Receiver<BTreeMap<DeviceId, Device>> {
        self.devices.subscribe()
    }

    /// A discovery pass listed every linked account's devices.
    pub fn set_listed(&self) {
        self.listed
            .send_if_modified(|listed| !std::mem::replace(listed, true));
    }

    /// Whether every linked account's devices were listed once, as it changes.
    pub fn watch_listed(&self) -> watch::Receiver<bool> {
        self.listed.subscribe()
    }

    /// Every known device, by id.
    pub fn devices(&self) -> Vec<Device> {
        self.devices.borrow().values().cloned().collect()
    }

    /// The cap of `device`'s sessions: the stream's own setting, else its power source's.
    pub(super) fn max_session(&self, device: &Device, configured: Option<Duration>) -> Duration {
        configured.unwrap_or(match device.power {
            Some(PowerSource::Battery) => self.sessions.battery,
            Some(PowerSource::Wired) => self.sessions.wired,
            None => self.sessions.unknown,
        })
    }
}
