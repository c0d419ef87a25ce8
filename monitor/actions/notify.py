"""Incident notifications: a generic signed webhook and DingTalk / WeCom group robots.

The engine must never wait on someone else's web server, so ``Notifier.notify`` only appends to a bounded
in-memory queue and returns; one background thread delivers. Failed attempts (connection errors, timeouts,
HTTP 5xx/408/429, robot rate limits) are rescheduled with exponential backoff and jitter instead of being
slept on, so one dead receiver does not hold up messages to the others. A full queue drops its oldest
message (counted in ``stats().dropped``): fresh alerts matter more than stale ones.

Webhook requests carry ``X-VillageMonitor-Timestamp`` (Unix seconds, also in the body, so the signature
covers it and receivers can refuse replays), ``X-VillageMonitor-Delivery`` (the same on every retry, for
de-duplication) and ``X-VillageMonitor-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import itertools
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote_plus

from monitor.config.notify import DingTalkConfig, NotifierConfig, NotifyEvent, WebhookConfig, WeComConfig
from monitor.incident import Incident

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-VillageMonitor-Signature"
TIMESTAMP_HEADER = "X-VillageMonitor-Timestamp"
DELIVERY_HEADER = "X-VillageMonitor-Delivery"
USER_AGENT = "village-monitor/0.1"
INCIDENT_PAGE = "{base}/incidents/{id}"  # web page routes the links point at
SNAPSHOT_URL = "{base}/api/incidents/{id}/snapshot"
CLIP_URL = "{base}/api/incidents/{id}/clip"
WECOM_MAX_BYTES = 4096  # the robot API rejects longer markdown content
RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
ROBOT_RATE_LIMITED = frozenset({130101, 45009})  # DingTalk "send too fast", WeCom "api freq out of limit"

KIND_LABELS: Mapping[str, tuple[str, str]] = {
    "gathering": ("聚集", "Gathering"),
    "checkpoint_unstaffed": ("卡口脱岗", "Checkpoint unstaffed"),
    "camera_offline": ("摄像头离线", "Camera offline"),
}
_SEQUENCE = itertools.count()


# -- message content -------------------------------------------------------------------------------


def summarize(incident: Incident, event: NotifyEvent, base_url: str | None = None) -> dict[str, Any]:
    """The part of an incident that leaves the center (no file paths, no details)."""
    summary: dict[str, Any] = {
        "event": event,
        "id": incident.id,
        "kind": incident.kind,
        "rule": incident.rule,
        "camera": incident.camera,
        "zone": incident.zone,
        "status": incident.status,
        "opened_at": incident.opened_at,
        "closed_at": incident.closed_at,
        "peak_count": incident.peak_count,
    }
    if base_url:
        links = {"incident": INCIDENT_PAGE.format(base=base_url, id=incident.id)}
        if incident.snapshot:
            links["snapshot"] = SNAPSHOT_URL.format(base=base_url, id=incident.id)
        if incident.clip:
            links["clip"] = CLIP_URL.format(base=base_url, id=incident.id)
        summary["links"] = links
    return summary


def headline(summary: Mapping[str, Any]) -> str:
    """Chinese one-liner for chat titles, e.g. ``【聚集告警】square_east 广场 5 人``."""
    zh, _ = KIND_LABELS.get(summary["kind"], (summary["kind"], summary["kind"]))
    opened = summary["event"] == "opened"
    parts = [f"【{zh}{'告警' if opened else '解除'}】{summary['camera']}"]
    if summary.get("zone"):
        parts.append(str(summary["zone"]))
    if summary["kind"] != "camera_offline" and summary.get("peak_count") is not None:
        parts.append(f"{summary['peak_count']} 人" if opened else f"峰值 {summary['peak_count']} 人")
    return " ".join(parts)


def headline_en(summary: Mapping[str, Any]) -> str:
    """English one-liner, e.g. ``Gathering alert: square_east / 广场, 5 people``."""
    _, en = KIND_LABELS.get(summary["kind"], (summary["kind"], summary["kind"]))
    opened = summary["event"] == "opened"
    where = summary["camera"] + (f" / {summary['zone']}" if summary.get("zone") else "")
    text = f"{en} {'alert' if opened else 'cleared'}: {where}"
    if summary["kind"] != "camera_offline" and summary.get("peak_count") is not None:
        text += f", {'' if opened else 'peak '}{summary['peak_count']} people"
    return text


def markdown(summary: Mapping[str, Any]) -> str:
    """Bilingual markdown body shared by the DingTalk and WeCom robots (both render this subset)."""
    lines = [
        f"### {headline(summary)}",
        f"**{headline_en(summary)}**",
        "",
        f"- 摄像头 Camera: {summary['camera']}",
        f"- 区域 Zone: {summary.get('zone') or '-'}",
        f"- 人数峰值 Peak: {summary.get('peak_count')}",
        f"- 开始 Opened: {summary.get('opened_at') or '-'}",
        f"- 结束 Closed: {summary.get('closed_at') or '-'}",
        f"- 状态 Status: {summary.get('status')}",
        f"- 编号 ID: {summary['id']}",
    ]
    link = summary.get("links", {}).get("incident")
    if link:
        lines += ["", f"[查看事件 View incident]({link})"]
    return "\n".join(lines)


# -- requests per target kind ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One POST, built fresh for every attempt so timestamps and signatures are current."""

    url: str
    headers: Mapping[str, str]
    body: bytes


