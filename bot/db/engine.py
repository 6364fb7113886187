"""Async database engines for the two supported backends, and a health probe.

The embedded default is a SQLite file (one process, no server to run); scale-out deployments use
PostgreSQL. Both are reached through SQLAlchemy's asyncio layer. Every SQLite connection gets the
pragmas that make it safe for a concurrent async service: WAL (readers do not block the writer),
enforced foreign keys, and a busy timeout so a second writer waits instead of failing at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlmodel.ext.asyncio.session import AsyncSession

SQLITE_DRIVER: Final = "sqlite+aiosqlite"
POSTGRES_DRIVER: Final = "postgresql+asyncpg"

SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
POSTGRES_POOL_SIZE: Final = 10
POSTGRES_MAX_OVERFLOW: Final = 10
POSTGRES_CONNECT_TIMEOUT_S: Final = 10.0
PING_TIMEOUT_S: Final = 5.0


def parse_database_url(database_url: str) -> URL:
    """Parse and check a DATABASE_URL; only the two supported async drivers are accepted."""
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise ValueError(f"DATABASE_URL is not a database URL: {exc}") from exc
    if url.drivername not in (SQLITE_DRIVER, POSTGRES_DRIVER):
        raise ValueError(
            f"DATABASE_URL must start with {SQLITE_DRIVER}:// or {POSTGRES_DRIVER}://, "
            f"got driver {url.drivername!r}"
        )
    return url


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _set_sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def create_engine(database_url: str) -> AsyncEngine:
    """An ``AsyncEngine`` for ``sqlite+aiosqlite://…`` or ``postgresql+asyncpg://…``.

    Raises ``ValueError`` naming DATABASE_URL for anything else.
    """
    url = parse_database_url(database_url)
    if url.drivername == SQLITE_DRIVER:
        if _is_sqlite_memory(url):
            # One shared connection, otherwise every pooled connection sees its own empty DB.
            engine = create_async_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=POSTGRES_MAX_OVERFLOW,
        # No pre-ping: it cost a round trip on every session (a sixth of a STOP's time). A
        # connection that died with the server fails its first statement instead; SQLAlchemy
        # then discards every connection older than the failure, and the caller's retry
        # (transient errors in bot.inbound, 503 in the API) finds fresh ones.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"timeout": POSTGRES_CONNECT_TIMEOUT_S},
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions (SQLModel flavour) whose objects stay readable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> bool:
    """True when the database answers a trivial query within ``PING_TIMEOUT_S`` seconds."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_S), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError):
        return False
    return True
