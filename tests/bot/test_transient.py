"""Which failures are the ground giving way: one definition for every loop.

Bug pinned: a connection killed with `pg_terminate_backend` while the sender recorded a batch
raised a `DBAPIError` the sender did not count as temporary, and the sender stopped for good.
"""

from __future__ import annotations

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.transient import is_transient


async def _terminate(database_url: str) -> None:
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username or "postgres", database="postgres"
    )
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            url.database,
        )
    finally:
        await conn.close()


@pytest.mark.services
async def test_a_connection_killed_mid_transaction_is_transient(
    real_stack_urls: tuple[str, str],
) -> None:
    database_url, _ = real_stack_urls
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await _terminate(database_url)
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(text("SELECT 1"))
        assert is_transient(raised.value)
    finally:
        await engine.dispose()


def test_work_errors_are_not_transient() -> None:
    assert not is_transient(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(ValueError("bad event"))
    assert is_transient(RedisConnectionError("gone"))
    assert is_transient(ConnectionResetError())


def test_a_shutdown_sqlstate_is_transient() -> None:
    class AdminShutdown(Exception):
        sqlstate = "57P01"

    assert is_transient(DBAPIError("SELECT 1", {}, AdminShutdown("terminating connection")))

    class ConnectionFailure(Exception):
        sqlstate = "08006"

    assert is_transient(DBAPIError("SELECT 1", {}, ConnectionFailure()))

    class Unique(Exception):
        sqlstate = "23505"

    assert not is_transient(DBAPIError("INSERT", {}, Unique()))
