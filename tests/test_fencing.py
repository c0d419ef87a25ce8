"""Fencing tokens in a real redis-server: a camera's stale owner cannot write once a newer one has."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from monitor.store import fencing
from monitor.store.incidents import IncidentStore
from monitor.store.outbox import Delivery, Outbox
from tests.support.waiting import wait_until
from tests.test_outbox import incident_story


def test_an_old_token_writes_nothing_and_is_counted(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = IncidentStore(client)
    (opened, _), (peak, _), (announced, _), *_ = incident_story()
    assert store.apply(opened, 10) and store.apply(peak, 10)
    assert fencing.advance(client, "plaza", 20), "the new owner raises the fence before it reads"
    with pytest.raises(fencing.StaleWrite):
        store.apply(announced, 10)
    record = store.get(opened.incident_id)
    assert record is not None and record["announcements"] == [] and record["seq"] == 2
    assert fencing.rejected(client) == {"plaza": 1}
    assert store.apply(announced, 20), "the new owner writes"
    assert not fencing.advance(client, "plaza", 15), "an older claim cannot take the fence back"
    assert int(client.get(fencing.fence_key("plaza")) or 0) == 20


def test_without_a_token_nothing_is_checked(redis_url: str) -> None:
    """One machine (no ``cluster:``): the store behaves as it always did."""
    client = redis.Redis.from_url(redis_url)
    store = IncidentStore(client)
    fencing.advance(client, "plaza", 99)
    assert all(store.apply(change) for change, _ in incident_story())
    assert fencing.rejected(client) == {}


def test_the_open_index_lists_what_a_new_owner_carries_on(redis_url: str) -> None:
    store = IncidentStore(redis.Redis.from_url(redis_url))
    story = incident_story()
    for change, _ in story[:-1]:
        store.apply(change, 1)
    assert [i.id for i in store.open_incidents("plaza")] == [story[0][0].incident_id]
    store.apply(story[-1][0], 1)
    assert store.open_incidents("plaza") == []


def test_status_of_a_stale_owner_is_refused_atomically(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    tokens = {"plaza": 5}
    store = IncidentStore(client, fence_of=tokens.__getitem__)
    store.publish_camera_status("plaza", {"people": 3, "updated_ts": 1.5}, ttl_s=30)
    assert client.hget("vm:camera:plaza", "fence") == b"5" and store.camera_updated("plaza") == 1.5
    fencing.advance(client, "plaza", 8)  # another node took the camera over
    store.publish_camera_status("plaza", {"people": 9, "updated_ts": 2.5}, ttl_s=30)
    assert client.hget("vm:camera:plaza", "people") == b"3", "the stale status was not written"
    assert fencing.rejected(client) == {"plaza": 1}


def test_racing_owners_leave_the_newest_owners_status(redis_url: str) -> None:
    """Eight owners with rising tokens write at once: whatever the interleaving, the hash ends with the newest's
    status (without fencing it would be whichever thread wrote last)."""
    client = redis.Redis.from_url(redis_url)

    def owner(token: int) -> None:
        store = IncidentStore(redis.Redis.from_url(redis_url), fence_of=lambda _camera: token)
        for _ in range(20):
            store.publish_camera_status("plaza", {"updated_ts": float(token)}, ttl_s=30)

    threads = [threading.Thread(target=owner, args=(t,)) for t in (8, 1, 2, 3, 4, 5, 6, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.hmget("vm:camera:plaza", "fence", "updated_ts") == [b"8", b"8.0"]
    assert int(client.get(fencing.fence_key("plaza")) or 0) == 8


def test_delivery_drops_a_refused_change_and_counts_it(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    store = IncidentStore(client)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    tokens = {"plaza": 3}
    outbox.fence_of = tokens.__getitem__
    story = incident_story()
    for change, incident in story[:2]:
        outbox.put(change, incident)  # stamped 3
    delivery = Delivery(outbox, store.apply, max_backoff_s=0.5).start()
    try:
        wait_until(lambda: outbox.pending() == 0, 10, "the first changes delivered")
        fencing.advance(client, "plaza", 7)  # taken over; this node has not noticed yet
        for change, incident in story[2:4]:
            outbox.put(change, incident)
        wait_until(lambda: outbox.pending() == 0, 10, "the refused changes left the outbox")
    finally:
        delivery.stop()
        outbox.close()
    assert delivery.fenced == 2 and delivery.last_error is None
    record = store.get(story[0][0].incident_id)
    assert record is not None and record["seq"] == 2 and record["announcements"] == []
    assert fencing.rejected(client) == {"plaza": 2}
