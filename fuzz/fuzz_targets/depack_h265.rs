//! H265 depacketizer: never panics, respects its caps, and what it yields
//! survives a packetize/depacketize round trip (see depack_common.rs).
#![no_main]

mod depack_common;

use libfuzzer_sys::fuzz_target;
use streamgate_rtp::Codec;

fuzz_target!(|data: &[u8]| {
    depack_common::run(&depack_common::track(Codec::H265, 90000, 1), data, 2, 1500);
});
