"""The ``talk:`` section of streams.yaml: live talk-down from the web page (monitor/web/talk_api.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from monitor.config.broadcasts import DEFAULT_VOICE


class TalkConfig(BaseModel):
    """Who hears a talk is chosen on the page; this section says what is kept of it and how long it may run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record: bool = Field(
        False, description="Keep each talk's audio as a WAV file under data_dir/talks/, playable on the page."
    )
    max_s: float = Field(300.0, gt=0, le=3600, description="A talk ends on its own after this many seconds.")
    voice: str = Field(DEFAULT_VOICE, min_length=1, description="espeak-ng voice for typed messages (the default).")
