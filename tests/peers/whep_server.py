#!/usr/bin/env python3
"""A WHEP server on aiortc (an independent WebRTC stack) for streamgate's WHEP client tests.

It plays like a camera: one shared, live, looping H.264 + Opus source (the bundled
fixtures/media/ffmpeg_h264_opus.mkv, converted to Annex-B access units in memory) fanned
out to every session. Sessions are capped (--max-session) the way the Ring Partner API
caps them, and every request is written as one JSON line to --events so a test can check
what the client sent (DELETEs, the bearer token) without a mock.

The path chooses the behaviour, so one server answers every test:
  POST /whep/live            a normal session (201, relative Location, SDP answer)
  POST /redirect/<n>/live    307 (n odd) or 308 (n even) to /whep/live
  POST /busy/<n>/live        503 + Retry-After: 1 for the first n POSTs, then a session
  POST /status/<code>/live   answers <code> (400, 401, 404, 415, 500 ...) with no session
  POST /hang/live            never answers
  POST /malformed/live       creates a session, answers 201 with a body that is not SDP
  POST /nocodec/live         creates a session, answers 201 with SDP offering only VP8
  POST /noice/live           creates a session, answers with a wrong ICE password (ICE fails)
  POST /silent/live          a session that connects but never sends media
  DELETE <session URL>       ends the session (200), 404 when unknown
  PATCH <session URL>        trickle ICE (RFC 8840 sdpfrag): with --trickle the 201 carries
                             Accept-Patch, candidates go to aiortc's addIceCandidate and the
                             answer is 204; a wrong If-Match gets 412. An ICE restart
                             (If-Match: "*") gets 501, or with --ice-restart new ICE
                             credentials (aiortc has no ICE restart: the server swaps
                             them in its aioice connection), a 200 sdpfrag and a new ETag.
                             Without --trickle every PATCH gets 405.
With --stale-etag a PATCH with the 201's ETag gets 412 (a restart the client missed).
With --freeze-after N the first session's ICE goes silent (no datagram in or out) N
seconds after it is created, until an ICE restart: a network path that broke.
A POST without the --token (when given) gets 401. An OPTIONS or POST answer carries a
Link rel="ice-server" header when --ice-link is given.

Prints "LISTENING <port>" on stdout once it accepts connections.
"""

import argparse
import asyncio
import fractions
import json
import os
import sys
import time
import uuid

import aioice.ice
import aioice.utils
import av
import av.bitstream
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcicetransport import candidate_from_aioice
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

# aioice leaves loopback out of its host candidates; the tests must stay on 127.0.0.1.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

MAX_BODY = 64 * 1024


def freezable(method):
    """Wraps a StunProtocol method so a frozen connection drops the datagram."""
    def wrapper(self, *args, **kwargs):
        if getattr(self.receiver, "frozen", False):
            return None
        return method(self, *args, **kwargs)
    return wrapper


async def _send_data(self, data, addr):
    if not getattr(self.receiver, "frozen", False):
        self.transport.sendto(data, addr)


aioice.ice.StunProtocol.datagram_received = freezable(aioice.ice.StunProtocol.datagram_received)
aioice.ice.StunProtocol.send_stun = freezable(aioice.ice.StunProtocol.send_stun)
aioice.ice.StunProtocol.send_data = _send_data
QUEUE_FRAMES = 100


def load_media(path):
    """Returns (video, audio, loop_seconds): lists of (pts_seconds, bytes, keyframe)."""
    container = av.open(path)
    vstream = container.streams.video[0]
    astream = container.streams.audio[0]
    annexb = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", vstream)
    video, audio = [], []
    for packet in container.demux(vstream, astream):
        if packet.pts is None:
            continue
        if packet.stream.type == "video":
            for out in annexb.filter(packet):
                video.append((float(out.pts * out.time_base), bytes(out), out.is_keyframe))
        else:
            audio.append((float(packet.pts * packet.time_base), bytes(packet), True))
    container.close()
    video.sort(key=lambda p: p[0])
    audio.sort(key=lambda p: p[0])
    loop = max(video[-1][0] + 0.04, audio[-1][0] + 0.02)
    return video, audio, loop


