"""The ``monitor`` command: run the engine, check a config, list incidents."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from monitor.config import check_files, load_or_report
from monitor.redact import ScrubFilter, redact_fields, redact_url, scrub

if TYPE_CHECKING:
    from detectors.calibration import Calibration
    from monitor.config import LoadedConfig
    from monitor.engine import Engine
    from monitor.incident import Incident
    from monitor.web.metrics import EngineMetrics
    from monitor.web.server import WebServer

log = logging.getLogger("monitor")

DEFAULT_CONFIG = "streams.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    import redis

    try:
        result: int = args.func(args)
    except redis.RedisError as exc:  # down or frozen (calls time out): say so, no traceback
        print(f"monitor: Redis did not answer: {type(exc).__name__}: {scrub(str(exc))}", file=sys.stderr)
        return 1
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: streams.yaml)")
        return p

    run = command("run", "run the engine on the configured cameras (and serve the web page)")
    run.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    run.add_argument("--no-web", action="store_true", help="do not serve the web page")
    run.add_argument("--node", default=None, help="this machine's name in the cluster (default: the host name)")
    run.set_defaults(func=cmd_run)
    check = command("check", "validate the config and the files it names; exit 1 on any problem")
    check.set_defaults(func=cmd_check)
    calibrate = command("calibrate", "pick a camera's detector setting from the people in its first minutes")
    calibrate.add_argument("camera", help="camera name from the config")
    calibrate.add_argument("--seconds", type=float, default=120.0, help="how much of the stream to sample (120)")
    calibrate.add_argument("--frames", type=int, default=12, help="frames measured over that time (default 12)")
    calibrate.add_argument("--json", action="store_true", help="the stored record as JSON")
    calibrate.set_defaults(func=cmd_calibrate)
    export = command("export", "build the INT8 detector for the configured cameras (used by precision: auto)")
    export.add_argument("--int8", action="store_true", required=True, help="quantize with NNCF and gate against f32")
    export.add_argument(
        "--imgsz", type=int, action="append", help="input size (repeatable; default: every size the cameras use)"
    )
    export.add_argument("--frames", type=int, default=None, help="calibration frames (default 128)")
    export.add_argument(
        "--camera", action="append", help="calibrate on this camera's frames only (repeatable; default: all)"
    )
    export.add_argument(
        "--with-parent", type=int, metavar="PID", help="end when process PID ends (the engine's background builds)"
    )
    export.set_defaults(func=cmd_export)
    incidents = command("incidents", "list incidents, newest first")
    incidents.add_argument("--json", action="store_true", help="JSON Lines, one incident per line")
    incidents.add_argument("--limit", type=int, default=None, help="at most this many")
    incidents.set_defaults(func=cmd_incidents)
    speaker = sub.add_parser("speaker", help="list, test or stand in for speakers").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = speaker.add_parser("list", help="configured speakers and this machine's sound outputs")
    listing.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: streams.yaml)")
    listing.set_defaults(func=cmd_speaker_list)
    test = speaker.add_parser("test", help="play an announcement on one speaker; exit 0 only if delivered")
    test.add_argument("name", help="speaker name from the config")
    test.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: streams.yaml)")
    test.add_argument("--file", help="audio file (default: the first rule's announcement)")
    test.set_defaults(func=cmd_speaker_test)
    listen = speaker.add_parser("listen", help="stand-in RTP horn: save received announcements as WAV")
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=int, default=5004)
    listen.add_argument("--out", default="horn", help="directory for the WAV files")
    listen.set_defaults(func=cmd_speaker_listen)
    probe = sub.add_parser("probe", help="measure a camera stream and suggest detect settings")
    probe.add_argument("url", help="rtsp:// URL or video file")
    probe.add_argument("--seconds", type=float, default=6.0, help="how long to read (default 6)")
    probe.add_argument("--detect-fps", type=float, default=2.0, help="planned detections per second (default 2)")
    probe.add_argument("--json", action="store_true", help="machine-readable output")
    probe.add_argument(
        "--calibrate", action="store_true", help="also measure people and pick the detector setting (12 frames)"
    )
    probe.set_defaults(func=cmd_probe)
    cluster = sub.add_parser("cluster", help="several machines sharing the cameras").add_subparsers(
        required=True, metavar="ACTION"
    )
    cluster_status = cluster.add_parser("status", help="nodes, whether alive, and which node runs each camera")
    cluster_status.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: streams.yaml)")
    cluster_status.add_argument("--json", action="store_true", help="machine-readable output")
    cluster_status.set_defaults(func=cmd_cluster_status)
    config = sub.add_parser("config", help="config tools").add_subparsers(required=True, metavar="ACTION")
    schema = config.add_parser("schema", help="print the JSON Schema of streams.yaml (for editors)")
    schema.set_defaults(func=cmd_config_schema)
    from monitor.evaluate import register as register_evaluate
    from monitor.web.cli import register as register_web

    register_web(sub)  # user add, serve
    register_evaluate(sub)  # analyze, eval
    return parser


def _setup_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    # Logs go to stderr: stdout is for data (`monitor incidents --json`).
    handler = RichHandler(
        console=Console(stderr=True), show_path=False, rich_tracebacks=True, log_time_format="%H:%M:%S"
    )
    handler.addFilter(ScrubFilter())  # no log line carries a credential, whichever module wrote it
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", handlers=[handler])
    for noisy in ("ultralytics", "libav"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate everything and print every problem at once."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    problems = check_files(loaded, decode=True)
    for problem in problems:
        print(problem, file=sys.stderr)
    cfg = loaded.config
    zones = sum(len(c.zones) for c in cfg.cameras.values())
    inputs = sum(1 if c.inputs is None else 2 for c in cfg.cameras.values())
    schedules = sum((getattr(r, "schedule", None) is not None) + (r.quiet_hours is not None) for r in cfg.rules)
    print(
        f"{loaded.path}: {len(cfg.cameras)} camera(s), {inputs} input(s), {zones} zone(s), "
        f"{len(cfg.speakers)} speaker(s), {len(cfg.rules)} rule(s), {schedules} schedule(s): "
        f"{'OK' if not problems else f'{len(problems)} problem(s)'}"
    )
    if not problems:  # problems first: the settings matter once the cameras can run
        _print_calibrations(loaded)
        _print_decoding(loaded)
    return 1 if problems else 0


def _print_decoding(loaded: LoadedConfig) -> None:
    """Where each camera set to hardware decoding will decode on this machine (the device is tried for real)."""
    from monitor.ingest.hwaccel import choose_decode

    for name, cam in loaded.config.cameras.items():
        if cam.hwaccel != "none":
            print(f"  {name}: hwaccel {cam.hwaccel}: decodes on {choose_decode(cam.hwaccel).reason}")


def _print_calibrations(loaded: LoadedConfig) -> None:
    """Each camera's detector setting: its own override, the stored calibration, or calibration still to come."""
    from monitor.runtime.calibration import calibration_off, camera_record_path, load_record

    for name in loaded.config.cameras:
        off = calibration_off(loaded, name)
        record = None if off else load_record(camera_record_path(loaded, name))
        if off:
            settings = loaded.detector_for(name)
            print(f"  {name}: imgsz {settings.imgsz}, conf {settings.confidence:g} (no calibration: {off})")
        elif record is None:
            print(f"  {name}: calibrates when it starts (or: monitor calibrate {name})")
        else:
            print(f"  {name}: {_calibration_text(record)}")


