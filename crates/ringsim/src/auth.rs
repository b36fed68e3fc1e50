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

/// Codes and tokens. Not `Debug`: its keys are secrets.
pub(crate) struct Auth {
    pub lifetimes: Lifetimes,
    codes: HashMap<String, Grant>,
    access: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
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

/// Inserts `grant` under a fresh token, first dropping expired entries (and the
/// soonest-expiring ones when the table is full).
fn insert(table: &mut HashMap<String, Grant>, prefix: &str, grant: Grant, now: Instant) -> String {
    if table.len() >= MAX_ENTRIES {
        table.retain(|_, g| g.expires > now);
    }
    while table.len() >= MAX_ENTRIES {
        let Some(soonest) = table
            .iter()
            .min_by_key(|(_, g)| g.expires)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        table.remove(&soonest);
    }
    let token = random_token(prefix);
    table.insert(token.clone(), grant);
    token
}

impl Auth {
    pub fn new(lifetimes: Lifetimes) -> Auth {
        Auth {
            lifetimes,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
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
        Ok(self.issue_pair(&grant.account, client_id, now))
    }

    /// `grant_type=refresh_token`: rotates, so the presented token stops working.
    pub fn refresh(
        &mut self,
        client_id: &str,
        refresh_token: &str,
        now: Instant,
    ) -> Result<TokenPair, GrantError> {
        let grant = self
            .refresh
            .get(refresh_token)
            .ok_or(GrantError::UnknownRefreshToken)?;
        if grant.client_id != client_id {
            return Err(GrantError::WrongClient);
        }
        let grant = self
            .refresh
            .remove(refresh_token)
            .ok_or(GrantError::UnknownRefreshToken)?;
        if grant.expires <= now {
            return Err(GrantError::ExpiredRefreshToken);
        }
        Ok(self.issue_pair(&grant.account, client_id, now))
    }

    fn issue_pair(&mut self, account: &str, client_id: &str, now: Instant) -> TokenPair {
        let grant = |life: Duration| Grant {
            account: account.to_owned(),
            client_id: client_id.to_owned(),
            expires: now + life,
        };
        let access = grant(self.lifetimes.access);
        let refresh = grant(self.lifetimes.refresh);
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
            .filter(|grant| grant.expires > now)
    }

    /// Every refresh token expires at once (the next refresh gets `invalid_grant`).
    pub fn expire_refresh_tokens(&mut self, now: Instant) {
        for grant in self.refresh.values_mut() {
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

    #[test]
    fn refresh_rotates_and_access_tokens_expire() {
        let t0 = Instant::now();
        let mut auth = auth();
        let code = auth.issue_code(ACCOUNT, CLIENT, t0);
        let first = auth.exchange_code(CLIENT, &code, t0).ok().unwrap();
        let t1 = t0 + Duration::from_secs(150);
        assert!(auth.authorize(&first.access_token, t1).is_none());
        let second = auth.refresh(CLIENT, &first.refresh_token, t1).ok().unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        assert!(auth.authorize(&second.access_token, t1).is_some());
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
