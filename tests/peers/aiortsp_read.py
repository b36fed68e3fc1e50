"""Reads RTP with aiortsp (an independent asyncio RTSP client) for a bounded
time and prints the packet count and the sequence numbers seen as
`key=value` lines.

usage: aiortsp_read.py URL SECONDS          (rtsp:// = UDP, rtspt:// = TCP)
       aiortsp_read.py --describe URL basic|digest   (prints status=CODE, then the SDP)
"""
import asyncio
import sys

from aiortsp.rtsp.connection import RTSPConnection
from aiortsp.rtsp.errors import RTSPResponseError
from aiortsp.rtsp.reader import RTSPReader
from urllib.parse import urlparse


async def read(url, seconds):
    sequences = []
    async with RTSPReader(url, timeout=10) as reader:

        async def collect():
            async for packet in reader.iter_packets():
                sequences.append(packet.seq)

        try:
            await asyncio.wait_for(collect(), seconds)
        except asyncio.TimeoutError:
            pass
    print(f"packets={len(sequences)}")
    print("sequences=" + ",".join(str(q) for q in sequences[:200]))


async def describe(url, scheme):
    parts = urlparse(url)
    async with RTSPConnection(
        parts.hostname, parts.port, parts.username, parts.password, accept_auth=[scheme], timeout=10
    ) as connection:
        clean = f"rtsp://{parts.hostname}:{parts.port}{parts.path}"
        try:
            response = await connection.send_request("DESCRIBE", clean, headers={"Accept": "application/sdp"})
            print(f"status={response.status}")
            print(response.content)
        except RTSPResponseError as error:
            print(f"status={error.response.status}")


if sys.argv[1] == "--describe":
    asyncio.run(describe(sys.argv[2], sys.argv[3]))
else:
    asyncio.run(read(sys.argv[1], float(sys.argv[2])))
