"""One way to get a Redis client, real or embedded.

`memory://` gives an in-process Redis (fakeredis) so that `optin-bot serve` runs on a bare machine;
it speaks the same commands, Lua scripts and streams as a real server, which is why every Redis
contract test runs against both. It is process-local: the scale-out roles refuse it.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis_async
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

MEMORY_SCHEME = "memory://"

# One in-process server per name (`memory://` is the name ""), so every client built for the same
# URL sees the same data, exactly as separate connections to one real server would.
_memory_servers: dict[str, Any] = {}


def _fake_server(name: str) -> Any:
    if name not in _memory_servers:
        import fakeredis

        _memory_servers[name] = fakeredis.FakeServer()
    return _memory_servers[name]


def memory_server(url: str) -> Any:
    """The in-process server behind a `memory://[name]` URL (for `bot.redis_snapshot`)."""
    return _fake_server(url[len(MEMORY_SCHEME) :])


def connect_redis(url: str) -> Redis:
    """A client for `url` (`redis://`, `rediss://`, `unix://`, `memory://[name]`); str replies."""
    if url.startswith(MEMORY_SCHEME):
        from fakeredis import aioredis

        server = _fake_server(url[len(MEMORY_SCHEME) :])
        client: Redis = aioredis.FakeRedis(server=server, decode_responses=True)
        return client
    # One quick retry on a broken pooled connection (Redis restarted, a proxy dropped it): the
    # pool then dials afresh. Every write we make is idempotent (SET NX, deterministic ids), so a
    # command that did run before its answer was lost does no harm when repeated.
    return redis_async.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
    )


async def redis_ok(client: Redis) -> bool:
    """True when Redis answers a PING; never raises (used by health checks and the webhook)."""
    try:
        return bool(await client.ping())
    except Exception:
        return False
