#!/usr/bin/env python3
"""WHEP viewers on aiortc (an independent WebRTC stack) for streamgate's WHEP server tests.

Opens --viewers sessions at once on URL (a POST each, non-trickle: the offer carries every
candidate), counts what each one decodes for --seconds, then DELETEs every session and
reports. With --audio-only the viewers offer audio only (many viewers on a small machine:
Opus decoding is cheap, H.264 is not).

Prints "CONNECTED <n>" once every viewer got its first frame (a test then looks at the
server's sockets), and one JSON report as the last line:
  {"viewers": [{"video_frames", "width", "height", "audio_frames", "location",
                "delete_status"}], "first_frame_ms": [...]}
"""

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription


def http(method, url, body=None, content_type=None):
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


class Viewer:
    def __init__(self, url, audio_only):
        self.url = url
        self.audio_only = audio_only
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.report = {"video_frames": 0, "width": 0, "height": 0, "audio_frames": 0}
        self.first = asyncio.get_event_loop().create_future()
        self.tasks = []

    async def start(self):
        if not self.audio_only:
            self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.on("track", lambda track: self.tasks.append(asyncio.ensure_future(self.consume(track))))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.posted = time.monotonic()
        status, headers, body = await asyncio.get_event_loop().run_in_executor(
            None, http, "POST", self.url, self.pc.localDescription.sdp.encode(), "application/sdp")
        if status != 201:
            raise RuntimeError(f"POST {self.url}: {status} {body}")
        self.report["location"] = headers.get("Location")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def consume(self, track):
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            if track.kind == "video":
                self.report["video_frames"] += 1
                self.report["width"], self.report["height"] = frame.width, frame.height
            else:
                self.report["audio_frames"] += 1
            if not self.first.done():
                self.first.set_result(time.monotonic() - self.posted)

    async def stop(self):
        location = urllib.parse.urljoin(self.url, self.report.get("location") or "")
        status, _, _ = await asyncio.get_event_loop().run_in_executor(None, http, "DELETE", location)
        self.report["delete_status"] = status
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--viewers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--audio-only", action="store_true")
    args = parser.parse_args()
    viewers = [Viewer(args.url, args.audio_only) for _ in range(args.viewers)]
    await asyncio.gather(*(v.start() for v in viewers))
    first = await asyncio.wait_for(asyncio.gather(*(v.first for v in viewers)), 60)
    print(f"CONNECTED {len(viewers)}", flush=True)
    await asyncio.sleep(args.seconds)
    for viewer in viewers:
        await viewer.stop()
    print(json.dumps({"viewers": [v.report for v in viewers],
                      "first_frame_ms": [round(f * 1000) for f in first]}), flush=True)


asyncio.run(main())
