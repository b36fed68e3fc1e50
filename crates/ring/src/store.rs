//! The token store: one SQLite file (mode 0600, WAL, `synchronous=FULL`) holding the
//! linked accounts, their token pairs, and the webhook request ids already handled.
//!
//! A token pair is one row, replaced in one transaction: a crash at any moment leaves
//! the old pair or the new one, never a new refresh token with an old access token.
//! With `synchronous=FULL` a committed pair is on disk before the commit returns, so a
//! rotated refresh token is never lost once the new access token has been handed out.
//! Times are stored as milliseconds since the Unix epoch.

use std::fs::{self, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use streamgate_redact::Secret;

use crate::ids::AccountId;
use crate::tokens::TokenSet;

/// The schema this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

mod events;
pub use events::{EventFilter, NewEvent, StoredEvent};

const SCHEMA: &str = "
CREATE TABLE accounts (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    email TEXT,
    state TEXT NOT NULL CHECK (state IN ('unclaimed', 'linked', 'needs_relinking')),
    linked_at INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE tokens (
    account_id TEXT PRIMARY KEY NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    access_token TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    access_expires_at INTEGER NOT NULL,
    refresh_expires_at INTEGER NOT NULL,
    scope TEXT,
    updated_at INTEGER NOT NULL
);
CREATE TABLE webhook_deliveries (
    request_id TEXT PRIMARY KEY NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (received_at);
";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: SQLite: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: schema version {found} is newer than this program's {SCHEMA_VERSION}")]
    SchemaTooNew { path: PathBuf, found: i64 },
    #[error("{path}: journal mode is {mode}, WAL was asked for")]
    NotWal { path: PathBuf, mode: String },
    #[error("{path}: a stored {what} is not valid")]
    Corrupt { path: PathBuf, what: &'static str },
}

/// Where an account is in linking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    /// Tokens exchanged (Token Exchange URL), the user has not matched the nonce yet.
    Unclaimed,
    /// App integration completed.
    Linked,
    /// The refresh token was refused or expired: the user must link again.
    NeedsRelinking,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Unclaimed => "unclaimed",
            AccountState::Linked => "linked",
            AccountState::NeedsRelinking => "needs_relinking",
        }
    }

    fn parse(text: &str) -> Option<AccountState> {
        [
            AccountState::Unclaimed,
            AccountState::Linked,
            AccountState::NeedsRelinking,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// A Ring account the gateway holds tokens for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// "First Last" from `users/me`, else the email, else the id.
    pub name: String,
    pub email: Option<String>,
    pub state: AccountState,
    pub linked_at: Option<SystemTime>,
    /// Why the account needs linking again (no secret in it).
    pub last_error: Option<String>,
}

/// The SQLite file. Calls block for a disk write at most (a few ms with fsync).
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating it with mode 0600 if needed) and migrates the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let io_error = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        // Create the file 0600 before SQLite does (it would honour the umask), and
        // tighten an existing one.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io_error)?;
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(io_error)?;
        drop(file);

        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        })?;
        let store = Store {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        };
        store.configure()?;
        store.migrate()?;
        // SQLite gives -wal and -shm the database file's mode; make sure of it.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            match fs::set_permissions(&side, Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StoreError::Io {
                        path: side.into(),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: &'static str) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn configure(&self) -> Result<(), StoreError> {
        let conn = self.conn();
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| self.sqlite(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal {
                path: self.path.clone(),
                mode,
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .and_then(|()| conn.busy_timeout(Duration::from_secs(5)))
            .map_err(|e| self.sqlite(e))
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| self.sqlite(e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: self.path.clone(),
                found: version,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        // Each step takes the schema from the version before it to its own.
        let steps: [&str; 2] = [SCHEMA, events::SCHEMA];
        steps
            .iter()
            .skip(usize::try_from(version).unwrap_or(0))
            .try_for_each(|step| tx.execute_batch(step))
            .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
            .and_then(|()| tx.commit())
            .map_err(|e| self.sqlite(e))
    }

    /// Every account, oldest first.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT id, name, email, state, linked_at, last_error FROM accounts
                 ORDER BY created_at, id",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map([], AccountRow::read)
            .map_err(|e| self.sqlite(e))?;
        let mut accounts = Vec::new();
        for row in rows {
            accounts.push(self.account_of(row.map_err(|e| self.sqlite(e))?)?);
        }
        Ok(accounts)
    }

    pub fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, name, email, state, linked_at, last_error FROM accounts WHERE id = ?1",
                [id.as_str()],
                AccountRow::read,
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        row.map(|row| self.account_of(row)).transpose()
    }

    fn account_of(&self, row: AccountRow) -> Result<Account, StoreError> {
        Ok(Account {
            id: AccountId::new(row.id),
            name: row.name,
            email: row.email,
            state: AccountState::parse(&row.state).ok_or_else(|| self.corrupt("account state"))?,
            linked_at: row.linked_at.map(from_millis),
            last_error: row.last_error,
        })
    }

    /// The account's token pair, if it has one.
    pub fn tokens(&self, id: &AccountId) -> Result<Option<TokenSet>, StoreError> {
        self.conn()
            .query_row(
                "SELECT access_token, refresh_token, access_expires_at, refresh_expires_at,
                        scope, updated_at
                 FROM tokens WHERE account_id = ?1",
                [id.as_str()],
                |row| {
                    Ok(TokenSet {
                        access_token: Secret::new(row.get::<_, String>(0)?),
                        refresh_token: Secret::new(row.get::<_, String>(1)?),
                        access_expires_at: from_millis(row.get(2)?),
                        refresh_expires_at: from_millis(row.get(3)?),
                        scope: row.get(4)?,
                        updated_at: from_millis(row.get(5)?),
                    })
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Stores a freshly exchanged account as unclaimed with its tokens (one
    /// transaction). An account seen before keeps its row and goes back to unclaimed:
    /// Ring sends a new code when the user links again.
    pub fn save_unclaimed(
        &self,
        id: &AccountId,
        name: &str,
        email: Option<&str>,
        tokens: &TokenSet,
    ) -> Result<Account, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let now = to_millis(tokens.updated_at);
        tx.execute(
            "INSERT INTO accounts (id, name, email, state, linked_at, last_error, created_at,
                                   updated_at)
             VALUES (?1, ?2, ?3, 'unclaimed', NULL, NULL, ?4, ?4)
             ON CONFLICT (id) DO UPDATE SET name = ?2, email = ?3, state = 'unclaimed',
                 linked_at = NULL, last_error = NULL, updated_at = ?4",
            params![id.as_str(), name, email, now],
        )
        .and_then(|_| write_tokens(&tx, id, tokens))
        .and_then(|_| tx.commit())
        .map_err(|e| self.sqlite(e))?;
        drop(conn);
        self.account(id)?
            .ok_or_else(|| self.corrupt("account just written"))
    }

    /// Replaces the account's token pair in one transaction; false if the account is
    /// gone (unlinked meanwhile).
    pub fn replace_tokens(&self, id: &AccountId, tokens: &TokenSet) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let exists = tx
            .query_row(
                "SELECT 1 FROM accounts WHERE id = ?1",
                [id.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?
            .is_some();
        if !exists {
            return Ok(false);
        }
        write_tokens(&tx, id, tokens)
            .and_then(|_| tx.commit())
            .map_err(|e| self.sqlite(e))?;
        Ok(true)
    }

    /// Linking completed now.
    pub fn mark_linked(&self, id: &AccountId, now: SystemTime) -> Result<bool, StoreError> {
        self.update_state(id, AccountState::Linked, None, Some(now), now)
    }

    /// The user must link again, for `reason` (shown to them; no secret in it).
    pub fn mark_needs_relinking(
        &self,
        id: &AccountId,
        reason: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let changed = conn
            .execute(
                "UPDATE accounts SET state = 'needs_relinking', last_error = ?2, updated_at = ?3
                 WHERE id = ?1",
                params![id.as_str(), reason, to_millis(now)],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(changed > 0)
    }

    fn update_state(
        &self,
        id: &AccountId,
        state: AccountState,
        last_error: Option<&str>,
        linked_at: Option<SystemTime>,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE accounts SET state = ?2, last_error = ?3, linked_at = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![
                    id.as_str(),
                    state.as_str(),
                    last_error,
                    linked_at.map(to_millis),
                    to_millis(now)
                ],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(changed > 0)
    }

    /// Forgets the account and its tokens; false if there was none.
    pub fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
        let deleted = tx
            .execute("DELETE FROM tokens WHERE account_id = ?1", [id.as_str()])
            .and_then(|_| tx.execute("DELETE FROM accounts WHERE id = ?1", [id.as_str()]))
            .map_err(|e| self.sqlite(e))?;
        tx.commit().map_err(|e| self.sqlite(e))?;
        Ok(deleted > 0)
    }

    /// Records a webhook delivery; false when its request id was seen before (a retry
    /// or a replay).
    pub fn record_webhook_delivery(
        &self,
        request_id: &str,
        received_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let inserted = self
            .conn()
            .execute(
                "INSERT INTO webhook_deliveries (request_id, received_at) VALUES (?1, ?2)
                 ON CONFLICT (request_id) DO NOTHING",
                params![request_id, to_millis(received_at)],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(inserted > 0)
    }

    /// Forgets deliveries received before `older_than`; how many.
    pub fn prune_webhook_deliveries(&self, older_than: SystemTime) -> Result<usize, StoreError> {
        self.conn()
            .execute(
                "DELETE FROM webhook_deliveries WHERE received_at < ?1",
                [to_millis(older_than)],
            )
            .map_err(|e| self.sqlite(e))
    }
}

struct AccountRow {
    id: String,
    name: String,
    email: Option<String>,
    state: String,
    linked_at: Option<i64>,
    last_error: Option<String>,
}

impl AccountRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
        Ok(AccountRow {
            id: row.get(0)?,
            name: row.get(1)?,
            email: row.get(2)?,
            state: row.get(3)?,
            linked_at: row.get(4)?,
            last_error: row.get(5)?,
        })
    }
}

/// The one statement that writes a token pair (inside the caller's transaction).
fn write_tokens(tx: &Transaction<'_>, id: &AccountId, tokens: &TokenSet) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO tokens (account_id, access_token, refresh_token, access_expires_at,
                             refresh_expires_at, scope, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (account_id) DO UPDATE SET access_token = ?2, refresh_token = ?3,
             access_expires_at = ?4, refresh_expires_at = ?5, scope = ?6, updated_at = ?7",
        params![
            id.as_str(),
            tokens.access_token.expose(),
            tokens.refresh_token.expose(),
            to_millis(tokens.access_expires_at),
            to_millis(tokens.refresh_expires_at),
            tokens.scope,
            to_millis(tokens.updated_at),
        ],
    )
    .map(|_| ())
}

