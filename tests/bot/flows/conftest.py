"""Fixtures of the end-to-end flow tests: the running app (every role) and a `Chat` against it.

`open_chat(**settings)` runs on both stacks (`stack_urls`: embedded, then PostgreSQL + Redis):
every flow test runs on both. The app closes before its stack is dropped (fixture order).
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from bot.locales import load_locales
from bot.settings import Settings
from flows.locale_catalog import LocaleCatalog
from tests.fakes.chat import Chat, chat_app
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import APP_SECRET

BUSINESS = "Acme Shoes"
CATEGORIES = ("marketing", "order_updates", "reminders", "account_alerts")
ChatOpener = Callable[..., Awaitable[Chat]]


def every(status: str) -> dict[str, str]:
    return dict.fromkeys(CATEGORIES, status)


def only(changed: dict[str, str], rest: str = "none") -> dict[str, str]:
    return {c: changed.get(c, rest) for c in CATEGORIES}


@pytest.fixture(scope="session")
def locales() -> dict[str, LocaleCatalog]:
    return load_locales()


@pytest.fixture(scope="session")
def en(locales: dict[str, LocaleCatalog]) -> LocaleCatalog:
    return locales["en"]


async def _opener(
    urls: tuple[str, str], settings_for: Any
) -> AsyncIterator[Callable[..., Awaitable[Chat]]]:
    database_url, redis_url = urls
    async with contextlib.AsyncExitStack() as stack:

        async def open_chat(*, graph: FakeGraph | None = None, **overrides: Any) -> Chat:
            settings = settings_for(database_url=database_url, redis_url=redis_url, **overrides)
            return await stack.enter_async_context(chat_app(settings, graph=graph))

        yield open_chat


@pytest.fixture
async def open_chat(stack_urls: tuple[str, str], settings_for: Any) -> AsyncIterator[ChatOpener]:
    async for opener in _opener(stack_urls, settings_for):
        yield opener


@pytest.fixture
async def chat(open_chat: ChatOpener) -> Chat:
    """The app with default settings (sandbox mode), on each stack."""
    return await open_chat()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chat]:
    """One embedded app for a whole module, for breadth tests that each need only a customer
    of their own (`fresh_chat`) and never move the clock: it saves an app start per case. Its
    tests run in the module's event loop: mark them `pytest.mark.asyncio(loop_scope="module")`."""
    workdir = tmp_path_factory.mktemp("shared-app")
    settings = Settings(
        app_secret=APP_SECRET,
        verify_token="verify-me",
        business_name=BUSINESS,
        database_url=f"sqlite+aiosqlite:///{workdir / 'optin.db'}",
        redis_url=f"memory://{uuid.uuid4().hex}",
    )
    async with chat_app(settings) as app:
        yield app


def fresh_chat(shared_app: Chat) -> Chat:
    """A new customer on the shared app."""
    return Chat(shared_app.client, wa_id=f"1777{next(_NUMBERS):07d}")


_NUMBERS = itertools.count(1)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def live_chat(graph: FakeGraph, open_chat: ChatOpener) -> Chat:
    """Live mode (a token, messages go to the fake Graph server), on both stacks."""
    return await open_chat(
        graph=graph,
        access_token="t",
        graph_api_url=graph.base_url,
        pseudonym_key="flows-test-pseudonym-key",
    )


async def opted_in(chat: Chat, wa_id: str | None = None) -> None:
    """Bring a contact to opted_in for every default category (START, then YES)."""
    await chat.say("START", wa_id=wa_id)
    await chat.say("YES", wa_id=wa_id)
    assert await chat.consent(wa_id) == every("opted_in")
    await chat.replies(wa_id)
