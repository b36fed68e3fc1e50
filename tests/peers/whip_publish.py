#!/usr/bin/env python3
"""A WHIP publisher on aiortc (an independent WebRTC stack) for streamgate's WHIP tests.

Plays FILE (looped, decoded and re-encoded by aiortc: its pre-encoded path takes Annex-B
H.264 only) on sendonly video and audio transceivers, POSTs the offer to URL (non-trickle:
the offer carries every candidate), with --token as a bearer token, and sets the answer.
Prints "CONNECTED" once the peer connection is up, publishes for --seconds, then DELETEs
the session and prints one JSON report as the last line:
  {"location", "delete_status"}
"""

import argparse
import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


def http(method, url, body=None, content_type=None, token=None):
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("file")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--token")
    args = parser.parse_args()

    player = MediaPlayer(args.file, loop=True)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    connected = asyncio.get_event_loop().create_future()

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState == "connected" and not connected.done():
            connected.set_result(True)

    pc.addTransceiver(player.video, direction="sendonly")
    pc.addTransceiver(player.audio, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_event_loop()
    status, headers, body = await loop.run_in_executor(
        None, http, "POST", args.url, pc.localDescription.sdp.encode(), "application/sdp", args.token)
    if status != 201:
        raise RuntimeError(f"POST {args.url}: {status} {body}")
    location = headers.get("Location")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    await asyncio.wait_for(connected, 30)
    print("CONNECTED", flush=True)
    await asyncio.sleep(args.seconds)
    status, _, _ = await loop.run_in_executor(
        None, http, "DELETE", urllib.parse.urljoin(args.url, location))
    await pc.close()
    print(json.dumps({"location": location, "delete_status": status}), flush=True)


asyncio.run(main())
