"""Build ONNX / OpenVINO IR / TensorRT exports of a .pt model once, and cache them next to it.

Cache layout: ``<model dir>/<stem>.exports/<format>-<settings>-<source sha256[:12]>/`` holding the
exported file(s) and ``manifest.json`` (settings, source hash, exporter version, each file's sha256,
and the model metadata the bare backends need). The directory appears atomically (built in a temp
dir, renamed into place) under an exclusive ``flock``, so two processes never export at once and a
crash never leaves a half export; a manifest that does not verify is rebuilt.

The Ultralytics export runs in a subprocess: it imports torch (~570 MB), which a bare ONNX
Runtime/OpenVINO worker would otherwise carry for its whole life.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from detectors.base import DetectorError
from detectors.model_fetch import sha256_file

log = logging.getLogger(__name__)

ExportFormat = Literal["onnx", "openvino", "engine"]
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_OPSET = 17
CACHE_ENV_VAR = "VILLAGE_MONITOR_EXPORTS"  # optional override of the cache root (read-only model dirs)
LOW_SPACE_BYTES = 64 << 20  # a build that fails with less free than this is blamed on the disk (see writing_into)


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """Everything that changes the exported file; part of the cache key.

    ``imgsz`` only matters for fixed-shape exports and TensorRT (whose dynamic profile tops out at
    imgsz): a dynamic ONNX/IR serves every size and aspect (a fixed square export wastes ~40% on
    16:9 frames), so it is keyed without it and per-camera imgsz overrides share one export.
    """

    format: ExportFormat
    dynamic: bool = True
    imgsz: int = 640
    half: bool = False
    opset: int = DEFAULT_OPSET
    batch: int = 1  # fixed-shape TensorRT engines need their largest batch at build time

    def key(self) -> str:
        """Readable, unique directory name part."""
        shape = f"{self.imgsz}" if self._keyed_by_size() else "dyn"
        if self.dynamic and self.format == "engine":
            shape = f"dyn{self.imgsz}"
        precision = "fp16" if self.half else "fp32"
        parts = [self.format, shape, precision, f"op{self.opset}"]
        if self.format == "engine":
            parts.append(f"b{self.batch}")
        return "-".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The settings as stored in the manifest (imgsz dropped when dynamic, see class doc)."""
        data = asdict(self)
        if not self._keyed_by_size():
            data.pop("imgsz")
        return data

    def _keyed_by_size(self) -> bool:
        return not self.dynamic or self.format == "engine"


@dataclass(frozen=True, slots=True)
class ExportedModel:
    """A verified cached export: its directory, main file and the metadata the backends need."""

    directory: Path
    path: Path  # .onnx, .xml or .engine
    names: dict[int, str]
    kpt_shape: tuple[int, int] | None
    stride: int
    task: str
    rebuilt: bool  # True when this call exported (False: cache hit)


def cache_dir(source: Path, settings: ExportSettings, source_sha: str) -> Path:
    """Where the export of ``source`` with ``settings`` lives."""
    override = os.environ.get(CACHE_ENV_VAR)
    root = Path(override) if override else source.parent
    return root / f"{source.stem}.exports" / f"{settings.key()}-{source_sha[:12]}"


def _exporter_version() -> str:
    """Ultralytics' version without importing it (importing pulls torch)."""
    try:
        return metadata.version("ultralytics")
    except metadata.PackageNotFoundError:
        return "unknown"