fn to_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(access: &str, refresh: &str, at: u64) -> TokenSet {
        let at = UNIX_EPOCH + Duration::from_secs(at);
        TokenSet {
            access_token: Secret::new(access),
            refresh_token: Secret::new(refresh),
            access_expires_at: at + Duration::from_secs(14400),
            refresh_expires_at: at + Duration::from_secs(30 * 86400),
            scope: Some("ava.v1:read".into()),
            updated_at: at,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn file_and_wal_are_0600_even_when_an_existing_file_was_loose() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.sqlite");
        fs::write(&path, b"").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        let store = Store::open(&path).unwrap();
        let id = AccountId::new("ava1.ring.account.a");
        store
            .save_unclaimed(&id, "A", None, &tokens("a1", "r1", 1000))
            .unwrap();
        assert_eq!(mode(&path), 0o600);
        let wal = dir.path().join("ring.sqlite-wal");
        assert!(wal.exists(), "WAL file exists");
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&dir.path().join("ring.sqlite-shm")), 0o600);

        let fresh = dir.path().join("fresh.sqlite");
        drop(Store::open(&fresh).unwrap());
        assert_eq!(mode(&fresh), 0o600);
    }

    #[test]
    fn reopen_keeps_accounts_tokens_and_states_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.sqlite");
        let id = AccountId::new("ava1.ring.account.a");
        {
            let store = Store::open(&path).unwrap();
            let account = store
                .save_unclaimed(
                    &id,
                    "Sam S",
                    Some("s@example.com"),
                    &tokens("a1", "r1", 1000),
                )
                .unwrap();
            assert_eq!(account.state, AccountState::Unclaimed);
            assert!(store
                .mark_linked(&id, UNIX_EPOCH + Duration::from_secs(2000))
                .unwrap());
        }
        let store = Store::open(&path).unwrap();
        let mode: String = store
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = store
            .conn()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let accounts = store.accounts().unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].state, AccountState::Linked);
        assert_eq!(accounts[0].email.as_deref(), Some("s@example.com"));
        assert_eq!(
            accounts[0].linked_at,
            Some(UNIX_EPOCH + Duration::from_secs(2000))
        );
        let stored = store.tokens(&id).unwrap().unwrap();
        assert_eq!(stored.access_token.expose(), "a1");
        assert_eq!(stored.refresh_token.expose(), "r1");
        assert_eq!(
            stored.access_expires_at,
            UNIX_EPOCH + Duration::from_secs(15400)
        );
        assert_eq!(stored.scope.as_deref(), Some("ava.v1:read"));

        assert!(store
            .mark_needs_relinking(&id, "refresh refused", UNIX_EPOCH)
            .unwrap());
        let account = store.account(&id).unwrap().unwrap();
        assert_eq!(account.state, AccountState::NeedsRelinking);
        assert_eq!(account.last_error.as_deref(), Some("refresh refused"));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.sqlite");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn token_pair_is_replaced_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.sqlite");
        let store = Store::open(&path).unwrap();
        let id = AccountId::new("ava1.ring.account.a");
        store
            .save_unclaimed(&id, "A", None, &tokens("a1", "r1", 1000))
            .unwrap();

        // A transaction that dies before its commit (a crash) leaves the old pair,
        // and a reader on another connection never sees half of the new one.
        {
            let mut conn = store.conn();
            let tx = conn.transaction().unwrap();
            write_tokens(&tx, &id, &tokens("a2", "r2", 2000)).unwrap();
            let other = Store::open(&path).unwrap();
            let seen = other.tokens(&id).unwrap().unwrap();
            assert_eq!(
                (seen.access_token.expose(), seen.refresh_token.expose()),
                ("a1", "r1")
            );
            drop(tx);
        }
        let seen = Store::open(&path).unwrap().tokens(&id).unwrap().unwrap();
        assert_eq!(
            (seen.access_token.expose(), seen.refresh_token.expose()),
            ("a1", "r1")
        );

        assert!(store
            .replace_tokens(&id, &tokens("a3", "r3", 3000))
            .unwrap());
        let seen = Store::open(&path).unwrap().tokens(&id).unwrap().unwrap();
        assert_eq!(
            (seen.access_token.expose(), seen.refresh_token.expose()),
            ("a3", "r3")
        );
        assert!(!store
            .replace_tokens(&AccountId::new("gone"), &tokens("x", "y", 1))
            .unwrap());
    }

    #[test]
    fn unlink_deletes_the_account_and_its_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ring.sqlite")).unwrap();
        let id = AccountId::new("ava1.ring.account.a");
        store
            .save_unclaimed(&id, "A", None, &tokens("a1", "r1", 1000))
            .unwrap();
        assert!(store.delete_account(&id).unwrap());
        assert!(store.tokens(&id).unwrap().is_none());
        assert!(store.account(&id).unwrap().is_none());
        assert!(!store.delete_account(&id).unwrap());
        let left: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn webhook_request_ids_are_recorded_once_and_pruned_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("ring.sqlite")).unwrap();
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert!(store.record_webhook_delivery("req-1", at(100)).unwrap());
        assert!(!store.record_webhook_delivery("req-1", at(150)).unwrap());
        assert!(store.record_webhook_delivery("req-2", at(200)).unwrap());
        assert_eq!(store.prune_webhook_deliveries(at(150)).unwrap(), 1);
        assert!(store.record_webhook_delivery("req-1", at(300)).unwrap());
        assert!(!store.record_webhook_delivery("req-2", at(300)).unwrap());
    }
}
