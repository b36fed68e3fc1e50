#!/usr/bin/python3
"""A fake IP camera for streamgate's tests: gst-rtsp-server serving a looping media file.

Run with Debian's python3 (python3-gi + gir1.2-gst-rtsp-server-1.0):

    /usr/bin/python3 tests/peers/gst_camera.py --media fixtures/media/ffmpeg_h264_aac.mkv \
        [--port 0] [--path /cam] [--user U --password P [--digest]] [--tcp-only] [--aac-latm]
        [--tls-cert cert.pem --tls-key key.pem]

With --tls-cert the server speaks RTSPS only (rtsps://, TLS from the first byte).

Like a camera, the stream is live and shared: every client sees the same media, it
cannot be seeked (PLAY's Range is ignored), it never ends (the file loops with
timestamps running on), and the payload is the file's own encoded media (no re-encode).

How: the file is demuxed and parsed once into memory (parsebin -> appsink); each time
gst-rtsp-server builds the shared media, a pacer thread pushes those buffers into the
media's live appsrcs at their real-time positions, loop after loop.

Stdout (line-buffered, for tests to wait on and count):
    listening <port>          once the server accepts connections
    client-connected <n>      a TCP client connected (n = clients now open)
    client-closed <n>         a client's connection closed
    media-started / media-stopped   the shared media was built / torn down
The port is bound with SO_REUSEADDR, so a killed camera can be restarted on the same port.
"""

import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstApp, GstRtsp, GstRtspServer  # noqa: E402,F401

# Caps name -> payloader; the payloaders insert SPS/PPS before every IDR (config-interval=-1).
PAYLOADERS = {
    "video/x-h264": "rtph264pay config-interval=-1",
    "video/x-h265": "rtph265pay config-interval=-1",
    "audio/mpeg": "rtpmp4gpay",
    "audio/x-opus": "rtpopuspay",
}
# With --aac-latm: AAC as RFC 6416 MP4A-LATM (cpresent=0), as most IP cameras send it.
AAC_LATM_PAYLOADER = "rtpmp4apay"


def say(*words):
    print(*words, flush=True)


class Track:
    """One elementary stream of the file, held in memory."""

    def __init__(self, caps):
        self.caps = caps
        self.samples = []  # (pts ns relative to the file start, duration ns, Gst.Buffer)


