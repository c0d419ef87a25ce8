"""Background jobs that end with the engine that started them, even when it is killed -9.

A job the engine runs in a process group of its own (the INT8 build: NNCF and OpenVINO, minutes of CPU) is ended
by ``stop()`` on a clean exit, but a killed engine cannot do that; the job would go on as an orphan. The job
watches its parent instead: once it is gone (the job was handed to init or a subreaper), the job kills its own
process group. Polling ``getppid`` from a thread needs no ``preexec_fn`` in the threaded engine, and unlike the
kernel's parent-death signal it does not fire when merely the *thread* that started the job ends.
"""

from __future__ import annotations

import os
import signal
import threading
import time

POLL_S = 0.5  # an orphan lives at most this long


def _end_group() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)  # this process and its helpers: nothing is left half done but temp files


def exit_with_parent(parent_pid: int) -> None:
    """End this process group when ``parent_pid`` (our parent now) ends; at once if it already has."""
    if os.getppid() != parent_pid:
        _end_group()

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_S)
        _end_group()

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
