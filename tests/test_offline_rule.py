"""camera_offline: grace period, recovery, stalls and cameras that never connect."""

from __future__ import annotations

from monitor.rules.offline import OfflineState


def test_short_outage_within_grace_opens_nothing() -> None:
    state = OfflineState(grace_s=10, started_at=0)
    events = [e for t in range(0, 9) for e in state.update(100 + t, receiving=False, last_frame_at=100)]
    events += state.update(109.5, receiving=True, last_frame_at=109.5)
    assert events == []


def test_outage_opens_after_grace_and_closes_when_frames_flow() -> None:
    state = OfflineState(grace_s=10, started_at=0)
    assert state.update(100, receiving=True, last_frame_at=100) == []
    opened = [e for t in range(1, 15) for e in state.update(100 + t, receiving=False)]
    assert [(e.kind, e.ts, e.since) for e in opened] == [("opened", 110, 100)]
    closed = state.update(130, receiving=True, last_frame_at=130)
    assert [(e.kind, e.ts, e.since, e.until) for e in closed] == [("closed", 130, 100, 130)]  # the whole outage
    assert state.update(131, receiving=True, last_frame_at=131) == []


def test_camera_that_never_connects_is_offline_after_grace_from_start() -> None:
    state = OfflineState(grace_s=5, started_at=1000)
    assert state.update(1004, receiving=False) == []
    assert [e.kind for e in state.update(1005, receiving=False)] == ["opened"]
