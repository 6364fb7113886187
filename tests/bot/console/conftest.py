"""Fixtures of the console tests: the app on each stack with agents configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.bot.console.support import Agent, console_app, console_settings


@pytest.fixture
async def agent(stack_urls: tuple[str, str], settings_for: Any) -> AsyncIterator[Agent]:
    """The app on each stack (embedded, then PostgreSQL + Redis) and an agent not logged in."""
    async with console_app(console_settings(settings_for, stack_urls)) as console_agent:
        yield console_agent


@pytest.fixture
async def embedded_agent(tmp_path: Any, settings_for: Any) -> AsyncIterator[Agent]:
    """The app on the embedded stack only, for tests about pages rather than storage."""
    import uuid

    from bot.db.migrate import migrate

    url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    await migrate(url)
    settings = console_settings(settings_for, (url, f"memory://{uuid.uuid4().hex}"))
    async with console_app(settings) as console_agent:
        yield console_agent
