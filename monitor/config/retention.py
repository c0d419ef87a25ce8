"""The ``retention:`` section of streams.yaml: how long incident media is kept, its disk budget, the low-disk guard."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RetentionConfig(BaseModel):
    """How long incident media is kept and how much disk it may use (no limit set = keep everything)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_days: float | None = Field(
        None, gt=0, description="Delete clips and snapshots of incidents opened more than this many days ago."
    )
    max_media_bytes: int | None = Field(
        None, ge=0, description="Disk budget for all incident clips and snapshots; the oldest go first beyond it."
    )
    interval_s: float = Field(3600.0, gt=0, description="Seconds between two retention passes.")
    min_free_mb: float = Field(
        500.0,
        ge=0,
        description=(
            "Free space (MB) to keep on the data directory's disk: below it the engine stops writing clips, "
            "snapshots and live pictures (incidents are still recorded, with clip_error: disk_full) until "
            "there is room again. 0 turns the guard off."
        ),
    )
