"""``broadcasts:`` in streams.yaml: daily announcements on the village loudspeakers, at set times.

Times, days, time zone and holidays read like the staffing schedules (monitor/rules/models.py does the parsing);
each entry builds the pure runtime ``Broadcast`` (monitor/rules/broadcast.py) that the scheduler plays.

Priority: incident announcements default to 0 (``priority`` on a rule); broadcasts default to
``DEFAULT_PRIORITY`` = -10, so a dispersal announcement goes before queued broadcasts on a shared speaker and
interrupts one that is playing. A broadcast given a priority above a rule's goes first instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from monitor.config.yamlmarks import Path_
from monitor.rules.broadcast import Broadcast, BroadcastTimes
from monitor.rules.models import ScheduleConfig, Weekday, WindowConfig, parse_hhmm
from monitor.rules.schedule import DEFAULT_TIMEZONE, WEEKDAYS

DEFAULT_PRIORITY = -10
DEFAULT_VOICE = "cmn-latn-pinyin"  # not "cmn": espeak-ng 1.51 reads its tone digits as English (announcements/README)
TEXT_MAX = 1000


def _time_of_day(value: Any) -> str:
    minutes = parse_hhmm(value, "time", allow_24=False)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


TimeOfDay = Annotated[str, BeforeValidator(_time_of_day)]


class BroadcastConfig(BaseModel):
    """One scheduled broadcast: what to play (a file, or a text spoken by espeak-ng), where, and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speakers: list[str] = Field(min_length=1, description="Speakers or speaker groups that play it.")
    audio: str | None = Field(None, description="Announcement file (WAV/MP3/OGG), relative to streams.yaml.")
    text: str | None = Field(
        None, min_length=1, max_length=TEXT_MAX, description="Text spoken with espeak-ng instead of a file."
    )
    voice: str = Field(DEFAULT_VOICE, description="espeak-ng voice for text (espeak-ng --voices lists them).")
    at: list[TimeOfDay] = Field(min_length=1, description='Local times of day "HH:MM" (quote them in YAML).')
    days: tuple[Weekday, ...] = Field(
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        description="Days it plays: a list of mon..sun, or daily, weekdays, weekends (ignored with dates).",
    )
    dates: list[date] = Field(default_factory=list, description="Only on these dates (YYYY-MM-DD) instead of days.")
    timezone: str = Field(DEFAULT_TIMEZONE, description="IANA time zone of the times, e.g. Asia/Shanghai.")
    holidays: list[date] = Field(default_factory=list, description="Dates (YYYY-MM-DD) on which it does not play.")
    repeat: int = Field(1, ge=1, le=10, description="Times it plays in a row at each slot.")
    gap_s: float = Field(5.0, ge=0, le=600, description="Seconds of silence between repeats.")
    priority: int = Field(
        DEFAULT_PRIORITY,
        description="Against other announcements on the same speaker (rules default to 0: they go first).",
    )
    enabled: bool = Field(True, description="false keeps it in the file without playing it.")

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> tuple[str, ...]:
        return WindowConfig._days(value)  # read like the staffing schedules' days

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return ScheduleConfig._timezone(value)

    @model_validator(mode="after")
    def _one_source(self) -> BroadcastConfig:
        if (self.audio is None) == (self.text is None):
            raise ValueError("a broadcast needs either audio: FILE or text: WORDS (not both)")
        return self

    def build(self, name: str, base_dir: Path) -> Broadcast:
        """The runtime broadcast; ``audio`` resolves against the config file's directory."""
        times = BroadcastTimes(
            tuple(parse_hhmm(t, "time", allow_24=False) for t in self.at),
            frozenset(WEEKDAYS.index(d) for d in self.days),
            frozenset(self.dates),
            frozenset(self.holidays),
            self.timezone,
        )
        audio = None if self.audio is None else audio_path(self.audio, base_dir)
        return Broadcast(
            name, tuple(self.speakers), times, audio, self.text, self.voice, self.repeat, self.gap_s, self.priority
        )


def audio_path(name: str, base_dir: Path) -> Path:
    """A broadcast's file, relative to the config file like every other announcement."""
    path = Path(name)
    return path if path.is_absolute() else (base_dir / path).resolve()


def runtime_broadcasts(broadcasts: Mapping[str, BroadcastConfig], base_dir: Path) -> dict[str, Broadcast]:
    """The enabled broadcasts, ready for the scheduler."""
    return {name: b.build(name, base_dir) for name, b in broadcasts.items() if b.enabled}


def broadcast_file_problems(
    broadcasts: Mapping[str, BroadcastConfig], base_dir: Path, decode: bool
) -> Iterator[tuple[Path_, str]]:
    """Missing or undecodable audio files; with ``decode`` also text whose espeak-ng voice is not installed."""
    from speakers.audio import AnnouncementError, load_announcement
    from speakers.tts import voice_problem

    for name, broadcast in broadcasts.items():
        if broadcast.audio is not None:
            path = audio_path(broadcast.audio, base_dir)
            if not path.is_file():
                yield ("broadcasts", name, "audio"), f"audio file not found: {path}"
            elif decode:
                try:
                    load_announcement(path, 8000)
                except AnnouncementError as exc:
                    yield ("broadcasts", name, "audio"), str(exc)
        elif decode:
            problem = voice_problem(broadcast.voice)
            if problem is not None:
                yield ("broadcasts", name, "voice"), problem
