//! OAuth bookkeeping, sans-IO: authorization codes (single use, short-lived),
//! access tokens and rotating refresh tokens, with time as an input. The HTTP
//! handlers only parse the form and turn the results into responses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;

/// Most unexpired entries kept in any one table; the oldest go first beyond it
/// (a client looping on codes or refreshes cannot grow the simulator's memory).
const MAX_ENTRIES: usize = 10_000;

/// Who a code or token was issued to, and until when it is good.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub account: String,
    pub client_id: String,
    pub expires: Instant,
}

/// A token response's contents.
pub(crate) struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Why a grant was refused (the `error_description` of an `invalid_grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrantError {
    UnknownCode,
    ExpiredCode,
    UnknownRefreshToken,
    ExpiredRefreshToken,
    /// The code or token was issued to another client id.
    WrongClient,
}

impl GrantError {
    pub fn description(self) -> &'static str {
        match self {
            GrantError::UnknownCode => "the authorization code is unknown or was already used",
            GrantError::ExpiredCode => "the authorization code has expired",
            GrantError::UnknownRefreshToken => {
                "the refresh token is unknown, was rotated or was revoked"
            }
            GrantError::ExpiredRefreshToken => "the refresh token has expired",
            GrantError::WrongClient => "the grant was issued to another client",
        }
    }
}

/// Compares a presented secret with the configured one in time independent of
/// where they differ.
pub(crate) fn secret_matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lives of what [`Auth`] issues.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub code: Duration,
    pub access: Duration,
    pub refresh: Duration,
}

/// An issued access or refresh token. `rotated_from` is the refresh token whose
/// rotation made it: that token stays in its grace until this pair is first used.
struct Issued {
    grant: Grant,
    rotated_from: Option<String>,
}

/// A rotated refresh token in its grace: its own grant (its life still counts)
/// and the pair that replaced it, revoked if the grace is used.
struct Rotated {
    grant: Grant,
    access_token: String,
    refresh_token: String,
}

/// A successful refresh.
pub(crate) struct Refreshed {
    pub pair: TokenPair,
    /// The presented token had already been rotated and was still in its grace
    /// (the answer to its first refresh was presumably lost).
    pub grace: bool,
}

/// What an access token presented on an API call turned out to be.
pub(crate) struct Presented {
    pub client_id: String,
    /// Past its life (the request is refused, but the client is known).
    pub expired: bool,
}

/// Codes and tokens. Not `Debug`: its keys are secrets.
pub(crate) struct Auth {
    pub lifetimes: Lifetimes,
    codes: HashMap<String, Grant>,
    access: HashMap<String, Issued>,
    refresh: HashMap<String, Issued>,
    /// Rotated refresh tokens in their grace, by token.
    rotated: HashMap<String, Rotated>,
}

/// Something with an end of life, so a full table can drop what ends soonest.
trait Expiring {
    fn expires(&self) -> Instant;
}

impl Expiring for Grant {
    fn expires(&self) -> Instant {
        self.expires
    }
}

impl Expiring for Issued {
    fn expires(&self) -> Instant {
        self.grant.expires
    }
}

impl Expiring for Rotated {
    fn expires(&self) -> Instant {
        self.grant.expires
    }
}

/// 32 random bytes, base64url: an opaque token with a readable prefix.
fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Makes room for one more entry: drops expired entries (and the soonest-expiring
/// ones) when the table is full.
fn make_room<V: Expiring>(table: &mut HashMap<String, V>, now: Instant) {
    if table.len() >= MAX_ENTRIES {
        table.retain(|_, v| v.expires() > now);
    }
    while table.len() >= MAX_ENTRIES {
        let Some(soonest) = table
            .iter()
            .min_by_key(|(_, v)| v.expires())
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        table.remove(&soonest);
    }
}

/// Inserts `value` under a fresh token.
fn insert<V: Expiring>(
    table: &mut HashMap<String, V>,
    prefix: &str,
    value: V,
    now: Instant,
) -> String {
    make_room(table, now);
    let token = random_token(prefix);
    table.insert(token.clone(), value);
    token
}

impl Auth {
    pub fn new(lifetimes: Lifetimes) -> Auth {
        Auth {
            lifetimes,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            rotated: HashMap::new(),
        }
    }

    /// A code for `account`, as Ring makes one when a user links the partner app.
    pub fn issue_code(&mut self, account: &str, client_id: &str, now: Instant) -> String {
        let grant = Grant {
            account: account.to_owned(),
            client_id: client_id.to_owned(),
            expires: now + self.lifetimes.code,
        };
        insert(&mut self.codes, "sim-code-", grant, now)
    }

    /// `grant_type=authorization_code`: the code is spent whatever the outcome.
    pub fn exchange_code(
        &mut self,
        client_id: &str,
        code: &str,
        now: Instant,
    ) -> Result<TokenPair, GrantError> {
        let grant = self.codes.remove(code).ok_or(GrantError::UnknownCode)?;
        if grant.expires <= now {
            return Err(GrantError::ExpiredCode);
        }
        if grant.client_id != client_id {
            return Err(GrantError::WrongClient);
        }
        Ok(self.issue_pair(&grant.account, client_id, None, now))
    }

    /// `grant_type=refresh_token`: rotates. The presented token keeps a grace
    /// until the new pair is first used; refreshing with it meanwhile revokes
    /// that unused pair and issues a fresh one in its place.
    pub fn refresh(
        &mut self,
        client_id: &str,
        refresh_token: &str,
        now: Instant,
    ) -> Result<Refreshed, GrantError> {
        if let Some(issued) = self.refresh.get(refresh_token) {
            if issued.grant.client_id != client_id {
                return Err(GrantError::WrongClient);
            }
            let issued = self
                .refresh
                .remove(refresh_token)
                .ok_or(GrantError::UnknownRefreshToken)?;
            if issued.grant.expires <= now {
                return Err(GrantError::ExpiredRefreshToken);
            }
            // Using this token is the first use of its pair: its predecessor's grace ends.
            if let Some(previous) = issued.rotated_from {
                self.rotated.remove(&previous);
            }
            let pair = self.rotate(refresh_token, issued.grant, now);
            return Ok(Refreshed { pair, grace: false });
        }
        let rotated = self
            .rotated
            .get(refresh_token)
            .ok_or(GrantError::UnknownRefreshToken)?;
        if rotated.grant.client_id != client_id {
            return Err(GrantError::WrongClient);
        }
        let rotated = self
            .rotated
            .remove(refresh_token)
            .ok_or(GrantError::UnknownRefreshToken)?;
        if rotated.grant.expires <= now {
            return Err(GrantError::ExpiredRefreshToken);
        }
        // The pair it was rotated to was never used: it is superseded.
        self.access.remove(&rotated.access_token);
        self.refresh.remove(&rotated.refresh_token);
        let pair = self.rotate(refresh_token, rotated.grant, now);
        Ok(Refreshed { pair, grace: true })
    }

    /// Issues the pair that replaces `old` (a refresh token) and keeps `old` in
    /// its grace until that pair is used.
    fn rotate(&mut self, old: &str, grant: Grant, now: Instant) -> TokenPair {
        let pair = self.issue_pair(&grant.account, &grant.client_id, Some(old), now);
        make_room(&mut self.rotated, now);
        self.rotated.insert(
            old.to_owned(),
            Rotated {
                grant,
                access_token: pair.access_token.clone(),
                refresh_token: pair.refresh_token.clone(),
            },
        );
        pair
    }

    fn issue_pair(
        &mut self,
        account: &str,
        client_id: &str,
        rotated_from: Option<&str>,
        now: Instant,
    ) -> TokenPair {
        let issued = |life: Duration| Issued {
            grant: Grant {
                account: account.to_owned(),
                client_id: client_id.to_owned(),
                expires: now + life,
            },
            rotated_from: rotated_from.map(str::to_owned),
        };
        let access = issued(self.lifetimes.access);
        let refresh = issued(self.lifetimes.refresh);
        TokenPair {
            access_token: insert(&mut self.access, "sim-at-", access, now),
            refresh_token: insert(&mut self.refresh, "sim-rt-", refresh, now),
            expires_in: self.lifetimes.access.as_secs(),
        }
    }

    /// The grant behind a bearer token, if it is a live access token.
    pub fn authorize(&self, access_token: &str, now: Instant) -> Option<&Grant> {
        self.access
            .get(access_token)
            .map(|issued| &issued.grant)
            .filter(|grant| grant.expires > now)
    }

    /// Notes an access token presented on an API call, live or expired: its
    /// client, whether it is past its life, and (its pair now being in use) the
    /// end of the grace of the refresh token it replaced. None if unknown.
    pub fn present(&mut self, access_token: &str, now: Instant) -> Option<Presented> {
        let issued = self.access.get_mut(access_token)?;
        let presented = Presented {
            client_id: issued.grant.client_id.clone(),
            expired: issued.grant.expires <= now,
        };
        if let Some(previous) = issued.rotated_from.take() {
            self.rotated.remove(&previous);
        }
        Some(presented)
    }

    /// Every refresh token expires at once (the next refresh gets `invalid_grant`),
    /// rotated ones in their grace included.
    pub fn expire_refresh_tokens(&mut self, now: Instant) {
        let live = self.refresh.values_mut().map(|issued| &mut issued.grant);
        let rotated = self.rotated.values_mut().map(|rotated| &mut rotated.grant);
        for grant in live.chain(rotated) {
            grant.expires = grant.expires.min(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "sim-client";
    const ACCOUNT: &str = "ava1.ring.account.sim-1";

    fn auth() -> Auth {
        Auth::new(Lifetimes {
            code: Duration::from_secs(60),
            access: Duration::from_secs(100),
            refresh: Duration::from_secs(1000),
        })
    }

    #[test]
    fn codes_are_single_use_and_expire() {
        let t0 = Instant::now();
        let mut auth = auth();
        let code = auth.issue_code(ACCOUNT, CLIENT, t0);
        let pair = auth.exchange_code(CLIENT, &code, t0).ok().unwrap();
        assert_eq!(pair.expires_in, 100);
        assert_eq!(
            auth.authorize(&pair.access_token, t0).unwrap().account,
            ACCOUNT
        );
        assert_eq!(
            auth.exchange_code(CLIENT, &code, t0).err(),
            Some(GrantError::UnknownCode)
        );

        let late = auth.issue_code(ACCOUNT, CLIENT, t0);
        assert_eq!(
            auth.exchange_code(CLIENT, &late, t0 + Duration::from_secs(60))
                .err(),
            Some(GrantError::ExpiredCode)
        );
        let other = auth.issue_code(ACCOUNT, CLIENT, t0);
        assert_eq!(
            auth.exchange_code("someone-else", &other, t0).err(),
            Some(GrantError::WrongClient)
        );
        // A failed exchange spends the code too.
        assert_eq!(
            auth.exchange_code(CLIENT, &other, t0).err(),
            Some(GrantError::UnknownCode)
        );
    }

    fn linked(auth: &mut Auth, now: Instant) -> TokenPair {
        let code = auth.issue_code(ACCOUNT, CLIENT, now);
        auth.exchange_code(CLIENT, &code, now).ok().unwrap()
    }

    fn refreshed(auth: &mut Auth, token: &str, now: Instant) -> Refreshed {
        auth.refresh(CLIENT, token, now).ok().unwrap()
    }

    #[test]
    fn refresh_rotates_and_access_tokens_expire() {
        let t0 = Instant::now();
        let mut auth = auth();
        let first = linked(&mut auth, t0);
        let t1 = t0 + Duration::from_secs(150);
        assert!(auth.authorize(&first.access_token, t1).is_none());
        let second = refreshed(&mut auth, &first.refresh_token, t1);
        assert!(!second.grace);
        let second = second.pair;
        assert_ne!(second.refresh_token, first.refresh_token);
        assert!(auth.authorize(&second.access_token, t1).is_some());
        // Once the new pair is used, the rotated token is refused.
        assert!(auth.present(&second.access_token, t1).is_some());
        assert_eq!(
            auth.refresh(CLIENT, &first.refresh_token, t1).err(),
            Some(GrantError::UnknownRefreshToken)
        );
        // Another client cannot spend (or burn) the token.
        assert_eq!(
            auth.refresh("other", &second.refresh_token, t1).err(),
            Some(GrantError::WrongClient)
        );
        let t2 = t1 + Duration::from_secs(1000);
        assert_eq!(
            auth.refresh(CLIENT, &second.refresh_token, t2).err(),
            Some(GrantError::ExpiredRefreshToken)
        );
    }

    #[test]
    fn a_rotated_token_has_a_grace_until_its_new_access_token_is_used() {
        let t0 = Instant::now();
        let mut auth = auth();
        let first = linked(&mut auth, t0);
        let lost = refreshed(&mut auth, &first.refresh_token, t0).pair;
        // The answer was lost: the old token still refreshes, and the unused
        // pair it had been rotated to is revoked in favour of a fresh one.
        let t1 = t0 + Duration::from_secs(10);
        let again = refreshed(&mut auth, &first.refresh_token, t1);
        assert!(again.grace);
        let again = again.pair;
        assert_ne!(again.refresh_token, lost.refresh_token);
        assert!(auth.authorize(&lost.access_token, t1).is_none());
        assert!(auth.present(&lost.access_token, t1).is_none());
        assert_eq!(
            auth.refresh(CLIENT, &lost.refresh_token, t1).err(),
            Some(GrantError::UnknownRefreshToken)
        );
        // Not for another client.
        assert_eq!(
            auth.refresh("other", &first.refresh_token, t1).err(),
            Some(GrantError::WrongClient)
        );
        // The revoked pair's failed use did not end the grace; the new access
        // token's first use does (even after it expired: the client stored it).
        let t2 = t1 + Duration::from_secs(150);
        let presented = auth.present(&again.access_token, t2).unwrap();
        assert_eq!(presented.client_id, CLIENT);
        assert!(presented.expired);
        assert_eq!(
            auth.refresh(CLIENT, &first.refresh_token, t2).err(),
            Some(GrantError::UnknownRefreshToken)
        );
        // The pair in use carries on.
        assert!(!refreshed(&mut auth, &again.refresh_token, t2).grace);
    }

    #[test]
    fn a_rotated_token_has_a_grace_until_its_new_refresh_token_is_used() {
        let t0 = Instant::now();
        let mut auth = auth();
        let first = linked(&mut auth, t0);
        let second = refreshed(&mut auth, &first.refresh_token, t0).pair;
        let third = refreshed(&mut auth, &second.refresh_token, t0).pair;
        assert_eq!(
            auth.refresh(CLIENT, &first.refresh_token, t0).err(),
            Some(GrantError::UnknownRefreshToken)
        );
        // The second token is now the one in its grace.
        let fourth = refreshed(&mut auth, &second.refresh_token, t0);
        assert!(fourth.grace);
        assert!(auth.authorize(&third.access_token, t0).is_none());
        assert!(auth.authorize(&fourth.pair.access_token, t0).is_some());
    }

    #[test]
    fn the_grace_ends_with_the_old_tokens_life() {
        let t0 = Instant::now();
        let mut auth = auth();
        let first = linked(&mut auth, t0);
        refreshed(&mut auth, &first.refresh_token, t0);
        assert_eq!(
            auth.refresh(CLIENT, &first.refresh_token, t0 + Duration::from_secs(1000))
                .err(),
            Some(GrantError::ExpiredRefreshToken)
        );

        let first = linked(&mut auth, t0);
        refreshed(&mut auth, &first.refresh_token, t0);
        auth.expire_refresh_tokens(t0);
        assert_eq!(
            auth.refresh(CLIENT, &first.refresh_token, t0).err(),
            Some(GrantError::ExpiredRefreshToken)
        );
    }

    #[test]
    fn presenting_tells_live_from_expired_and_unknown() {
        let t0 = Instant::now();
        let mut auth = auth();
        let pair = linked(&mut auth, t0);
        assert!(!auth.present(&pair.access_token, t0).unwrap().expired);
        let late = t0 + Duration::from_secs(100);
        assert!(auth.present(&pair.access_token, late).unwrap().expired);
        assert!(auth.present("sim-at-nope", t0).is_none());
    }

    #[test]
    fn expiring_all_refresh_tokens() {
        let t0 = Instant::now();
        let mut auth = auth();
        let code = auth.issue_code(ACCOUNT, CLIENT, t0);
        let pair = auth.exchange_code(CLIENT, &code, t0).ok().unwrap();
        auth.expire_refresh_tokens(t0);
        assert_eq!(
            auth.refresh(CLIENT, &pair.refresh_token, t0).err(),
            Some(GrantError::ExpiredRefreshToken)
        );
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_matches("sim-secret", "sim-secret"));
        assert!(!secret_matches("sim-secreT", "sim-secret"));
        assert!(!secret_matches("sim-secre", "sim-secret"));
        assert!(!secret_matches("", "sim-secret"));
    }

    #[test]
    fn tables_are_bounded() {
        let t0 = Instant::now();
        let mut auth = auth();
        for _ in 0..MAX_ENTRIES + 10 {
            auth.issue_code(ACCOUNT, CLIENT, t0);
        }
        assert_eq!(auth.codes.len(), MAX_ENTRIES);
    }
}
