"""Plays an RTSP URL with GStreamer `rtspsrc ! decodebin ! fakesink` (one
decodebin + fakesink per stream) for a bounded time and prints how
many decoded buffers each media kind produced and any bus errors, as
`KIND=COUNT` and `error=MESSAGE` lines.

An http(s):// URL (an HLS playlist) is played with `uridecodebin` instead
(the transport argument is then ignored).

usage: gst_play.py URL tcp|udp SECONDS
"""
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

Gst.init(None)
url, protocols, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
counts = {}
errors = []
pipeline = Gst.Pipeline.new("play")
hls = url.startswith("http")
if hls:
    source = Gst.ElementFactory.make("uridecodebin")
    source.set_property("uri", url)
else:
    source = Gst.ElementFactory.make("rtspsrc")
    source.set_property("location", url)
    source.set_property("protocols", protocols)
    source.set_property("latency", 200)
    if url.startswith("rtsps"):
        # The tests' certificates are self-signed: accept them.
        source.set_property("tls-validation-flags", 0)
pipeline.add(source)


def count(kind):
    def handoff(_sink, _buffer, _pad):
        counts[kind] = counts.get(kind, 0) + 1

    return handoff


def on_decoded_pad(_decodebin, pad):
    caps = pad.get_current_caps() or pad.query_caps(None)
    kind = caps.get_structure(0).get_name().split("/")[0]
    sink = Gst.ElementFactory.make("fakesink")
    sink.set_property("sync", False)
    sink.set_property("signal-handoffs", True)
    sink.connect("handoff", count(kind))
    pipeline.add(sink)
    sink.sync_state_with_parent()
    pad.link(sink.get_static_pad("sink"))


def on_source_pad(_source, pad):
    decodebin = Gst.ElementFactory.make("decodebin")
    decodebin.connect("pad-added", on_decoded_pad)
    pipeline.add(decodebin)
    decodebin.sync_state_with_parent()
    pad.link(decodebin.get_static_pad("sink"))


source.connect("pad-added", on_decoded_pad if hls else on_source_pad)
bus = pipeline.get_bus()
pipeline.set_state(Gst.State.PLAYING)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    message = bus.timed_pop_filtered(100 * Gst.MSECOND, Gst.MessageType.ERROR | Gst.MessageType.EOS)
    if message is None:
        continue
    if message.type == Gst.MessageType.ERROR:
        error, debug = message.parse_error()
        errors.append(f"{error.message} ({debug})")
    else:
        errors.append("unexpected end of stream")
    break
pipeline.set_state(Gst.State.NULL)
for kind, n in sorted(counts.items()):
    print(f"{kind}={n}")
for error in errors:
    print(f"error={error}")
