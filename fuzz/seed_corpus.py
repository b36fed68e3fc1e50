#!/usr/bin/env python3
"""Fills fuzz/corpus/<target>/ with seeds: UDP payloads from the bundled captures
(fixtures/*.pcap) plus the hand-made edge cases committed under fuzz/seeds/<target>/.

Usage: python3 fuzz/seed_corpus.py   (then: RUSTC_BOOTSTRAP=1 cargo fuzz run <target>)
A new target adds an entry to TARGETS: which datagrams of a capture seed it.
"""
import pathlib
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Most datagrams kept per (capture, port): enough variety, small enough to start fast.
PER_PORT = 64


def rtp(port):
    return port % 2 == 0


def rtcp(port):
    return port % 2 == 1


# target -> predicate on the UDP destination port (RTP on even ports, RTCP on odd).
TARGETS = {"rtp_packet": rtp, "rtcp": rtcp}
# Whole-file parsers: seeded only from their fuzz/seeds/<target>/ files.
TARGETS.update(
    {
        name: lambda port: False
        for name in [
            "sdp", "capture", "rtsp_request", "rtsp_response", "whep_signal",
            "ring_jsonapi", "ring_webhook",
        ]
    }
)
# Packet-sequence targets (fuzz_targets/packet_sequence.rs): the H.264 + AAC
# capture's packets in arrival order, video (port 5004) as track 0, audio as 1.
SEQUENCE_TARGETS = ["ingest", "hls_segmenter"]
SEQUENCE_CAPTURE = "ffmpeg_h264_aac"
SEQUENCE_TRACKS = {5004: 0, 5006: 1}
SEQUENCE_LEN = 96
SEQUENCES = 8


def udp_datagrams(pcap):
    """Yields (dst_port, payload) of the IPv4/UDP frames of a classic Ethernet pcap."""
    data = pcap.read_bytes()
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}[magic]
    pos = 24
    while pos + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[pos : pos + 16])
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        if frame[14 + 9] != 17:
            continue
        udp = frame[14 + ihl :]
        if len(udp) < 8:
            continue
        yield struct.unpack(">H", udp[2:4])[0], udp[8:]


def packet_sequences():
    """Windows of the capture's packets as `[op][len u16][packet]` records, op =
    track | 2 * 5 (5 ms between packets), and 0xff once in the middle of every
    other window (a source restart)."""
    packets = [
        (SEQUENCE_TRACKS[port], payload)
        for port, payload in udp_datagrams(ROOT / "fixtures" / f"{SEQUENCE_CAPTURE}.pcap")
        if port in SEQUENCE_TRACKS
    ]
    step = max(1, (len(packets) - SEQUENCE_LEN) // SEQUENCES)
    for n, start in enumerate(range(0, len(packets) - SEQUENCE_LEN, step)):
        seed = b""
        for i, (track, payload) in enumerate(packets[start : start + SEQUENCE_LEN]):
            if n % 2 and i == SEQUENCE_LEN // 2:
                seed += b"\xff"
            seed += bytes([track | 2 * 5]) + struct.pack(">H", len(payload)) + payload
        yield f"{SEQUENCE_CAPTURE}_{n}", seed


def main():
    for target in SEQUENCE_TARGETS:
        out = ROOT / "fuzz" / "corpus" / target
        out.mkdir(parents=True, exist_ok=True)
        count = 0
        for name, seed in packet_sequences():
            (out / name).write_bytes(seed)
            count += 1
        print(f"{target}: {count} seeds in {out.relative_to(ROOT)}")
    for target, wanted in TARGETS.items():
        out = ROOT / "fuzz" / "corpus" / target
        out.mkdir(parents=True, exist_ok=True)
        count = 0
        for pcap in sorted((ROOT / "fixtures").glob("*.pcap")):
            per_port = {}
            for port, payload in udp_datagrams(pcap):
                if not wanted(port):
                    continue
                per_port.setdefault(port, []).append(payload)
            for port, payloads in per_port.items():
                step = max(1, len(payloads) // PER_PORT)
                for i, payload in enumerate(payloads[::step][:PER_PORT]):
                    (out / f"{pcap.stem}_{port}_{i:03}").write_bytes(payload)
                    count += 1
        seeds = ROOT / "fuzz" / "seeds" / target
        for seed in sorted(seeds.glob("*")) if seeds.is_dir() else []:
            shutil.copy(seed, out / seed.name)
            count += 1
        print(f"{target}: {count} seeds in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
