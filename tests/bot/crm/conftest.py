"""Helpers of the CRM tests: synthetic events, a running deliverer, contacts on separate shards."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from redis.asyncio import Redis

from bot.api.openapi import API_MODULES, build_document
from bot.crm.attempt import RetryPolicy
from bot.crm.deliverer import CrmDeliverer
from bot.crm.events import CrmEvent
from bot.crm.outbox import crm_shard
from bot.metrics import Metrics
from tests.fakes.receiver import RECEIVER_SECRET, FakeReceiver

#: Fast enough for tests, slow enough that a Retry-After of 1 s is what decides the wait.
FAST = RetryPolicy(base_delay=0.05, max_delay=0.2, give_up_after=60.0, request_timeout=2.0)
LEASE_MS = 600


def crm_event(event_id: str, contact_id: int) -> CrmEvent:
    body = {"id": event_id, "type": "consent.changed", "contact": {"id": contact_id}}
    return CrmEvent(
        event_id=event_id,
        type="consent.changed",
        contact_id=contact_id,
        wa_id=f"1555000{contact_id:04d}",
        user_id=None,
        body=json.dumps(body),
    )


def other_shard_contact(contact_id: int) -> int:
    """A contact id whose events go to another shard than `contact_id`'s."""
    return next(
        c for c in range(contact_id + 1, contact_id + 100) if crm_shard(c) != crm_shard(contact_id)
    )


@pytest.fixture
async def receiver() -> AsyncIterator[FakeReceiver]:
    async with FakeReceiver() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@contextlib.asynccontextmanager
async def running(
    redis: Redis,
    http: aiohttp.ClientSession,
    url: str,
    *,
    consumer: str = "deliverer-1",
    policy: RetryPolicy = FAST,
    metrics: Metrics | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    """A deliverer running until the block ends (or its task is cancelled by the test)."""
    deliverer = CrmDeliverer(
        redis,
        http,
        url=url,
        secret=RECEIVER_SECRET,
        consumer=consumer,
        metrics=metrics,
        policy=policy,
        lease_ms=LEASE_MS,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop))
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


def sample(metrics: Metrics, result: str) -> Any:
    return metrics.registry.get_sample_value("optin_crm_deliveries_total", {"result": result})


def document() -> dict[str, Any]:
    """The OpenAPI document with the delivery log's fragments in it."""
    modules = API_MODULES if "bot.api.crm" in API_MODULES else (*API_MODULES, "bot.api.crm")
    return build_document(modules)


def conforms(instance: Any, schema_name: str) -> None:
    """Validate `instance` against a component schema of the whole OpenAPI document."""
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": document()["components"]}
    jsonschema.validate(instance, root, cls=jsonschema.Draft202012Validator)
