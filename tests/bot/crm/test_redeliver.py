"""Redelivering a dead CRM event once the receiver is fixed, on the embedded and the real Redis."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from bot.app import create_app
from bot.appkeys import SERVICES
from bot.crm.log import DeliveryLog, DeliveryStatus
from bot.crm.outbox import CRM_DEAD_STREAM, CrmOutbox, queued_events
from bot.crm.redeliver import Refusal, redeliver
from tests.bot.crm.conftest import crm_event, running
from tests.fakes.receiver import FakeReceiver
from tests.fakes.webhooks import eventually

A = 1


async def kill(redis: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver) -> None:
    """consent:1 rejected with a 400 (dead), consent:2 of the same contact delivered after it."""
    receiver.script("consent:1", 400)
    await CrmOutbox(redis).enqueue([crm_event("consent:1", A), crm_event("consent:2", A)])
    async with running(redis, http, receiver.url):

        async def next_delivered() -> bool:
            return receiver.delivered_ids() == ["consent:2"]

        await eventually(next_delivered)


async def test_a_dead_event_is_delivered_again_with_a_fresh_window(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    await kill(redis_client, http, receiver)

    outcome = await redeliver(redis_client, "consent:1")

    assert outcome.refused is None and outcome.delivery is not None
    assert (outcome.delivery.status, outcome.delivery.attempts) == (DeliveryStatus.PENDING, 0)
    assert outcome.delivery.dead_reason is None and outcome.delivery.last_error is None
    assert await redis_client.xlen(CRM_DEAD_STREAM) == 0
    assert await queued_events(redis_client) == 1
    # Asked twice (a double click): queued once.
    again = await redeliver(redis_client, "consent:1")
    assert again.refused is Refusal.NOT_DEAD
    assert await queued_events(redis_client) == 1

    async with running(redis_client, http, receiver.url):

        async def delivered() -> bool:
            return receiver.delivered_ids() == ["consent:2", "consent:1"]

        await eventually(delivered)

    logged = await DeliveryLog(redis_client).get("consent:1")
    assert logged is not None and (logged.status, logged.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert (await redeliver(redis_client, "consent:1")).refused is Refusal.NOT_DEAD


async def test_what_cannot_be_redelivered_says_why(
    redis_client: Redis, http: aiohttp.ClientSession, receiver: FakeReceiver
) -> None:
    assert (await redeliver(redis_client, "consent:404")).refused is Refusal.UNKNOWN
    await kill(redis_client, http, receiver)
    assert (await redeliver(redis_client, "consent:2")).refused is Refusal.NOT_DEAD
    await redis_client.delete(CRM_DEAD_STREAM)  # trimmed, or erased with its contact
    gone = await redeliver(redis_client, "consent:1")
    assert gone.refused is Refusal.NOT_RETAINED
    assert gone.delivery is not None and gone.delivery.status is DeliveryStatus.DEAD
    assert await queued_events(redis_client) == 0


async def test_the_api_redelivers_and_refuses_with_reasons(
    stack_urls: tuple[str, str],
    settings_for: Any,
    http: aiohttp.ClientSession,
    receiver: FakeReceiver,
) -> None:
    database_url, redis_url = stack_urls
    app = create_app(
        settings_for(database_url=database_url, redis_url=redis_url, api_token="api-secret")
    )
    async with TestClient(TestServer(app)) as client:
        redis = app[SERVICES].redis
        await kill(redis, http, receiver)
        auth = {"Authorization": "Bearer api-secret"}

        async def post(event_id: str) -> tuple[int, Any]:
            response = await client.post(
                f"/v1/webhooks/deliveries/{event_id}/redeliver", headers=auth
            )
            return response.status, await response.json()

        assert (await client.post("/v1/webhooks/deliveries/consent:1/redeliver")).status == 401
        assert await post("consent:404") == (
            404,
            {"error": "unknown_delivery", "detail": "no delivery of event consent:404 in the log"},
        )
        status, body = await post("consent:2")
        assert (status, body["error"]) == (409, "not_dead") and "delivered" in body["detail"]
        status, body = await post("consent:1")
        assert status == 202 and (body["event_id"], body["status"]) == ("consent:1", "pending")
        status, body = await post("consent:1")
        assert (status, body["error"]) == (409, "not_dead")
