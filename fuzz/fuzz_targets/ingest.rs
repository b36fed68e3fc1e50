//! The ingest (reorder, depacketize, timestamp continuity, Hub fan-out) fed an
//! arbitrary packet sequence: never panics, and what it publishes keeps the
//! promises consumers rely on (see packet_sequence.rs).
#![no_main]

mod packet_sequence;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    packet_sequence::run(data, |_| {});
});
