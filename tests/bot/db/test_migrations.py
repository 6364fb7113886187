"""Migrations build exactly the declared schema; engines are configured for their backend."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from bot.db.engine import create_engine, ping
from bot.db.migrate import (
    CONNECTION_ATTRIBUTE,
    MIGRATIONS_DIR,
    alembic_config,
    head_revisions,
    migrate,
    schema_is_current,
    target_metadata,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


# Expression indexes live in the migrations only (migration 0004: their PostgreSQL collation
# cannot be said in the models); the comparison leaves them out instead of asking to drop them.
MIGRATION_ONLY_INDEXES = frozenset({"ix_contacts_username_lower", "ix_contacts_profile_name_lower"})


def _compared(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "index" and name in MIGRATION_ONLY_INDEXES)


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_object": _compared}
    )
    return list(compare_metadata(context, target_metadata()))


async def test_migrate_creates_the_schema_and_a_second_run_is_a_no_op(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url)
    try:
        assert await schema_is_current(engine) is False

        await migrate(empty_database_url)
        assert await schema_is_current(engine) is True
        await migrate(empty_database_url)

        assert await schema_is_current(engine) is True
        async with engine.connect() as connection:
            versions = (
                (await connection.execute(text("SELECT version_num FROM alembic_version")))
                .scalars()
                .all()
            )
        assert set(versions) == head_revisions() == {"0006"}
    finally:
        await engine.dispose()


async def test_concurrent_migrations_in_one_process_take_turns(empty_database_url: str) -> None:
    await asyncio.gather(*(migrate(empty_database_url) for _ in range(3)))

    engine = create_engine(empty_database_url)
    try:
        assert await schema_is_current(engine)
    finally:
        await engine.dispose()


MIGRATE_IN_A_PROCESS = (
    "import asyncio, sys; from bot.db.migrate import migrate; asyncio.run(migrate(sys.argv[1]))"
)


@pytest.mark.services
async def test_concurrent_migrating_processes_serialise_on_postgres(
    empty_postgres_url: str,
) -> None:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MIGRATE_IN_A_PROCESS,
            empty_postgres_url,
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(process.communicate() for process in processes)), timeout=60
    )

    for process, (_, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr.decode()
    engine = create_engine(empty_postgres_url)
    try:
        assert await schema_is_current(engine)
    finally:
        await engine.dispose()


async def test_migrated_schema_matches_the_models(empty_database_url: str) -> None:
    await migrate(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences) == []

        # The comparison is live: without the tables it reports every one of them.
        config = alembic_config(empty_database_url)

        def downgrade(connection: Connection) -> None:
            config.attributes[CONNECTION_ATTRIBUTE] = connection
            command.downgrade(config, "base")

        async with engine.begin() as connection:
            await connection.run_sync(downgrade)
        async with engine.connect() as connection:
            missing = await connection.run_sync(_schema_differences)
        added = {diff[1].name for diff in missing if diff[0] == "add_table"}
        assert added == {
            "contacts",
            "contact_identities",
            "transcript_entries",
            "consent_events",
            "ledger_heads",
            "consent_states",
            "conversations",
            "campaigns",
            "campaign_recipients",
            "keyword_versions",
        }
        assert await schema_is_current(engine) is False
    finally:
        await engine.dispose()
    await migrate(empty_database_url)


async def test_migrate_works_from_any_directory_with_a_relative_sqlite_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite+aiosqlite:///optin.db"

    await migrate(url)

    assert (tmp_path / "optin.db").is_file()
    engine = create_engine(url)
    try:
        assert await schema_is_current(engine)
    finally:
        await engine.dispose()


def test_alembic_config_needs_no_ini_file() -> None:
    config = alembic_config("sqlite+aiosqlite:///optin.db")
    assert config.config_file_name is None
    location = Path(config.get_main_option("script_location") or "")
    assert location.is_absolute() and location == MIGRATIONS_DIR
    assert (location / "env.py").is_file()
    assert config.get_main_option("sqlalchemy.url") == "sqlite+aiosqlite:///optin.db"


def test_alembic_config_keeps_percent_signs_in_passwords() -> None:
    url = "postgresql+asyncpg://bot:p%40ss@db/optin"
    assert alembic_config(url).get_main_option("sqlalchemy.url") == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1/test",
        "postgresql+psycopg://postgres@127.0.0.1/test",
        "sqlite:///optin.db",
        "mysql+aiomysql://root@127.0.0.1/optin",
        "not a database url",
    ],
)
def test_unsupported_urls_are_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(ValueError, match="DATABASE_URL"):
        create_engine(url)


async def test_sqlite_connections_get_their_pragmas(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.execute(text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
        assert pragmas["journal_mode"] == "wal"
        assert pragmas["foreign_keys"] == 1
        assert pragmas["busy_timeout"] > 0
        assert await ping(engine)
    finally:
        await engine.dispose()


async def test_in_memory_sqlite_is_one_database() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    finally:
        await engine.dispose()


async def test_ping_answers_for_each_backend(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await ping(engine) is True
        if engine.dialect.name == "postgresql":
            assert engine.pool.size() >= 5  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:1/test",
        "sqlite+aiosqlite:///{tmp}/no/such/directory/optin.db",
    ],
)
async def test_ping_is_false_when_the_database_is_unreachable(url: str, tmp_path: Path) -> None:
    engine = create_engine(url.format(tmp=tmp_path))
    try:
        assert await ping(engine) is False
    finally:
        await engine.dispose()
    await _let_aiosqlite_threads_finish()


async def _let_aiosqlite_threads_finish() -> None:
    """aiosqlite stops the thread of a connection that failed to open without waiting for it;
    give it a moment so it does not report back to this test's loop after the loop closed."""
    for _ in range(200):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


@pytest.mark.services
async def test_ping_is_false_for_a_missing_postgres_database(empty_postgres_url: str) -> None:
    missing = make_url(empty_postgres_url).set(database="optin_does_not_exist")
    engine = create_engine(missing.render_as_string(hide_password=False))
    try:
        assert await ping(engine) is False
    finally:
        await engine.dispose()
