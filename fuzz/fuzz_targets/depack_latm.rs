//! MP4A-LATM depacketizer: never panics, respects its caps, and what it yields
//! survives a packetize/depacketize round trip (see depack_common.rs).
#![no_main]

mod depack_common;

use libfuzzer_sys::fuzz_target;
use streamgate_rtp::Codec;

fuzz_target!(|data: &[u8]| {
    depack_common::run(
        &depack_common::track(Codec::AacLatm, 16000, 1),
        data,
        1,
        1500,
    );
});
