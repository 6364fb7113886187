"""Alembic environment: migrations always run on an async engine via ``run_sync``.

Two entry points reach this file. The service (``bot.db.migrate.migrate``) opens the connection
itself and hands it over in ``config.attributes``; the ``alembic`` command line (developers
running ``alembic revision --autogenerate`` or ``alembic upgrade``) gives at most a URL; an
engine is built here from it, or from the service's DATABASE_URL, with ``create_engine``.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from bot.db.engine import create_engine
from bot.db.migrate import CONNECTION_ATTRIBUTE, target_metadata

config = context.config

if config.config_file_name is not None and config.attributes.get(CONNECTION_ATTRIBUTE) is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_migrations)
    finally:
        await engine.dispose()


def _database_url() -> str:
    """``sqlalchemy.url`` when configured, else the service's own DATABASE_URL (env or .env)."""
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    from bot.settings import load_settings

    return load_settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata(),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get(CONNECTION_ATTRIBUTE)
    if isinstance(connection, Connection):
        _run_migrations(connection)
        return
    asyncio.run(_run_with_own_engine(_database_url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
