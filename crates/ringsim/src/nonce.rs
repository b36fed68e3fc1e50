//! The account-link nonce Ring puts on the Account Link URL:
//! `base64url_nopad(HMAC-SHA256(hmac_key, "<time_ms>:<account_id>"))`.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], time_ms: u64, account: &str) -> HmacSha256 {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{time_ms}:{account}").as_bytes());
    mac
}

/// The nonce for `account` linked at `time_ms` (milliseconds since the epoch).
pub fn nonce(key: &[u8], time_ms: u64, account: &str) -> String {
    let tag = mac(key, time_ms, account).finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
}

/// Whether `nonce` is the one for `account` at `time_ms` (constant-time compare).
pub fn verify(key: &[u8], time_ms: u64, account: &str, nonce: &str) -> bool {
    let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(nonce) else {
        return false;
    };
    mac(key, time_ms, account).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value_and_verification() {
        // Computed independently: python3 -c 'import hmac,hashlib,base64;
        // print(base64.urlsafe_b64encode(hmac.new(b"sim-hmac-key",
        // b"1700000000000:ava1.ring.account.sim-1", hashlib.sha256).digest()).rstrip(b"="))'
        let n = nonce(
            b"sim-hmac-key",
            1_700_000_000_000,
            "ava1.ring.account.sim-1",
        );
        assert_eq!(n, KNOWN);
        assert!(verify(
            b"sim-hmac-key",
            1_700_000_000_000,
            "ava1.ring.account.sim-1",
            &n
        ));
        assert!(!verify(
            b"sim-hmac-key",
            1_700_000_000_001,
            "ava1.ring.account.sim-1",
            &n
        ));
        assert!(!verify(
            b"other",
            1_700_000_000_000,
            "ava1.ring.account.sim-1",
            &n
        ));
        assert!(!verify(
            b"sim-hmac-key",
            1_700_000_000_000,
            "ava1.ring.account.sim-1",
            "not base64!"
        ));
    }

    const KNOWN: &str = "805jzSJhYWzfJedvkVfZX1bZtlekTgCs1JHK0dfF4TE";
}
