"""`/v1/contacts/{contact}/consent|can-send|ledger|transcript` after real conversations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.appkeys import SERVICES
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
AUTH = {"Authorization": "Bearer api-secret"}


async def say(client: TestClient[Any, Any], wa_id: str, text: str) -> None:
    body = dumps(text_webhook(wa_id=wa_id, text=text))
    assert (await client.post("/webhook", data=body, headers=signed(body))).status == 200


async def consent_of(client: TestClient[Any, Any], wa_id: str) -> dict[str, Any] | None:
    response = await client.get(f"/v1/contacts/{wa_id}/consent", headers=AUTH)
    return dict(await response.json()) if response.status == 200 else None


async def test_reads_follow_the_conversation(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    client = await aiohttp_client(
        create_app(
            settings_for(database_url=database_url, redis_url=redis_url, api_token="api-secret")
        )
    )
    await say(client, "15552220001", "STOP PROMOTIONS")

    async def withdrawn() -> dict[str, Any] | None:
        data = await consent_of(client, "15552220001")
        return data if data and data["categories"]["marketing"]["status"] == "opted_out" else None

    data = await eventually(withdrawn)
    assert data["contact"]["wa_id"] == "15552220001"
    assert data["categories"]["marketing"]["method"] == "keyword"
    assert data["categories"]["order_updates"] == {
        "status": "none",
        "since": None,
        "source": None,
        "method": None,
        "policy_version": None,
    }

    marketing = await (
        await client.get(
            "/v1/contacts/15552220001/can-send", params={"category": "marketing"}, headers=AUTH
        )
    ).json()
    assert (marketing["allowed"], marketing["reason"]) == (False, "opted_out")
    reply = await (
        await client.get(
            "/v1/contacts/15552220001/can-send",
            params={"category": "order_updates", "kind": "text"},
            headers=AUTH,
        )
    ).json()
    assert (reply["allowed"], reply["reason"], reply["window_open"]) == (
        True,
        "service_window",
        True,
    )
    stranger = await (
        await client.get(
            "/v1/contacts/15559999999/can-send", params={"category": "order_updates"}, headers=AUTH
        )
    ).json()
    assert (stranger["allowed"], stranger["reason"], stranger["contact_known"]) == (
        False,
        "no_consent",
        False,
    )

    ledger = await (await client.get("/v1/contacts/15552220001/ledger", headers=AUTH)).json()
    assert ledger["verified"] is True
    assert [(e["category"], e["action"]) for e in ledger["events"]] == [("marketing", "withdrawn")]
    assert ledger["events"][0]["evidence"]["text"] == "STOP PROMOTIONS"
    assert ledger["events"][0]["business_name"] == "Acme Shoes"

    async def confirmed() -> list[Any]:
        body = await (await client.get("/v1/contacts/15552220001/transcript", headers=AUTH)).json()
        # The reply is written as "queued" before the sender hands it over: wait for the
        # sender's mark too (a regression pinned after CI read the row between the two).
        outbound = [e for e in body["entries"] if e["direction"] == "outbound"]
        return outbound if outbound and all(e["status"] != "queued" for e in outbound) else []

    (confirmation,) = await eventually(confirmed)
    assert "Acme Shoes" in confirmation["text"] and confirmation["status"] == "sandbox"
    await asyncio.sleep(0)


async def test_bad_reads_are_clear_errors(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    client = await aiohttp_client(
        create_app(
            settings_for(database_url=database_url, redis_url=redis_url, api_token="api-secret")
        )
    )
    missing = await client.get("/v1/contacts/15550000000/consent", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["error"] == "unknown_contact"
    no_category = await client.get("/v1/contacts/15550000000/can-send", headers=AUTH)
    assert no_category.status == 422
    assert (await no_category.json())["error"] == "invalid_request"
    bad_kind = await client.get(
        "/v1/contacts/1555/can-send", params={"category": "marketing", "kind": "fax"}, headers=AUTH
    )
    assert bad_kind.status == 422


async def test_the_api_needs_its_token(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    live = await aiohttp_client(
        create_app(
            settings_for(
                database_url=database_url,
                redis_url=redis_url,
                access_token="t",
                api_token="api-secret",
            )
        )
    )
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "api-secret"}):
        response = await live.get("/v1/contacts/1555/consent", headers=headers)
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"
    assert (await live.get("/v1/contacts/1555/consent", headers=AUTH)).status == 404


async def test_without_a_token_only_the_sandbox_is_open(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    sandbox = await aiohttp_client(
        create_app(settings_for(database_url=database_url, redis_url=redis_url))
    )
    assert (await sandbox.get("/v1/contacts/1555/consent")).status == 404
    assert sandbox.server.app[SERVICES].settings.sandbox


async def test_contact_ids_with_nul_or_path_characters_are_400_not_500(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Regression: `/v1/contacts/…%00/consent` reached PostgreSQL, which refuses NUL: 500.
    Every contact route answers 400 `invalid_contact_id` for NUL, control and path ids."""
    database_url, redis_url = stack_urls
    client = await aiohttp_client(
        create_app(
            settings_for(database_url=database_url, redis_url=redis_url, api_token="api-secret")
        )
    )
    for contact in ("15552220001%00", "%00", "15552220001%0A", "..%2F..%2Fetc%2Fpasswd", "1" * 129):
        for method, path, params in (
            ("GET", "/consent", {}),
            ("GET", "/can-send", {"category": "marketing"}),
            ("GET", "/ledger", {}),
            ("GET", "/transcript", {}),
            ("GET", "/proof", {}),
            ("DELETE", "", {}),
        ):
            response = await client.request(
                method, f"/v1/contacts/{contact}{path}", params=params, headers=AUTH
            )
            assert response.status == 400, (method, contact, path, await response.text())
            assert (await response.json())["error"] == "invalid_contact_id"
