//! RTP packet parsing: never panics, and what it accepts is self-consistent:
//! the payload is a slice of the input, extension elements lie inside the
//! extension, and rebuilding from the parsed fields gives back the input bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamgate_rtp::packet::RtpPacketBuilder;
use streamgate_rtp::RtpPacket;

fuzz_target!(|data: &[u8]| {
    let Ok(pkt) = RtpPacket::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let raw = pkt.raw();
    let payload = pkt.payload();
    assert_eq!(payload, pkt.payload_slice());
    let payload_start = payload.as_ptr() as usize - raw.as_ptr() as usize;
    let payload_end = payload_start + payload.len();
    assert_eq!(payload_end + pkt.padding_len(), raw.len());

    let extension = pkt.extension();
    if let Some(ext) = extension {
        let ext_range = ext.data.as_ptr_range();
        for element in ext.elements() {
            let range = element.data.as_ptr_range();
            assert!(range.start >= ext_range.start && range.end <= ext_range.end);
        }
    }

    let rebuilt = RtpPacketBuilder {
        payload_type: pkt.payload_type(),
        marker: pkt.marker(),
        sequence_number: pkt.sequence_number(),
        timestamp: pkt.timestamp(),
        ssrc: pkt.ssrc(),
        csrcs: pkt.csrcs().collect(),
        extension: extension.map(|e| (e.profile, Bytes::copy_from_slice(e.data))),
        padding: u8::try_from(pkt.padding_len()).expect("padding count is one byte"),
        payload,
    }
    .build()
    .expect("parsed fields are encodable");
    // Padding filler bytes are arbitrary on the wire and zero when built.
    assert_eq!(rebuilt.len(), data.len());
    assert_eq!(rebuilt[..payload_end], data[..payload_end]);
    assert_eq!(rebuilt.last(), data.last());
});
