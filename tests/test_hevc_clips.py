"""H.265 incident clips on real media: the clip is tagged hvc1 with its parameter sets in hvcC, browsers without HEVC
get an H.264 copy made once in the background (started when the clip is cut, or on the first view that needs it,
202 with progress meanwhile), a damaged clip fails clearly, retention deletes the copy with the clip, and the
blurred export works on HEVC. The H.265 sources are encoded from the sample video with ffmpeg's libx265."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from monitor.config import load_config
from monitor.config.retention import RetentionConfig
from monitor.ingest.clips import write_clip
from monitor.ingest.transcode import copy_path, partial_path, transcode_h264
from monitor.store.incidents import IncidentStore
from monitor.store.retention import apply_retention
from monitor.web.jobs import JobRunner
from tests.support.browser import login, until
from tests.support.clips import packets
from tests.support.web import Site, make_media, running_site, seed_incident, write_config

HVC1 = 'video/mp4; codecs="hvc1.1.6.L93.B0"'  # what incident.js asks the browser
PARAMETER_SETS = {32, 33, 34}  # HEVC NAL unit types: VPS, SPS, PPS
LONG_S = 30.0  # long enough that the copy takes visibly long (300 frames at 768x576)
DONE_S = 180.0  # generous: two cores shared with other test runs


def ffmpeg() -> str:
    return shutil.which("ffmpeg") or pytest.skip("apt-get install ffmpeg")


def encode_hevc(source: Path, out: Path, seconds: float) -> Path:
    """An H.265 camera's stream: libx265, a keyframe every 2 s like the sample video, tagged hev1 (ffmpeg's default)."""
    params = "keyint=20:min-keyint=20:log-level=error"
    args = ["-t", str(seconds), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", params, "-an"]
    subprocess.run([ffmpeg(), "-y", "-v", "error", "-i", str(source), *args, str(out)], check=True)
    return out


def probe(path: Path) -> dict[str, Any]:
    """ffprobe's view: codec, tag, frames decoded, the video's duration (a clip with B-frames starts at its first
    frame's presentation time, so the container's duration would count that offset too)."""
    entries = "stream=codec_name,codec_tag_string,nb_read_frames,duration"
    ffprobe = shutil.which("ffprobe") or pytest.skip("apt-get install ffmpeg")
    out = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", entries, "-of", "json",
         str(path)], check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    stream = json.loads(out)["streams"][0]
    return {
        "codec": stream["codec_name"],
        "tag": stream["codec_tag_string"],
        "frames": int(stream["nb_read_frames"]),
        "duration": float(stream["duration"]),
    }


def hvcc_nal_types(path: Path) -> set[int]:
    """NAL unit types stored in the MP4's hvcC box (ISO/IEC 14496-15: 22 header bytes, then the NAL arrays)."""
    data = path.read_bytes()
    body = data[data.index(b"hvcC") + 4 :]
    pos, found = 23, set()
    for _ in range(body[22]):
        nal_type, count = body[pos] & 0x3F, int.from_bytes(body[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            length = int.from_bytes(body[pos : pos + 2], "big")
            assert length > 0
            pos += 2 + length
        if count:
            found.add(nal_type)
    return found


def cut_clip(source: Path, path: Path, seconds: float) -> Path:
    """The engine's clip writer over the source's real packets."""
    stream, buffered, container = packets(source, seconds)
    with container:
        result = write_clip(path, stream, buffered)
    assert result.path == path and result.error is None
    return path


@pytest.fixture(scope="module")
def hevc_source(tmp_path_factory: pytest.TempPathFactory, square_mp4: Path) -> Path:
    return encode_hevc(square_mp4, tmp_path_factory.mktemp("hevc") / "camera.mp4", LONG_S + 1)


@pytest.mark.parametrize("container", ["mp4", "ts"])  # ts: Annex B parameter sets, as an RTSP camera sends them
def test_an_hevc_clip_is_tagged_hvc1_with_its_parameter_sets_in_the_sample_description(
    tmp_path: Path, hevc_source: Path, container: str
) -> None:
    source = hevc_source
    if container == "ts":
        source = tmp_path / "camera.ts"
        remux = ["-v", "error", "-i", str(hevc_source), "-t", "5", "-c", "copy", str(source)]
        subprocess.run([ffmpeg(), *remux], check=True)
    assert probe(source)["tag"] != "hvc1"
    clip = cut_clip(source, tmp_path / "clip.mp4", 4.0)
    info = probe(clip)
    assert (info["codec"], info["tag"]) == ("hevc", "hvc1")
    assert info["frames"] > 20
    assert hvcc_nal_types(clip) >= PARAMETER_SETS


def test_h264_clips_keep_their_tag(tmp_path: Path, square_mp4: Path) -> None:
    info = probe(cut_clip(square_mp4, tmp_path / "clip.mp4", 4.0))
    assert (info["codec"], info["tag"]) == ("h264", "avc1")


def test_the_playable_copy_is_h264_with_the_same_frames_and_duration(tmp_path: Path, hevc_source: Path) -> None:
    clip = cut_clip(hevc_source, tmp_path / "clips" / "x.mp4", 6.0)
    seen: list[tuple[int, int]] = []
    frames = transcode_h264(clip, copy_path(clip), lambda done, total: seen.append((done, total)))
    original, copy = probe(clip), probe(copy_path(clip))
    assert copy_path(clip).name == "x.h264.mp4" and not partial_path(copy_path(clip)).exists()
    assert (copy["codec"], copy["tag"]) == ("h264", "avc1")
    assert abs(copy["frames"] - original["frames"]) <= 1 and frames == copy["frames"]
    assert copy["duration"] == pytest.approx(original["duration"], abs=0.2)
    assert seen[-1] == (frames, original["frames"])  # progress counts up to the container's frame count
    head = copy_path(clip).read_bytes()
    assert 0 <= head.find(b"moov") < head.find(b"mdat")  # faststart: plays while it downloads


@contextmanager
def hevc_site(
    redis_url: str,
    tmp_path: Path,
    square_mp4: Path,
    clip_of: Any,
    *,
    seed_first: bool = True,
    min_free_mb: float | None = None,
) -> Iterator[tuple[Site, str, Path]]:
    """The web server over an incident whose clip ``clip_of(path)`` writes; ``seed_first``: the incident exists
    before the server starts (so only a view can start its copy), else it is recorded while the server runs."""
    data = tmp_path / "data"
    media = make_media(square_mp4, data)
    config = write_config(tmp_path / "streams.yaml", data)
    if min_free_mb is not None:
        with config.path.open("a", encoding="utf-8") as file:
            file.write(f"retention: {{min_free_mb: {min_free_mb}}}\n")
        config = load_config(config.path)
    clip = clip_of(data / "clips" / "hevc.mp4")
    client = redis.Redis.from_url(redis_url)
    incident_id = seed_incident(client, clip=clip, snapshot=media["snapshot"]) if seed_first else ""
    with running_site(redis_url, config, media) as site:
        if not seed_first:
            incident_id = seed_incident(site.client, clip=clip, snapshot=media["snapshot"])
        yield site, incident_id, clip
    client.close()


def wait_for(http: httpx.Client, url: str, done: Any, timeout: float = DONE_S) -> list[httpx.Response]:
    """Every response to ``url`` until ``done(response)``, polled quickly."""
    seen: list[httpx.Response] = []
    deadline = time.monotonic() + timeout
    while not seen or not done(seen[-1]):
        assert time.monotonic() < deadline, f"timed out: {seen[-1].status_code} {seen[-1].text[:200]}"
        seen.append(http.get(url))
        time.sleep(0.05)
    return seen


def test_the_copy_is_started_when_the_clip_is_cut_and_recorded_on_the_incident(
    redis_url: str, tmp_path: Path, square_mp4: Path, hevc_source: Path
) -> None:
    cut = lambda path: cut_clip(hevc_source, path, LONG_S)  # noqa: E731
    with hevc_site(redis_url, tmp_path, square_mp4, cut, seed_first=False) as (site, incident_id, clip):
        http = site.login("view")
        status = f"/api/incidents/{incident_id}/playable"  # never starts a copy itself
        records: list[dict[str, Any]] = []

        def ready(res: httpx.Response) -> bool:
            assert res.status_code == 200, res.text
            records.append(IncidentStore(site.client).get(incident_id) or {})
            return bool(res.json()["playable_state"] == "ready")

        seen = [r.json() for r in wait_for(http, status, ready)]
        states = [s["playable_state"] for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
        assert "pending" in states and states[-1] == "ready"
        assert set(states) <= {"missing", "pending", "ready"}, states
        assert any(r.get("playable", {}).get("state") == "pending" for r in records[:-1])  # recorded before done
        percents = [s["percent"] for s in seen if s["playable_state"] == "pending" and s["percent"] is not None]
        assert percents == sorted(percents) and all(0 <= p < 100 for p in percents)
        assert seen[-1]["url"] == f"/api/incidents/{incident_id}/clip/playable"
        assert seen[-1]["codec"] == "hevc" and seen[-1]["original_url"] == f"/api/incidents/{incident_id}/clip"
        record = IncidentStore(site.client).get(incident_id) or {}
        assert record["playable"]["state"] == "ready" and record["playable"]["percent"] == 100
        assert probe(copy_path(clip))["codec"] == "h264"


def test_the_first_view_makes_the_copy_answering_202_with_progress_then_serves_it(
    redis_url: str, tmp_path: Path, square_mp4: Path, hevc_source: Path
) -> None:
    cut = lambda path: cut_clip(hevc_source, path, LONG_S)  # noqa: E731
    with hevc_site(redis_url, tmp_path, square_mp4, cut) as (site, incident_id, clip):
        base = f"/api/incidents/{incident_id}"
        with site.anonymous() as anonymous:
            for path in ("/playable", "/clip/playable", "/clip"):
                assert anonymous.get(base + path).status_code == 401
        assert not copy_path(clip).exists()
        http = site.login("view")
        assert http.get(f"{base}/playable").json()["playable_state"] == "missing"  # asking is not viewing

        first = http.get(f"{base}/clip/playable")
        assert first.status_code == 202, first.text
        body = first.json()
        assert body["playable_state"] == "pending" and 0 <= body["percent"] < 100 and body["url"] is None
        assert (IncidentStore(site.client).get(incident_id) or {})["playable"]["state"] == "pending"
        seen = wait_for(http, f"{base}/clip/playable", lambda res: res.status_code != 202)
        assert seen[-1].status_code == 200 and seen[-1].headers["content-type"] == "video/mp4"
        percents = [r.json()["percent"] for r in seen[:-1]]
        assert percents == sorted(percents)

        served = tmp_path / "served.mp4"
        served.write_bytes(seen[-1].content)
        original, copy = probe(clip), probe(served)
        assert copy["codec"] == "h264" and abs(copy["frames"] - original["frames"]) <= 1
        assert copy["duration"] == pytest.approx(original["duration"], abs=0.2)
        made = copy_path(clip).stat().st_mtime_ns
        again = http.get(f"{base}/clip/playable", headers={"Range": "bytes=0-99"})
        assert again.status_code == 206 and len(again.content) == 100  # seekable, from the cache
        assert copy_path(clip).stat().st_mtime_ns == made  # transcoded once
        download = http.get(f"{base}/clip")
        assert download.status_code == 200 and download.content == clip.read_bytes()  # the original, still HEVC


def test_a_damaged_hevc_clip_fails_clearly_and_the_original_stays_downloadable(
    redis_url: str, tmp_path: Path, square_mp4: Path, hevc_source: Path
) -> None:
    def damaged(path: Path) -> Path:
        data = bytearray(cut_clip(hevc_source, path, 4.0).read_bytes())
        start = data.index(b"mdat") + 4
        data[start:] = b"\xff" * (len(data) - start)  # the index is intact, every frame is garbage
        path.write_bytes(data)
        return path

    with hevc_site(redis_url, tmp_path, square_mp4, damaged) as (site, incident_id, clip):
        base = f"/api/incidents/{incident_id}"
        http = site.login("view")
        assert http.get(f"{base}/clip/playable").status_code in (202, 409)
        seen = wait_for(http, f"{base}/playable", lambda res: res.json()["playable_state"] != "pending")
        failed = seen[-1].json()
        assert failed["playable_state"] == "failed" and failed["url"] is None
        assert "cannot be decoded" in failed["error"] and "damaged" in failed["error"]
        assert str(tmp_path) not in seen[-1].text
        record = IncidentStore(site.client).get(incident_id) or {}
        assert record["playable"]["state"] == "failed" and record["playable"]["error"] == failed["error"]
        assert not copy_path(clip).exists() and not partial_path(copy_path(clip)).exists()
        refused = http.get(f"{base}/clip/playable")
        assert refused.status_code == 409 and "cannot be decoded" in refused.json()["detail"]
        assert http.get(f"{base}/playable", params={"prepare": "true"}).json()["playable_state"] == "failed"
        download = http.get(f"{base}/clip")
        assert download.status_code == 200 and download.content == clip.read_bytes()


def test_a_low_disk_fails_the_copy_with_an_error_marked_for_retry(
    redis_url: str, tmp_path: Path, square_mp4: Path, hevc_source: Path
) -> None:
    cut = lambda path: cut_clip(hevc_source, path, 3.0)  # noqa: E731
    with hevc_site(redis_url, tmp_path, square_mp4, cut, min_free_mb=1e12) as (site, incident_id, clip):
        http = site.login("view")
        status = f"/api/incidents/{incident_id}/playable"
        assert http.get(status, params={"prepare": "true"}).json()["playable_state"] in ("pending", "failed")
        failed = wait_for(http, status, lambda res: res.json()["playable_state"] == "failed")[-1].json()
        assert failed["error"].startswith("disk_full:") and "min_free_mb" in failed["error"]
        assert str(tmp_path) not in failed["error"]
        assert (IncidentStore(site.client).get(incident_id) or {})["playable"]["retry"] is True
        assert http.get(status, params={"prepare": "true"}).json()["playable_state"] == "failed"  # still no room
        assert not copy_path(clip).exists() and not partial_path(copy_path(clip)).exists()


def test_background_jobs_run_at_a_lower_priority() -> None:
    runner = JobRunner("test", nice=10)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen: list[int] = []
    assert runner.start("a", lambda report: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    deadline = time.monotonic() + 30
    while runner.state("a")[0] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert seen == [min(19, base + 10)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # only the worker thread
    runner.close()


def test_an_h264_clip_plays_as_it_is(shared_media_site: Site) -> None:
    site = shared_media_site
    incident_id = seed_incident(site.client, clip=site.media["clip"])
    http = site.login("view")
    info = http.get(f"/api/incidents/{incident_id}/playable", params={"prepare": "true"}).json()
    assert info["playable_state"] == "not_needed" and info["codec"] == "h264"
    assert info["url"] == info["original_url"] == f"/api/incidents/{incident_id}/clip"
    served = http.get(f"/api/incidents/{incident_id}/clip/playable")
    assert served.status_code == 200 and served.content == site.media["clip"].read_bytes()
    assert not copy_path(site.media["clip"]).exists()


def test_retention_deletes_the_copy_with_the_clip(redis_url: str, tmp_path: Path, hevc_source: Path) -> None:
    data = tmp_path / "data"
    clip = cut_clip(hevc_source, data / "clips" / "old.mp4", 3.0)
    transcode_h264(clip, copy_path(clip))
    partial_path(copy_path(clip)).write_bytes(b"left by a server that stopped mid-copy")
    kept = cut_clip(hevc_source, data / "clips" / "new.mp4", 3.0)
    transcode_h264(kept, copy_path(kept))
    client = redis.Redis.from_url(redis_url)
    store = IncidentStore(client)
    old = seed_incident(client, clip=clip, ts=time.time() - 10 * 86400)
    seed_incident(client, clip=kept)
    sizes = sum(p.stat().st_size for p in (clip, copy_path(clip), partial_path(copy_path(clip))))
    report = apply_retention(store, RetentionConfig(retention_days=7), media_root=data)
    assert report.expired == [old] and report.freed_bytes == sizes
    assert not clip.exists() and not copy_path(clip).exists() and not partial_path(copy_path(clip)).exists()
    assert kept.exists() and copy_path(kept).exists()
    client.close()


@pytest.mark.slow
def test_the_blurred_export_works_on_hevc_clips(
    redis_url: str, tmp_path: Path, square_mp4: Path, hevc_source: Path
) -> None:
    cut = lambda path: cut_clip(hevc_source, path, 3.0)  # noqa: E731
    with hevc_site(redis_url, tmp_path, square_mp4, cut) as (site, incident_id, clip):
        http = site.login("oper")
        assert http.post(f"/api/incidents/{incident_id}/export").status_code == 202
        seen = wait_for(http, f"/api/incidents/{incident_id}/export", lambda res: res.json()["state"] != "running")
        assert seen[-1].json()["state"] == "ready", seen[-1].text
        exported = tmp_path / "export.mp4"
        exported.write_bytes(http.get(f"/api/incidents/{incident_id}/export.mp4").content)
        assert probe(exported)["codec"] == "h264" and probe(exported)["frames"] == probe(clip)["frames"]


@pytest.mark.slow
def test_the_page_prepares_a_playable_copy_then_plays_it(
    redis_url: str, tmp_path: Path, square_mp4: Path, hevc_source: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    cut = lambda path: cut_clip(hevc_source, path, LONG_S)  # noqa: E731
    with hevc_site(redis_url, tmp_path, square_mp4, cut) as (site, incident_id, clip):
        page = login(browser, site, "view", "view-pass-1", f"/incidents/{incident_id}")
        plays_hevc = page.evaluate(f"document.createElement('video').canPlayType('{HVC1}')")
        assert plays_hevc == "", "this Chromium decodes HEVC: the page would play the original"
        expect(page.locator("#clip-status")).to_contain_text("转码中 Preparing a playable copy", timeout=30_000)
        page.screenshot(path=str(tmp_path / "preparing.png"))
        until(page, "document.getElementById('clip').getAttribute('src') !== null", timeout=DONE_S)
        assert page.locator("#clip").get_attribute("src") == f"/api/incidents/{incident_id}/clip/playable"
        expect(page.locator("#clip-status")).to_be_hidden()
        page.evaluate("document.getElementById('clip').play()")
        until(page, "document.getElementById('clip').readyState >= 2", timeout=30)
        until(page, "document.getElementById('clip').currentTime > 1.0", timeout=30)
        assert page.evaluate("document.getElementById('clip').error") is None
        assert page.evaluate("document.getElementById('clip').videoWidth") == 768

        link = page.locator("#clip-original")
        expect(link).to_be_visible()
        assert link.get_attribute("href") == f"/api/incidents/{incident_id}/clip"
        status, kind, size = page.evaluate(
            "async (u) => { const r = await fetch(u); return [r.status, r.headers.get('content-type'),"
            " (await r.arrayBuffer()).byteLength]; }",
            link.get_attribute("href"),
        )
        assert (status, kind, size) == (200, "video/mp4", clip.stat().st_size)
        assert probe(clip)["tag"] == "hvc1"
