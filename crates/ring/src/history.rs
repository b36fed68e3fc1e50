//! A device's event history as one list: Ring's history pages merged with the
//! webhook events the gateway stored. Ring indexes an event some time after its
//! webhook, and keeps none without a subscription, so the stored events fill the
//! gaps; an event both know of shows once, with both ids. Sans-IO: the caller
//! reads the pages and the store.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::media::{split_event_type, HistoryEvent};
use crate::store::StoredEvent;
use crate::webhooks::parse_time;

/// How far apart Ring's `start` and a webhook's timestamp may be for the same
/// event (Ring documents neither's precision [guess]).
pub const SAME_EVENT_WITHIN: Duration = Duration::from_secs(10);

/// Who knows of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen {
    Ring,
    Gateway,
    Both,
}

/// One event of the merged history.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedEvent {
    /// In Ring's history form: `motion`, `motion.human`, `ding`, …
    pub event_type: String,
    /// When it started, if known.
    pub time: Option<SystemTime>,
    pub ring: Option<HistoryEvent>,
    /// The gateway's stored webhook event (its id is the SSE / `/api/events` id).
    pub stored: Option<StoredEvent>,
}

impl MergedEvent {
    pub fn seen(&self) -> Seen {
        match (&self.ring, &self.stored) {
            (Some(_), Some(_)) => Seen::Both,
            (None, Some(_)) => Seen::Gateway,
            _ => Seen::Ring,
        }
    }

    /// `motion` for `motion.human`.
    pub fn base_type(&self) -> &str {
        split_event_type(&self.event_type).0
    }

    /// `human` for `motion.human`.
    pub fn subtype(&self) -> Option<&str> {
        split_event_type(&self.event_type).1
    }
}

/// A stored webhook event's type in Ring's history form (`motion_detected` with
/// subtype `human` is `motion.human`; `button_press` is `ding`); `None` for
/// types the history does not hold (device_online, stream_up, …).
pub fn history_type(stored: &StoredEvent) -> Option<String> {
    match stored.kind.as_str() {
        "motion_detected" => Some(match stored.subtype.as_deref() {
            None | Some("motion") => "motion".to_owned(),
            Some(sub) => format!("motion.{sub}"),
        }),
        "button_press" => Some("ding".to_owned()),
        _ => None,
    }
}

/// When a stored event happened: its webhook's `data.attributes.timestamp`,
/// else the delivery's `meta.time` (what the store keeps).
fn stored_time(stored: &StoredEvent) -> SystemTime {
    stored
        .body
        .pointer("/data/attributes/timestamp")
        .and_then(parse_time)
        .unwrap_or_else(|| {
            let ms = u64::try_from(stored.time).unwrap_or(0);
            SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
        })
}

/// Whether `event_type` passes the `types` filter (empty: every type; `motion`
/// also takes `motion.human`).
fn wanted(types: &[String], event_type: &str) -> bool {
    let base = split_event_type(event_type).0;
    types.is_empty() || types.iter().any(|t| t == event_type || t == base)
}

