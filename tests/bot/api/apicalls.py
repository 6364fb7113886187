"""The business's side of the API tests: an app with a token, and the calls it makes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]
TOKEN = "api-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WHATSAPP_WORDING = "Yes, Acme Shoes may send me offers on WhatsApp. Reply STOP to opt out."


async def api_client(
    aiohttp_client: ClientFactory,
    stack_urls: tuple[str, str],
    settings_for: Any,
    **overrides: Any,
) -> Client:
    database_url, redis_url = stack_urls
    settings = settings_for(
        database_url=database_url, redis_url=redis_url, api_token=TOKEN, **overrides
    )
    return await aiohttp_client(create_app(settings))


def optin_body(contact: str = "+34 612 34 56 78", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contact": contact,
        "categories": ["marketing"],
        "source": "website",
        "wording": WHATSAPP_WORDING,
        "business_name": "Acme Shoes",
        "captured_at": "2025-03-01T10:15:00+01:00",
        "evidence": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0", "document_ref": "form-7"},
    }
    body.update(fields)
    return body


async def post(
    client: Client, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await client.post(path, json=body, headers={**AUTH, **(headers or {})})
    return response.status, dict(await response.json())


async def get(client: Client, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, params=params, headers=AUTH)
    return response.status, dict(await response.json())


async def say(client: Client, wa_id: str, text: str, *, hours_ago: float = 0) -> None:
    """The customer writes `text` (optionally long ago, so their window has closed since)."""
    timestamp = int(time.time() - hours_ago * 3600)
    body = dumps(text_webhook(wa_id=wa_id, text=text, timestamp=timestamp))
    assert (await client.post("/webhook", data=body, headers=signed(body))).status == 200


async def status_becomes(client: Client, contact: str, category: str, status: str) -> Any:
    async def check() -> dict[str, Any] | None:
        code, data = await get(client, f"/v1/contacts/{contact}/consent")
        if code == 200 and data["categories"][category]["status"] == status:
            return data
        return None

    return await eventually(check)


async def outbound(client: Client, contact: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait for `count` outbound transcript entries of `contact`, and return them all."""

    async def check() -> list[dict[str, Any]] | None:
        code, data = await get(client, f"/v1/contacts/{contact}/transcript")
        if code != 200:
            return None
        rows = [e for e in data["entries"] if e["direction"] == "outbound"]
        return rows if len(rows) >= count else None

    rows: list[dict[str, Any]] = await eventually(check)
    return rows


async def window_opens(client: Client, contact: str) -> None:
    """Wait until the worker has seen the customer's message (their 24-hour window is open)."""

    async def check() -> bool:
        code, data = await get(
            client, f"/v1/contacts/{contact}/can-send", category="order_updates", kind="text"
        )
        return code == 200 and bool(data["window_open"])

    await eventually(check)
