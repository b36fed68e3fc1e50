#!/usr/bin/env python3
"""Seeds the depacketizer fuzz targets from the bundled captures.

Writes fuzz/corpus/depack_<codec>/<capture>_<n>: windows of consecutive RTP
packets of one track, each as a 16-bit big-endian length plus the packet (the
input format of fuzz_targets/depack_common.rs). Run from anywhere; idempotent.
seed_corpus.py seeds the single-packet targets.
"""
import pathlib
import struct

from seed_corpus import udp_datagrams  # same directory

ROOT = pathlib.Path(__file__).resolve().parent.parent
# (capture, UDP destination port of the track, fuzz target)
TRACKS = [
    ("ffmpeg_h264_opus", 5004, "depack_h264"),
    ("ffmpeg_h264_aac", 5004, "depack_h264"),
    ("ffmpeg_h265", 5004, "depack_h265"),
    ("ffmpeg_h264_aac", 5006, "depack_aac"),
    ("ffmpeg_h264_opus", 5006, "depack_opus"),
    ("ffmpeg_h264_latm", 5006, "depack_latm"),
]
WINDOW = 16
WINDOWS = 12


def rtp_packets(pcap: pathlib.Path, port: int):
    return (payload for dst, payload in udp_datagrams(pcap) if dst == port)


def main():
    for capture, port, target in TRACKS:
        packets = list(rtp_packets(ROOT / "fixtures" / f"{capture}.pcap", port))
        out = ROOT / "fuzz" / "corpus" / target
        out.mkdir(parents=True, exist_ok=True)
        step = max(1, (len(packets) - WINDOW) // WINDOWS)
        for n, start in enumerate(range(0, len(packets) - WINDOW, step)):
            window = packets[start : start + WINDOW]
            seed = b"".join(struct.pack(">H", len(p)) + p for p in window)
            (out / f"{capture}_{n}").write_bytes(seed)


if __name__ == "__main__":
    main()
