#!/usr/bin/env python3
"""Receive RTP/RTCP over UDP on 127.0.0.1 and write what arrived as a classic pcap.

Used by scripts/gen-fixtures. Ethernet/IPv4/UDP headers are synthesized around each
datagram (the payload and the arrival time are real), so the capture replays like one
taken with tcpdump on the loopback interface, without needing capture privileges.

usage: rtp_capture.py OUT.pcap PORT [PORT ...]
Stops after --idle seconds without a datagram (once the first one has arrived), or
after --max-seconds in total.
"""

import argparse
import select
import socket
import struct
import sys
import time

PCAP_MAGIC_US = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
LOOPBACK = "127.0.0.1"


def ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src_port: int, dst_port: int, payload: bytes, ident: int) -> bytes:
    """Ethernet + IPv4 + UDP (checksum 0 = not computed, allowed for IPv4) + payload."""
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0)
    addr = socket.inet_aton(LOOPBACK)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(payload), ident & 0xFFFF,
                     0x4000, 64, socket.IPPROTO_UDP, 0, addr, addr)
    ip = ip[:10] + struct.pack("!H", ipv4_checksum(ip)) + ip[12:]
    ether = b"\x00" * 12 + struct.pack("!H", 0x0800)
    return ether + ip + udp + payload


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("ports", nargs="+", type=int)
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--ready-file", help="touched once every port is bound")
    parser.add_argument("--summary", help="writes 'port N: COUNT datagrams, BYTES bytes' lines here")
    args = parser.parse_args()

    sockets = {}
    for port in args.ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((LOOPBACK, port))
        sockets[sock] = port
    if args.ready_file:
        open(args.ready_file, "w").close()

    records = []
    start = time.monotonic()
    last = None
    while True:
        now = time.monotonic()
        if now - start > args.max_seconds or (last is not None and now - last > args.idle):
            break
        readable, _, _ = select.select(list(sockets), [], [], 0.2)
        for sock in readable:
            payload, (_, src_port) = sock.recvfrom(SNAPLEN)
            arrival = time.time()
            last = time.monotonic()
            records.append((arrival, frame(src_port, sockets[sock], payload, len(records))))

    with open(args.out, "wb") as out:
        out.write(struct.pack("<IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        for arrival, data in records:
            seconds = int(arrival)
            micros = int(round((arrival - seconds) * 1e6))
            if micros == 1_000_000:
                seconds, micros = seconds + 1, 0
            out.write(struct.pack("<IIII", seconds, micros, len(data), len(data)))
            out.write(data)
    if args.summary:
        with open(args.summary, "w") as out:
            for port in args.ports:
                sizes = [len(d) - 42 for _, d in records if struct.unpack("!H", d[36:38])[0] == port]
                out.write(f"port {port}: {len(sizes)} datagrams, {sum(sizes)} payload bytes\n")
    print(f"rtp_capture: {len(records)} datagrams -> {args.out}", file=sys.stderr)
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
