#!/usr/bin/python3
"""Test camera with an ONVIF audio back-channel, on GStreamer's ONVIF RTSP server (loopback only).

Run with Debian's /usr/bin/python3 (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good).
  onvif_backchannel_server.py --port 0 --out /tmp/received.ulaw     ONVIF camera: the audio a client sends on the
                                                                    back-channel is written to --out as raw mu-law
  onvif_backchannel_server.py --port 0 --plain                      plain RTSP server, no back-channel (answers 551)
Prints 'READY rtsp://127.0.0.1:PORT/cam' once listening. Stops on SIGTERM/SIGINT.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: E402
from rtsp_loop_server import serve  # noqa: E402  (same folder: the script's own directory is on sys.path)

# The camera's own stream: a silent live audio track (a real camera also has video; not needed here). A client
# that sets up the back-channel alone (as ours does) leaves this track without a transport, so its RTP is
# "not-linked" inside rtpbin; without the tee that is a streaming error, and when it lands while PLAY is still
# taking the pipeline to PLAYING, gst-rtsp-server 1.22 never starts the back-channel's appsrc: the camera drops
# every packet sent to it (seen 8 times in 122 sessions under load). allow-not-linked turns that into OK.
MEDIA = (
    "( audiotestsrc is-live=true wave=silence ! audio/x-raw,rate=8000,channels=1 ! mulawenc "
    "! tee allow-not-linked=true ! rtppcmupay name=pay0 pt=0 )"
)
# GStreamer finds the back-channel by the element name "depay_backchannel"; its caps become the SDP of the
# sendonly track. filesink gets the depayloaded mu-law bytes as they arrive.
BACKCHANNEL = (
    '( capsfilter caps="application/x-rtp, media=audio, payload=0, clock-rate=8000, encoding-name=PCMU" '
    "name=depay_backchannel ! rtppcmudepay ! filesink location={out} buffer-mode=unbuffered sync=false async=false )"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", default="0")
    ap.add_argument("--out")
    ap.add_argument("--plain", action="store_true")
    a = ap.parse_args()
    Gst.init(None)
    if a.plain:
        server = GstRtspServer.RTSPServer()
        factory = GstRtspServer.RTSPMediaFactory()
    else:
        if not a.out:
            sys.exit("--out is required unless --plain")
        server = GstRtspServer.RTSPOnvifServer.new()
        factory = GstRtspServer.RTSPOnvifMediaFactory.new()
        # Not set by the factory itself (GStreamer's own example sets it too): with the default GstRTSPMedia
        # type the ONVIF factory builds no media and every DESCRIBE gets "400 Bad Request".
        factory.set_media_gtype(GstRtspServer.RTSPOnvifMedia.__gtype__)
        factory.set_backchannel_launch(BACKCHANNEL.format(out=a.out))
    factory.set_launch(MEDIA)
    factory.set_shared(False)
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    server.get_mount_points().add_factory("/cam", factory)
    serve(server, lambda port: f"rtsp://127.0.0.1:{port}/cam")


if __name__ == "__main__":
    main()