def _calibration_text(record: Calibration) -> str:
    """The choice, its evidence and when, in one line."""
    from datetime import datetime

    when = datetime.fromtimestamp(record.at).isoformat(timespec="seconds")
    w, h = record.frame_size
    return f"{record.summary()}; {w}x{h}, {when}"


def cmd_export(args: argparse.Namespace) -> int:
    """Quantize the configured model at each size the cameras run, calibrated on their own frames; a model that
    fails its accuracy gate is kept aside (the engine then stays on bf16/f32 and says why)."""
    if args.with_parent is not None:
        from monitor.runtime.parent import exit_with_parent

        exit_with_parent(args.with_parent)
        print(f"ends with its engine (pid {args.with_parent})", flush=True)
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    settings = loaded.config.detector
    if isinstance(settings.model, tuple) or (isinstance(settings.model, str) and "://" in settings.model):
        print("detector.model names Triton servers: INT8 is built for a local model", file=sys.stderr)
        return 1
    from detectors import resolve_model_path
    from detectors.int8 import DEFAULT_CALIBRATION_FRAMES, DEFAULT_GATE_FRAMES, GateSettings, build_from_sources
    from monitor.config import file_path
    from monitor.runtime.calibration import camera_record_path, load_record

    # the gate compares at the threshold the cameras run (the lowest where they differ: near-threshold people
    # are what INT8 loses); a calibrated camera runs its calibrated size and confidence
    unknown = sorted(set(args.camera or []) - set(loaded.config.cameras))
    if unknown:
        print(f"unknown camera(s) {', '.join(unknown)} (known: {', '.join(loaded.config.cameras)})", file=sys.stderr)
        return 1
    sources, sizes = [], dict.fromkeys(args.imgsz or [], settings.confidence)
    for name, camera in loaded.config.cameras.items():
        if args.camera and name not in args.camera:
            continue
        path = file_path(camera.detect_url, loaded.base_dir)
        sources.append(str(path) if path is not None else camera.detect_url)
        record = load_record(camera_record_path(loaded, name))
        runs = record.choice if record is not None and record.choice else loaded.detector_for(name)
        if args.imgsz:
            sizes = {size: min(conf, runs.confidence) for size, conf in sizes.items()}
        else:
            sizes[runs.imgsz] = min(sizes.get(runs.imgsz, runs.confidence), runs.confidence)
    model = Path(resolve_model_path(settings, loaded.base_dir))
    for imgsz, confidence in sorted(sizes.items()):
        gate = GateSettings(confidence, settings.iou)
        try:
            built = build_from_sources(
                model, imgsz, sources, args.frames or DEFAULT_CALIBRATION_FRAMES, DEFAULT_GATE_FRAMES, gate
            )
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"imgsz {imgsz}: {type(exc).__name__}: {scrub(str(exc), *sources)}", file=sys.stderr)
            return 1
        verdict = "used by precision: auto" if built.verdict.passed else "REFUSED: the engine keeps bf16/f32"
        print(f"imgsz {imgsz}: {built.path.name} ({'built' if built.rebuilt else 'cached'}): {verdict}")
        print(f"  {built.verdict.summary}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Sample the camera's stream now, choose its setting, store it for the engine (used at its next start)."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    if args.camera not in loaded.config.cameras:
        print(f"unknown camera {args.camera!r} (known: {', '.join(loaded.config.cameras)})", file=sys.stderr)
        return 1
    import av

    from monitor.config import file_path
    from monitor.runtime.calibration import (
        calibrate_images,
        calibration_off,
        camera_record_path,
        sample_video,
        save_record,
    )

    url = loaded.config.cameras[args.camera].detect_url
    path = file_path(url, loaded.base_dir)
    settings = loaded.detector_for(args.camera)
    try:
        frames = sample_video(str(path) if path is not None else url, args.seconds, args.frames)
        record, _ = calibrate_images(frames, settings, loaded.base_dir)
    except (av.FFmpegError, OSError, ValueError) as exc:
        print(f"{redact_url(url)}: {type(exc).__name__}: {scrub(str(exc), url)}", file=sys.stderr)
        return 1
    off = calibration_off(loaded, args.camera)
    if record.choice is not None and off is None:
        save_record(camera_record_path(loaded, args.camera), record)
    if args.json:
        print(json.dumps(record.to_json(), ensure_ascii=False))
    else:
        print(f"{args.camera}: {_calibration_text(record)}")
        for option in record.evidence.options:
            mark = "ok" if option.enough else "--"
            print(f"  {mark} {option.label:<20} smallest person {option.scaled_px:6.1f} px, cost x{option.cost:g}")
        if off is not None:
            print(f"  not stored: no calibration for this camera ({off})")
        elif record.choice is not None:
            print("  stored: the engine uses it from the camera's next start")
    return 0 if record.choice is not None else 1


def cmd_run(args: argparse.Namespace) -> int:
    """Run until Ctrl-C / SIGTERM or the given duration."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    for problem in check_files(loaded, decode=False):  # one bad camera or file never stops the others
        log.error("%s", problem)
    from monitor.config.cluster import node_name_problem
    from monitor.engine import Engine
    from monitor.web.metrics import EngineMetrics

    if args.node is not None and (bad_node := node_name_problem(args.node)) is not None:
        print(f"--node: {bad_node}", file=sys.stderr)
        return 1
    metrics = EngineMetrics()
    engine = Engine(loaded, metrics=metrics, node=args.node)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping (finishing clips, saving incidents)", signal.Signals(signum).name)
        engine.stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log.info(
        "village-monitor: %d camera(s) from %s, data in %s", len(loaded.config.cameras), loaded.path, loaded.data_dir
    )
    engine.start()
    server = None if args.no_web else _start_web(engine, metrics)
    try:
        engine.run(args.duration, started=True)
    finally:
        if server is not None:
            server.stop()
    return 0


def _start_web(engine: Engine, metrics: EngineMetrics) -> WebServer | None:
    """Serve the web page from the engine's process (it shares Redis and the metrics)."""
    from monitor.web.app import create_app
    from monitor.web.server import WebServer

    assert engine.store is not None
    web = engine.loaded.config.web
    try:
        health = engine.health
        app = create_app(engine.store.r, engine.loaded, metrics=metrics, engine_health=lambda: health().to_json(),
                         local_packets=engine.packet_taps)  # fmt: skip
        server = WebServer(app, web.host, web.port).start()
    except (OSError, RuntimeError) as exc:  # a busy port must not stop the cameras
        log.error("web page not served on %s:%d: %s", web.host, web.port, exc)
        return None
    log.info("web page: %s", server.url)
    return server


def cmd_incidents(args: argparse.Namespace) -> int:
    """Print incidents from Redis (the embedded one is started for the query if not running), and those with
    changes still waiting in this machine's outbox, as they will be once delivered (marked ``waiting``).

    Redis away: the outbox's incidents alone, a note on stderr, exit status 1 (the list is not complete).
    """
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    import redis

    from monitor.store.embedded import connect
    from monitor.store.incidents import IncidentStore
    from monitor.store.outbox import OUTBOX_NAME, fold_waiting, read_waiting

    changes, copies = read_waiting(loaded.data_dir / OUTBOX_NAME)
    stored: dict[str, Incident] = {}
    try:
        client, embedded = connect(loaded.config.redis_url, loaded.data_dir)
        try:
            store = IncidentStore(client)
            stored = {i.id: i for i in store.incidents(limit=args.limit)}
            waiting = fold_waiting(changes, lambda i: stored.get(i) or store.incident(i), copies)
        finally:
            if embedded is not None:
                embedded.stop()
        problem = None
    except redis.RedisError as exc:
        waiting = fold_waiting(changes, lambda _i: None, copies)
        problem = f"Redis did not answer ({type(exc).__name__}: {scrub(str(exc))})"
    incidents = sorted({**stored, **waiting}.values(), key=lambda i: i.opened_ts, reverse=True)[: args.limit]
    if problem is not None:
        print(f"monitor incidents: {problem}: only the {len(waiting)} incident(s) waiting in this machine's "
              f"outbox ({loaded.data_dir / OUTBOX_NAME}) are shown", file=sys.stderr)  # fmt: skip
    if args.json:
        for incident in incidents:
            record = {**incident.to_record(), "waiting": incident.id in waiting}
            print(json.dumps(record, ensure_ascii=False))
    else:
        _print_table(incidents, set(waiting))
    return 1 if problem is not None else 0


def _print_table(incidents: list[Incident], waiting: set[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "kind", "camera", "zone", "status", "opened", "closed", "peak", "announced", "clip")
    for incident in incidents:
        plays = incident.announcements
        table.add_row(
            incident.id,
            incident.kind,
            incident.camera,
            incident.zone or "-",
            incident.status + (" (waiting)" if incident.id in waiting else ""),
            (incident.opened_at or "")[:19],
            (incident.closed_at or "-")[:19],
            str(incident.peak_count),
            f"{sum(1 for p in plays if p.ok)}/{len(plays)}",
            Path(incident.clip).name if incident.clip else "-",
        )
    Console().print(table)
    if waiting:
        print("(waiting): changes not yet delivered to Redis; the engine delivers them when it can")


def cmd_speaker_list(args: argparse.Namespace) -> int:
    """Print configured speakers and the local sound outputs PyAudio sees."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    for name, cfg in loaded.config.speakers.items():
        fields = redact_fields(cfg.model_dump(exclude={"kind"}, exclude_defaults=True))
        print(f"{name}: {cfg.kind} " + " ".join(f"{k}={v}" for k, v in fields.items()))
    from speakers.local import list_output_devices

    print("local sound outputs:")
    for index, device, channels in list_output_devices():
        print(f"  [{index}] {device} ({channels} ch)")
    return 0


def cmd_speaker_test(args: argparse.Namespace) -> int:
    """Play a file on one speaker now."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    cfg = loaded.config.speakers.get(args.name)
    if cfg is None:
        print(
            f"{loaded.path}: unknown speaker '{args.name}' (known: {', '.join(loaded.config.speakers)})",
            file=sys.stderr,
        )
        return 1
    audio = args.file or next((r.announcement for r in loaded.config.rules if r.announcement), None)
    if audio is None:
        print("no --file given and no rule has an announcement", file=sys.stderr)
        return 1
    from speakers import SpeakerError, create_speaker, load_announcement
    from speakers.audio import AnnouncementError

    try:
        speaker = create_speaker(args.name, cfg)
        speaker.play(load_announcement(loaded.resolve(audio), speaker.sample_rate), threading.Event())
    except (SpeakerError, AnnouncementError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"played {audio} on {args.name}")
    return 0


def cmd_speaker_listen(args: argparse.Namespace) -> int:
    """Receive RTP announcements until interrupted."""
    from speakers.listen import RtpRecorder

    recorder = RtpRecorder(Path(args.out), args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: recorder.stop())
    signal.signal(signal.SIGINT, lambda *_: recorder.stop())
    log.info("stand-in horn listening on %s:%d, saving to %s/", args.host, args.port, args.out)
    recorder.serve()
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Connect, measure, suggest."""
    import av

    from monitor.ingest.probe import probe

    try:
        result = probe(args.url, args.seconds, args.detect_fps)
    except (av.FFmpegError, OSError, ValueError) as exc:
        print(f"{redact_url(args.url)}: {type(exc).__name__}: {scrub(str(exc), args.url)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    gop = f"{result.keyframe_interval_s:.2f} s" if result.keyframe_interval_s else "unknown"
    print(
        f"{result.url}\n  codec {result.codec}, {result.width}x{result.height}, {result.fps:g} fps, "
        f"keyframe every {gop}, audio: {'yes' if result.has_audio else 'no'}\n  suggest: {result.advice}"
    )
    if args.calibrate:
        from detectors import DetectorConfig
        from monitor.runtime.calibration import FRAMES, calibrate_images, sample_video

        try:
            record, _ = calibrate_images(sample_video(args.url, args.seconds, FRAMES), DetectorConfig())
        except (av.FFmpegError, OSError, ValueError) as exc:
            print(f"  calibration failed: {scrub(str(exc), args.url)}", file=sys.stderr)
            return 1
        print(f"  calibration over {args.seconds:g} s: {_calibration_text(record)}")
    return 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    """Print the cluster's nodes and camera owners, as etcd has them."""
    loaded = load_or_report(args.config)
    if loaded is None:
        return 1
    cluster = loaded.config.cluster
    if cluster is None:
        print(f"{loaded.path}: no 'cluster:' section: one machine runs every camera", file=sys.stderr)
        return 1
    from monitor.cluster.etcd import EtcdError
    from monitor.cluster.status import read_status

    try:
        status = read_status(cluster, loaded.config.cameras)
    except EtcdError as exc:
        print(f"etcd unreachable: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, ensure_ascii=False))
        return 0
    for node in status["nodes"]:
        state = "alive" if node["alive"] else "DEAD"
        print(f"{node['name']}: {state}, capacity {node['capacity']:g}, {len(node['cameras'])} camera(s): "
              f"{', '.join(node['cameras']) or '-'}")  # fmt: skip
    unowned = sorted(camera for camera, node in status["cameras"].items() if node is None)
    if unowned:
        print(f"not running anywhere now: {', '.join(unowned)}")
    return 0


def cmd_config_schema(_args: argparse.Namespace) -> int:
    """The JSON Schema editors use to complete and check streams.yaml."""
    from monitor.config import Config

    print(json.dumps(Config.model_json_schema(), indent=2, ensure_ascii=False))
    return 0
