"""Database fixtures for the storage tests, on SQLite and on PostgreSQL.

Each test module gets its own database: a SQLite file in a temporary directory, or a freshly
created PostgreSQL database ``optin_t_<hex>`` (dropped afterwards), so concurrent runs never
clobber each other. PostgreSQL comes from ``TEST_DATABASE_URL``; when it cannot be reached the
PostgreSQL variants are skipped with the reason, or fail when ``REQUIRE_SERVICES=1``.

Database set-up runs its coroutines on a private event loop in a worker thread, so module-scoped
fixtures never share a loop with the tests (asyncpg connections are bound to their loop).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine, session_factory
from bot.db.ledger import LedgerRepository
from bot.db.migrate import migrate
from bot.db.transcript import TranscriptRepository

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TABLES_CHILDREN_FIRST = (
    "consent_states",
    "conversations",
    "consent_events",
    "ledger_heads",
    "transcript_entries",
    "contact_identities",
    "contacts",
)

T = TypeVar("T")

#: Servers found unreachable in this run, with the reason: later modules skip at once.
_UNREACHABLE: dict[str, str] = {}


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion on a fresh loop in a worker thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _services_unavailable(reason: str) -> NoReturn:
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (REQUIRE_SERVICES=1)")
    pytest.skip(reason)


async def _admin_execute(admin_url: str, statement: str) -> None:
    engine = create_async_engine(
        admin_url,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"timeout": 5},
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextmanager
def _postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for as long as the generator runs."""
    admin = make_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL))
    admin_url = admin.render_as_string(hide_password=False)
    name = f"optin_t_{uuid.uuid4().hex[:16]}"
    if admin_url in _UNREACHABLE:
        _services_unavailable(_UNREACHABLE[admin_url])
    try:
        run_coroutine(_admin_execute(admin_url, f'CREATE DATABASE "{name}"'))
    except (OSError, SQLAlchemyError, TimeoutError) as exc:
        where = admin.render_as_string(hide_password=True)
        _UNREACHABLE[admin_url] = f"PostgreSQL at {where} is unreachable: {exc}"
        _services_unavailable(_UNREACHABLE[admin_url])
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        run_coroutine(_admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.services),
]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on: ``"sqlite"`` or ``"postgresql"``."""
    return str(request.param)


@contextmanager
def _fresh_database(backend: str, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'optin.db'}"
    else:
        with _postgres_database() as url:
            yield url


@pytest.fixture(scope="module")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a database migrated to head, shared by one test module."""
    with _fresh_database(backend, tmp_path_factory.mktemp("db")) as url:
        run_coroutine(migrate(url))
        yield url


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of a new database with no tables at all, for one test."""
    with _fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database for one test."""
    with _postgres_database() as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the module's database, with every table emptied first."""
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        for table in TABLES_CHILDREN_FIRST:
            await connection.execute(text(f"DELETE FROM {table}"))
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def contacts(sessions: async_sessionmaker[AsyncSession]) -> ContactRepository:
    return ContactRepository(sessions)


@pytest.fixture
def ledger(sessions: async_sessionmaker[AsyncSession]) -> LedgerRepository:
    return LedgerRepository(sessions)


@pytest.fixture
def transcript(sessions: async_sessionmaker[AsyncSession]) -> TranscriptRepository:
    return TranscriptRepository(sessions)