def load_media(path):
    """Demuxes and parses `path` into Tracks (video first), with timestamps relative to the file start."""
    pipeline = Gst.parse_launch(f'filesrc location="{path}" ! parsebin name=parse')
    parse = pipeline.get_by_name("parse")
    tracks = []
    lock = threading.Lock()

    def on_sample(sink, track):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        ts = buf.dts if buf.dts != Gst.CLOCK_TIME_NONE else buf.pts
        with lock:
            track.samples.append((ts, buf.duration, buf))
        return Gst.FlowReturn.OK

    def on_pad(_parse, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name()
        if name not in PAYLOADERS:
            say(f"ignoring stream {name}")
            return
        sink = Gst.ElementFactory.make("appsink")
        sink.set_property("sync", False)
        sink.set_property("emit-signals", True)
        track = Track(caps)
        with lock:
            tracks.append(track)
        sink.connect("new-sample", on_sample, track)
        # The demuxer feeds every stream from one thread: a queue per stream keeps one
        # prerolled sink from blocking the others.
        queue = Gst.ElementFactory.make("queue")
        pipeline.add(queue)
        pipeline.add(sink)
        queue.link(sink)
        sink.sync_state_with_parent()
        queue.sync_state_with_parent()
        pad.link(queue.get_static_pad("sink"))

    parse.connect("pad-added", on_pad)
    # A main loop (not Bus.timed_pop, which keeps the GIL) lets the streaming threads call on_sample.
    loop = GLib.MainLoop()
    result = {}

    def on_message(_bus, msg):
        if msg.type in (Gst.MessageType.EOS, Gst.MessageType.ERROR):
            result["msg"] = msg
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    GLib.timeout_add_seconds(30, loop.quit)
    pipeline.set_state(Gst.State.PLAYING)
    loop.run()
    pipeline.set_state(Gst.State.NULL)
    bus.remove_signal_watch()
    msg = result.get("msg")
    if msg is None or msg.type == Gst.MessageType.ERROR:
        raise SystemExit(f"cannot load {path}: {msg.parse_error() if msg else 'timeout'}")
    for t in tracks:
        if not t.samples:
            raise SystemExit(f"{path}: empty stream {t.caps.to_string()}")
    start = min(t.samples[0][0] for t in tracks)
    for t in tracks:
        caps = t.caps.get_structure(0)
        if caps.get_name() == "audio/mpeg":
            # Matroska rounds timestamps to 1 ms; AAC-LC frames are exactly 1024 samples.
            frame_ns = 1024 * Gst.SECOND // caps.get_value("rate")
            first = t.samples[0][0] - start
            t.samples = [(first + n * frame_ns, frame_ns, buf) for n, (_, _, buf) in enumerate(t.samples)]
        else:
            t.samples = [(ts - start, dur, buf) for ts, dur, buf in t.samples]
    tracks.sort(key=lambda t: 0 if t.caps.get_structure(0).get_name().startswith("video/") else 1)
    return tracks


def loop_duration(tracks):
    """Length of one loop: the end of the longest track."""
    end = 0
    for t in tracks:
        ts, dur, _ = t.samples[-1]
        end = max(end, ts + (dur if dur != Gst.CLOCK_TIME_NONE else 0))
    return end


class Pacer(threading.Thread):
    """Pushes the in-memory samples into one shared media's appsrcs in real time, looping."""

    def __init__(self, tracks, appsrcs):
        super().__init__(daemon=True)
        self.tracks = tracks
        self.appsrcs = appsrcs
        self.stop = threading.Event()
        self.loop_ns = loop_duration(tracks)

    def schedule(self):
        """Yields (media time ns, track index, sample) forever, in time order."""
        merged = sorted(
            ((sample[0], i, sample) for i, t in enumerate(self.tracks) for sample in t.samples),
            key=lambda x: (x[0], x[1]),
        )
        loop = 0
        while True:
            for ts, i, s in merged:
                yield loop * self.loop_ns + ts, i, s
            loop += 1

    def run(self):
        # A live media goes to PLAYING while it prerolls; its clock gives the running time.
        clock = None
        while clock is None:
            if self.stop.wait(0.01):
                return
            clock = self.appsrcs[0].get_clock()
        base = self.appsrcs[0].get_base_time()
        start = clock.get_time() - base
        for media_ts, i, (_, dur, buf) in self.schedule():
            pts = start + media_ts
            wait_ns = base + pts - clock.get_time()
            if wait_ns > 0 and self.stop.wait(wait_ns / 1e9):
                return
            if self.stop.is_set():
                return
            out = buf.copy()
            # Paced in decode order; B-frames keep their presentation offset (PTS - DTS),
            # so the RTP timestamps step back as a real camera's do.
            reorder = 0
            if buf.pts != Gst.CLOCK_TIME_NONE and buf.dts != Gst.CLOCK_TIME_NONE:
                reorder = buf.pts - buf.dts
            out.pts = pts + reorder
            out.dts = pts
            out.duration = dur
            if self.appsrcs[i].push_buffer(out) != Gst.FlowReturn.OK:
                return


class CameraFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, tracks, aac_latm):
        super().__init__()
        self.tracks = tracks
        payloaders = dict(PAYLOADERS, **({"audio/mpeg": AAC_LATM_PAYLOADER} if aac_latm else {}))
        branches = [
            f"appsrc name=src{i} is-live=true format=time ! {payloaders[t.caps.get_structure(0).get_name()]} "
            f"name=pay{i} pt={96 + i}"
            for i, t in enumerate(tracks)
        ]
        self.set_launch("( " + " ".join(branches) + " )")
        self.set_shared(True)
        self.connect("media-configure", self.on_media_configure)

    def on_media_configure(self, _factory, media):
        element = media.get_element()
        appsrcs = []
        for i, t in enumerate(self.tracks):
            src = element.get_by_name(f"src{i}")
            src.set_property("caps", t.caps)
            appsrcs.append(src)
        pacer = Pacer(self.tracks, appsrcs)
        media.connect("unprepared", lambda _m: (pacer.stop.set(), say("media-stopped")))
        say("media-started")
        pacer.start()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", required=True, help="mp4/mkv with H.264/H.265 video and AAC/Opus audio")
    ap.add_argument("--port", type=int, default=0, help="TCP port (0: any free port, printed)")
    ap.add_argument("--path", default="/cam", help="mount path")
    ap.add_argument("--user", help="require Basic auth with this user")
    ap.add_argument("--password", default="")
    ap.add_argument("--digest", action="store_true", help="require Digest (not Basic) auth for --user")
    ap.add_argument("--tls-cert", help="PEM certificate (chain): serve RTSPS with it")
    ap.add_argument("--tls-key", help="PEM key of --tls-cert")
    ap.add_argument("--tcp-only", action="store_true", help="refuse RTP over UDP (461 Unsupported Transport)")
    ap.add_argument("--aac-latm", action="store_true", help="send AAC as MP4A-LATM (rtpmp4apay), not mpeg4-generic")
    args = ap.parse_args()

    Gst.init(None)
    tracks = load_media(args.media)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = CameraFactory(tracks, args.aac_latm)
    if args.tcp_only:
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    if args.user or args.tls_cert:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        if args.user and args.digest:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password, token)
        elif args.user:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        else:
            # TLS only: everyone may view.
            auth.set_default_token(token)
        if args.tls_cert:
            with open(args.tls_cert) as cert, open(args.tls_key) as key:
                auth.set_tls_certificate(Gio.TlsCertificate.new_from_pem(cert.read() + key.read(), -1))
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)

    open_clients = [0]

    def on_client(_server, client):
        open_clients[0] += 1
        say("client-connected", open_clients[0])

        def on_closed(_client):
            open_clients[0] -= 1
            say("client-closed", open_clients[0])

        client.connect("closed", on_closed)

    server.connect("client-connected", on_client)
    if server.attach(None) == 0:
        raise SystemExit(f"cannot listen on port {args.port}")
    say("listening", server.get_bound_port())

    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()


if __name__ == "__main__":
    sys.exit(main())