def read_manifest(directory: Path, expect: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest if it and every file it lists verify, else None (missing, stale or corrupt)."""
    try:
        manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if any(manifest.get(k) != v for k, v in expect.items()):
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, digest in files.items():
        path = directory / name
        if not path.is_file() or sha256_file(path) != digest:
            log.warning("export cache %s: %s is missing or corrupt; rebuilding", directory, name)
            return None
    return manifest


def _result(directory: Path, manifest: dict[str, Any], rebuilt: bool) -> ExportedModel:
    meta = manifest["model"]
    kpt = meta.get("kpt_shape")
    return ExportedModel(
        directory=directory,
        path=directory / manifest["main"],
        names={int(k): str(v) for k, v in meta["names"].items()},
        kpt_shape=(int(kpt[0]), int(kpt[1])) if kpt else None,
        stride=int(meta["stride"]),
        task=str(meta["task"]),
        rebuilt=rebuilt,
    )


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_export(source: Path, settings: ExportSettings, timeout_s: float = 900.0) -> ExportedModel:
    """Return the cached export of ``source``, building it first if missing, stale or corrupt."""
    if not source.is_file():
        raise DetectorError(f"model file not found: {source}")
    source_sha = sha256_file(source)
    target = cache_dir(source, settings, source_sha)
    expect = {
        "version": MANIFEST_VERSION,
        "source_sha256": source_sha,
        "settings": settings.as_dict(),
        "exporter": _exporter_version(),
    }
    manifest = read_manifest(target, expect)
    if manifest is not None:
        return _result(target, manifest, rebuilt=False)
    with locked(target.with_name(target.name + ".lock")):
        manifest = read_manifest(target, expect)  # another process may have built it while we waited
        if manifest is not None:
            return _result(target, manifest, rebuilt=False)
        started = time.monotonic()
        clear_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        try:
            with writing_into(target.parent, f"exporting {source.name} to {settings.format}"):
                _build(source, settings, tmp, expect, timeout_s)
                install_dir(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        manifest = read_manifest(target, expect)
        if manifest is None:
            raise DetectorError(f"export {target} did not verify right after it was built")
        log.info("exported %s -> %s in %.1f s", source.name, target, time.monotonic() - started)
        return _result(target, manifest, rebuilt=True)


@contextmanager
def writing_into(folder: Path, what: str) -> Iterator[None]:
    """Run a build that writes into ``folder``; a failure on a (nearly) full disk becomes one clear error.

    OpenVINO's serializer reports a full disk as ``RuntimeError: basic_ios::clear: iostream error`` and an
    export subprocess as whatever it printed last; the free space, measured before the half-written files are
    removed, says what happened. Other failures pass through unchanged.
    """
    try:
        yield
    except (OSError, RuntimeError) as exc:
        free = shutil.disk_usage(folder).free
        if getattr(exc, "errno", None) != errno.ENOSPC and free >= LOW_SPACE_BYTES:
            raise
        cause = f"{type(exc).__name__}: {str(exc)[-300:]}"
        raise DetectorError(f"{what}: the disk holding {folder} is full ({free / 1e6:.1f} MB free; {cause})") from exc


def clear_leftovers(target: Path) -> None:
    """Remove half-built copies of ``target`` a killed builder left (call under ``locked``: nobody else builds it)."""
    for pattern in (f".{target.name}.*.part", f".{target.name}.old-*"):
        for stale in target.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def install_dir(built: Path, target: Path) -> None:
    """Move the finished ``built`` directory to ``target``, replacing a stale one (call under ``locked``)."""
    if target.exists():  # stale or corrupt: move aside first so the rename is atomic
        trash = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(built, target)


def _build(source: Path, settings: ExportSettings, out: Path, expect: dict[str, Any], timeout_s: float) -> None:
    """Run the export subprocess into ``out`` and write the manifest last."""
    cmd = [sys.executable, "-m", "detectors.export", str(source), str(out), json.dumps(asdict(settings))]
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "False", "YOLO_VERBOSE": "False"}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DetectorError(f"exporting {source} to {settings.format} took over {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        raise DetectorError(f"exporting {source} to {settings.format} failed: {proc.stderr.strip()[-2000:]}")
    built: dict[str, Any] = json.loads((out / "export.json").read_text(encoding="utf-8"))
    (out / "export.json").unlink()
    files = {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}
    manifest = {**expect, "main": built["main"], "model": built["model"], "files": files, "created": time.time()}
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def _export_in_process(source: Path, out: Path, settings: ExportSettings) -> dict[str, Any]:
    """Export with Ultralytics (ONNX, TensorRT) and OpenVINO's converter (IR from the ONNX)."""
    if settings.format not in ("onnx", "openvino", "engine"):
        raise ValueError(f"unknown export format {settings.format!r}")
    from ultralytics.models import YOLO  # deferred: only this subprocess pays for torch

    work = out / "work"
    work.mkdir()
    local = work / source.name  # Ultralytics writes next to the model: keep that inside our temp dir
    shutil.copyfile(source, local)
    model: Any = YOLO(str(local))
    inner = model.model
    meta = {
        "names": {str(k): v for k, v in inner.names.items()},
        "kpt_shape": list(inner.kpt_shape) if getattr(inner, "kpt_shape", None) else None,
        "stride": int(max(inner.stride)),
        "task": str(model.task),
    }
    if settings.format == "engine":
        exported = Path(
            model.export(
                format="engine",
                dynamic=settings.dynamic,
                imgsz=settings.imgsz,
                half=settings.half,
                batch=settings.batch,
                device=0,
                verbose=False,
            )
        )
        main = "model.engine"
        shutil.move(exported, out / main)
    else:
        exported = Path(
            model.export(
                format="onnx",
                dynamic=settings.dynamic,
                imgsz=settings.imgsz,
                opset=settings.opset,
                simplify=False,  # onnxslim is optional; without it Ultralytics would try to pip-install it
                half=False,  # CPU export cannot trace fp16; OpenVINO compresses weights itself below
                device="cpu",
                verbose=False,
            )
        )
        if settings.format == "onnx":
            main = "model.onnx"
            shutil.move(exported, out / main)
        else:
            ov: Any = importlib.import_module("openvino")  # untyped; optional dependency
            ov_model = ov.convert_model(str(exported))
            main = "model.xml"
            ov.save_model(ov_model, str(out / main), compress_to_fp16=settings.half)
    shutil.rmtree(work)
    return {"main": main, "model": meta}


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry: ``python -m detectors.export SOURCE OUT_DIR SETTINGS_JSON``."""
    parser = argparse.ArgumentParser(description="Export a YOLO .pt model into OUT_DIR (used by ensure_export).")
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("settings")
    args = parser.parse_args(argv)
    settings = ExportSettings(**json.loads(args.settings))
    built = _export_in_process(args.source, args.out, settings)
    (args.out / "export.json").write_text(json.dumps(built), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
