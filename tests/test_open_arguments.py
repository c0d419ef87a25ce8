"""How a camera source is opened: timeouts that cannot hang a worker, without a GIL-taking read callback."""

from __future__ import annotations

from monitor.ingest.worker import Source, open_arguments


def test_rtsp_reads_are_timed_out_by_ffmpeg_and_opening_by_pyav() -> None:
    options, timeout = open_arguments(Source("rtsp://10.0.0.5/sub", False, open_timeout_s=3, read_timeout_s=2.5))
    assert options["rtsp_transport"] == "tcp"
    assert options["timeout"] == "2500000"  # microseconds, FFmpeg's RTSP socket I/O timeout
    assert timeout == (3, None)  # PyAV's callback only while opening


def test_other_network_sources_keep_pyavs_timeouts_and_files_need_none() -> None:
    options, timeout = open_arguments(Source("http://10.0.0.5/video.mjpg", False, open_timeout_s=3, read_timeout_s=4))
    assert options == {} and timeout == (3, 4)
    assert open_arguments(Source("/data/gate.mp4", True)) == ({}, None)
