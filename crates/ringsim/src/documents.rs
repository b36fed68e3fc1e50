//! The JSON:API documents the simulator serves, built from the config's accounts
//! and devices (see the crate docs for which shapes are [guess]es).

use std::time::SystemTime;

use serde_json::{json, Value};

use crate::config::{AccountConfig, DeviceConfig};

/// The related documents `?include=` may name, in the order they are included.
pub(crate) const INCLUDES: [&str; 4] = ["status", "capabilities", "location", "configurations"];

/// RFC 3339 (UTC, whole seconds) for `meta.time` and `reported_at`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn meta(now: SystemTime) -> Value {
    json!({ "time": rfc3339(now) })
}

/// `GET /v1/users/me`.
pub(crate) fn user(account: &AccountConfig, now: SystemTime) -> Value {
    json!({
        "meta": meta(now),
        "data": {
            "type": "users",
            "id": account.id,
            "attributes": {
                "first_name": account.first_name,
                "last_name": account.last_name,
                "email": account.email,
                "phone_number": account.phone_number,
            }
        }
    })
}

/// The part of a device id after `ava1.ring.device.`.
fn suffix(device: &DeviceConfig) -> &str {
    device
        .id
        .strip_prefix("ava1.ring.device.")
        .unwrap_or(&device.id)
}

fn location_id(device: &DeviceConfig) -> String {
    let slug: String = device
        .location
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("ava1.ring.location.{slug}")
}

/// The `{type, id}` of a device's related document `name` (one of [`INCLUDES`]).
fn identifier(device: &DeviceConfig, name: &str) -> Value {
    match name {
        "status" => json!({ "type": "device-status", "id": format!("{}.status", device.id) }),
        "capabilities" => {
            json!({ "type": "device-capabilities", "id": format!("{}.capabilities", device.id) })
        }
        "location" => json!({ "type": "locations", "id": location_id(device) }),
        _ => json!({
            "type": "device-configurations",
            "id": format!("ava1.ring.device.configurations.{}", suffix(device)),
        }),
    }
}

/// A device's related resource `name` (one of [`INCLUDES`]) as a resource object.
pub(crate) fn related(device: &DeviceConfig, name: &str, online: bool, now: SystemTime) -> Value {
    let mut resource = identifier(device, name);
    let attributes = match name {
        "status" => json!({ "online": online, "reported_at": rfc3339(now) }),
        "capabilities" => json!({
            "video": {
                "codecs": ["h264"],
                "ratio": "16:9",
                "max_resolution": { "width": 1280, "height": 720 },
                "supported_resolutions": [{ "width": 1280, "height": 720 }],
                "live_view": true,
            },
            "audio": { "codecs": ["opus"] },
            "motion_detection": { "supported": true },
            // [guess]: where a device says how it is powered (not documented).
            "power_source": device.power.as_str(),
        }),
        "location" => json!({ "name": device.location }),
        _ => json!({
            "motion_detection": { "enabled": "on", "motion_zones": [] },
            "image_enhancements": {
                "color_night_vision": "off",
                "hdr": "off",
                "ir_led_night_vision": "off",
                "auto_zoom_track": "off",
                "privacy_zones": [],
            },
        }),
    };
    resource["attributes"] = attributes;
    resource
}

/// A single related document (`GET /v1/devices/{id}/status`, …).
pub(crate) fn related_document(
    device: &DeviceConfig,
    name: &str,
    online: bool,
    now: SystemTime,
) -> Value {
    json!({ "meta": meta(now), "data": related(device, name, online, now) })
}

/// A device resource object with its relationships and links.
fn device_resource(device: &DeviceConfig) -> Value {
    let self_link = format!("/v1/devices/{}", device.id);
    let relationships: serde_json::Map<String, Value> = INCLUDES
        .iter()
        .map(|name| {
            (
                (*name).to_owned(),
                json!({
                    "data": identifier(device, name),
                    "links": { "related": format!("{self_link}/{name}") },
                }),
            )
        })
        .collect();
    json!({
        "type": "devices",
        "id": device.id,
        "attributes": { "name": device.name },
        "relationships": relationships,
        "links": { "self": self_link },
    })
}

/// `GET /v1/devices[?include=…]`: `data[]` and, when asked, `included[]` (each
/// related document once, so devices sharing a location share its entry).
pub(crate) fn devices(
    devices: &[(&DeviceConfig, bool)],
    include: &[&str],
    now: SystemTime,
) -> Value {
    let data: Vec<Value> = devices.iter().map(|(d, _)| device_resource(d)).collect();
    let mut document =
        json!({ "meta": meta(now), "data": data, "links": { "self": "/v1/devices" } });
    if !include.is_empty() {
        let mut included: Vec<Value> = Vec::new();
        for (device, online) in devices {
            for name in INCLUDES.iter().filter(|n| include.contains(n)) {
                let resource = related(device, name, *online, now);
                if !included
                    .iter()
                    .any(|r| r["type"] == resource["type"] && r["id"] == resource["id"])
                {
                    included.push(resource);
                }
            }
        }
        document["included"] = Value::Array(included);
    }
    document
}

/// `GET /v1/devices/{id}`.
pub(crate) fn device(device: &DeviceConfig, now: SystemTime) -> Value {
    json!({ "meta": meta(now), "data": device_resource(device) })
}

/// A JSON:API error document.
pub(crate) fn error(status: u16, title: &str, detail: &str, code: Option<&str>) -> Value {
    let mut error = json!({ "status": status.to_string(), "title": title, "detail": detail });
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    json!({ "errors": [error] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_751_884_200);
        assert_eq!(rfc3339(t), "2025-07-07T10:30:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn included_documents_follow_the_relationships() {
        let config = SimConfig::default();
        let list: Vec<_> = config.accounts[0]
            .devices
            .iter()
            .map(|d| (d, true))
            .collect();
        let doc = devices(&list, &INCLUDES, SystemTime::now());
        let included = doc["included"].as_array().unwrap();
        // 3 devices × (status, capabilities, configurations) + one shared location.
        assert_eq!(included.len(), 3 * 3 + 1);
        for device in doc["data"].as_array().unwrap() {
            for name in INCLUDES {
                let rel = &device["relationships"][name]["data"];
                assert!(
                    included
                        .iter()
                        .any(|r| r["type"] == rel["type"] && r["id"] == rel["id"]),
                    "{name} of {}",
                    device["id"]
                );
            }
        }
        let without = devices(&list, &[], SystemTime::now());
        assert!(without.get("included").is_none());
    }
}
