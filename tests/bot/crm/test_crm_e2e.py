"""CRM sync end to end: webhooks in, signed events out, the delivery log through the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.crm.event_schemas import EVENT_SCHEMAS
from tests.bot.crm.conftest import conforms
from tests.fakes.receiver import RECEIVER_SECRET, FakeReceiver
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
AUTH = {"Authorization": "Bearer api-secret"}
CATEGORIES = {"marketing", "order_updates", "reminders", "account_alerts"}


async def say(client: TestClient[Any, Any], wa_id: str, text: str) -> str:
    payload = text_webhook(wa_id=wa_id, text=text)
    body = dumps(payload)
    assert (await client.post("/webhook", data=body, headers=signed(body))).status == 200
    return str(payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"])


async def get_json(client: TestClient[Any, Any], path: str, **params: str) -> Any:
    response = await client.get(path, params=params, headers=AUTH)
    return response.status, await response.json()


async def test_stop_and_an_unhandled_message_reach_the_crm_once_in_order(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    async with FakeReceiver() as receiver:
        client = await aiohttp_client(
            create_app(
                settings_for(
                    database_url=database_url,
                    redis_url=redis_url,
                    api_token="api-secret",
                    business_webhook_url=receiver.url,
                    business_webhook_secret=RECEIVER_SECRET,
                )
            )
        )
        await say(client, "15553330001", "STOP")

        async def four_changes() -> bool:
            return len(receiver.delivered()) == 4

        await eventually(four_changes)
        wamid = await say(client, "15553330001", "hello")

        async def five() -> bool:
            return len(receiver.delivered()) == 5

        await eventually(five)

        changes, message = receiver.delivered()[:4], receiver.delivered()[4]
        assert all(r.signature_valid for r in receiver.requests)
        for request in receiver.requests:
            jsonschema.validate(request.json, EVENT_SCHEMAS[request.json["type"]])
        # One event per category, in ledger order, each delivered exactly once.
        status, ledger = await get_json(client, "/v1/contacts/15553330001/ledger")
        assert status == 200
        assert [r.event_id for r in changes] == [f"consent:{e['id']}" for e in ledger["events"]]
        assert len(receiver.requests) == 5 and {r.attempt for r in receiver.requests} == {1}
        assert {r.json["data"]["category"] for r in changes} == CATEGORIES
        for request in changes:
            data = request.json["data"]
            assert request.json["type"] == "consent.changed"
            assert request.json["contact"]["wa_id"] == "15553330001"
            assert (data["action"], data["status"], data["method"]) == (
                "withdrawn",
                "opted_out",
                "keyword",
            )
            assert data["evidence"]["text"] == "STOP"
        assert message.event_id == f"message:{wamid}"
        assert message.json["type"] == "message.received"
        assert (message.json["data"]["message_type"], message.json["data"]["text"]) == (
            "text",
            "hello",
        )

        # The delivery log, through the API.
        status, page = await get_json(
            client, "/v1/webhooks/deliveries", contact="15553330001", status="delivered"
        )
        assert status == 200
        assert [d["event_id"] for d in page["deliveries"]] == [
            r.event_id for r in reversed(receiver.delivered())
        ]
        assert page["receiver"] == {"configured": True, "paused": None, "queued": 0}
        conforms(page, "WebhookDeliveryPage")
        first = page["deliveries"][-1]
        assert (first["status"], first["attempts"], first["last_status_code"]) == (
            "delivered",
            1,
            200,
        )
        assert first["contact"]["wa_id"] == "15553330001"
        status, one = await get_json(client, f"/v1/webhooks/deliveries/message:{wamid}")
        assert status == 200 and one["type"] == "message.received" and one["status"] == "delivered"
        conforms(one, "WebhookDelivery")

        status, none = await get_json(client, "/v1/webhooks/deliveries", status="dead")
        assert (status, none["deliveries"], none["next_cursor"]) == (200, [], None)
        metrics = await (await client.get("/metrics")).text()
        assert 'optin_crm_deliveries_total{result="delivered"} 5.0' in metrics


async def test_delivery_log_requests_are_checked(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    client = await aiohttp_client(
        create_app(
            settings_for(database_url=database_url, redis_url=redis_url, api_token="api-secret")
        )
    )
    status, page = await get_json(client, "/v1/webhooks/deliveries")
    assert status == 200
    assert page == {
        "deliveries": [],
        "next_cursor": None,
        "receiver": {"configured": False, "paused": None, "queued": 0},
    }
    for params, code in (
        ({"status": "lost"}, 422),
        ({"limit": "0"}, 422),
        ({"limit": "many"}, 422),
        ({"cursor": "yesterday"}, 422),
        ({"contact": "15559990000"}, 404),
    ):
        status, error = await get_json(client, "/v1/webhooks/deliveries", **params)
        assert status == code, params
        assert error["error"] in ("invalid_request", "unknown_contact")
    status, error = await get_json(client, "/v1/webhooks/deliveries/consent:999")
    assert (status, error["error"]) == (404, "unknown_delivery")
    resumed = await client.post("/v1/webhooks/resume", headers=AUTH)
    assert resumed.status == 200 and (await resumed.json())["resumed"] is False
    unauthorised = await client.get("/v1/webhooks/deliveries")
    assert unauthorised.status == 401
