"""Pushes a media file (H.264 + AAC in Matroska) to an RTSP server with
GStreamer's `rtspclientsink` (ANNOUNCE/RECORD) in real time, until its end
or until killed (callers make a file long enough: seeking back to loop does
not survive `rtspclientsink`).

usage: gst_publish.py FILE URL tcp|udp
"""
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

Gst.init(None)
path, url, protocols = sys.argv[1], sys.argv[2], sys.argv[3]
pipeline = Gst.parse_launch(
    f'filesrc location="{path}" ! matroskademux name=d '
    f'rtspclientsink name=sink location="{url}" protocols={protocols} latency=0 '
    "d.video_0 ! queue ! h264parse config-interval=-1 ! sink.sink_0 "
    "d.audio_0 ! queue ! aacparse ! sink.sink_1"
)
loop = GLib.MainLoop()


def on_message(_bus, message):
    if message.type == Gst.MessageType.EOS:
        loop.quit()
    elif message.type == Gst.MessageType.ERROR:
        error, debug = message.parse_error()
        print(f"error={error.message} ({debug})", flush=True)
        loop.quit()


bus = pipeline.get_bus()
bus.add_signal_watch()
bus.connect("message", on_message)
pipeline.set_state(Gst.State.PLAYING)
try:
    loop.run()
finally:
    pipeline.set_state(Gst.State.NULL)
