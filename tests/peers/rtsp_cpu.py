"""Measures the gateway's CPU use while N RTSP readers play the demo stream.

Starts the given streamgate binary with a temp config (demo stream, RTSP on a
free loopback port), opens N TCP-interleaved RTSP sessions from this one
asyncio process (many ffmpeg processes would saturate the machine themselves),
drains them for a warm-up and then MEASURE seconds, and prints the gateway's
utime+stime over the measured window from /proc/PID/stat, as a share of one
core, with the bytes the readers received.

usage: rtsp_cpu.py STREAMGATE_BINARY READERS [MEASURE_SECONDS]
"""
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

WARM_UP = 5.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    return head.decode(errors="replace")


async def play(port, received):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    url = f"rtsp://127.0.0.1:{port}/demo"
    session = None
    for cseq, track in enumerate([0, 1], start=1):
        writer.write((
            f"SETUP {url}/trackID={track} RTSP/1.0\r\nCSeq: {cseq}\r\n"
            f"Transport: RTP/AVP/TCP;unicast;interleaved={2 * track}-{2 * track + 1}\r\n"
            + (f"Session: {session}\r\n" if session else "")
            + "\r\n"
        ).encode())
        head = await read_head(reader)
        session = next(l.split(":", 1)[1].split(";")[0].strip() for l in head.split("\r\n") if l.startswith("Session:"))
    writer.write(f"PLAY {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n".encode())
    await read_head(reader)
    while True:
        data = await reader.read(1 << 16)
        if not data:
            return
        received[0] += len(data)


async def main(binary, readers, measure):
    port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "gateway.toml")
        with open(config, "w") as f:
            f.write(
                f'[rtsp]\nlisten = "127.0.0.1:{port}"\n\n[http]\nlisten = "127.0.0.1:{http_port}"\n\n'
                '[webrtc]\nlisten = "127.0.0.1:0"\n\n'
                '[streams.demo]\nsource = "demo"\n'
            )
        gateway = subprocess.Popen([binary, "--config", config], stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            received = [0]
            tasks = [asyncio.create_task(play(port, received)) for _ in range(readers)]
            await asyncio.sleep(WARM_UP)
            ticks, bytes_before, start = cpu_ticks(gateway.pid), received[0], time.monotonic()
            await asyncio.sleep(measure)
            ticks = cpu_ticks(gateway.pid) - ticks
            elapsed = time.monotonic() - start
            got = received[0] - bytes_before
            cpu = ticks / os.sysconf("SC_CLK_TCK") / elapsed
            alive = sum(1 for t in tasks if not t.done())
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                print(f"{len(failed)} readers failed, e.g.: {failed[0].exception()!r}")
            print(
                f"readers={readers} alive={alive} window={elapsed:.1f}s gateway_cpu={cpu * 100:.1f}% of one core "
                f"({ticks} ticks) readers_received={got / elapsed / 1e6:.2f} MB/s"
            )
            for t in tasks:
                t.cancel()
        finally:
            gateway.terminate()
            gateway.wait(timeout=10)


asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 30.0))
