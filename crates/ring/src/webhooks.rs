//! Ring's webhooks, sans-IO: the signature check over the raw body and the typed
//! event (RING_API.md, "Webhooks").
//!
//! - [`verify`]: `X-Signature: sha256=<hex>` must be HMAC-SHA256(key, raw body)
//!   for one of the keys given (the current one and, while a key rotates, the
//!   previous one), compared in constant time (`hmac`'s `verify_slice`). Call it
//!   before parsing anything.
//! - [`parse`]: the version 1.1 payload `meta{version, time, request_id,
//!   account_id}`, `data{id, type, attributes{source, source_type, timestamp},
//!   relationships.devices.links.self}` into a [`Webhook`] whose [`Event`] has
//!   one variant per documented event type. The motion subtype is read from
//!   `data.subType` or `data.attributes.sub_type` (both seen).
//!
//! Choices where Ring documents nothing ([guess]):
//! - `meta.time` is an RFC 3339 string or milliseconds since the epoch.
//! - An event type not in Ring's list parses as [`Event::Unknown`] (kept, so a
//!   new type Ring adds is stored rather than refused: a 4xx would count against
//!   the endpoint and can never succeed on a redelivery either).
//! - The device id is the last segment of `relationships.devices.links.self`
//!   (`/v1/devices/<id>`), else `relationships.devices.data.id`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use streamgate_redact::Secret;

use crate::ids::{AccountId, DeviceId};

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "x-signature";

/// Why a delivery's signature was refused (no key material in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("no X-Signature header")]
    Missing,
    #[error("X-Signature is not `sha256=<hex>`")]
    Malformed,
    #[error("X-Signature does not match the body")]
    Mismatch,
}

/// Why a signed body is not a webhook we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not a Ring webhook: {0}")]
    Shape(String),
}

