#!/usr/bin/python3
"""A looping H.264 RTSP test camera on GStreamer's RTSP server (run with Debian's /usr/bin/python3).

Needs Debian packages python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}.
Usage: rtsp_loop_server.py --port 0 --stream cam1=/path/a.mp4 [--stream cam2=b.mp4]
Prints 'READY rtsp://127.0.0.1:PORT' once listening. Each MP4 (H.264, no B-frames) loops gaplessly
with non-flushing SEGMENT seeks on qtdemux, so timestamps keep increasing like a live camera.
Camera faults from a test: SIGSTOP = frozen camera, SIGCONT = back, SIGKILL = gone.
"""

import argparse
import os
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

SEGMENT_WAIT_S = 3.0


def _seek(demux, flags):
    demux.seek(1.0, Gst.Format.TIME, flags | Gst.SeekFlags.SEGMENT, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1)
    return False  # one-shot under GLib.idle_add


def _on_media_configure(_factory, media):
    def on_prepared(m):
        demux = m.get_element().get_by_name("demux")
        pipe = m.get_element()
        while pipe.get_parent() is not None:
            pipe = pipe.get_parent()
        bus = pipe.get_bus()
        bus.enable_sync_message_emission()

        def on_sync(_bus, msg):
            if msg.type == Gst.MessageType.SEGMENT_DONE:  # loop: seek again from the main loop
                GLib.idle_add(_seek, demux, Gst.SeekFlags.NONE)

        bus.connect("sync-message", on_sync)
        _seek(demux, Gst.SeekFlags.FLUSH)  # the first seek must flush; later ones must not

    media.connect("prepared", on_prepared)


def _wait_for_segment(_client, ctx):
    """Hold a PLAY until every stream has a segment again after our flushing start seek.

    GStreamer's PLAY handler asserts (and aborts the whole server) when it asks a stream for its rates
    while the seek has reset its segment: fast clients hit that window.
    """
    media = ctx.media
    deadline = time.monotonic() + SEGMENT_WAIT_S
    while media is not None and time.monotonic() < deadline:
        if all(media.get_stream(i).get_rates()[0] for i in range(media.n_streams())):
            break
        time.sleep(0.005)
    return GstRtsp.RTSPStatusCode.OK


def _on_client_connected(_server, client):
    client.connect("pre-play-request", _wait_for_segment)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", default="0")
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--stream", action="append", required=True, help="NAME=FILE.mp4")
    ap.add_argument(
        "--unshared",
        action="store_true",
        help="one pipeline per client (each starts at the clip's start) instead of one live timeline per mount",
    )
    args = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.stream:
        name, src = spec.split("=", 1)
        if not os.path.exists(src):
            sys.exit(f"no such file: {src}")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_shared(not args.unshared)  # shared: every client sees one live timeline, like a camera
        factory.set_launch(
            f"( filesrc location={src} ! qtdemux name=demux ! h264parse config-interval=-1 "
            "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        factory.connect("media-configure", _on_media_configure)
        mounts.add_factory("/" + name, factory)
    server.connect("client-connected", _on_client_connected)
    serve(server, lambda port: f"rtsp://{args.address}:{port}")


def serve(server, url_of_port):
    """Attach, print 'READY <url>' for the test fixture, run until SIGTERM/SIGINT (shared by the test servers)."""
    if server.attach(None) == 0:
        sys.exit("attach failed (port busy?)")
    print(f"READY {url_of_port(server.get_bound_port())}", flush=True)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    loop.run()


if __name__ == "__main__":
    main()
