#!/usr/bin/python3
"""The GStreamer peer of scripts/compare-peers: gst-rtsp-server restreaming RTSP cameras.

    /usr/bin/python3 scripts/gst_restream.py --port 8555 rtsp://127.0.0.1:8554/cam0 [URL...]

Serves camera i on /cam<i> with one shared media per camera (every reader is fed by
the same rtspsrc), the way a user would set GStreamer up as an RTSP restreamer: rtspsrc
(TCP, buffer-mode=none so its jitterbuffer does not re-stamp timestamps) ! depayloader
! payloader, video and AAC audio. Prints "listening <port>" once it accepts clients.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(url):
    return (
        f'( rtspsrc location="{url}" protocols=tcp buffer-mode=none latency=0 name=src '
        "src. ! application/x-rtp,media=video ! rtph264depay ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "src. ! application/x-rtp,media=audio ! rtpmp4gdepay ! rtpmp4gpay name=pay1 pt=97 )"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8555)
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for i, url in enumerate(args.urls):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(url))
        factory.set_shared(True)
        mounts.add_factory(f"/cam{i}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on {args.port}")
    print("listening", args.port, flush=True)
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    signal.signal(signal.SIGINT, lambda *_: loop.quit())
    GLib.timeout_add(500, lambda: True)  # lets Python run the signal handlers
    loop.run()


if __name__ == "__main__":
    main()
