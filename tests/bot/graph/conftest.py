"""Fixtures for the Cloud API client tests: a fake Graph server, a pooled session, a client
factory whose sleeps are recorded instead of waited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.graph import CloudApiClient
from tests.fakes.graph import FakeGraph, RecordingSleep

PHONE_NUMBER_ID = "106540352242922"
ACCESS_TOKEN = "test-access-token"

ClientFactory = Callable[..., CloudApiClient]


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def make_client(
    graph: FakeGraph, session: aiohttp.ClientSession, sleep: RecordingSleep
) -> ClientFactory:
    """`make_client(**overrides)`: a client aimed at the fake, with recorded sleeps."""

    def build(**overrides: Any) -> CloudApiClient:
        options: dict[str, Any] = {
            "base_url": graph.base_url,
            "phone_number_id": PHONE_NUMBER_ID,
            "access_token": ACCESS_TOKEN,
            "sleep": sleep,
        }
        options.update(overrides)
        return CloudApiClient(session, **options)

    return build
