"""One way to get a Redis client, real or embedded.

`memory://` gives an in-process Redis (fakeredis) so that `optin-bot serve` runs on a bare machine;
it speaks the same commands, Lua scripts and streams as a real server, which is why every Redis
contract test runs against both. It is process-local: the scale-out roles refuse it.

A real server is reached through a `BlockingConnectionPool` of an explicit size
(`REDIS_MAX_CONNECTIONS`): when every connection is busy a command waits for one (at most
`REDIS_POOL_TIMEOUT` seconds) instead of failing at once with "Too many connections", which is
what redis-py's default pool does past 100 connections and what turned a burst of console logins
into 503s. Size it for the blocking readers of the roles a process runs (16 inbound shards, 16
CRM shards, the sender: about 35 in `serve`) plus the requests it serves at once.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.settings import DEFAULT_REDIS_MAX_CONNECTIONS, DEFAULT_REDIS_POOL_TIMEOUT_SECONDS

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


def connect_redis(
    url: str,
    *,
    max_connections: int = DEFAULT_REDIS_MAX_CONNECTIONS,
    pool_timeout: float = DEFAULT_REDIS_POOL_TIMEOUT_SECONDS,
    client_name: str | None = None,
) -> Redis:
    """A client for `url` (`redis://`, `rediss://`, `unix://`, `memory://[name]`); str replies.

    At most `max_connections` connections to a real server; a command finding them all busy
    waits up to `pool_timeout` seconds for one. `client_name` (`REDIS_CLIENT_NAME`) names every
    connection (CLIENT SETNAME), so an operator can tell ours apart in `CLIENT LIST`."""
    if url.startswith(MEMORY_SCHEME):
        from fakeredis import aioredis

        server = _fake_server(url[len(MEMORY_SCHEME) :])
        client: Redis = aioredis.FakeRedis(server=server, decode_responses=True)
        return client
    # One quick retry on a broken pooled connection (Redis restarted, a proxy dropped it): the
    # pool then dials afresh. Every write we make is idempotent (SET NX, deterministic ids), so a
    # command that did run before its answer was lost does no harm when repeated.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
        client_name=client_name,
    )
    # The client owns the pool: closing the client closes its connections.
    return Redis.from_pool(pool)


async def redis_ok(client: Redis) -> bool:
    """True when Redis answers a PING; never raises (used by health checks and the webhook)."""
    try:
        return bool(await client.ping())
    except Exception:
        return False
