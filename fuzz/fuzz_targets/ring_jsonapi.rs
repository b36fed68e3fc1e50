//! Ring's JSON:API documents as the client reads them: device lists and single
//! devices (relationships resolved against `included`), the user document, and
//! error documents turned into a one-line reason.
//!
//! Checks: no panic; every device parsed belongs to the account it was read
//! for and has a name; an error answer keeps the status it came with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_ring::devices::{parse_device, parse_devices};
use streamgate_ring::jsonapi::{Document, Resource, UserAttributes};
use streamgate_ring::{AccountId, RingError};

fuzz_target!(|data: &[u8]| {
    let account = AccountId::new("fuzz-account");
    if let Ok(page) = parse_devices(&account, data) {
        for device in &page.devices {
            assert_eq!(device.account, account);
            assert!(!device.name.is_empty() || device.id.as_str().is_empty());
        }
    }
    if let Ok(device) = parse_device(&account, data) {
        assert_eq!(device.account, account);
    }
    let _ = serde_json::from_slice::<Document<Resource<UserAttributes>>>(data);
    let error = RingError::from_api_answer(422, data);
    assert_eq!(error.status(), Some(422));
});
