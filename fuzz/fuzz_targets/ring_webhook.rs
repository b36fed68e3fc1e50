//! Ring webhook deliveries: the `X-Signature` header (the input's first line)
//! and the body (the rest), as `POST /ring/webhook` handles them.
//!
//! Checks: no panic; a signature made with a key verifies under that key set
//! and fails under another; a parsed delivery names its event type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_ring::webhooks::{parse, sign, verify};
use streamgate_ring::Secret;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let keys = [
        Secret::new("old-key".to_owned()),
        Secret::new("key".to_owned()),
    ];
    let _ = verify(&keys, Some(header), body);
    let signature = sign(b"key", body);
    assert!(verify(&keys, Some(signature.as_bytes()), body).is_ok());
    assert!(verify(&keys[..1], Some(signature.as_bytes()), body).is_err());
    if let Ok(webhook) = parse(body) {
        assert!(!webhook.event.type_name().is_empty());
    }
});