def sign_body(secret: str, body: bytes) -> str:
    """Webhook signature header value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk robot "加签": base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")), not yet URL-encoded."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def dingtalk_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    """The robot URL with ``timestamp`` and ``sign`` appended when the robot has a signing secret."""
    if secret is None:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}timestamp={timestamp_ms}&sign={quote_plus(dingtalk_sign(secret, timestamp_ms))}"


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **(extra or {})}


def webhook_request(cfg: WebhookConfig, summary: Mapping[str, Any], delivery: str, now: float) -> HttpRequest:
    """Signed JSON POST with the incident summary and both headlines."""
    ts = int(now)
    body = _json({**summary, "title": headline(summary), "title_en": headline_en(summary), "timestamp": ts})
    extra = {TIMESTAMP_HEADER: str(ts), DELIVERY_HEADER: delivery}
    if cfg.secret is not None:
        extra[SIGNATURE_HEADER] = sign_body(cfg.secret.get_secret_value(), body)
    return HttpRequest(cfg.url.get_secret_value(), _headers(extra), body)


def dingtalk_request(cfg: DingTalkConfig, summary: Mapping[str, Any], delivery: str, now: float) -> HttpRequest:
    """DingTalk markdown message; @-mentions must also appear in the text to be rendered."""
    text = markdown(summary)
    if cfg.at_mobiles:
        text += "\n\n" + " ".join(f"@{m}" for m in cfg.at_mobiles)
    payload = {
        "msgtype": "markdown",
        "markdown": {"title": headline(summary), "text": text},
        "at": {"atMobiles": list(cfg.at_mobiles), "isAtAll": cfg.at_all},
    }
    secret = None if cfg.secret is None else cfg.secret.get_secret_value()
    return HttpRequest(dingtalk_url(cfg.url.get_secret_value(), secret, int(now * 1000)), _headers(), _json(payload))


def wecom_request(cfg: WeComConfig, summary: Mapping[str, Any], delivery: str, now: float) -> HttpRequest:
    """WeCom markdown message, cut to the robot's size limit on a character boundary."""
    content = markdown(summary).encode()[:WECOM_MAX_BYTES].decode(errors="ignore")
    return HttpRequest(
        cfg.url.get_secret_value(), _headers(), _json({"msgtype": "markdown", "markdown": {"content": content}})
    )


def build_request(cfg: NotifierConfig, summary: Mapping[str, Any], delivery: str, now: float) -> HttpRequest:
    """The HTTP request for one attempt to deliver ``summary`` to ``cfg``."""
    if isinstance(cfg, WebhookConfig):
        return webhook_request(cfg, summary, delivery, now)
    if isinstance(cfg, DingTalkConfig):
        return dingtalk_request(cfg, summary, delivery, now)
    return wecom_request(cfg, summary, delivery, now)


# -- one attempt -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of one attempt: delivered, or failed and whether trying again can help."""

    ok: bool
    retry: bool = False
    error: str | None = None
    retry_after_s: float | None = None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _robot_outcome(body: bytes) -> Outcome:
    """Robots answer HTTP 200 with ``errcode`` != 0 on failure; only rate limiting is worth retrying."""
    try:
        reply = json.loads(body)
    except ValueError:
        return Outcome(False, True, "robot reply is not JSON")
    code = reply.get("errcode", 0) if isinstance(reply, dict) else 0
    if code == 0:
        return Outcome(True)
    return Outcome(False, code in ROBOT_RATE_LIMITED, f"robot errcode {code}: {reply.get('errmsg', '')}")


def post(cfg: NotifierConfig, request: HttpRequest) -> Outcome:
    """Send one request and classify the result (never raises for network or HTTP errors)."""
    req = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:
            body = resp.read(65536)
    except urllib.error.HTTPError as exc:
        exc.close()
        retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        return Outcome(False, exc.code in RETRY_STATUS, f"HTTP {exc.code}", retry_after)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, reset, timeout, DNS
        reason = getattr(exc, "reason", exc)
        return Outcome(False, True, f"{type(exc).__name__}: {reason}")
    return Outcome(True) if isinstance(cfg, WebhookConfig) else _robot_outcome(body)


def backoff_delay(cfg: NotifierConfig, attempt: int, rng: random.Random) -> float:
    """Wait before attempt ``attempt + 1``: doubling from ``backoff_s``, capped, with "equal jitter".

    Half the delay is fixed and half random, so retries after a receiver outage spread out
    instead of arriving as one burst, yet never come back almost at once.
    """
    base = min(cfg.backoff_max_s, cfg.backoff_s * 2.0 ** (attempt - 1))
    return base / 2 + rng.uniform(0, base / 2)


