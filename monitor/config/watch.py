"""Notice when streams.yaml was saved and re-read it; an invalid file never replaces a working config.

Shared by the engine (which then applies the difference to its cameras) and the web page (which shows
the zones and cameras of the config the engine runs, not the one it started with).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from monitor.config import ConfigError, LoadedConfig, check_files, load_config

log = logging.getLogger(__name__)


FileSignature = tuple[int, int, int]


def config_signature(path: Path) -> FileSignature | None:
    """What changes when the file is saved: modification time, inode (a save replaces the file by a rename, so two
    saves within one clock tick still differ) and size; None when it cannot be read (then nothing is reloaded)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino, st.st_size


class ConfigWatcher:
    """The newest valid config of one file; ``poll()`` is a single ``stat`` while nothing changed."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.current = loaded
        self._signature = config_signature(loaded.path)
        self._lock = threading.Lock()  # web requests poll from several threads

    def poll(self) -> LoadedConfig | None:
        """The new config when the file was saved since and is valid; None otherwise (errors are logged)."""
        with self._lock:
            signature = config_signature(self.current.path)
            if signature == self._signature:
                return None
            self._signature = signature
            try:
                new = load_config(self.current.path)
                problems = check_files(new, decode=False)
                fatal = [p for p in problems if p.path[:1] != ("cameras",)]
                if fatal:
                    raise ConfigError(fatal)
                for problem in problems:  # one bad camera goes offline with its error; the others are applied
                    log.error("%s", problem)
            except ConfigError as exc:
                log.error("%s changed but is invalid; still running the previous config:\n%s", self.current.path, exc)
                return None
            self.current = new
            return new
