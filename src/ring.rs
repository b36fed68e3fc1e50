//! Ring accounts become streams: the discovery task lists the devices of every
//! linked account (on a timer, when an account changes, and on demand), keeps
//! the [`RingLink`] the `ring:` sources read up to date, and turns the devices
//! `[ring] devices` selects into `ring-<name>` streams through [`Desired`], so
//! devices added or removed at Ring add or remove streams without a restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streamgate_ring::{AccountState, Device};
use tokio::sync::{watch, Notify};

use crate::config::{RingDevices, StreamConfig, StreamName};
use crate::reload::Desired;
use crate::sources::{ring_stream_name, RingLink, Source, RING_PREFIX};
use crate::streams::SharedStreams;

/// The running discovery: ask it for a pass, or wait for one.
#[derive(Clone)]
pub struct RingDiscovery {
    pub link: RingLink,
    wake: Arc<Notify>,
    /// Passes asked for so far; a pass serves every request made before it began.
    requested: Arc<AtomicU64>,
    served: watch::Receiver<u64>,
}

/// What discovery needs from the rest of the gateway.
pub struct DiscoveryContext {
    pub streams: SharedStreams,
    pub desired: Desired,
    /// Base of relative paths (the config file's directory).
    pub base: PathBuf,
    pub devices: RingDevices,
    pub every: Duration,
    /// Most discovered streams (`[ring] max_streams`).
    pub max_streams: usize,
}

impl RingDiscovery {
    /// Starts the task; it runs a first pass at once and stops with the runtime.
    pub fn start(link: RingLink, context: DiscoveryContext) -> RingDiscovery {
        let (served_tx, served) = watch::channel(0);
        let discovery = RingDiscovery {
            link,
            wake: Arc::new(Notify::new()),
            requested: Arc::new(AtomicU64::new(1)),
            served,
        };
        tokio::spawn(discovery.clone().run(context, served_tx));
        discovery
    }

    /// Asks for a pass now, without waiting for it.
    pub fn rediscover(&self) -> u64 {
        let request = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        request
    }

    /// Asks for a pass and waits until one that began after the request ended.
    pub async fn rediscover_and_wait(&self) {
        let request = self.rediscover();
        let mut served = self.served.clone();
        let _ = served.wait_for(|served| *served >= request).await;
    }

    async fn run(self, context: DiscoveryContext, served: watch::Sender<u64>) {
        let mut accounts = self.link.client.watch_accounts();
        loop {
            let request = self.requested.load(Ordering::SeqCst);
            accounts.borrow_and_update();
            self.pass(&context).await;
            served.send_replace(request);
            tokio::select! {
                _ = tokio::time::sleep(context.every) => {}
                _ = self.wake.notified() => {}
                changed = accounts.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Lists every linked account's devices and applies the streams they make.
    async fn pass(&self, context: &DiscoveryContext) {
        let client = &self.link.client;
        let accounts = client.accounts();
        let mut listed = true;
        for account in &accounts {
            match account.state {
                AccountState::Linked => match client.devices(&account.id).await {
                    Ok(devices) => self.link.set_devices(&account.id, devices),
                    Err(error) => {
                        listed = false;
                        tracing::warn!(
                            account = %account.name,
                            "listing the Ring account's devices failed (keeping the last list): {error}"
                        )
                    }
                },
                // Its streams stay, reporting that the account needs re-linking.
                AccountState::NeedsRelinking => {}
                AccountState::Unclaimed => self.link.forget_account(&account.id),
            }
        }
        for device in self.link.devices() {
            if !accounts.iter().any(|account| account.id == device.account) {
                self.link.forget_account(&device.account);
            }
        }
        if listed {
            self.link.set_listed();
        }
        let wanted =
            discovered_streams(&self.link.devices(), &context.devices, context.max_streams);
        match context
            .desired
            .set_discovered(&context.streams, wanted, &context.base)
            .await
        {
            Ok(summary) if !summary.added.is_empty() || !summary.removed.is_empty() => {
                tracing::info!(added = ?summary.added, removed = ?summary.removed, "Ring streams discovered");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("applying the Ring streams failed: {error}"),
        }
    }
}

/// The streams `selection` makes of `devices`: `ring-<slug of the name>`, with
/// `-2`, `-3`, … for devices whose names make the same slug (in id order, so a
/// name stays with its device from one pass to the next), at most `max_streams`.
pub fn discovered_streams(
    devices: &[Device],
    selection: &RingDevices,
    max_streams: usize,
) -> BTreeMap<StreamName, StreamConfig> {
    let mut selected: Vec<&Device> = devices
        .iter()
        .filter(|device| match selection {
            RingDevices::All => true,
            RingDevices::None => false,
            RingDevices::Listed(wanted) => wanted
                .iter()
                .any(|w| w == device.id.as_str() || *w == device.name),
        })
        .collect();
    selected.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    if selected.len() > max_streams {
        tracing::warn!(
            devices = selected.len(),
            "more Ring devices than [ring] max_streams = {max_streams}: only the first {max_streams} (by id) become streams"
        );
        selected.truncate(max_streams);
    }
    let mut streams = BTreeMap::new();
    for device in selected {
        let Ok(source) = Source::try_from(format!("{RING_PREFIX}{}", device.id)) else {
            tracing::warn!(device = %device.id, "a Ring device id that makes no source: skipped");
            continue;
        };
        let base = ring_stream_name(&device.name);
        let name = (1..)
            .map(|n| match n {
                1 => base.clone(),
                n => format!("{base}-{n}"),
            })
            .filter_map(|name| StreamName::try_from(name).ok())
            .find(|name| !streams.contains_key(name));
        if let Some(name) = name {
            streams.insert(
                name,
                StreamConfig {
                    source,
                    rtsp_username: None,
                    rtsp_password: None,
                    viewer_token: None,
                    options: Default::default(),
                },
            );
        }
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_ring::{AccountId, DeviceId};

    fn device(n: usize, name: &str) -> Device {
        Device {
            id: DeviceId::new(format!("ava1.ring.device.{n:05}")),
            account: AccountId::new("ava1.ring.account.a"),
            name: name.to_owned(),
            online: Some(true),
            power: None,
            video_codecs: Vec::new(),
            location: None,
        }
    }

    #[test]
    fn devices_become_streams_named_after_them_without_clashes() {
        let devices = [
            device(2, "Front Door"),
            device(1, "Front door"),
            device(3, "Yard"),
        ];
        let all = discovered_streams(&devices, &RingDevices::All, 10);
        let names: Vec<&str> = all.keys().map(StreamName::as_str).collect();
        assert_eq!(names, ["ring-front-door", "ring-front-door-2", "ring-yard"]);
        assert_eq!(
            all[&StreamName::try_from("ring-front-door".to_owned()).unwrap()]
                .source
                .to_string(),
            "ring:ava1.ring.device.00001"
        );
        let listed = RingDevices::Listed(vec!["Yard".into(), "ava1.ring.device.00002".into()]);
        let names: Vec<String> = discovered_streams(&devices, &listed, 10)
            .into_keys()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["ring-front-door", "ring-yard"]);
        assert!(discovered_streams(&devices, &RingDevices::None, 10).is_empty());
    }

    #[test]
    fn ten_thousand_devices_make_at_most_max_streams() {
        let devices: Vec<Device> = (0..10_000)
            .map(|n| device(n, &format!("Cam {n}")))
            .collect();
        let streams = discovered_streams(&devices, &RingDevices::All, 256);
        assert_eq!(streams.len(), 256);
        assert!(streams
            .values()
            .all(|s| *s.source.to_string() < *"ring:ava1.ring.device.00256"));
    }
}
