//! Account linking: the Account Link URL's `?time=<ms>&nonce=<…>` check, and the
//! `app-integrations` bodies that complete it.
//!
//! The nonce is `base64url_nopad(HMAC-SHA256(signing_key, "<time_ms>:<account_id>"))`
//! [doc], keyed with the signing key's text as bytes [guess: the key is handed out as
//! a string]. It is checked with `hmac`'s constant-time `verify_slice` against every
//! unclaimed account. A `time` older than `link_max_age` (600 s [doc-copy]) or more
//! than `link_max_skew` in the future is refused before any HMAC is computed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use streamgate_redact::Secret;

use crate::ids::AccountId;
use crate::store::StoreError;

type HmacSha256 = Hmac<Sha256>;

/// Why an Account Link URL was refused. No variant holds the nonce or the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("the link's time is not a number of milliseconds")]
    BadTime,
    #[error("the link is {} s old (at most {} s allowed): start linking again in the Ring app", age.as_secs(), max.as_secs())]
    Expired { age: Duration, max: Duration },
    #[error("the link's time is {} s in the future: check this machine's clock", ahead.as_secs())]
    FromTheFuture { ahead: Duration },
    #[error("the link's nonce is not base64url")]
    BadNonce,
    #[error("the link's nonce matches no account waiting to be linked")]
    NoMatch,
    #[error("token store: {0}")]
    Store(#[from] StoreError),
}

/// The nonce Ring computes for `account` at `time` (ms since the epoch, as sent).
pub fn nonce(hmac_key: &Secret, time: &str, account: &AccountId) -> String {
    URL_SAFE_NO_PAD.encode(mac(hmac_key, time, account).finalize().into_bytes())
}

fn mac(hmac_key: &Secret, time: &str, account: &AccountId) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(hmac_key.expose().as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(time.as_bytes());
    mac.update(b":");
    mac.update(account.as_str().as_bytes());
    mac
}

/// Checks `time` against `now`: its age at most `max_age`, at most `max_skew` ahead.
pub fn check_time(
    time: &str,
    now: SystemTime,
    max_age: Duration,
    max_skew: Duration,
) -> Result<(), LinkError> {
    let millis: u64 = time.trim().parse().map_err(|_| LinkError::BadTime)?;
    let at = UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .ok_or(LinkError::BadTime)?;
    match now.duration_since(at) {
        Ok(age) if age > max_age => Err(LinkError::Expired { age, max: max_age }),
        Ok(_) => Ok(()),
        Err(ahead) if ahead.duration() > max_skew => Err(LinkError::FromTheFuture {
            ahead: ahead.duration(),
        }),
        Err(_) => Ok(()),
    }
}

/// Which of `candidates` the nonce was made for (time already checked).
pub fn match_nonce<'a>(
    hmac_key: &Secret,
    time: &str,
    nonce: &str,
    candidates: impl IntoIterator<Item = &'a AccountId>,
) -> Result<&'a AccountId, LinkError> {
    let given = URL_SAFE_NO_PAD
        .decode(nonce.trim().trim_end_matches('='))
        .map_err(|_| LinkError::BadNonce)?;
    candidates
        .into_iter()
        .find(|account| mac(hmac_key, time, account).verify_slice(&given).is_ok())
        .ok_or(LinkError::NoMatch)
}

/// `POST /v1/accounts/me/app-integrations` body [doc-copy]: plain JSON.
#[derive(Debug, Serialize)]
pub struct IntegrationRequest<'a> {
    /// The partner's name for the account [guess: we have no accounts of our own, so
    /// the Ring account id].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_identifier: Option<&'a str>,
    pub nonce: &'a str,
}

/// `PATCH /v1/accounts/me/app-integrations` body [doc-copy].
#[derive(Debug, Serialize)]
pub struct IntegrationUpdate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_identifier: Option<&'a str>,
    pub status: &'a str,
}

/// The answer to either call: `{"status":"awaiting"}` then `{account_identifier,
/// status, updated_at}`.
#[derive(Debug, Default, Deserialize)]
pub struct IntegrationStatus {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub account_identifier: Option<String>,
    #[serde(default)]
    pub updated_at: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sim-hmac-key";
    const TIME: &str = "1745236800000";

    #[test]
    fn nonce_is_base64url_hmac_sha256_of_time_colon_account() {
        let key = Secret::new(KEY);
        let account = AccountId::new("ava1.ring.account.sim-1");
        // Computed independently:
        // printf '1745236800000:ava1.ring.account.sim-1' \
        //   | openssl dgst -sha256 -hmac sim-hmac-key -binary | basenc --base64url | tr -d =
        assert_eq!(nonce(&key, TIME, &account), EXPECTED_NONCE);
        // RFC 4231 test case 2, through the same HMAC: key "Jefe".
        let mut rfc = HmacSha256::new_from_slice(b"Jefe").unwrap();
        rfc.update(b"what do ya want for nothing?");
        let expected: [u8; 32] = [
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43,
        ];
        assert_eq!(rfc.finalize().into_bytes().as_slice(), expected);
    }

    const EXPECTED_NONCE: &str = "P8ZmC-E3TJyuvj7vJi9MSN3aEDNH-3ck3JkQ2ZAo39k";

    #[test]
    fn the_nonce_names_its_account_and_no_other() {
        let key = Secret::new(KEY);
        let a = AccountId::new("ava1.ring.account.a");
        let b = AccountId::new("ava1.ring.account.b");
        let for_b = nonce(&key, TIME, &b);
        assert_eq!(match_nonce(&key, TIME, &for_b, [&a, &b]).unwrap(), &b);
        assert_eq!(
            match_nonce(&key, TIME, &format!("{for_b}="), [&a, &b]).unwrap(),
            &b
        );
        assert!(matches!(
            match_nonce(&key, TIME, &for_b, [&a]),
            Err(LinkError::NoMatch)
        ));
        assert!(matches!(
            match_nonce(&key, "1745236800001", &for_b, [&a, &b]),
            Err(LinkError::NoMatch)
        ));
        assert!(matches!(
            match_nonce(&Secret::new("other-key"), TIME, &for_b, [&a, &b]),
            Err(LinkError::NoMatch)
        ));
        assert!(matches!(
            match_nonce(&key, TIME, "not base64!", [&a, &b]),
            Err(LinkError::BadNonce)
        ));
        let shown = format!("{:?}", match_nonce(&key, TIME, &for_b, [&a]));
        assert!(!shown.contains(&for_b) && !shown.contains(KEY));
    }

    #[test]
    fn old_future_and_garbage_times_are_refused() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let (age, skew) = (Duration::from_secs(600), Duration::from_secs(30));
        let t: u64 = TIME.parse().unwrap();
        assert!(check_time(TIME, at(t), age, skew).is_ok());
        assert!(check_time(TIME, at(t + 600_000), age, skew).is_ok());
        assert!(matches!(
            check_time(TIME, at(t + 600_001), age, skew),
            Err(LinkError::Expired { .. })
        ));
        assert!(check_time(TIME, at(t - 30_000), age, skew).is_ok());
        assert!(matches!(
            check_time(TIME, at(t - 30_001), age, skew),
            Err(LinkError::FromTheFuture { .. })
        ));
        for bad in ["", "-5", "12.5", "abc", "99999999999999999999999"] {
            assert!(
                matches!(check_time(bad, at(t), age, skew), Err(LinkError::BadTime)),
                "{bad}"
            );
        }
    }
}
