//! The event store: webhook events and the gateway's own, one row each with an
//! increasing id (the SSE `id:`), bounded by count and age.
//!
//! A webhook is stored with its request id in one transaction
//! ([`Store::record_webhook_event`]): either both rows are written or neither,
//! so a delivery is never acknowledged without its event, and an event is never
//! stored twice for one request id, across restarts.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{to_millis, Store, StoreError};

/// Schema step 2: the events table.
pub(super) const SCHEMA: &str = "
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,
    account TEXT,
    device TEXT,
    type TEXT NOT NULL,
    subtype TEXT,
    body TEXT NOT NULL
);
CREATE INDEX events_by_time ON events (time);
CREATE INDEX events_by_device ON events (device, id);
CREATE INDEX events_by_type ON events (type, id);
";

/// An event to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// When it happened (a webhook's `meta.time`; the gateway's own: now).
    pub time: SystemTime,
    pub account: Option<String>,
    pub device: Option<String>,
    /// `motion_detected`, …, `unknown`, or the gateway's `stream_up`, `stream_down`,
    /// `account_needs_relinking`.
    pub kind: String,
    pub subtype: Option<String>,
    /// The event as JSON (a webhook's whole payload).
    pub body: serde_json::Value,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    #[serde(rename = "time_ms")]
    pub time: i64,
    pub account: Option<String>,
    pub device: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub subtype: Option<String>,
    pub body: serde_json::Value,
}

/// Which stored events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only ids above this one.
    pub after: Option<i64>,
    pub device: Option<String>,
    pub kind: Option<String>,
    /// At most this many (the newest when `after` is none, else the oldest after it).
    pub limit: usize,
}

impl Store {
    /// Stores a webhook's event and its request id in one transaction; None (and
    /// nothing written) when the request id was recorded before.
    pub fn record_webhook_event(
        &self,
        request_id: &str,
        received_at: SystemTime,
        event: &NewEvent,
    ) -> Result<Option<StoredEvent>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let fresh = tx
            .execute(
                "INSERT INTO webhook_deliveries (request_id, received_at) VALUES (?1, ?2)
                 ON CONFLICT (request_id) DO NOTHING",
                params![request_id, to_millis(received_at)],
            )
            .map_err(|e| self.sqlite(e))?;
        if fresh == 0 {
            return Ok(None);
        }
        let stored = insert(&tx, event).map_err(|e| self.sqlite(e))?;
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(Some(stored))
    }

    /// Stores many events in one transaction (one disk sync for all): each with
    /// its webhook request id (None for the gateway's own events). A request id
    /// recorded before (or earlier in the batch) gives None and writes nothing.
    /// Either the whole batch is stored or, on an error, none of it.
    pub fn record_events(
        &self,
        batch: &[(Option<&str>, &NewEvent)],
        received_at: SystemTime,
    ) -> Result<Vec<Option<StoredEvent>>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let mut stored = Vec::with_capacity(batch.len());
        for (request_id, event) in batch {
            if let Some(request_id) = request_id {
                let fresh = tx
                    .execute(
                        "INSERT INTO webhook_deliveries (request_id, received_at) VALUES (?1, ?2)
                         ON CONFLICT (request_id) DO NOTHING",
                        params![request_id, to_millis(received_at)],
                    )
                    .map_err(|e| self.sqlite(e))?;
                if fresh == 0 {
                    stored.push(None);
                    continue;
                }
            }
            stored.push(Some(insert(&tx, event).map_err(|e| self.sqlite(e))?));
        }
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(stored)
    }

    /// Stores one of the gateway's own events.
    pub fn record_event(&self, event: &NewEvent) -> Result<StoredEvent, StoreError> {
        let conn = self.conn();
        insert(&conn, event).map_err(|e| self.sqlite(e))
    }

    /// Stored events matching `filter`, in id order.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.conn();
        let newest_first = filter.after.is_none();
        let sql = format!(
            "SELECT id, time, account, device, type, subtype, body FROM events
             WHERE id > ?1 AND (?2 IS NULL OR device = ?2) AND (?3 IS NULL OR type = ?3)
             ORDER BY id {} LIMIT ?4",
            if newest_first { "DESC" } else { "ASC" }
        );
        let mut statement = conn.prepare_cached(&sql).map_err(|e| self.sqlite(e))?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(
                params![filter.after.unwrap_or(0), filter.device, filter.kind, limit],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, Option<String>>(5)?,
                        row.get::<_, String>(6)?,
                    ))
                },
            )
            .map_err(|e| self.sqlite(e))?;
        let mut events = Vec::new();
        for row in rows {
            let (id, time, account, device, kind, subtype, body) =
                row.map_err(|e| self.sqlite(e))?;
            let body = serde_json::from_str(&body).map_err(|_| self.corrupt("event body"))?;
            events.push(StoredEvent {
                id,
                time,
                account,
                device,
                kind,
                subtype,
                body,
            });
        }
        if newest_first {
            events.reverse();
        }
        Ok(events)
    }

    /// The newest event's id (0 when there is none).
    pub fn last_event_id(&self) -> Result<i64, StoreError> {
        self.conn()
            .query_row("SELECT max(id) FROM events", [], |row| {
                row.get::<_, Option<i64>>(0)
            })
            .optional()
            .map(|id| id.flatten().unwrap_or(0))
            .map_err(|e| self.sqlite(e))
    }

    /// Keeps at most `max_count` events and none older than `older_than`; how many
    /// were deleted.
    pub fn prune_events(
        &self,
        max_count: usize,
        older_than: SystemTime,
    ) -> Result<usize, StoreError> {
        let conn = self.conn();
        let by_age = conn
            .execute(
                "DELETE FROM events WHERE time < ?1",
                [to_millis(older_than)],
            )
            .map_err(|e| self.sqlite(e))?;
        let keep = i64::try_from(max_count).unwrap_or(i64::MAX);
        let by_count = conn
            .execute(
                "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?1",
                [keep],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(by_age + by_count)
    }
}