class PacketTrack(MediaStreamTrack):
    """Hands pre-encoded packets to aiortc's packetizer (PEER_NOTES: feed it yourself)."""

    def __init__(self, kind, clock_rate):
        super().__init__()
        self.kind = kind
        self.time_base = fractions.Fraction(1, clock_rate)
        self.clock_rate = clock_rate
        self.queue = asyncio.Queue(QUEUE_FRAMES)

    def offer(self, pts_seconds, data):
        if self.queue.full():
            self.queue.get_nowait()  # a slow session skips, the source never waits
        self.queue.put_nowait((pts_seconds, data))

    async def recv(self):
        pts_seconds, data = await self.queue.get()
        packet = av.Packet(data)
        packet.pts = int(round(pts_seconds * self.clock_rate))
        packet.time_base = self.time_base
        return packet


class Source:
    """The live camera: loops the media in real time, timestamps always increasing."""

    def __init__(self, video, audio, loop):
        self.video, self.audio, self.loop = video, audio, loop
        self.tracks = set()

    async def run(self):
        merged = sorted(
            [(pts, "video", data) for pts, data, _ in self.video]
            + [(pts, "audio", data) for pts, data, _ in self.audio],
            key=lambda p: p[0],
        )
        start = time.monotonic()
        lap = 0
        while True:
            for pts, kind, data in merged:
                at = lap * self.loop + pts
                delay = start + at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                for track in list(self.tracks):
                    if track.kind == kind:
                        track.offer(at, data)
            lap += 1


