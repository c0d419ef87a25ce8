"""The ``web:`` section of streams.yaml (imported by monitor.config)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WebConfig(BaseModel):
    """Where the monitoring center's web page listens, whom it trusts, how long a login lasts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        "127.0.0.1", description="Address to bind; the default keeps footage on this machine (use a reverse proxy)."
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the web page and JSON API.")
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="Addresses or networks (e.g. 127.0.0.1, 10.0.0.0/24) of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed; from anyone else they are ignored. Default: none, the TCP peer is "
        "the client (login rate limits are per client address).",
    )
    session_max_hours: float = Field(
        12,
        gt=0,
        le=24 * 7,
        description="Absolute lifetime of a login in hours: a session ends this long after logging in, even if used "
        "all the time (it also ends after 12 h without use, or when the user's password or role changes).",
    )
    metrics_token: str | None = Field(
        None,
        min_length=16,
        description="Bearer token for Prometheus: /metrics answers a logged-in user, or a request with "
        "'Authorization: Bearer <metrics_token>' (Prometheus: authorization: {credentials: ...}). At least 16 "
        "characters. Unset: /metrics needs a login.",
    )

    episode_gap_s: float = Field(
        120,
        ge=0,
        le=24 * 3600,
        description="Incidents of one camera and rule that reopen within this many seconds after the previous one "
        "ended are shown (and reviewed) as one episode on the incident list and the timeline. 0: no grouping.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (like 10.0.0.0/24)") from None
        return value
