"""Camera packets to fragmented MP4 for Media Source Extensions, one fragment per frame, without decoding.

FFmpeg's mp4 muxer does the real work (Annex B to length-prefixed NAL units, the avcC box): with
``frag_every_frame+empty_moov+default_base_moof`` it writes the init segment (ftyp+moov) at once and then one
self-contained moof+mdat per frame. A fragment is written when the *next* packet arrives (its duration is known
only then), so the live edge trails the camera by one frame interval.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import av

MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"
# Codecs whose packets browsers' MSE plays as they are; H.265 is not among them (see README "Live video").
REMUXABLE = {"h264"}


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a viewer needs before the first fragment: the codec, its MSE type and the init segment."""

    codec: str
    mime: str | None  # e.g. 'video/mp4; codecs="avc1.64001f"'; None: browsers cannot play it remuxed
    init: bytes
    width: int
    height: int


def avc_codec_string(init: bytes) -> str | None:
    """RFC 6381 ``avc1.PPCCLL`` read from the avcC box of an init segment (profile, constraints, level)."""
    at = init.find(b"avcC")
    if at < 0 or len(init) < at + 8:
        return None
    profile, constraints, level = init[at + 5 : at + 8]
    return f"avc1.{profile:02x}{constraints:02x}{level:02x}"


class Fmp4Remuxer:
    """One output MP4 in memory for one input video stream; ``push`` returns the bytes each packet completed."""

    def __init__(self, template: av.video.stream.VideoStream) -> None:
        self.codec = template.codec_context.name
        self._buffer = io.BytesIO()
        self._output = av.open(self._buffer, "w", format="mp4", options={"movflags": MOVFLAGS})
        self._stream = self._output.add_stream_from_template(template)
        self._output.start_encoding()  # writes ftyp+moov now: nothing may depend on a first packet
        init = self._take()
        mime = None
        if self.codec in REMUXABLE and (codec := avc_codec_string(init)) is not None:
            mime = f'video/mp4; codecs="{codec}"'
        self.info = StreamInfo(self.codec, mime, init, template.codec_context.width, template.codec_context.height)

    def _take(self) -> bytes:
        data = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    def push(self, packet: av.Packet) -> bytes:  # type: ignore[type-arg]
        """Mux one packet (its timestamps must increase); returns the previous packet's moof+mdat, or b""."""
        packet.stream = self._stream
        self._output.mux(packet)
        return self._take()

    def close(self) -> None:
        """Drop the output (the last frame's fragment is not needed by anyone)."""
        with contextlib.suppress(av.FFmpegError, ValueError):
            self._output.close()
