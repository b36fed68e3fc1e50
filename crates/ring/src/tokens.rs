//! A token pair and when to refresh it: sans-IO, with the time as input, so the
//! schedule is tested without clocks. The client ([`crate::RingClient::access_token`])
//! does the I/O: one refresh in flight per account, the rotated pair stored before the
//! new access token is handed out.

use std::time::{Duration, SystemTime};

use streamgate_redact::Secret;

use crate::oauth::TokenResponse;

/// An access token is not used in its last seconds: a request sent with it could
/// arrive after it expired.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// An account's tokens, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub access_expires_at: SystemTime,
    /// Ring returns no refresh expiry: issue time + `refresh_token_life` [guess].
    pub refresh_expires_at: SystemTime,
    pub scope: Option<String>,
    /// When this pair was issued.
    pub updated_at: SystemTime,
}

/// What to do with an account's tokens at some moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAction {
    /// The access token is good for longer than `refresh_before`.
    Use,
    /// Refresh now (the access token may still be usable meanwhile: see
    /// [`TokenSet::access_valid_at`]).
    Refresh,
    /// The access token needs refreshing and the refresh token has expired.
    Relink,
}

impl TokenSet {
    /// The pair a token response gives at `now`.
    pub fn issued(response: TokenResponse, now: SystemTime, refresh_token_life: Duration) -> Self {
        TokenSet {
            access_token: response.access_token,
            refresh_token: response.refresh_token,
            access_expires_at: now + response.expires_in,
            refresh_expires_at: now + refresh_token_life,
            scope: response.scope,
            updated_at: now,
        }
    }

    /// Whether the access token can still be sent at `now`: not in its last
    /// [`EXPIRY_MARGIN`] (or last quarter, for a token that lives under 2 min).
    pub fn access_valid_at(&self, now: SystemTime) -> bool {
        now + EXPIRY_MARGIN.min(self.life() / 4) < self.access_expires_at
    }

    fn life(&self) -> Duration {
        self.access_expires_at
            .duration_since(self.updated_at)
            .unwrap_or_default()
    }

    /// When a refresh becomes due: `refresh_before` ahead of expiry, but no earlier
    /// than half-way through the token's life, so a short-lived token (a test
    /// server's) is not refreshed on every use.
    pub fn refresh_due_at(&self, refresh_before: Duration) -> SystemTime {
        self.access_expires_at
            .checked_sub(refresh_before.min(self.life() / 2))
            .unwrap_or(self.updated_at)
    }

    /// What to do at `now`.
    pub fn action(&self, now: SystemTime, refresh_before: Duration) -> TokenAction {
        if now < self.refresh_due_at(refresh_before) && self.access_valid_at(now) {
            TokenAction::Use
        } else if now >= self.refresh_expires_at {
            TokenAction::Relink
        } else {
            TokenAction::Refresh
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn issued_at(secs: u64, expires_in: u64) -> TokenSet {
        TokenSet::issued(
            TokenResponse {
                access_token: Secret::new("a"),
                refresh_token: Secret::new("r"),
                expires_in: Duration::from_secs(expires_in),
                scope: None,
            },
            UNIX_EPOCH + Duration::from_secs(secs),
            Duration::from_secs(30 * 86400),
        )
    }

    #[test]
    fn refresh_is_due_refresh_before_expiry_and_relink_after_the_refresh_life() {
        let tokens = issued_at(1_000, 14_400);
        let ten_min = Duration::from_secs(600);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(tokens.action(at(1_000), ten_min), TokenAction::Use);
        assert_eq!(
            tokens.action(at(1_000 + 14_400 - 601), ten_min),
            TokenAction::Use
        );
        assert_eq!(
            tokens.action(at(1_000 + 14_400 - 600), ten_min),
            TokenAction::Refresh
        );
        assert!(tokens.access_valid_at(at(1_000 + 14_400 - 600)));
        assert!(!tokens.access_valid_at(at(1_000 + 14_400 - 30)));
        assert_eq!(
            tokens.action(at(1_000 + 20_000), ten_min),
            TokenAction::Refresh
        );
        assert_eq!(
            tokens.action(at(1_000 + 30 * 86_400), ten_min),
            TokenAction::Relink
        );
        assert_eq!(tokens.refresh_due_at(ten_min), at(1_000 + 14_400 - 600));
    }

    #[test]
    fn a_token_shorter_than_refresh_before_is_refreshed_half_way() {
        let tokens = issued_at(1_000, 60);
        let ten_min = Duration::from_secs(600);
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(tokens.refresh_due_at(ten_min), at(1_030));
        assert_eq!(tokens.action(at(1_029), ten_min), TokenAction::Use);
        assert_eq!(tokens.action(at(1_030), ten_min), TokenAction::Refresh);
        assert!(tokens.access_valid_at(at(1_029)));
        assert!(tokens.access_valid_at(at(1_044)));
        assert!(!tokens.access_valid_at(at(1_045)));

        // A simulator's 2 s token: refreshed after 1 s, sent until 0.5 s before expiry.
        let tokens = issued_at(1_000, 2);
        let ms = |m: u64| UNIX_EPOCH + Duration::from_millis(m);
        assert_eq!(tokens.action(ms(1_000_999), ten_min), TokenAction::Use);
        assert_eq!(tokens.action(ms(1_001_000), ten_min), TokenAction::Refresh);
        assert!(tokens.access_valid_at(ms(1_001_499)));
        assert!(!tokens.access_valid_at(ms(1_001_500)));
    }
}
