//! What the Ring sources share, apart from the source kind itself (which
//! `sources::kind` must not depend on): the Partner API client, the devices
//! discovery last saw per linked account, and the session caps.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use streamgate_ring::{AccountId, Device, DeviceId, PowerSource, RingClient};
use tokio::sync::watch;

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
}

/// What the Ring sources share: the Partner API client and the devices that
/// discovery last saw in each linked account.
#[derive(Clone)]
pub struct RingLink {
    pub client: RingClient,
    pub sessions: RingSessions,
    devices: Arc<watch::Sender<BTreeMap<DeviceId, Device>>>,
}

impl RingLink {
    pub fn new(client: RingClient, sessions: RingSessions) -> RingLink {
        RingLink {
            client,
            sessions,
            devices: Arc::new(watch::Sender::new(BTreeMap::new())),
        }
    }

    /// Replaces the devices known for `account` with `devices`.
    pub fn set_devices(&self, account: &AccountId, devices: Vec<Device>) {
        self.devices.send_modify(|known| {
            known.retain(|_, device| device.account != *account);
            known.extend(devices.into_iter().map(|d| (d.id.clone(), d)));
        });
    }

    /// Forgets the devices of an account that is gone (unlinked).
    pub fn forget_account(&self, account: &AccountId) {
        self.set_devices(account, Vec::new());
    }

    /// The known devices by id, as they change.
    pub fn watch_devices(&self) -> watch::Receiver<BTreeMap<DeviceId, Device>> {
        self.devices.subscribe()
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