fn insert(conn: &rusqlite::Connection, event: &NewEvent) -> rusqlite::Result<StoredEvent> {
    let time = to_millis(event.time);
    conn.execute(
        "INSERT INTO events (time, account, device, type, subtype, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            time,
            event.account,
            event.device,
            event.kind,
            event.subtype,
            event.body.to_string()
        ],
    )?;
    Ok(StoredEvent {
        id: conn.last_insert_rowid(),
        time,
        account: event.account.clone(),
        device: event.device.clone(),
        kind: event.kind.clone(),
        subtype: event.subtype.clone(),
        body: event.body.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn event(kind: &str, device: &str, at: u64) -> NewEvent {
        NewEvent {
            time: UNIX_EPOCH + Duration::from_secs(at),
            account: Some("a".into()),
            device: Some(device.into()),
            kind: kind.into(),
            subtype: None,
            body: serde_json::json!({"k": kind}),
        }
    }

    #[test]
    fn a_request_id_stores_its_event_once_even_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.sqlite");
        let at = UNIX_EPOCH + Duration::from_secs(100);
        {
            let store = Store::open(&path).unwrap();
            let first = store
                .record_webhook_event("req-1", at, &event("button_press", "d1", 100))
                .unwrap()
                .unwrap();
            assert_eq!(first.id, 1);
            assert!(store
                .record_webhook_event("req-1", at, &event("button_press", "d1", 100))
                .unwrap()
                .is_none());
        }
        let store = Store::open(&path).unwrap();
        assert!(store
            .record_webhook_event("req-1", at, &event("button_press", "d1", 100))
            .unwrap()
            .is_none());
        let second = store
            .record_webhook_event("req-2", at, &event("motion_detected", "d2", 101))
            .unwrap()
            .unwrap();
        assert_eq!(second.id, 2);
        assert_eq!(store.last_event_id().unwrap(), 2);
    }

    #[test]
    fn a_batch_is_stored_in_one_transaction_once_per_request_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ring.sqlite")).unwrap();
        let (a, b) = (event("button_press", "d1", 1), event("stream_up", "", 2));
        let at = UNIX_EPOCH + Duration::from_secs(5);
        let stored = store
            .record_events(
                &[
                    (Some("r1"), &a),
                    (None, &b),
                    (Some("r1"), &a),
                    (Some("r2"), &a),
                ],
                at,
            )
            .unwrap();
        let ids: Vec<Option<i64>> = stored.iter().map(|s| s.as_ref().map(|s| s.id)).collect();
        assert_eq!(ids, [Some(1), Some(2), None, Some(3)]);
        let again = store.record_events(&[(Some("r2"), &a)], at).unwrap();
        assert!(again[0].is_none());
    }

    #[test]
    fn events_are_filtered_paged_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ring.sqlite")).unwrap();
        for n in 0..10u64 {
            let kind = if n % 2 == 0 {
                "motion_detected"
            } else {
                "button_press"
            };
            store
                .record_event(&event(kind, &format!("d{}", n % 3), 1000 + n))
                .unwrap();
        }
        let all = |filter: EventFilter| -> Vec<i64> {
            store
                .events(&filter)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(
            all(EventFilter {
                limit: 3,
                ..Default::default()
            }),
            [8, 9, 10]
        );
        assert_eq!(
            all(EventFilter {
                after: Some(7),
                limit: 100,
                ..Default::default()
            }),
            [8, 9, 10]
        );
        assert_eq!(
            all(EventFilter {
                device: Some("d0".into()),
                limit: 100,
                ..Default::default()
            }),
            [1, 4, 7, 10]
        );
        assert_eq!(
            all(EventFilter {
                kind: Some("button_press".into()),
                device: Some("d1".into()),
                limit: 100,
                ..Default::default()
            }),
            [2, 8]
        );
        let read = store
            .events(&EventFilter {
                after: Some(9),
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(read[0].body, serde_json::json!({"k": "button_press"}));
        // Older than t=1002 goes (ids 1, 2), then only the newest 5 stay.
        assert_eq!(
            store
                .prune_events(5, UNIX_EPOCH + Duration::from_secs(1002))
                .unwrap(),
            5
        );
        assert_eq!(
            all(EventFilter {
                after: Some(0),
                limit: 100,
                ..Default::default()
            }),
            [6, 7, 8, 9, 10]
        );
        // Ids are not reused after pruning (AUTOINCREMENT).
        store.prune_events(0, UNIX_EPOCH).unwrap();
        assert_eq!(store.record_event(&event("x", "d", 1)).unwrap().id, 11);
    }

    #[test]
    fn a_version_1_store_gains_the_events_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(super::super::SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO webhook_deliveries (request_id, received_at) VALUES ('old', 1)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert!(store
            .record_webhook_event("old", UNIX_EPOCH, &event("x", "d", 1))
            .unwrap()
            .is_none());
        assert!(store.record_event(&event("x", "d", 1)).is_ok());
    }
}