/// `sha256=<lowercase hex>` of `body` under `key`, as Ring signs.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in digest {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 15)]));
    }
    text
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Checks `header` (the `X-Signature` value) against `body` under each key in
/// turn; Ok when one matches. The keys are used as the bytes of their text.
pub fn verify<'a>(
    keys: impl IntoIterator<Item = &'a Secret>,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let header = std::str::from_utf8(header).map_err(|_| SignatureError::Malformed)?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = unhex(hex).ok_or(SignatureError::Malformed)?;
    for key in keys {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The motion subtype Ring names (`motion`, `human`, `vehicle`, `other_motion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MotionKind {
    Motion,
    Human,
    Vehicle,
    OtherMotion,
    /// A subtype not in Ring's list, as sent.
    Other(String),
}

impl MotionKind {
    pub fn parse(text: &str) -> MotionKind {
        match text {
            "motion" => MotionKind::Motion,
            "human" => MotionKind::Human,
            "vehicle" => MotionKind::Vehicle,
            "other_motion" => MotionKind::OtherMotion,
            other => MotionKind::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MotionKind::Motion => "motion",
            MotionKind::Human => "human",
            MotionKind::Vehicle => "vehicle",
            MotionKind::OtherMotion => "other_motion",
            MotionKind::Other(other) => other,
        }
    }
}

/// One event, typed by Ring's ten event types.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    MotionDetected {
        device: Option<DeviceId>,
        /// `data.subType` or `data.attributes.sub_type`, when either is given.
        kind: Option<MotionKind>,
    },
    ButtonPress {
        device: Option<DeviceId>,
    },
    DeviceAdded {
        device: Option<DeviceId>,
    },
    DeviceRemoved {
        device: Option<DeviceId>,
    },
    DeviceOnline {
        device: Option<DeviceId>,
    },
    DeviceOffline {
        device: Option<DeviceId>,
    },
    /// `source_type: "users"`, no device.
    AppIntegrationAdded,
    /// The account's tokens are revoked [doc-copy].
    AppIntegrationRemoved,
    SubscriptionActivated {
        device: Option<DeviceId>,
    },
    SubscriptionDeactivated {
        device: Option<DeviceId>,
    },
    /// A type Ring may add later; kept with its name.
    Unknown {
        type_name: String,
        device: Option<DeviceId>,
    },
}

impl Event {
    /// Ring's name of the type (`unknown` for [`Event::Unknown`]).
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::MotionDetected { .. } => "motion_detected",
            Event::ButtonPress { .. } => "button_press",
            Event::DeviceAdded { .. } => "device_added",
            Event::DeviceRemoved { .. } => "device_removed",
            Event::DeviceOnline { .. } => "device_online",
            Event::DeviceOffline { .. } => "device_offline",
            Event::AppIntegrationAdded => "app_integration_added",
            Event::AppIntegrationRemoved => "app_integration_removed",
            Event::SubscriptionActivated { .. } => "subscription_activated",
            Event::SubscriptionDeactivated { .. } => "subscription_deactivated",
            Event::Unknown { .. } => "unknown",
        }
    }

    pub fn device(&self) -> Option<&DeviceId> {
        match self {
            Event::MotionDetected { device, .. }
            | Event::ButtonPress { device }
            | Event::DeviceAdded { device }
            | Event::DeviceRemoved { device }
            | Event::DeviceOnline { device }
            | Event::DeviceOffline { device }
            | Event::SubscriptionActivated { device }
            | Event::SubscriptionDeactivated { device }
            | Event::Unknown { device, .. } => device.as_ref(),
            Event::AppIntegrationAdded | Event::AppIntegrationRemoved => None,
        }
    }

    /// The motion subtype, or an unknown type's own name.
    pub fn subtype(&self) -> Option<&str> {
        match self {
            Event::MotionDetected { kind, .. } => kind.as_ref().map(MotionKind::as_str),
            Event::Unknown { type_name, .. } => Some(type_name),
            _ => None,
        }
    }

    /// Whether the set of devices (and so the streams) changes with it.
    pub fn changes_devices(&self) -> bool {
        matches!(
            self,
            Event::DeviceAdded { .. } | Event::DeviceRemoved { .. } | Event::AppIntegrationRemoved
        )
    }
}

/// A parsed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `meta.version` (`1.1`).
    pub version: Option<String>,
    /// `meta.time`: when Ring sent it.
    pub time: SystemTime,
    /// `meta.request_id`: the de-duplication key.
    pub request_id: String,
    pub account: Option<AccountId>,
    /// `data.id`.
    pub event_id: Option<String>,
    pub event: Event,
    /// `data.attributes.timestamp` as sent (ms or text).
    pub timestamp: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Payload {
    meta: Meta,
    data: Data,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    version: Option<serde_json::Value>,
    time: serde_json::Value,
    request_id: String,
    #[serde(default)]
    account_id: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, rename = "subType")]
    sub_type: Option<String>,
    #[serde(default)]
    attributes: Option<Attributes>,
    #[serde(default)]
    relationships: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Attributes {
    #[serde(default)]
    sub_type: Option<String>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
}

/// Parses a delivery's body (after [`verify`]).
pub fn parse(body: &[u8]) -> Result<Webhook, ParseError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let payload: Payload =
        serde_json::from_value(value).map_err(|e| ParseError::Shape(e.to_string()))?;
    let meta = payload.meta;
    if meta.request_id.trim().is_empty() {
        return Err(ParseError::Shape("empty meta.request_id".into()));
    }
    let time = parse_time(&meta.time)
        .ok_or_else(|| ParseError::Shape("meta.time is not a time".into()))?;
    let data = payload.data;
    let attributes = data.attributes;
    let sub_type = data.sub_type.or_else(|| {
        attributes
            .as_ref()
            .and_then(|attributes| attributes.sub_type.clone())
    });
    let device = data.relationships.as_ref().and_then(device_of);
    let event = match data.kind.as_str() {
        "motion_detected" => Event::MotionDetected {
            device,
            kind: sub_type.as_deref().map(MotionKind::parse),
        },
        "button_press" => Event::ButtonPress { device },
        "device_added" => Event::DeviceAdded { device },
        "device_removed" => Event::DeviceRemoved { device },
        "device_online" => Event::DeviceOnline { device },
        "device_offline" => Event::DeviceOffline { device },
        "app_integration_added" => Event::AppIntegrationAdded,
        "app_integration_removed" => Event::AppIntegrationRemoved,
        "subscription_activated" => Event::SubscriptionActivated { device },
        "subscription_deactivated" => Event::SubscriptionDeactivated { device },
        other => Event::Unknown {
            type_name: other.to_owned(),
            device,
        },
    };
    Ok(Webhook {
        version: meta.version.map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }),
        time,
        request_id: meta.request_id,
        account: meta
            .account_id
            .filter(|id| !id.is_empty())
            .map(AccountId::new),
        event_id: data.id.map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        }),
        event,
        timestamp: attributes.and_then(|attributes| attributes.timestamp),
    })
}

/// A time as Ring sends it: RFC 3339 text or milliseconds since the epoch.
pub(crate) fn parse_time(value: &serde_json::Value) -> Option<SystemTime> {
    match value {
        serde_json::Value::String(text) => humantime::parse_rfc3339_weak(text).ok(),
        serde_json::Value::Number(n) => n.as_u64().map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        _ => None,
    }
}

fn device_of(relationships: &serde_json::Value) -> Option<DeviceId> {
    let devices = relationships.get("devices")?;
    let from_link = devices
        .pointer("/links/self")
        .and_then(|v| v.as_str())
        .and_then(|link| {
            let path = link.split(['?', '#']).next()?;
            let (_, id) = path.trim_end_matches('/').rsplit_once("/devices/")?;
            (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
        });
    let from_data = || {
        devices
            .pointer("/data/id")
            .or_else(|| devices.pointer("/data/0/id"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    from_link.or_else(from_data).map(DeviceId::new)
}

/// Whether a delivery sent at `time` is older than `max_age` at `now` (a time in
/// the future is not stale: clocks differ).
pub fn is_stale(time: SystemTime, now: SystemTime, max_age: Duration) -> bool {
    now.duration_since(time).is_ok_and(|age| age > max_age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(kind: &str, extra_data: &str, attributes_extra: &str) -> String {
        format!(
            r#"{{"meta":{{"version":"1.1","time":"2026-12-02T01:00:00Z","request_id":"req-1","account_id":"ava1.ring.account.a"}},
               "data":{{"id":"ev-1","type":"{kind}"{extra_data},"attributes":{{"source":"ava1.ring.device.x","source_type":"devices","timestamp":1764637200000{attributes_extra}}},
               "relationships":{{"devices":{{"links":{{"self":"/v1/devices/ava1.ring.device.x"}}}}}}}}}}"#
        )
    }

    #[test]
    fn signature_is_checked_over_the_raw_bytes_with_either_key() {
        let key = Secret::new("new-key");
        let old = Secret::new("old-key");
        let raw = br#"{"a": 1}"#;
        let signed = sign(b"new-key", raw);
        assert!(signed.starts_with("sha256=") && signed.len() == 71);
        assert_eq!(verify([&key], Some(signed.as_bytes()), raw), Ok(()));
        let by_old = sign(b"old-key", raw);
        assert_eq!(verify([&key, &old], Some(by_old.as_bytes()), raw), Ok(()));
        assert_eq!(
            verify([&key], Some(by_old.as_bytes()), raw),
            Err(SignatureError::Mismatch)
        );
        // Same JSON, other bytes: refused.
        assert_eq!(
            verify([&key], Some(signed.as_bytes()), br#"{"a":1}"#),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                [&key],
                Some(signed.to_uppercase().replace("SHA256", "sha256").as_bytes()),
                raw
            ),
            Ok(())
        );
        assert_eq!(verify([&key], None, raw), Err(SignatureError::Missing));
        for bad in ["", "sha256=", "sha1=abcd", "sha256=zz", &signed[..70]] {
            assert_eq!(
                verify([&key], Some(bad.as_bytes()), raw),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify([&key], Some(&[0xff, 0xfe][..]), raw),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn every_event_type_has_its_variant() {
        let types = [
            "motion_detected",
            "button_press",
            "device_added",
            "device_removed",
            "device_online",
            "device_offline",
            "app_integration_added",
            "app_integration_removed",
            "subscription_activated",
            "subscription_deactivated",
        ];
        for kind in types {
            let webhook = parse(body(kind, "", "").as_bytes()).unwrap();
            assert_eq!(webhook.event.type_name(), kind);
            assert_eq!(webhook.request_id, "req-1");
            assert_eq!(webhook.version.as_deref(), Some("1.1"));
            assert_eq!(
                webhook.account.as_ref().unwrap().as_str(),
                "ava1.ring.account.a"
            );
            assert_eq!(
                webhook.time,
                humantime::parse_rfc3339("2026-12-02T01:00:00Z").unwrap()
            );
            let device = webhook.event.device().map(DeviceId::as_str);
            if kind.starts_with("app_integration") {
                assert_eq!(device, None);
            } else {
                assert_eq!(device, Some("ava1.ring.device.x"), "{kind}");
            }
        }
        let unknown = parse(body("doorbell_melted", "", "").as_bytes()).unwrap();
        assert_eq!(unknown.event.type_name(), "unknown");
        assert_eq!(unknown.event.subtype(), Some("doorbell_melted"));
    }

    #[test]
    fn the_motion_subtype_is_read_from_either_place() {
        let in_data =
            parse(body("motion_detected", r#","subType":"human""#, "").as_bytes()).unwrap();
        assert_eq!(
            in_data.event,
            Event::MotionDetected {
                device: Some(DeviceId::new("ava1.ring.device.x")),
                kind: Some(MotionKind::Human)
            }
        );
        let in_attributes =
            parse(body("motion_detected", "", r#","sub_type":"vehicle""#).as_bytes()).unwrap();
        assert_eq!(in_attributes.event.subtype(), Some("vehicle"));
        let none = parse(body("motion_detected", "", "").as_bytes()).unwrap();
        assert_eq!(none.event.subtype(), None);
        let odd = parse(body("motion_detected", r#","subType":"cat""#, "").as_bytes()).unwrap();
        assert_eq!(odd.event.subtype(), Some("cat"));
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        assert!(matches!(parse(b"{not json"), Err(ParseError::Json(_))));
        assert!(matches!(parse(b"[]"), Err(ParseError::Shape(_))));
        assert!(matches!(
            parse(br#"{"meta":{"time":"x","request_id":"r"},"data":{"type":"button_press"}}"#),
            Err(ParseError::Shape(_))
        ));
        assert!(matches!(
            parse(br#"{"meta":{"time":1,"request_id":" "},"data":{"type":"button_press"}}"#),
            Err(ParseError::Shape(_))
        ));
        let ms =
            parse(br#"{"meta":{"time":1000,"request_id":"r"},"data":{"type":"button_press"}}"#)
                .unwrap();
        assert_eq!(ms.time, UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(ms.event.device(), None);
    }

    #[test]
    fn staleness_is_age_past_the_cap() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let hour = Duration::from_secs(3600);
        assert!(!is_stale(now - hour, now, hour));
        assert!(is_stale(now - hour - Duration::from_secs(1), now, hour));
        assert!(!is_stale(now + hour, now, hour));
    }
}
