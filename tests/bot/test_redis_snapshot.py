"""The embedded store's file (`bot.redis_snapshot`): what is saved reads back, whatever happened
to the process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import fakeredis
import pytest
from fakeredis import aioredis

from bot.redis_snapshot import MAGIC, RedisSnapshot, SnapshotError


def store() -> tuple[fakeredis.FakeServer, aioredis.FakeRedis]:
    server = fakeredis.FakeServer()
    return server, aioredis.FakeRedis(server=server, decode_responses=True)


async def test_every_type_a_group_and_its_pending_entries_come_back(tmp_path: Path) -> None:
    path = tmp_path / "optin.db.redis"
    server, redis = store()
    snapshot = RedisSnapshot(server, path)
    assert snapshot.restore() == 0
    await redis.set("optin:window:1", "open", ex=3600)
    await redis.zadd("optin:timers", {"expire:1": 1.0})
    await redis.hset("optin:h", mapping={"a": "1"})
    await redis.xadd("optin:in:0", {"event": "STOP"})
    await redis.xgroup_create("optin:in:0", "workers", id="0")
    await redis.xreadgroup("workers", "w1", {"optin:in:0": ">"})
    await redis.set("gone", "x")
    await snapshot.save()
    await redis.delete("gone")
    await snapshot.save()

    server2, redis2 = store()
    assert RedisSnapshot(server2, path).restore() == 4
    assert await redis2.get("optin:window:1") == "open"
    assert 3590 < await redis2.ttl("optin:window:1") <= 3600
    assert await redis2.zrange("optin:timers", 0, -1) == ["expire:1"]
    assert await redis2.hgetall("optin:h") == {"a": "1"}
    assert await redis2.get("gone") is None
    pending = await redis2.xpending("optin:in:0", "workers")
    assert pending["pending"] == 1, "the read-but-unacknowledged entry is still pending"


async def test_an_acknowledgement_in_a_group_is_saved_without_a_notification(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    server, redis = store()
    snapshot = RedisSnapshot(server, path)
    snapshot.restore()
    entry = await redis.xadd("optin:out", {"m": "1"})
    await redis.xgroup_create("optin:out", "senders", id="0")
    await redis.xreadgroup("senders", "s1", {"optin:out": ">"})
    await snapshot.save()
    await redis.xack("optin:out", "senders", entry)
    await snapshot.save()
    server2, redis2 = store()
    RedisSnapshot(server2, path).restore()
    assert (await redis2.xpending("optin:out", "senders"))["pending"] == 0


async def test_keys_that_expired_while_stopped_stay_out(tmp_path: Path) -> None:
    path = tmp_path / "s"
    server, redis = store()
    snapshot = RedisSnapshot(server, path)
    snapshot.restore()
    await redis.set("short", "x", px=150)
    await redis.set("long", "x", ex=60)
    await snapshot.save()
    await asyncio.sleep(0.3)
    server2, redis2 = store()
    assert RedisSnapshot(server2, path).restore() == 1
    assert await redis2.get("short") is None and await redis2.get("long") == "x"


async def test_a_torn_last_record_is_ignored_and_a_foreign_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    server, redis = store()
    snapshot = RedisSnapshot(server, path)
    snapshot.restore()
    await redis.set("kept", "1")
    await snapshot.save()
    await redis.set("torn", "2")
    await snapshot.save()
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # the process died while appending the last record
    server2, redis2 = store()
    RedisSnapshot(server2, path).restore()
    assert await redis2.get("kept") == "1" and await redis2.get("torn") is None

    path.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(SnapshotError):
        RedisSnapshot(fakeredis.FakeServer(), path).restore()
    assert MAGIC.startswith(b"OPTINRDB")


async def test_persisted_waits_for_a_save_that_began_after_the_write(tmp_path: Path) -> None:
    path = tmp_path / "s"
    server, redis = store()
    snapshot = RedisSnapshot(server, path, interval=60)
    snapshot.restore()
    stop = asyncio.Event()
    loop = asyncio.create_task(snapshot.run(stop))
    await redis.set("acknowledged", "1")
    await asyncio.wait_for(snapshot.persisted(), timeout=5)
    server2, redis2 = store()
    RedisSnapshot(server2, path).restore()
    assert await redis2.get("acknowledged") == "1"
    stop.set()
    await loop