class Server:
    def __init__(self, args, source):
        self.args = args
        self.source = source
        self.sessions = {}
        self.busy_counts = {}
        self.remote_ufrags = {}
        self.etags = {}
        self.created = 0
        self.events = open(args.events, "a", buffering=1) if args.events else None

    def record(self, **event):
        event["time"] = time.time()
        if self.events:
            self.events.write(json.dumps(event) + "\n")

    async def handle(self, reader, writer):
        try:
            request_line = await reader.readline()
            if not request_line:
                return
            method, target, _ = request_line.decode("latin-1").split(" ", 2)
            headers = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = min(int(headers.get("content-length", "0")), MAX_BODY)
            body = await reader.readexactly(length) if length else b""
            auth = headers.get("authorization")
            self.record(
                method=method,
                path=target,
                authorization=auth,
                content_type=headers.get("content-type"),
            )
            status, extra, answer = await self.route(method, target, headers, body)
            if status is None:
                await asyncio.sleep(3600)  # the "never answers" server
                return
            self.respond(writer, status, extra, answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def respond(self, writer, status, headers, body):
        reason = {200: "OK", 201: "Created", 204: "No Content", 405: "Method Not Allowed"}.get(
            status, "Status")
        lines = [f"HTTP/1.1 {status} {reason}"]
        for name, value in headers:
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def link_headers(self):
        if not self.args.ice_link:
            return []
        return [("Link", f'<{self.args.ice_link}>; rel="ice-server"')]

    async def route(self, method, target, headers, body):
        parts = [p for p in target.split("?")[0].split("/") if p]
        if method == "DELETE":
            session_id = parts[-1] if parts else ""
            if not await self.end_session(session_id, "deleted"):
                return 404, [], b""
            return 200, [], b""
        if method == "OPTIONS":
            return 204, self.link_headers(), b""
        if method == "PATCH":
            return await self.patch(parts[-1] if parts else "", headers, body)
        if method != "POST":
            return 405, [], b""
        if self.args.token and headers.get("authorization") != f"Bearer {self.args.token}":
            return 401, [], b"missing or wrong bearer token"
        if headers.get("content-type", "").split(";")[0].strip() != "application/sdp":
            return 415, [], b"offer must be application/sdp"
        mode = parts[0] if parts else ""
        if mode == "redirect":
            hops = int(parts[1])
            return (307 if hops % 2 else 308), [("Location", "/whep/live")], b""
        if mode == "status":
            return int(parts[1]), [], b"scripted failure"
        if mode == "hang":
            return None, [], b""
        if mode == "busy":
            key = "/".join(parts)
            seen = self.busy_counts.get(key, 0)
            self.busy_counts[key] = seen + 1
            if seen < int(parts[1]):
                return 503, [("Retry-After", "1")], b"busy"
        if mode not in ("whep", "busy", "malformed", "nocodec", "noice", "silent"):
            return 404, [], b"no such stream"
        return await self.create_session(mode, body.decode("utf-8", "replace"))

    async def create_session(self, mode, offer_sdp):
        session_id = uuid.uuid4().hex
        pc = RTCPeerConnection()
        tracks = []
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            for kind, rate in (("video", 90000), ("audio", 48000)):
                track = PacketTrack(kind, rate)
                pc.addTrack(track)
                tracks.append(track)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as error:  # a bad offer: tell the client, keep serving
            await pc.close()
            self.record(event="bad-offer", error=str(error))
            return 400, [], f"bad offer: {error}".encode()
        self.sessions[session_id] = (pc, tracks)
        self.remote_ufrags[session_id] = ice_ufrag(offer_sdp)
        # --stale-etag: the server's ETag has moved on from the one the 201 gives.
        self.etags[session_id] = f'"{session_id}"' + ("-moved" if self.args.stale_etag else "")
        self.created += 1
        if self.args.freeze_after > 0 and self.created == 1:
            asyncio.get_running_loop().call_later(
                self.args.freeze_after, lambda: self.freeze(session_id))
        if mode != "silent":
            for track in tracks:
                self.source.tracks.add(track)
        self.record(event="session-created", session=session_id, mode=mode,
                    offer_candidates=offer_sdp.count("a=candidate:"),
                    ufrag=ice_ufrag(offer_sdp))
        if self.args.max_session > 0:
            asyncio.get_running_loop().call_later(
                self.args.max_session,
                lambda: asyncio.ensure_future(self.end_session(session_id, "expired")),
            )
        answer = pc.localDescription.sdp
        if mode == "malformed":
            answer = "this is not an SDP answer\r\n"
        elif mode == "nocodec":
            answer = vp8_only(answer)
        elif mode == "noice":
            answer = "\r\n".join(
                "a=ice-pwd:" + "x" * 24 if l.startswith("a=ice-pwd:") else l for l in answer.split("\r\n")
            )
        headers = [
            ("Content-Type", "application/sdp"),
            ("Location", f"sessions/{session_id}"),
            ("ETag", f'"{session_id}"'),
        ] + self.link_headers()
        if self.args.trickle:
            headers.append(("Accept-Patch", "application/trickle-ice-sdpfrag"))
        return 201, headers, answer.encode()

    async def patch(self, session_id, headers, body):
        """Trickle ICE by PATCH (RFC 9725 §4.3): the sdpfrag's candidates go to aiortc."""
        fragment = body.decode("utf-8", "replace")
        if_match = headers.get("if-match")
        candidates = [l[len("a="):] for l in fragment.splitlines() if l.startswith("a=candidate:")]
        end = any(l.strip() == "a=end-of-candidates" for l in fragment.splitlines())
        event = dict(event="patch", session=session_id, if_match=if_match,
                     candidates=len(candidates), end=end, ufrag=ice_ufrag(fragment))
        if not self.args.trickle:
            self.record(answer=405, **event)
            return 405, [], b"trickle ICE not supported"
        entry = self.sessions.get(session_id)
        if entry is None:
            self.record(answer=404, **event)
            return 404, [], b"no such session"
        if headers.get("content-type", "").split(";")[0].strip() != "application/trickle-ice-sdpfrag":
            self.record(answer=415, **event)
            return 415, [], b"PATCH must be application/trickle-ice-sdpfrag"
        if if_match == "*":
            if not self.args.ice_restart:
                self.record(answer=501, **event)
                return 501, [], b"ICE restart not supported"
            return self.restart_ice(session_id, fragment, event)
        if if_match is not None and if_match != self.etags.get(session_id):
            self.record(answer=412, **event)
            return 412, [], b"ETag does not match"
        if ice_ufrag(fragment) != self.remote_ufrags.get(session_id):
            self.record(answer=422, **event)
            return 422, [], b"ice-ufrag does not match the session"
        pc, _ = entry
        mid = next((l[len("a=mid:"):].strip() for l in fragment.splitlines()
                    if l.startswith("a=mid:")), None)
        try:
            for line in candidates:
                candidate = candidate_from_sdp(line[len("candidate:"):])
                candidate.sdpMid = mid
                await pc.addIceCandidate(candidate)
            if end:
                await pc.addIceCandidate(None)
        except ValueError as error:
            self.record(answer=400, error=str(error), **event)
            return 400, [], f"bad candidate: {error}".encode()
        self.record(answer=204, **event)
        return 204, [], b""

    def ice_connection(self, session_id):
        pc, _ = self.sessions[session_id]
        return pc.getTransceivers()[0].receiver.transport.transport._connection

    def freeze(self, session_id):
        if session_id in self.sessions:
            self.ice_connection(session_id).frozen = True
            self.record(event="frozen", session=session_id)

    def restart_ice(self, session_id, fragment, event):
        """ICE restart (RFC 9725 §4.4) done on aioice's connection: new credentials both
        ways, the client's new candidates added; checks and nomination do the rest."""
        ufrag = ice_ufrag(fragment)
        pwd = next((l[len("a=ice-pwd:"):].strip() for l in fragment.splitlines()
                    if l.startswith("a=ice-pwd:")), None)
        if not ufrag or not pwd or ufrag == self.remote_ufrags.get(session_id):
            self.record(answer=400, **event)
            return 400, [], b"an ICE restart needs new ice-ufrag and ice-pwd"
        connection = self.ice_connection(session_id)
        connection.remote_username = ufrag
        connection.remote_password = pwd
        connection._local_username = aioice.utils.random_string(4)
        connection._local_password = aioice.utils.random_string(22)
        connection.frozen = False
        self.remote_ufrags[session_id] = ufrag
        etag = f'"{session_id}-{uuid.uuid4().hex[:8]}"'
        self.etags[session_id] = etag
        mid = next((l for l in fragment.splitlines() if l.startswith("a=mid:")), "a=mid:0")
        media = next((l for l in fragment.splitlines() if l.startswith("m=")), None)
        lines = [f"a=ice-ufrag:{connection.local_username}",
                 f"a=ice-pwd:{connection.local_password}"]
        lines += [media] if media else []
        lines.append(mid)
        lines += ["a=candidate:" + candidate_to_sdp(candidate_from_aioice(c))
                  for c in connection.local_candidates]
        lines.append("a=end-of-candidates")
        self.record(answer=200, **event)
        headers = [("Content-Type", "application/trickle-ice-sdpfrag"), ("ETag", etag)]
        return 200, headers, ("\r\n".join(lines) + "\r\n").encode()

    async def end_session(self, session_id, why):
        entry = self.sessions.pop(session_id, None)
        if entry is None:
            self.record(event="unknown-session", session=session_id)
            return False
        self.record(event="session-ended", session=session_id, why=why)
        self.remote_ufrags.pop(session_id, None)
        self.etags.pop(session_id, None)
        pc, tracks = entry
        for track in tracks:
            self.source.tracks.discard(track)
        await pc.close()
        return True


def ice_ufrag(sdp):
    """The first a=ice-ufrag value of an SDP or sdpfrag, or None."""
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:"):].strip()
    return None


def vp8_only(sdp):
    """Rewrites every media section to offer only VP8 (a codec the client never offers)."""
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("m=video") or line.startswith("m=audio"):
            fields = line.split(" ")
            line = " ".join(fields[:3] + ["120"])
            out.append(line)
            out.append("a=rtpmap:120 VP8/90000")
            continue
        if line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            continue
        out.append(line)
    return "\r\n".join(out)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--media", default=os.path.join(
        os.path.dirname(__file__), "..", "..", "fixtures", "media", "ffmpeg_h264_opus.mkv"))
    parser.add_argument("--max-session", type=float, default=0.0,
                        help="end every session after this many seconds (0: never)")
    parser.add_argument("--token", default=None, help="bearer token a POST must carry")
    parser.add_argument("--ice-link", default=None, help="a STUN URL sent as Link rel=ice-server")
    parser.add_argument("--trickle", action="store_true",
                        help="accept trickle ICE PATCHes (Accept-Patch on 201); else PATCH gets 405")
    parser.add_argument("--ice-restart", action="store_true",
                        help="with --trickle: accept ICE restarts (If-Match: *); else 501")
    parser.add_argument("--stale-etag", action="store_true",
                        help="trickle PATCHes with the 201's ETag get 412 (ICE restart needed)")
    parser.add_argument("--freeze-after", type=float, default=0.0,
                        help="silence the first session's ICE after this many seconds")
    parser.add_argument("--events", default=None, help="append one JSON line per request/event")
    args = parser.parse_args()

    video, audio, loop = load_media(args.media)
    source = Source(video, audio, loop)
    server = Server(args, source)
    asyncio.ensure_future(source.run())
    listener = await asyncio.start_server(server.handle, "127.0.0.1", args.port)
    port = listener.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with listener:
        await listener.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
