"""When broadcasts are due: times of day, days, dates, holidays, DST (Europe/Berlin), restarts and missed slots."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from monitor.config import ConfigError, load_config
from monitor.rules.broadcast import MISSED_GRACE_S, BroadcastTimes, due, next_slot

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
DAY = 86_400.0


def at(tz: ZoneInfo, *args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=tz, fold=fold).timestamp()  # type: ignore[misc]


DAILY = BroadcastTimes((7 * 60 + 30, 18 * 60), timezone="Asia/Shanghai")


def test_a_slot_is_due_once_when_the_clock_passes_it() -> None:
    slot = at(SHANGHAI, 2024, 6, 3, 7, 30)
    assert due(DAILY, slot - 10, slot - 0.5) == []
    assert due(DAILY, slot - 10, slot) == [slot]
    assert due(DAILY, slot, slot + 60) == [], "the cursor after the slot: never twice"
    evening = at(SHANGHAI, 2024, 6, 3, 18, 0)
    assert due(DAILY, slot + 60, evening + 1) == [evening]
    assert next_slot(DAILY, slot) == evening
    assert next_slot(DAILY, evening) == at(SHANGHAI, 2024, 6, 4, 7, 30)


def test_days_dates_and_holidays() -> None:
    weekdays = BroadcastTimes((8 * 60,), days=frozenset(range(5)), holidays=frozenset({date(2024, 6, 10)}))
    friday, saturday = at(SHANGHAI, 2024, 6, 7, 8, 0), at(SHANGHAI, 2024, 6, 8, 8, 0)
    assert due(weekdays, friday - 1, friday) == [friday]
    assert due(weekdays, saturday - 1, saturday + 1) == []
    assert next_slot(weekdays, friday) == at(SHANGHAI, 2024, 6, 11, 8, 0), "weekend, then Monday the 10th is a holiday"
    only = BroadcastTimes((9 * 60,), days=frozenset({0}), dates=frozenset({date(2024, 6, 5), date(2025, 1, 28)}))
    wednesday = at(SHANGHAI, 2024, 6, 5, 9, 0)
    assert due(only, wednesday - 1, wednesday) == [wednesday], "dates replace days: a Wednesday plays"
    assert due(only, at(SHANGHAI, 2024, 6, 10, 8, 59), at(SHANGHAI, 2024, 6, 10, 9, 1)) == [], "a Monday does not"
    assert next_slot(only, wednesday) == at(SHANGHAI, 2025, 1, 28, 9, 0), "months ahead"
    assert next_slot(only, at(SHANGHAI, 2025, 2, 1, 0, 0)) is None, "no date left"


def test_spring_forward_plays_a_skipped_time_when_the_clock_jumps() -> None:
    times = BroadcastTimes((2 * 60 + 30, 3 * 60 + 30), timezone="Europe/Berlin")
    jump = datetime(2024, 3, 31, 1, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # 02:00 CET becomes 03:00 CEST
    assert datetime.fromtimestamp(jump, BERLIN).strftime("%H:%M") == "03:00"
    assert due(times, jump - 3600, jump + 3 * 3600, grace_s=DAY) == [jump, at(BERLIN, 2024, 3, 31, 3, 30)]
    assert due(times, jump - 3600, jump) == [jump], "02:30 does not exist: it plays at 03:00"


def test_fall_back_plays_a_repeated_time_once() -> None:
    times = BroadcastTimes((2 * 60 + 30,), timezone="Europe/Berlin")
    first = at(BERLIN, 2024, 10, 27, 2, 30, fold=0)
    second = at(BERLIN, 2024, 10, 27, 2, 30, fold=1)
    assert second - first == 3600
    assert due(times, first - 60, second + 60, grace_s=DAY) == [first]
    assert due(times, first - 60, first + 1) == [first]
    assert due(times, first, second + 60, grace_s=DAY) == [], "the second 02:30 is not another slot"


def test_restart_and_missed_slots() -> None:
    slot = at(SHANGHAI, 2024, 6, 3, 7, 30)
    assert due(DAILY, slot, slot + 30) == [], "restart at 07:30:30 after playing 07:30: no replay"
    assert due(DAILY, float("-inf"), slot + 240) == [slot], "down at 07:30, back at 07:34: plays late"
    assert due(DAILY, float("-inf"), slot + MISSED_GRACE_S + 1) == [], "back at 07:35:01: missed for good"
    assert due(DAILY, slot - 86_400, slot + 1) == [slot], "a day down: only today's slot, not yesterday's"
    assert due(DAILY, slot + 60, slot + 30) == [], "a clock set back replays nothing"


def _load(tmp_path: Path, broadcast: dict[str, object], text: str | None = None) -> object:
    data = {"cameras": {}, "speakers": {"horn": {"kind": "rtp", "host": "127.0.0.1", "port": 5004}},
            "broadcasts": {"b": broadcast}}  # fmt: skip
    path = tmp_path / "streams.yaml"
    path.write_text(text or yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path)


def test_config_builds_the_schedule(tmp_path: Path) -> None:
    loaded = _load(tmp_path, {"speakers": ["horn"], "text": "早上好", "at": ["7:30"], "days": "weekends",
                              "timezone": "Europe/Berlin", "repeat": 2})  # fmt: skip
    cfg = loaded.config.broadcasts["b"]  # type: ignore[attr-defined]
    assert cfg.at == ["07:30"] and cfg.priority < 0 and cfg.gap_s == 5 and cfg.voice == "cmn-latn-pinyin"
    built = cfg.build("b", tmp_path)
    assert built.times == BroadcastTimes((450,), frozenset({5, 6}), timezone="Europe/Berlin")
    assert built.text == "早上好" and built.audio is None and built.repeat == 2


@pytest.mark.parametrize(
    ("broadcast", "expected"),
    [
        ({"speakers": ["horn"], "at": ["07:30"]}, "b: a broadcast needs either audio: FILE or text: WORDS"),
        ({"speakers": ["horn"], "text": "x", "audio": "a.wav", "at": ["07:30"]}, "(not both)"),
        ({"speakers": ["horn"], "text": "x", "at": ["7:75"]}, "b.at.0: time 7:75 is not a time HH:MM"),
        ({"speakers": ["horn"], "text": "x", "at": [1080]}, 'write "18:00" in quotes'),
        ({"speakers": ["horn"], "text": "x", "at": ["07:00"], "timezone": "Europe/Berln"}, "did you mean 'Europe/Be"),
        ({"speakers": ["horn"], "text": "x", "at": ["07:00"], "days": ["mon", "xyz"]}, "unknown day 'xyz'"),
        ({"speakers": ["horn"], "text": "x", "at": ["07:00"], "repeat": 11}, "b.repeat: Input should be less"),
        ({"speakers": [], "text": "x", "at": ["07:00"]}, "b.speakers: List should have at least 1 item"),
    ],
)
def test_config_problems(tmp_path: Path, broadcast: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, broadcast)
    assert expected in str(err.value)
    assert "streams.yaml:" in str(err.value)
