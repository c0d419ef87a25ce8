"""The ``web:`` section of streams.yaml (imported by monitor.config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebConfig(BaseModel):
    """Where the monitoring center's web page listens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        "127.0.0.1", description="Address to bind; the default keeps footage on this machine (use a reverse proxy)."
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the web page and JSON API.")
