//! JSON:API documents as Ring sends them (labelled `application/json` [seen]): `data`
//! (one resource or a list), `included`, `links`, `meta`, and `errors[]`. Every field
//! but a resource's `type` and `id` may be missing, and unknown fields are ignored, so a
//! newer Ring answer still parses. Attribute types are per resource kind below; the
//! `included` resources stay untyped until a relationship says what they are.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A top-level document with primary data `D` (a [`Resource`] or a `Vec` of them).
#[derive(Debug, Deserialize)]
pub struct Document<D> {
    pub data: D,
    #[serde(default)]
    pub included: Vec<Resource<Value>>,
    #[serde(default)]
    pub links: Links,
    #[serde(default)]
    pub meta: Option<Value>,
}

/// One resource object with attributes `A`.
#[derive(Debug, Deserialize)]
pub struct Resource<A> {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub attributes: A,
    #[serde(default)]
    pub relationships: BTreeMap<String, Relationship>,
    #[serde(default)]
    pub links: Links,
    #[serde(default)]
    pub meta: Option<Value>,
}

/// A relationship: linkage `data` (one, many or null) and/or `links`.
#[derive(Debug, Default, Deserialize)]
pub struct Relationship {
    #[serde(default)]
    pub data: Option<Linkage>,
    #[serde(default)]
    pub links: Links,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Linkage {
    One(ResourceId),
    Many(Vec<ResourceId>),
}

impl Linkage {
    /// The first resource named (a to-one relationship's only one).
    pub fn first(&self) -> Option<&ResourceId> {
        match self {
            Linkage::One(id) => Some(id),
            Linkage::Many(ids) => ids.first(),
        }
    }
}

/// A resource identifier object `{type, id}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
pub struct ResourceId {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// `links` by name (`self`, `next`, `related`, …).
pub type Links = BTreeMap<String, Link>;

/// A link: a URL string, or a link object `{href, meta}`; null is allowed by JSON:API.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Link {
    Url(String),
    Object {
        href: String,
        #[serde(default)]
        meta: Option<Value>,
    },
    Null(()),
}

impl Link {
    pub fn href(&self) -> Option<&str> {
        match self {
            Link::Url(href) | Link::Object { href, .. } => Some(href),
            Link::Null(()) => None,
        }
    }
}

/// `{"errors":[…]}`.
#[derive(Debug, Deserialize)]
pub struct ErrorDocument {
    pub errors: Vec<ErrorObject>,
}

/// One error object; `status` and `code` may come as strings or numbers.
#[derive(Debug, Deserialize)]
pub struct ErrorObject {
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub detail: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub code: Option<String>,
    #[serde(default)]
    pub source: Option<Value>,
    #[serde(default)]
    pub meta: Option<Value>,
}

/// A string, or a number or bool shown as text; null or anything else is `None`.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

/// `GET /v1/users/me` (`type: "users"`, id `ava1.ring.account.…`) [doc].
#[derive(Debug, Default, Deserialize)]
pub struct UserAttributes {
    #[serde(default, deserialize_with = "lenient_string")]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub phone_number: Option<String>,
}

/// A device's own attributes: `name` [doc]; the rest kept for the power-source search.
#[derive(Debug, Default, Deserialize)]
pub struct DeviceAttributes {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `/status` and the included status: `{online, reported_at}` [seen].
#[derive(Debug, Default, Deserialize)]
pub struct StatusAttributes {
    #[serde(default)]
    pub online: Option<bool>,
    #[serde(default)]
    pub reported_at: Option<Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `/capabilities`: `video{codecs, ratio, max_resolution, supported_resolutions, …}`,
/// `motion_detection` [doc].
#[derive(Debug, Default, Deserialize)]
pub struct CapabilitiesAttributes {
    #[serde(default)]
    pub video: Option<VideoCapabilities>,
    #[serde(default)]
    pub motion_detection: Option<Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct VideoCapabilities {
    /// Strings (`"h264"`), or objects naming one (`{"name": "h264"}`) [guess].
    #[serde(default)]
    pub codecs: Vec<Value>,
    #[serde(default)]
    pub ratio: Option<Value>,
    #[serde(default)]
    pub max_resolution: Option<Value>,
    #[serde(default)]
    pub supported_resolutions: Option<Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl VideoCapabilities {
    /// Codec names, from strings or from objects' `name`/`codec`.
    pub fn codec_names(&self) -> Vec<String> {
        self.codecs
            .iter()
            .filter_map(|codec| match codec {
                Value::String(name) => Some(name.clone()),
                Value::Object(object) => object
                    .get("name")
                    .or_else(|| object.get("codec"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            })
            .collect()
    }
}

/// `/location`: its fields are not documented [guess]; a `name` or a string `address`
/// is shown, the rest kept.
#[derive(Debug, Default, Deserialize)]
pub struct LocationAttributes {
    #[serde(default, deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl LocationAttributes {
    /// What to show for the location.
    pub fn label(&self) -> Option<String> {
        self.name
            .clone()
            .or_else(|| self.address.as_ref()?.as_str().map(str::to_owned))
            .filter(|label| !label.trim().is_empty())
    }
}

/// `/configurations`: undocumented settings, kept as they came.
#[derive(Debug, Default, Deserialize)]
pub struct ConfigurationsAttributes {
    #[serde(flatten)]
    pub settings: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_me_parses_with_missing_and_extra_fields() {
        let body = r#"{"data":{"type":"users","id":"ava1.ring.account.abc","attributes":{"first_name":"Sam","last_name":"Simulator","email":"sam@example.com","phone_number":"+15550100","locale":"en-US"},"links":{"self":"/v1/users/me"}},"meta":{"time":1}}"#;
        let doc: Document<Resource<UserAttributes>> = serde_json::from_str(body).unwrap();
        assert_eq!(doc.data.kind, "users");
        assert_eq!(doc.data.id, "ava1.ring.account.abc");
        assert_eq!(doc.data.attributes.first_name.as_deref(), Some("Sam"));
        assert_eq!(doc.data.links["self"].href(), Some("/v1/users/me"));

        let bare = r#"{"data":{"type":"users","id":"ava1.ring.account.x"}}"#;
        let doc: Document<Resource<UserAttributes>> = serde_json::from_str(bare).unwrap();
        assert!(doc.data.attributes.email.is_none());
        assert!(doc.included.is_empty());
    }

    #[test]
    fn sub_documents_parse() {
        let status = r#"{"data":{"type":"device-status","id":"ava1.ring.device.a","attributes":{"online":false,"reported_at":"2025-05-01T10:00:00Z","rssi":-50}}}"#;
        let doc: Document<Resource<StatusAttributes>> = serde_json::from_str(status).unwrap();
        assert_eq!(doc.data.attributes.online, Some(false));
        assert!(doc.data.attributes.other.contains_key("rssi"));

        let caps = r#"{"data":{"type":"device-capabilities","id":"ava1.ring.device.a","attributes":{"video":{"codecs":["h264",{"name":"h265"}],"ratio":"16:9","max_resolution":{"width":1920,"height":1080},"supported_resolutions":["1920x1080"],"hdr":true},"motion_detection":{"zones":true}}}}"#;
        let doc: Document<Resource<CapabilitiesAttributes>> = serde_json::from_str(caps).unwrap();
        let video = doc.data.attributes.video.as_ref().unwrap();
        assert_eq!(video.codec_names(), ["h264", "h265"]);
        assert!(video.other.contains_key("hdr"));

        let location = r#"{"data":{"type":"locations","id":"loc-1","attributes":{"name":"Home","address":{"city":"X"}}}}"#;
        let doc: Document<Resource<LocationAttributes>> = serde_json::from_str(location).unwrap();
        assert_eq!(doc.data.attributes.label().as_deref(), Some("Home"));

        let configs = r#"{"data":{"type":"device-configurations","id":"ava1.ring.device.a","attributes":{"motion_sensitivity":3}}}"#;
        let doc: Document<Resource<ConfigurationsAttributes>> =
            serde_json::from_str(configs).unwrap();
        assert_eq!(doc.data.attributes.settings["motion_sensitivity"], 3);
    }

    #[test]
    fn relationships_links_and_errors_take_every_json_api_form() {
        let body = r#"{"data":[{"type":"devices","id":"d1","relationships":{"status":{"data":{"type":"device-status","id":"d1"}},"many":{"data":[{"type":"x","id":"1"}]},"none":{"data":null},"linked":{"links":{"related":{"href":"/v1/devices/d1/location","meta":{}}}}}}],"links":{"next":null,"self":"/v1/devices"}}"#;
        let doc: Document<Vec<Resource<DeviceAttributes>>> = serde_json::from_str(body).unwrap();
        let device = &doc.data[0];
        assert_eq!(
            device.relationships["status"]
                .data
                .as_ref()
                .unwrap()
                .first()
                .unwrap()
                .kind,
            "device-status"
        );
        assert_eq!(
            device.relationships["many"]
                .data
                .as_ref()
                .unwrap()
                .first()
                .unwrap()
                .id,
            "1"
        );
        assert!(device.relationships["none"].data.is_none());
        assert_eq!(
            device.relationships["linked"].links["related"].href(),
            Some("/v1/devices/d1/location")
        );
        assert_eq!(doc.links["next"].href(), None);

        let errors = r#"{"errors":[{"status":416,"code":"TIMESTAMP_NOT_FOUND","title":"Range Not Satisfiable"}]}"#;
        let doc: ErrorDocument = serde_json::from_str(errors).unwrap();
        assert_eq!(doc.errors[0].status.as_deref(), Some("416"));
        assert_eq!(doc.errors[0].code.as_deref(), Some("TIMESTAMP_NOT_FOUND"));
    }
}
