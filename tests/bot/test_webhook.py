"""POST /webhook and the GET handshake, through the real app (embedded and on real servers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.appkeys import SERVICES
from bot.services import Services
from bot.streams import INBOUND_SHARDS, inbound_stream
from tests.fakes.webhooks import dumps, eventually, signed, status_webhook, text_webhook

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> TestClient[Any, Any]:
    database_url, redis_url = stack_urls
    return await aiohttp_client(
        create_app(settings_for(database_url=database_url, redis_url=redis_url))
    )


def services_of(client: TestClient[Any, Any]) -> Services:
    return client.server.app[SERVICES]


async def transcript_of(services: Services, wa_id: str) -> list[Any]:
    contact = await services.contacts.find(wa_id)
    if contact is None or contact.id is None:
        return []
    return list(await services.transcript.list_for_contact(contact.id))


async def inbound_backlog(services: Services) -> int:
    return sum([await services.redis.xlen(inbound_stream(s)) for s in range(INBOUND_SHARDS)])


async def test_handshake_returns_the_challenge(client: TestClient[Any, Any]) -> None:
    ok = await client.get(
        "/webhook",
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": "verify-me",
            "hub.challenge": "1158201444",
        },
    )
    assert ok.status == 200
    assert ok.content_type == "text/plain"
    assert await ok.text() == "1158201444"
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "verify-me", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
    ):
        assert (await client.get("/webhook", params=params)).status == 403


async def test_handshake_refused_without_a_verify_token(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    client = await aiohttp_client(
        create_app(settings_for(database_url=database_url, redis_url=redis_url, verify_token=None))
    )
    response = await client.get(
        "/webhook", params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    )
    assert response.status == 403


async def test_signed_message_is_accepted_then_recorded(client: TestClient[Any, Any]) -> None:
    body = dumps(text_webhook(wa_id="15551230001", text="Hola", wamid="wamid.A1", name="Ana"))
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 200
    assert (await response.json())["events"] == 1
    services = services_of(client)
    rows = await eventually(lambda: transcript_of(services, "15551230001"))
    assert [(r.direction, r.kind, r.text, r.wamid) for r in rows] == [
        ("inbound", "text", "Hola", "wamid.A1")
    ]
    contact = await services.contacts.find("15551230001")
    assert contact is not None and contact.profile_name == "Ana"
    await eventually(lambda: _zero(inbound_backlog(services)))


async def _zero(value: Awaitable[int]) -> bool:
    return await value == 0


async def test_redelivered_webhook_has_no_second_effect(client: TestClient[Any, Any]) -> None:
    body = dumps(text_webhook(wa_id="15551230002", text="hi", wamid="wamid.DUP"))
    first = await client.post("/webhook", data=body, headers=signed(body))
    assert (await first.json())["events"] == 1
    # Meta retries, sometimes concurrently: every copy is acknowledged, none queued again.
    again = await asyncio.gather(
        *(client.post("/webhook", data=body, headers=signed(body)) for _ in range(3))
    )
    assert [r.status for r in again] == [200, 200, 200]
    assert [(await r.json())["duplicates"] for r in again] == [1, 1, 1]
    services = services_of(client)
    await eventually(lambda: transcript_of(services, "15551230002"))
    await asyncio.sleep(0.3)
    assert len(await transcript_of(services, "15551230002")) == 1


async def test_one_contacts_messages_are_handled_in_order(client: TestClient[Any, Any]) -> None:
    texts = [f"message {i}" for i in range(15)]
    for i, text in enumerate(texts):
        body = dumps(
            text_webhook(
                wa_id="15551230003", text=text, wamid=f"wamid.ORD{i}", timestamp=1_760_000_000
            )
        )
        assert (await client.post("/webhook", data=body, headers=signed(body))).status == 200
    services = services_of(client)

    async def all_recorded() -> list[Any]:
        rows = await transcript_of(services, "15551230003")
        return rows if len(rows) == len(texts) else []

    rows = await eventually(all_recorded)
    # Same Meta timestamp for all: the row ids show the order they were handled in.
    assert [r.text for r in sorted(rows, key=lambda r: r.id)] == texts


BAD_INPUTS: list[tuple[str, Any, int]] = [
    ("missing signature", "unsigned", 401),
    ("wrong signature", "badsig", 403),
    ("invalid JSON", b'{"object": "whatsapp_business_account", "entry": [', 400),
    (
        "invalid UTF-8",
        b'{"object": "whatsapp_business_account", "entry": [], "x": "\xff\xfe"}',
        400,
    ),
    ("a JSON array", b"[1, 2, 3]", 400),
    ("not WhatsApp", b'{"object": "page", "entry": []}', 400),
    ("missing entry", b'{"object": "whatsapp_business_account"}', 400),
    # Bug found by tests/faults/test_fuzz_webhook.py: json.loads raises RecursionError for
    # deep nesting and a plain ValueError for integers over 4300 digits, neither of them a
    # JSONDecodeError, so both escaped the handler as 500s (and Meta would retry them forever).
    (
        "regression: nesting deeper than the recursion limit answered 500",
        b'{"object": "whatsapp_business_account", "entry": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        400,
    ),
    (
        "regression: a 5000-digit number answered 500",
        b'{"object": "whatsapp_business_account", "entry": [], "n": ' + b"7" * 5000 + b"}",
        400,
    ),
    (
        "2 MiB body",
        b'{"object": "whatsapp_business_account", "pad": "' + b"x" * (2 << 20) + b'"}',
        413,
    ),
]


@pytest.mark.parametrize(("case", "body", "status"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_bad_input_gets_a_clear_status_and_changes_nothing(
    client: TestClient[Any, Any], case: str, body: Any, status: int
) -> None:
    good = dumps(text_webhook(wa_id="15551230009", wamid="wamid.BAD"))
    if body == "unsigned":
        response = await client.post(
            "/webhook", data=good, headers={"Content-Type": "application/json"}
        )
    elif body == "badsig":
        response = await client.post(
            "/webhook", data=good, headers=signed(good, secret="not-the-secret")
        )
    else:
        response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == status, case
    assert "error" in await response.json()
    services = services_of(client)
    await asyncio.sleep(0.1)
    assert await inbound_backlog(services) == 0
    assert await services.contacts.find("15551230009") is None


async def test_a_message_with_no_sender_is_refused_whole(client: TestClient[Any, Any]) -> None:
    payload = text_webhook(wa_id="15551230010", wamid="wamid.NOFROM")
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"].append(
        {"id": "wamid.X", "timestamp": "1760000000", "type": "text", "text": {"body": "who am I"}}
    )
    body = dumps(payload)
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 400
    await asyncio.sleep(0.1)
    assert await inbound_backlog(services_of(client)) == 0
    assert await services_of(client).contacts.find("15551230010") is None


async def test_unsigned_webhooks_are_accepted_when_no_secret_is_set(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    client = await aiohttp_client(
        create_app(settings_for(database_url=database_url, redis_url=redis_url, app_secret=None))
    )
    body = dumps(text_webhook(wa_id="15551230011"))
    response = await client.post(
        "/webhook", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 200


async def test_redis_down_answers_503_so_meta_retries(
    aiohttp_client: ClientFactory, stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, _ = stack_urls
    client = await aiohttp_client(
        create_app(settings_for(database_url=database_url, redis_url="redis://127.0.0.1:1/0"))
    )
    body = dumps(text_webhook(wa_id="15551230012"))
    response = await client.post("/webhook", data=body, headers=signed(body))
    assert response.status == 503
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["redis"]["status"] == "down"


async def test_status_webhooks_are_recorded(client: TestClient[Any, Any]) -> None:
    body = dumps(text_webhook(wa_id="15551230013", wamid="wamid.IN13"))
    await client.post("/webhook", data=body, headers=signed(body))
    status = dumps(status_webhook(wamid="wamid.OUT13", status="delivered", recipient="15551230013"))
    assert (await client.post("/webhook", data=status, headers=signed(status))).status == 200
    services = services_of(client)

    async def status_row() -> list[Any]:
        rows = await transcript_of(services, "15551230013")
        return [r for r in rows if r.direction == "status"]

    rows = await eventually(status_row)
    assert [(r.wamid, r.status) for r in rows] == [("wamid.OUT13", "delivered")]


async def test_healthz_and_metrics(client: TestClient[Any, Any]) -> None:
    body = dumps(text_webhook(wa_id="15551230014"))
    await client.post("/webhook", data=body, headers=signed(body))
    await client.post("/webhook", data=b"[]", headers=signed(b"[]"))
    health = await client.get("/healthz")
    assert health.status == 200
    data = await health.json()
    assert data["status"] == "ok"
    assert data["redis"]["status"] == "ok" and data["database"]["status"] == "ok"
    assert data["mode"] == "sandbox"
    services = services_of(client)
    await eventually(lambda: transcript_of(services, "15551230014"))

    async def counted() -> str | None:
        text = await (await client.get("/metrics")).text()
        return text if 'optin_events_processed_total{kind="text"}' in text else None

    text = await eventually(counted)
    assert 'optin_webhook_requests_total{result="accepted"} 1.0' in text
    assert 'optin_webhook_requests_total{result="bad_request"} 1.0' in text
    assert 'optin_events_processed_total{kind="text"}' in text
    assert 'optin_queue_depth{queue="inbound"}' in text
    for name in ("optin_consent_events_total", "optin_outbound_messages_total"):
        assert f"# TYPE {name} counter" in text
