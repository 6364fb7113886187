"""Fixtures shared by the whole suite: real services (or a clear skip) and embedded doubles.
(Webhook bodies and the signed poster live in tests/fakes/webhooks.py.)

Real Redis and PostgreSQL come from `REDIS_URL` / `TEST_DATABASE_URL` (local defaults otherwise).
Without them, the tests that need them skip with the reason, unless `REQUIRE_SERVICES=1`, when the
same situation is a failure: CI sets it so a missing server can never pass silently.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

import bot.services
from bot.conversations import Language
from bot.live_language import LanguageBase
from bot.services import load_language, load_language_base
from bot.settings import Settings
from tests.fakes.webhooks import APP_SECRET, forget_timestamps

REDIS_TEST_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
if REDIS_TEST_URL.startswith("memory://"):
    REDIS_TEST_URL = "redis://127.0.0.1:6379/15"


def _per_worker(url: str) -> str:
    """Under pytest-xdist (`-n 2`), each worker process gets its own Redis database, counting
    down from the configured one and skipping 14 (tests/bot/test_cli.py's), so workers never
    flush each other's keys."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    base, _, db = url.rpartition("/")
    if not db.isdigit():
        return url
    number = int(db) - int(worker[2:]) * 2
    return f"{base}/{number if number >= 0 else number % 16}"


REDIS_TEST_URL = _per_worker(REDIS_TEST_URL)
PG_TEST_URL = (
    os.environ.get("TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def unavailable(what: str, reason: object) -> None:
    """Skip (or, with REQUIRE_SERVICES=1, fail) a test whose server is unreachable."""
    message = f"{what} unreachable: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1)")
    pytest.skip(message)


async def _real_redis() -> Redis:
    import redis.asyncio as redis_async

    client: Redis = redis_async.from_url(
        REDIS_TEST_URL, decode_responses=True, socket_connect_timeout=2
    )
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_TEST_URL}", exc)
    await client.flushdb()
    return client


def memory_redis() -> Redis:
    """A fresh in-process Redis (the `memory://` mode), isolated from every other test."""
    import fakeredis
    from fakeredis import aioredis

    client: Redis = aioredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    return client


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """The same Redis contract, once embedded and once on the real server."""
    client = memory_redis() if request.param == "memory" else await _real_redis()
    yield client
    if request.param == "redis":
        await client.flushdb()
    await client.aclose()


@pytest.fixture
async def real_redis_url() -> AsyncIterator[str]:
    client = await _real_redis()
    await client.aclose()
    yield REDIS_TEST_URL
    client = await _real_redis()
    await client.aclose()


async def _create_pg_database() -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(PG_TEST_URL)
    name = f"optin_t_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username or "postgres",
            password=url.password,
            database=url.database or "postgres",
            timeout=5,
        )
    except Exception as exc:
        unavailable(f"PostgreSQL at {url.host}:{url.port or 5432}", exc)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(database_url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(PG_TEST_URL)
    name = make_url(database_url).database
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=url.database or "postgres",
        timeout=5,
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# One migrated PostgreSQL database and one migrated SQLite file per test session, handed to each
# test emptied (TRUNCATE) or copied: creating and migrating a database per test cost seconds each.
_SHARED: dict[str, str] = {}


async def fresh_sqlite(tmp_path: Any) -> str:
    """A migrated SQLite database private to one test (a copy of a template migrated once)."""
    from bot.db.migrate import migrate

    template = _SHARED.get("sqlite")
    if template is None:
        template = str(Path(tempfile.mkdtemp(prefix="optin-template-")) / "template.db")
        await migrate(f"sqlite+aiosqlite:///{template}")
        _SHARED["sqlite"] = template
    target = Path(tmp_path) / "optin.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"


async def fresh_postgres() -> str:
    """The session's migrated PostgreSQL database, with every table emptied for this test."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from bot.db.migrate import migrate

    url = _SHARED.get("postgresql")
    if url is None:
        url = await _create_pg_database()
        await migrate(url)
        _SHARED["postgresql"] = url
        return url
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=parsed.database,
        timeout=5,
    )
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
        names = ", ".join(f'"{row["tablename"]}"' for row in tables)
        if names:
            await conn.execute(f"TRUNCATE TABLE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    return url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    url = _SHARED.pop("postgresql", None)
    if url is not None:
        asyncio.run(_drop_pg_database(url))
    template = _SHARED.pop("sqlite", None)
    if template is not None:
        shutil.rmtree(Path(template).parent, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """An empty, migrated database of each backend, private to one test."""
    if request.param == "sqlite":
        yield await fresh_sqlite(tmp_path)
        return
    yield await fresh_postgres()


@pytest.fixture
def settings_for() -> Any:
    """Build `Settings` for tests: `settings_for(database_url=…, redis_url=…, **overrides)`."""

    def build(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "app_secret": APP_SECRET,
            "verify_token": "verify-me",
            "business_name": "Acme Shoes",
        }
        base.update(overrides)
        return Settings(**base)

    return build


_LANGUAGES: dict[tuple[str | None, str | None, str, str | None], Language] = {}
_BASES: dict[tuple[str | None, str | None, str], LanguageBase] = {}


def _language_key(settings: Settings) -> tuple[str | None, str | None, str]:
    path = settings.categories_file
    text = Path(path).read_text(encoding="utf-8") if path and Path(path).is_file() else None
    return (path, text, settings.default_locale)


@pytest.fixture(autouse=True)
def _language_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each app start reads every locale file and builds the keyword matcher from them (about
    0.1 s of CPU, over a thousand app starts in the suite). Both results are immutable and
    depend only on the locale files, the categories file, the default locale and (the matcher)
    `KEYWORDS_FILE`'s text, so the suite builds each once per combination. The categories
    file's text is part of the key: a test may rewrite it."""

    def cached_base(settings: Settings) -> LanguageBase:
        key = _language_key(settings)
        if key not in _BASES:
            _BASES[key] = load_language_base(settings)
        return _BASES[key]

    def cached(settings: Settings) -> Language:
        key = (*_language_key(settings), settings.keywords_text)
        if key not in _LANGUAGES:
            _LANGUAGES[key] = load_language(settings)
        return _LANGUAGES[key]

    monkeypatch.setattr(bot.services, "load_language_base", cached_base)
    monkeypatch.setattr(bot.services, "load_language", cached)


@pytest.fixture(autouse=True)
def _fresh_meta_timestamps() -> None:
    """Each test's customers stamp their messages from 30 s ago again (`meta_timestamp`)."""
    forget_timestamps()


@pytest.fixture(autouse=True)
def _no_dotenv(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never pick up a developer's `.env` or real Meta credentials."""
    for name in ("WHATSAPP_ACCESS_TOKEN", "WHATSAPP_APP_SECRET", "GRAPH_API_URL"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.services)])
async def stack_urls(
    request: pytest.FixtureRequest, tmp_path: Any
) -> AsyncIterator[tuple[str, str]]:
    """(DATABASE_URL, REDIS_URL) of a private, migrated stack: embedded (SQLite + memory://) and
    real (PostgreSQL + Redis). Tests that take it run once on each."""
    if request.param == "embedded":
        yield await fresh_sqlite(tmp_path), f"memory://{uuid.uuid4().hex}"
        return
    async for urls in _real_stack():
        yield urls


@pytest.fixture
async def real_stack_urls() -> AsyncIterator[tuple[str, str]]:
    """(DATABASE_URL, REDIS_URL) on the real servers only, for multi-process tests."""
    async for urls in _real_stack():
        yield urls


async def _real_stack() -> AsyncIterator[tuple[str, str]]:
    client = await _real_redis()
    await client.aclose()
    yield await fresh_postgres(), REDIS_TEST_URL
