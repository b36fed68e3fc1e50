//! Device discovery: `GET /v1/devices?include=status,capabilities,location,configurations`
//! [doc], each device's `relationships` resolved against `included` by `{type, id}`.
//! A sub-document that is missing, or whose attributes do not parse, leaves its
//! fields unknown (`None`, empty) rather than failing the whole list. A relationship
//! may be named in the singular or the plural (`location`/`locations`) [guess].
//!
//! The power source is not documented [guess]. It is looked for, in this order, in
//! the device's own attributes, then its status, capabilities and configurations:
//! 1. `power_source`: a string;
//! 2. `power`: a string, or an object with a string `source`;
//! 3. failing both everywhere, a non-null `battery_level` or `battery` (any document)
//!    means a battery device.
//!
//! The strings `battery`, `solar` and `rechargeable` mean [`PowerSource::Battery`];
//! `wired`, `hardwired`, `hard_wired`, `ac`, `mains`, `poe`, `plug_in`, `plugin`,
//! `transformer` and `dc` mean [`PowerSource::Wired`] (case and `-`/space ignored).
//! Anything else is `None`, and the gateway uses its configured default session cap.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::RingError;
use crate::ids::{AccountId, DeviceId};
use crate::jsonapi::{
    CapabilitiesAttributes, ConfigurationsAttributes, DeviceAttributes, Document,
    LocationAttributes, Resource, StatusAttributes,
};

/// The `include` query of the devices list.
pub const DEVICES_INCLUDE: &str = "status,capabilities,location,configurations";

/// A Ring device as the gateway sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    pub account: AccountId,
    /// `attributes.name`, else the id.
    pub name: String,
    /// `status.online`, when included.
    pub online: Option<bool>,
    pub power: Option<PowerSource>,
    /// `capabilities.video.codecs`.
    pub video_codecs: Vec<String>,
    /// The location's name or address.
    pub location: Option<String>,
}

/// What powers a device; sets its live-session cap (30 s battery, 60 s wired [doc]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    Battery,
    Wired,
}

impl PowerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerSource::Battery => "battery",
            PowerSource::Wired => "wired",
        }
    }

    fn from_text(text: &str) -> Option<PowerSource> {
        let normal = text.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        match normal.as_str() {
            "battery" | "solar" | "rechargeable" => Some(PowerSource::Battery),
            "wired" | "hardwired" | "hard_wired" | "ac" | "mains" | "poe" | "plug_in"
            | "plugin" | "transformer" | "dc" => Some(PowerSource::Wired),
            _ => None,
        }
    }
}

/// One page of the devices list: its devices and the `links.next` to follow, if any.
pub struct DevicePage {
    pub devices: Vec<Device>,
    pub next: Option<String>,
}

/// Parses a devices list document (`data[]` + `included[]`).
pub fn parse_devices(account: &AccountId, body: &[u8]) -> Result<DevicePage, RingError> {
    let doc: Document<Vec<Resource<DeviceAttributes>>> = serde_json::from_slice(body)
        .map_err(|e| RingError::Malformed(format!("devices list: {e}")))?;
    let included: HashMap<(&str, &str), &Resource<Value>> = doc
        .included
        .iter()
        .map(|resource| ((resource.kind.as_str(), resource.id.as_str()), resource))
        .collect();
    let devices = doc
        .data
        .iter()
        .map(|device| device_of(account, device, &included))
        .collect();
    let next = doc
        .links
        .get("next")
        .and_then(|link| link.href())
        .map(str::to_owned);
    Ok(DevicePage { devices, next })
}

/// Parses `GET /v1/devices/{id}` (the same resource, with whatever it includes).
pub fn parse_device(account: &AccountId, body: &[u8]) -> Result<Device, RingError> {
    let doc: Document<Resource<DeviceAttributes>> =
        serde_json::from_slice(body).map_err(|e| RingError::Malformed(format!("device: {e}")))?;
    let included = doc
        .included
        .iter()
        .map(|resource| ((resource.kind.as_str(), resource.id.as_str()), resource))
        .collect();
    Ok(device_of(account, &doc.data, &included))
}

