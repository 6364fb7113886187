"""Shard leases and the shared rate limiter: Redis contract tests, embedded and real."""

from __future__ import annotations

import asyncio
import itertools

from redis.asyncio import Redis

from bot.leases import ShardLeases
from bot.ratelimit import RateLimiter


async def test_a_lease_has_one_owner_until_released(redis_client: Redis) -> None:
    a = ShardLeases(redis_client, prefix="t:lease", consumer="a", ttl_ms=5000)
    b = ShardLeases(redis_client, prefix="t:lease", consumer="b", ttl_ms=5000)
    assert await a.acquire(3)
    assert not await b.acquire(3)
    assert not await b.renew(3), "only the owner may renew"
    await b.release(3)  # not the owner: no effect
    assert not await b.acquire(3)
    assert await a.renew(3)
    await a.release(3)
    assert await b.acquire(3)


async def test_a_lease_expires_when_its_owner_stops_renewing(redis_client: Redis) -> None:
    a = ShardLeases(redis_client, prefix="t:lease", consumer="a", ttl_ms=100)
    b = ShardLeases(redis_client, prefix="t:lease", consumer="b", ttl_ms=100)
    assert await a.acquire(0)
    await asyncio.sleep(0.25)
    assert await b.acquire(0)


async def test_heartbeat_counts_live_consumers(redis_client: Redis) -> None:
    a = ShardLeases(redis_client, prefix="t:lease", consumer="a", ttl_ms=5000)
    b = ShardLeases(redis_client, prefix="t:lease", consumer="b", ttl_ms=5000)
    assert await a.heartbeat() == 1
    assert await b.heartbeat() == 2
    await b.leave()
    assert await a.heartbeat() == 1


async def test_rate_limiter_spaces_calls_by_the_interval(redis_client: Redis) -> None:
    """The GCRA script admits one call per interval: a second immediate call must wait."""
    limiter = RateLimiter(redis_client, "t:rate", rate=2.0)
    script = redis_client.register_script(_gcra_source())
    interval_us = 500_000
    assert int(await script(keys=["t:rate2"], args=[interval_us, 0])) == 0
    wait = int(await script(keys=["t:rate2"], args=[interval_us, 0]))
    assert 0 < wait <= interval_us
    await limiter.acquire()  # first slot is free


async def test_two_limiters_on_one_key_share_the_rate(redis_client: Redis) -> None:
    one = RateLimiter(redis_client, "t:shared", rate=20.0)
    two = RateLimiter(redis_client, "t:shared", rate=20.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(limiter.acquire() for limiter in (one, two) for _ in range(3)))
    # Six calls at 20/s need at least five intervals (0.25 s) whoever makes them.
    assert loop.time() - started >= 0.2


def _gcra_source() -> str:
    from bot import ratelimit

    return ratelimit._GCRA_LUA


async def test_a_reservation_spaces_its_slots_and_the_next_one_follows(
    redis_client: Redis,
) -> None:
    """A batch reserves its slots in one call; a second reserver's slots come after them."""
    one = RateLimiter(redis_client, "t:reserve", rate=10.0)
    two = RateLimiter(redis_client, "t:reserve", rate=10.0)
    first = await one.reserve(5)
    second = await two.reserve(2)
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert all(0.09 <= gap <= 0.11 for gap in gaps), gaps
    assert second[0] >= first[-1] + 0.09
    assert await one.reserve(0) == []
