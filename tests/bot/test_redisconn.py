"""The Redis client's connection pool: a fixed size, and a burst waits instead of failing."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import BlockingConnectionPool

from bot.redisconn import connect_redis


@pytest.mark.services
async def test_a_burst_larger_than_the_pool_waits_for_connections(real_redis_url: str) -> None:
    """Regression (issue 9, item 8): with redis-py's default pool a command beyond its 100
    connections failed at once with "Too many connections"; now it waits for a free one."""
    client = connect_redis(real_redis_url, max_connections=3, pool_timeout=5.0)
    try:
        pool = client.connection_pool
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == 3
        # BLPOP with a timeout holds its connection for a while: 12 of them on 3 connections.
        results = await asyncio.gather(
            *(client.blpop([f"optin-test:pool:{n}"], timeout=0.05) for n in range(12))
        )
        assert results == [None] * 12
    finally:
        await client.aclose()


@pytest.mark.services
async def test_a_burst_gives_up_after_the_pool_timeout(real_redis_url: str) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = connect_redis(real_redis_url, max_connections=1, pool_timeout=0.1)
    try:
        with pytest.raises(RedisConnectionError):
            await asyncio.gather(
                client.blpop(["optin-test:pool:held"], timeout=1),
                client.ping(),
            )
    finally:
        await client.aclose()