fn device_of(
    account: &AccountId,
    device: &Resource<DeviceAttributes>,
    included: &HashMap<(&str, &str), &Resource<Value>>,
) -> Device {
    let related = |names: &[&str]| -> Option<&Value> {
        let id = names
            .iter()
            .find_map(|name| device.relationships.get(*name)?.data.as_ref()?.first())?;
        let attributes = &included
            .get(&(id.kind.as_str(), id.id.as_str()))?
            .attributes;
        attributes.is_object().then_some(attributes)
    };
    let status = related(&["status"]);
    let capabilities = related(&["capabilities", "capability"]);
    let location = related(&["location", "locations"]);
    let configurations = related(&["configurations", "configuration"]);

    let typed_status: Option<StatusAttributes> = status.and_then(typed);
    let typed_capabilities: Option<CapabilitiesAttributes> = capabilities.and_then(typed);
    let typed_location: Option<LocationAttributes> = location.and_then(typed);
    // Configurations are only searched for the power source; typing checks the shape.
    let configurations = configurations
        .and_then(typed::<ConfigurationsAttributes>)
        .map(|c| c.settings);

    let power = power_source(
        [
            Some(&device.attributes.other),
            status.and_then(Value::as_object),
            capabilities.and_then(Value::as_object),
            configurations.as_ref(),
        ]
        .into_iter()
        .flatten(),
    );
    Device {
        id: DeviceId::new(device.id.as_str()),
        account: account.clone(),
        name: device
            .attributes
            .name
            .clone()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| device.id.clone()),
        online: typed_status.and_then(|s| s.online),
        power,
        video_codecs: typed_capabilities
            .and_then(|c| c.video)
            .map(|video| video.codec_names())
            .unwrap_or_default(),
        location: typed_location.and_then(|l| l.label()),
    }
}

fn typed<T: DeserializeOwned>(attributes: &Value) -> Option<T> {
    match T::deserialize(attributes) {
        Ok(typed) => Some(typed),
        Err(error) => {
            tracing::debug!(%error, "ignoring a Ring sub-document that does not parse");
            None
        }
    }
}

