"""Schema migrations (Alembic) driven from code.

The service migrates itself (``optin-bot migrate``, and ``serve`` on an empty embedded database),
possibly from a wheel install and from any working directory, so Alembic is configured here
rather than from an ``alembic.ini``: the script location is the ``bot/migrations`` directory
installed next to this module. Migrations run on the service's own async engine through
``connection.run_sync``; the Alembic env picks that connection up from ``Config.attributes``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from bot.db.engine import create_engine, parse_database_url

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent.parent / "migrations"

#: Arbitrary constant naming the PostgreSQL advisory lock held while migrating.
POSTGRES_MIGRATION_LOCK_KEY: Final = 0x6F7074696E  # "optin"

_IN_PROCESS_LOCKS: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()

#: Key under ``Config.attributes`` holding an open connection for env.py to migrate with.
CONNECTION_ATTRIBUTE: Final = "connection"


def target_metadata() -> MetaData:
    """The metadata the migrations must produce: every table model of the service.

    Table modules register themselves in ``SQLModel.metadata`` on import; they are imported here
    so autogenerate and the schema check see all of them.
    """
    # Imported for their table definitions.
    import bot.campaigns.models
    import bot.db.consent_models
    import bot.db.keyword_models
    import bot.db.models  # noqa: F401

    return SQLModel.metadata


def alembic_config(database_url: str) -> Config:
    """An Alembic ``Config`` for ``database_url`` that needs no alembic.ini."""
    parse_database_url(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates '%'; URL-encoded passwords contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def _upgrade_to_head(connection: Connection, config: Config) -> None:
    if connection.dialect.name == "postgresql":
        # Several processes (web, worker, sender) may start at once: one migrates, the others
        # wait here and then find the schema current. Released when the transaction ends.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK_KEY}
        )
    config.attributes[CONNECTION_ATTRIBUTE] = connection
    command.upgrade(config, "head")


def _migration_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _IN_PROCESS_LOCKS.get(loop)
    if lock is None:
        lock = _IN_PROCESS_LOCKS[loop] = asyncio.Lock()
    return lock


async def migrate(database_url: str) -> None:
    """Create or upgrade the schema to the newest revision; a no-op when already current.

    Safe to call concurrently: within a process calls take turns (Alembic keeps its migration
    context in a module global), and on PostgreSQL an advisory lock serialises processes.
    """
    config = alembic_config(database_url)
    engine = create_engine(database_url)
    try:
        async with _migration_lock(), engine.begin() as connection:
            await connection.run_sync(_upgrade_to_head, config)
    finally:
        await engine.dispose()


def head_revisions() -> frozenset[str]:
    """The newest revision(s) shipped with this version of the service."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return frozenset(script.get_heads())


def _current_revisions(connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(connection).get_current_heads())


async def schema_is_current(engine: AsyncEngine) -> bool:
    """True when the database is at the newest revision (False for an empty database)."""
    async with engine.connect() as connection:
        current = await connection.run_sync(_current_revisions)
    return current == head_revisions()