/// Ring's events (newest first, as paged) and the device's stored events, as one
/// list, newest first; events without a time keep Ring's order, last.
///
/// `ring_complete`: Ring's pages were read to the end. When they were not, stored
/// events older than Ring's oldest are left out, as Ring's own are.
pub fn merge(
    ring: Vec<HistoryEvent>,
    ring_complete: bool,
    stored: Vec<StoredEvent>,
    types: &[String],
) -> Vec<MergedEvent> {
    let mut merged: Vec<MergedEvent> = ring
        .into_iter()
        .map(|event| MergedEvent {
            event_type: event.event_type.clone(),
            time: event.start.as_ref().and_then(parse_time),
            ring: Some(event),
            stored: None,
        })
        .collect();
    let oldest_ring = merged.iter().filter_map(|e| e.time).min();
    for event in stored {
        let Some(event_type) = history_type(&event).filter(|t| wanted(types, t)) else {
            continue;
        };
        let time = stored_time(&event);
        if !ring_complete && oldest_ring.is_some_and(|oldest| time < oldest) {
            continue;
        }
        let base = split_event_type(&event_type).0;
        let apart = |other: SystemTime| time.duration_since(other).unwrap_or_else(|e| e.duration());
        let same = merged
            .iter_mut()
            .filter(|m| m.stored.is_none() && m.ring.is_some() && m.base_type() == base)
            .filter_map(|m| Some((apart(m.time?), m)))
            .filter(|(gap, _)| *gap <= SAME_EVENT_WITHIN)
            .min_by_key(|(gap, _)| *gap);
        match same {
            Some((_, found)) => found.stored = Some(event),
            None => merged.push(MergedEvent {
                event_type,
                time: Some(time),
                ring: None,
                stored: Some(event),
            }),
        }
    }
    // Stable: untimed Ring events keep their order.
    merged.sort_by(|a, b| match (a.time, b.time) {
        (Some(a), Some(b)) => b.cmp(&a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    const T0_MS: i64 = 1_764_637_200_000;

    fn ring(id: &str, event_type: &str, start: Value) -> HistoryEvent {
        HistoryEvent {
            id: Some(id.to_owned()),
            event_type: event_type.to_owned(),
            start: Some(start),
            end: None,
            other: Map::new(),
        }
    }

    fn stored(id: i64, kind: &str, subtype: Option<&str>, timestamp_ms: i64) -> StoredEvent {
        StoredEvent {
            id,
            // The delivery, a little after the event.
            time: timestamp_ms + 700,
            account: None,
            device: Some("dev".to_owned()),
            kind: kind.to_owned(),
            subtype: subtype.map(str::to_owned),
            body: json!({"data": {"attributes": {"timestamp": timestamp_ms}}}),
        }
    }

    fn summary(merged: &[MergedEvent]) -> Vec<(String, Seen, Option<i64>)> {
        merged
            .iter()
            .map(|m| {
                (
                    m.event_type.clone(),
                    m.seen(),
                    m.stored.as_ref().map(|s| s.id),
                )
            })
            .collect()
    }

    #[test]
    fn events_both_know_show_once_and_the_rest_fill_in_newest_first() {
        let ring_events = vec![
            ring("r3", "ding", json!(T0_MS + 60_000)),
            // Ring's start is an ISO time, 2 s before the webhook's timestamp.
            ring("r2", "motion.human", json!("2025-12-02T01:00:28Z")),
            ring("r1", "motion", json!(T0_MS)),
        ];
        let stored_events = vec![
            stored(1, "motion_detected", Some("motion"), T0_MS + 1_000),
            stored(2, "motion_detected", Some("human"), T0_MS + 30_000),
            // Not (yet) in Ring's history.
            stored(3, "button_press", None, T0_MS + 90_000),
            // Another type: not history.
            stored(4, "device_online", None, T0_MS + 95_000),
            // A ding 5 min before Ring's ding: a different event.
            stored(5, "button_press", None, T0_MS - 300_000),
        ];
        let merged = merge(ring_events, true, stored_events, &[]);
        assert_eq!(
            summary(&merged),
            vec![
                ("ding".to_owned(), Seen::Gateway, Some(3)),
                ("ding".to_owned(), Seen::Ring, None),
                ("motion.human".to_owned(), Seen::Both, Some(2)),
                ("motion".to_owned(), Seen::Both, Some(1)),
                ("ding".to_owned(), Seen::Gateway, Some(5)),
            ]
        );
    }

    #[test]
    fn types_filter_and_incomplete_paging_bound_the_stored_events() {
        let ring_events = vec![ring("r1", "motion", json!(T0_MS))];
        let stored_events = vec![
            stored(1, "button_press", None, T0_MS + 10_000),
            stored(2, "motion_detected", Some("vehicle"), T0_MS + 20_000),
            // Older than the oldest page read: Ring's own may be missing too.
            stored(3, "motion_detected", None, T0_MS - 3_600_000),
        ];
        let merged = merge(ring_events, false, stored_events, &["motion".to_owned()]);
        assert_eq!(
            summary(&merged),
            vec![
                ("motion.vehicle".to_owned(), Seen::Gateway, Some(2)),
                ("motion".to_owned(), Seen::Ring, None),
            ]
        );
        assert_eq!(merged[0].subtype(), Some("vehicle"));
    }

    #[test]
    fn a_stored_event_matches_one_ring_event_at_most() {
        let ring_events = vec![
            ring("r2", "motion", json!(T0_MS + 4_000)),
            ring("r1", "motion", json!(T0_MS)),
        ];
        let stored_events = vec![
            stored(1, "motion_detected", None, T0_MS + 500),
            stored(2, "motion_detected", None, T0_MS + 800),
        ];
        let merged = merge(ring_events, true, stored_events, &[]);
        // 1 is nearest r1; 2 then takes r2, the nearest one left.
        assert_eq!(
            summary(&merged),
            vec![
                ("motion".to_owned(), Seen::Both, Some(2)),
                ("motion".to_owned(), Seen::Both, Some(1)),
            ]
        );
    }
}