/// The search the module docs describe.
fn power_source<'a>(
    documents: impl Iterator<Item = &'a Map<String, Value>> + Clone,
) -> Option<PowerSource> {
    let named = |doc: &Map<String, Value>| {
        let text = match (doc.get("power_source"), doc.get("power")) {
            (Some(Value::String(source)), _) => Some(source.as_str()),
            (_, Some(Value::String(source))) => Some(source.as_str()),
            (_, Some(Value::Object(power))) => power.get("source").and_then(Value::as_str),
            _ => None,
        };
        text.and_then(PowerSource::from_text)
    };
    documents.clone().find_map(named).or_else(|| {
        documents
            .into_iter()
            .any(|doc| {
                ["battery_level", "battery"]
                    .iter()
                    .any(|key| doc.get(*key).is_some_and(|v| !v.is_null()))
            })
            .then_some(PowerSource::Battery)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn account() -> AccountId {
        AccountId::new("ava1.ring.account.sim-1")
    }

    fn list(data: Value, included: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"data": data, "included": included, "meta": {"count": 1}}))
            .unwrap()
    }

    fn rel(kind: &str, id: &str) -> Value {
        json!({"data": {"type": kind, "id": id}})
    }

    #[test]
    fn included_documents_are_resolved_through_relationships() {
        let body = list(
            json!([{
                "type": "devices",
                "id": "ava1.ring.device.front-door",
                "attributes": {"name": "Front Door", "model": "doorbell", "new_field": [1, 2]},
                "relationships": {
                    "status": rel("device-status", "ava1.ring.device.front-door"),
                    "capabilities": rel("device-capabilities", "ava1.ring.device.front-door"),
                    "location": rel("locations", "loc-1"),
                    "configurations": rel("device-configurations", "ava1.ring.device.front-door")
                },
                "links": {"self": "/v1/devices/ava1.ring.device.front-door"}
            }, {
                "type": "devices",
                "id": "ava1.ring.device.driveway",
                "attributes": {"name": "Driveway"},
                "relationships": {
                    "status": rel("device-status", "ava1.ring.device.driveway"),
                    "configurations": rel("device-configurations", "ava1.ring.device.driveway")
                }
            }]),
            json!([
                {"type": "device-status", "id": "ava1.ring.device.front-door",
                 "attributes": {"online": true, "reported_at": "2025-05-01T10:00:00Z"}},
                {"type": "device-capabilities", "id": "ava1.ring.device.front-door",
                 "attributes": {"video": {"codecs": ["h264"], "ratio": "16:9"},
                                "motion_detection": {}, "power": {"source": "battery"}}},
                {"type": "locations", "id": "loc-1", "attributes": {"name": "Home"}},
                {"type": "device-configurations", "id": "ava1.ring.device.front-door",
                 "attributes": {}},
                {"type": "device-status", "id": "ava1.ring.device.driveway",
                 "attributes": {"online": false}},
                {"type": "device-configurations", "id": "ava1.ring.device.driveway",
                 "attributes": {"power_source": "Hard-Wired"}},
                {"type": "unrelated", "id": "x"}
            ]),
        );
        let page = parse_devices(&account(), &body).unwrap();
        assert!(page.next.is_none());
        assert_eq!(
            page.devices,
            [
                Device {
                    id: DeviceId::new("ava1.ring.device.front-door"),
                    account: account(),
                    name: "Front Door".into(),
                    online: Some(true),
                    power: Some(PowerSource::Battery),
                    video_codecs: vec!["h264".into()],
                    location: Some("Home".into()),
                },
                Device {
                    id: DeviceId::new("ava1.ring.device.driveway"),
                    account: account(),
                    name: "Driveway".into(),
                    online: Some(false),
                    power: Some(PowerSource::Wired),
                    video_codecs: vec![],
                    location: None,
                },
            ]
        );
    }

    #[test]
    fn missing_and_odd_sub_documents_leave_fields_unknown() {
        let body = list(
            json!([
                {"type": "devices", "id": "d1"},
                {"type": "devices", "id": "d2", "attributes": {"name": "", "battery_level": 80},
                 "relationships": {"status": rel("device-status", "missing"),
                                   "capabilities": rel("device-capabilities", "d2")}},
                {"type": "devices", "id": "d3", "attributes": {"power_source": "nuclear"}}
            ]),
            json!([{"type": "device-capabilities", "id": "d2",
                    "attributes": {"video": "not an object"}}]),
        );
        let devices = parse_devices(&account(), &body).unwrap().devices;
        assert_eq!(devices[0].name, "d1");
        assert_eq!((devices[0].online, devices[0].power), (None, None));
        assert_eq!(devices[1].name, "d2");
        assert_eq!(devices[1].power, Some(PowerSource::Battery));
        assert!(devices[1].video_codecs.is_empty());
        assert_eq!(devices[2].power, None);

        let bare = br#"{"data":[]}"#;
        assert!(parse_devices(&account(), bare).unwrap().devices.is_empty());
        assert!(matches!(
            parse_devices(&account(), br#"{"data":{"type":"devices"}}"#),
            Err(RingError::Malformed(_))
        ));
        assert!(matches!(
            parse_devices(&account(), b"not json"),
            Err(RingError::Malformed(_))
        ));
    }

    #[test]
    fn power_names_are_searched_in_order() {
        let doc = |v: Value| v.as_object().unwrap().clone();
        let wired_status = doc(json!({"power": "AC"}));
        let battery_caps = doc(json!({"power_source": "battery"}));
        assert_eq!(
            power_source([&wired_status, &battery_caps].into_iter()),
            Some(PowerSource::Wired)
        );
        // An explicit name anywhere wins over a battery level elsewhere.
        let level = doc(json!({"battery_level": 40}));
        let poe = doc(json!({"power": {"source": "PoE"}}));
        assert_eq!(
            power_source([&level, &poe].into_iter()),
            Some(PowerSource::Wired)
        );
        let null_battery = doc(json!({"battery": null}));
        assert_eq!(power_source([&null_battery].into_iter()), None);
    }

    #[test]
    fn a_single_device_document_and_links_next_parse() {
        let single = json!({"data": {"type": "devices", "id": "d1", "attributes": {"name": "One"},
                            "relationships": {"status": rel("device-status", "d1")}},
                            "included": [{"type": "device-status", "id": "d1",
                                          "attributes": {"online": true}}]});
        let device = parse_device(&account(), &serde_json::to_vec(&single).unwrap()).unwrap();
        assert_eq!((device.name.as_str(), device.online), ("One", Some(true)));
        let paged = br#"{"data":[],"links":{"next":"/v1/devices?page[cursor]=2"}}"#;
        assert_eq!(
            parse_devices(&account(), paged).unwrap().next.as_deref(),
            Some("/v1/devices?page[cursor]=2")
        );
    }

    #[test]
    fn ten_thousand_devices_parse() {
        let data: Vec<Value> = (0..10_000)
            .map(|i| {
                json!({"type": "devices", "id": format!("ava1.ring.device.{i}"),
                       "attributes": {"name": format!("Camera {i}")},
                       "relationships": {"status": rel("device-status", &format!("s{i}"))}})
            })
            .collect();
        let included: Vec<Value> = (0..10_000)
            .map(|i| {
                json!({"type": "device-status", "id": format!("s{i}"),
                            "attributes": {"online": i % 2 == 0}})
            })
            .collect();
        let body = list(json!(data), json!(included));
        assert!(body.len() < 16 * 1024 * 1024);
        let devices = parse_devices(&account(), &body).unwrap().devices;
        assert_eq!(devices.len(), 10_000);
        assert_eq!(devices[9_999].name, "Camera 9999");
        assert_eq!(devices[9_999].online, Some(false));
        assert_eq!(devices[4_000].online, Some(true));
    }
}
