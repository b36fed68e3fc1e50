//! RTCP compound parsing: never panics, and whatever it accepts can be written
//! back and parses to the same packets.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use streamgate_rtp::rtcp::parse_compound;

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = parse_compound(data) else {
        return;
    };
    let mut written = BytesMut::new();
    for packet in &packets {
        packet.write_to(&mut written);
    }
    assert!(
        written.len() <= data.len(),
        "writing never grows a parsed packet"
    );
    let reparsed = parse_compound(&written).expect("written RTCP parses");
    assert_eq!(reparsed, packets);
});
