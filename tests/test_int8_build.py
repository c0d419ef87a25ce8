"""The engine's background INT8 builds (monitor/runtime/int8_build.py): when they start, how often the engine
looks for work, and that stopping the engine ends a build's whole process group. Real processes; the build
command is replaced by plain ones (the real `monitor export --int8` run is in tests/test_int8_export.py), except
where a killed engine must not leave its real build running."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from detectors import ensure_default_model
from monitor.runtime import int8_build
from monitor.runtime.int8_build import Int8Builds


class Scripted(Int8Builds):
    """Runs a shell script instead of the export (it writes its pid, and its child's, to files)."""

    def __init__(self, tmp: Path, script: str, after_s: float = 0.0) -> None:
        super().__init__(tmp / "streams.yaml", tmp / "data", after_s)
        self.script = script

    def command(self, size: int, cameras: list[str]) -> list[str]:
        return ["sh", "-c", self.script, "build", str(size), *cameras]


def _wait(builds: Int8Builds, wanted: dict[int, list[str]], timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (ended := builds.poll(lambda: wanted)) is None:
        assert time.monotonic() < deadline, "the build did not end"
        time.sleep(0.05)
    return ended


def test_builds_wait_for_the_engine_to_settle_then_run_each_size_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[float] = []

    def wanted() -> dict[int, list[str]]:
        asked.append(time.monotonic())
        return {960: ["gate"], 640: ["lane", "plaza"]}

    waiting = Scripted(tmp_path, "exit 0", after_s=3600)
    assert waiting.poll(wanted) is None and waiting.running is None and not asked  # not settled: not even asked
    builds = Scripted(tmp_path, 'echo "$@"')
    assert builds.poll(wanted) is None and builds.running == 640  # the smallest size first
    assert _wait(builds, {}) == 640
    assert (tmp_path / "data" / "int8-build-640.log").read_text() == "640 lane plaza\n"
    monkeypatch.setattr(int8_build, "LOOK_EVERY_S", 0.0)
    assert builds.poll(wanted) is None and builds.running == 960
    assert _wait(builds, {}) == 960
    assert builds.poll(wanted) is None and builds.running is None  # each size once per run
    assert builds.tried == {640, 960}


def test_the_engine_looks_for_work_at_most_once_a_minute(tmp_path: Path) -> None:
    asked = 0

    def nothing() -> dict[int, list[str]]:
        nonlocal asked
        asked += 1
        return {}

    builds = Scripted(tmp_path, "exit 0")
    for _ in range(50):
        assert builds.poll(nothing) is None
    assert asked == 1  # the 0.5 s health tick does not glob the export cache each time


def test_stop_ends_the_build_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    builds = Scripted(tmp_path, f"sleep 60 & echo $$ $! > {pids}; wait")
    builds.poll(lambda: {320: ["plaza"]})
    deadline = time.monotonic() + 10
    while not pids.exists() or not pids.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shell, child = (int(x) for x in pids.read_text().split())
    builds.stop()
    assert builds.running is None
    for pid in (shell, child):
        deadline = time.monotonic() + 5
        while _alive(pid):
            assert time.monotonic() < deadline, f"process {pid} outlived stop()"
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return status != "Z"  # a zombie has ended (its parent, gone too, was not ours to reap)


def test_builds_run_on_their_own_thread_and_report_each_end(tmp_path: Path) -> None:
    """The engine's loop never waits on the look-ups or the build: a thread polls and calls back."""
    import threading

    ended: list[tuple[int, str]] = []
    builds = Scripted(tmp_path, "sleep 0.3")
    builds.start(lambda: {480: ["plaza"]}, lambda size: ended.append((size, threading.current_thread().name)))
    try:
        deadline = time.monotonic() + 10
        while not ended:
            assert time.monotonic() < deadline, "the build's end was not reported"
            time.sleep(0.05)
        assert ended == [(480, "int8-build")] and builds.tried == {480}
    finally:
        started = time.monotonic()
        builds.stop()
        assert time.monotonic() - started < 2.0  # the thread's wait ends at once


STAND_IN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from monitor.runtime.int8_build import Int8Builds
    config, data = Path(sys.argv[1]), Path(sys.argv[2])
    builds = Int8Builds(config, data, 0.0)
    builds.poll(lambda: {320: ["plaza"]})
    print(builds._running[1].pid, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
def test_a_killed_engine_leaves_no_build_behind_and_the_next_build_cleans_up(tmp_path: Path, square_mp4: Path) -> None:
    """kill -9 of the engine mid-build: the real `monitor export --int8` it started ends its own process group; its
    half-made model stays in a temporary folder the cache ignores, and the next build removes it."""
    model = tmp_path / "models" / "yolo11n-pose.pt"
    model.parent.mkdir()
    shutil.copyfile(ensure_default_model(Path(__file__).resolve().parent.parent / "models"), model)
    config = tmp_path / "streams.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\ndetector: {{model: {model}}}\ncameras:\n  plaza:\n    url: {square_mp4}\n"
    )
    exports = model.with_name("yolo11n-pose.exports")
    engine = subprocess.Popen([sys.executable, "-c", STAND_IN, str(config), str(tmp_path / "data")],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    build: int | None = None
    try:
        assert engine.stdout is not None
        build = int(engine.stdout.readline())
        deadline = time.monotonic() + 120
        while not list(exports.glob(".openvino-int8-320-*.part")):  # well past its start: quantizing
            assert time.monotonic() < deadline and _alive(build), "the build did not get to quantizing"
            time.sleep(0.1)
        assert "ends with its engine" in (tmp_path / "data" / "int8-build-320.log").read_text()
        engine.kill()  # SIGKILL: no stop(), no clean-up
        engine.wait()
        deadline = time.monotonic() + 10
        while _alive(build):
            assert time.monotonic() < deadline, "the INT8 build outlived its killed engine"
            time.sleep(0.05)
    finally:
        for pid in (engine.pid, build):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
    assert list(exports.glob(".openvino-int8-320-*.part")), "the killed build's half-made model is still there"
    assert not list(exports.glob("openvino-int8-320-*/model.xml")), "nothing half-made is in the cache"
    done = subprocess.run([sys.executable, "-m", "monitor", "export", "--int8", "-c", str(config), "--imgsz", "320"],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(exports.glob("openvino-int8-320-*/model.xml")) and not list(exports.glob(".*.part"))