# -- the delivery queue ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    target: int  # index into the notifier's configs
    summary: dict[str, Any]
    delivery: str
    seq: int = field(default_factory=lambda: next(_SEQUENCE))
    due: float = 0.0  # time.monotonic() of the next attempt
    attempt: int = 0  # attempts made so far


@dataclass(frozen=True, slots=True)
class NotifyStats:
    """Counters since start, for /metrics."""

    sent: int = 0
    failed: int = 0  # given up: out of attempts or a permanent error
    dropped: int = 0  # pushed out of a full queue, or still queued when close() timed out
    retries: int = 0
    pending: int = 0


class Notifier:
    """Delivers incident notifications to every configured target from one background thread."""

    def __init__(self, configs: Sequence[NotifierConfig], *, max_queue: int = 1000, seed: int | None = None) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.configs = tuple(configs)
        self.max_queue = max_queue
        self._rng = random.Random(seed)
        self._cv = threading.Condition()
        self._pending: list[_Job] = []
        self._counts = {"sent": 0, "failed": 0, "dropped": 0, "retries": 0}
        self._closing = False
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()

    # public API

    def notify(self, incident: Incident, event: NotifyEvent) -> int:
        """Queue messages about ``incident`` for every interested target; returns how many.

        Only copies a few fields under a lock: safe to call from the engine's hot path.
        """
        jobs = [
            _Job(i, summarize(incident, event, cfg.base_url), uuid.uuid4().hex)
            for i, cfg in enumerate(self.configs)
            if event in cfg.events and (cfg.kinds is None or incident.kind in cfg.kinds)
        ]
        with self._cv:
            if self._closing:
                log.warning("notifier closed: %s of incident %s not sent", event, incident.id)
                return 0
            for job in jobs:
                self._enqueue(job)
            self._cv.notify()
        return len(jobs)

    def stats(self) -> NotifyStats:
        """Current counters."""
        with self._cv:
            return NotifyStats(**self._counts, pending=len(self._pending))

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking messages, keep delivering queued ones for up to ``timeout`` s; True if all were handled."""
        with self._cv:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._cv.notify()
        self._thread.join(timeout + max((c.timeout_s for c in self.configs), default=0.0))
        with self._cv:
            return not self._pending and not self._thread.is_alive()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # internals

    def _enqueue(self, job: _Job) -> None:
        """Add a job, pushing the oldest out of a full queue (caller holds the lock)."""
        if len(self._pending) >= self.max_queue:
            oldest = min(self._pending, key=lambda j: j.seq)
            self._pending.remove(oldest)
            self._counts["dropped"] += 1
            log.warning(
                "notification queue full (%d): dropped %s of incident %s to %s (%d dropped so far)",
                self.max_queue,
                oldest.summary["event"],
                oldest.summary["id"],
                self.configs[oldest.target].target,
                self._counts["dropped"],
            )
        job.due = time.monotonic()
        self._pending.append(job)

    def _next_job(self) -> _Job | None:
        """Block until a job is due; None once closing and the queue is empty or the deadline passed."""
        with self._cv:
            while True:
                now = time.monotonic()
                if self._closing and (not self._pending or now >= self._deadline):
                    self._counts["dropped"] += len(self._pending)
                    if self._pending:
                        log.warning("notifier closed with %d message(s) undelivered", len(self._pending))
                    self._pending.clear()
                    return None
                if not self._pending:
                    self._cv.wait()
                    continue
                job = min(self._pending, key=lambda j: (j.due, j.seq))
                if job.due <= now:
                    self._pending.remove(job)
                    return job
                self._cv.wait(min(job.due, self._deadline) - now)

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            cfg = self.configs[job.target]
            job.attempt += 1
            try:
                outcome = post(cfg, build_request(cfg, job.summary, job.delivery, time.time()))
            except Exception as exc:  # a bug must not kill the only delivery thread
                log.exception("notification to %s failed unexpectedly", cfg.target)
                outcome = Outcome(False, False, repr(exc))
            self._settle(job, cfg, outcome)

    def _settle(self, job: _Job, cfg: NotifierConfig, outcome: Outcome) -> None:
        """Count a delivered or abandoned job, or put it back with its next due time."""
        what = f"{job.summary['event']} of incident {job.summary['id']} to {cfg.target}"
        with self._cv:
            if outcome.ok:
                self._counts["sent"] += 1
                log.info("notified %s (attempt %d)", what, job.attempt)
            elif outcome.retry and job.attempt < cfg.max_attempts:
                delay = backoff_delay(cfg, job.attempt, self._rng)
                if outcome.retry_after_s is not None:
                    delay = max(delay, min(outcome.retry_after_s, cfg.backoff_max_s))
                job.due = time.monotonic() + delay
                self._pending.append(job)
                self._counts["retries"] += 1
                log.warning("notify %s: %s; retry %d in %.1f s", what, outcome.error, job.attempt, delay)
            else:
                self._counts["failed"] += 1
                log.error("notify %s: %s; giving up after %d attempt(s)", what, outcome.error, job.attempt)
