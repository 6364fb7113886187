"""The outbound queue and the sender loop against the recording fake Graph server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from bot.graph import Recipient, text_message
from bot.outbound import OutboundMessage
from bot.roles import Role, start_loops
from bot.sender import SANDBOX_WAMID_PREFIX
from bot.services import Services, open_services
from bot.streams import OUTBOUND_STREAM
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import eventually

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def sender_stack(settings: Any) -> AsyncIterator[Services]:
    async with open_services(settings, auto_migrate=False) as services:
        stop = asyncio.Event()
        tasks = start_loops(services, [Role.SENDER], stop)
        try:
            yield services
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def queue_text(services: Services, wa_id: str, message_id: str, text: str) -> int:
    contact = await services.contacts.resolve(wa_id=wa_id, user_id=None)
    assert contact.id is not None
    await services.outbound_queue.enqueue(
        OutboundMessage(
            message_id=message_id,
            contact_id=contact.id,
            body=text_message(Recipient(wa_id=wa_id), text),
            kind="text",
            text=text,
        ),
        now=NOW,
    )
    return contact.id


async def outbound_row(services: Services, contact_id: int, message_id: str) -> Any:
    rows = await services.transcript.list_for_contact(contact_id)
    return next((r for r in rows if r.message_id == message_id), None)


async def test_a_queued_message_is_sent_once_and_recorded(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    async with FakeGraph() as graph:
        settings = settings_for(
            database_url=database_url,
            redis_url=redis_url,
            access_token="token-1",
            graph_api_url=graph.base_url,
            phone_number_id="106540352242922",
        )
        async with sender_stack(settings) as services:
            contact_id = await queue_text(services, "15557770001", "m-1", "Hello")
            # The same message id again (a handler retried): queued once, sent once.
            await queue_text(services, "15557770001", "m-1", "Hello")

            async def sent() -> Any:
                row = await outbound_row(services, contact_id, "m-1")
                return row if row is not None and row.status == "sent" else None

            row = await eventually(sent)
            await asyncio.sleep(0.2)
    assert len(graph.requests) == 1
    request = graph.requests[0]
    assert request.path == "/v25.0/106540352242922/messages"
    assert request.headers["Authorization"] == "Bearer token-1"
    assert request.validation_error is None
    assert request.json["to"] == "15557770001" and request.json["text"]["body"] == "Hello"
    assert row.wamid == graph.accepted[0].wamid


async def test_a_permanent_error_is_recorded_once_and_not_retried(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    async with FakeGraph() as graph:
        graph.fail_next(1, status=400, code=131026)
        settings = settings_for(
            database_url=database_url,
            redis_url=redis_url,
            access_token="t",
            graph_api_url=graph.base_url,
        )
        async with sender_stack(settings) as services:
            contact_id = await queue_text(services, "15557770002", "m-2", "Hi")

            async def failed() -> Any:
                row = await outbound_row(services, contact_id, "m-2")
                return row if row is not None and row.status == "failed" else None

            row = await eventually(failed)
            assert await services.redis.xlen(OUTBOUND_STREAM) == 0
    assert len(graph.requests) == 1
    assert row.error_code == 131026


async def test_server_errors_are_retried_until_meta_accepts(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    async with FakeGraph() as graph:
        graph.fail_next(2, status=500)
        settings = settings_for(
            database_url=database_url,
            redis_url=redis_url,
            access_token="t",
            graph_api_url=graph.base_url,
        )
        async with sender_stack(settings) as services:
            contact_id = await queue_text(services, "15557770003", "m-3", "Hi")

            async def sent() -> Any:
                row = await outbound_row(services, contact_id, "m-3")
                return row if row is not None and row.status == "sent" else None

            await eventually(sent, within=20)
    assert len(graph.requests) == 3


async def test_sandbox_sends_nothing_and_keeps_the_message(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    async with FakeGraph() as graph:
        settings = settings_for(
            database_url=database_url, redis_url=redis_url, graph_api_url=graph.base_url
        )  # no access token
        async with sender_stack(settings) as services:
            contact_id = await queue_text(services, "15557770004", "m-4", "Hi")

            async def kept() -> Any:
                row = await outbound_row(services, contact_id, "m-4")
                return row if row is not None and row.status == "sandbox" else None

            row = await eventually(kept)
            # Kept under a wamid of its own, as Meta's answer would give it, by which a tap on
            # one of its buttons is bound to it.
            assert row.wamid.startswith(SANDBOX_WAMID_PREFIX)
            assert await services.transcript.message_id_of(row.wamid) == "m-4"
    assert graph.requests == []
    assert row.text == "Hi"


async def test_a_batch_is_sent_in_order_per_contact_and_recorded_together(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """Outcomes are recorded a batch at a time (one transaction for many messages, which the
    one-message tests above never exercised): every message of a many-contact batch is sent
    once, in queue order per contact, and recorded, a permanent failure among them included."""
    database_url, redis_url = stack_urls
    async with FakeGraph() as graph:
        graph.fail_next(1, status=400, code=131026)
        settings = settings_for(
            database_url=database_url,
            redis_url=redis_url,
            access_token="t",
            graph_api_url=graph.base_url,
            send_rate=200.0,
        )
        async with sender_stack(settings) as services:
            messages = []
            for n in range(10):
                wa_id = f"155577710{n:02d}"
                contact = await services.contacts.resolve(wa_id=wa_id, user_id=None)
                assert contact.id is not None
                for part in range(3):
                    messages.append(
                        OutboundMessage(
                            message_id=f"batch-{n}-{part}",
                            contact_id=contact.id,
                            body=text_message(Recipient(wa_id=wa_id), f"part {part}"),
                            kind="text",
                            text=f"part {part}",
                        )
                    )
            assert all(await services.outbound_queue.enqueue_many(messages, now=NOW))

            async def settled() -> Any:
                rows = [await outbound_row(services, m.contact_id, m.message_id) for m in messages]
                final = [r for r in rows if r is not None and r.status in ("sent", "failed")]
                return rows if len(final) == len(messages) else None

            rows = await eventually(settled, within=20)
            assert await services.redis.xlen(OUTBOUND_STREAM) == 0
    assert [r.status for r in rows].count("failed") == 1
    assert next(r for r in rows if r.status == "failed").error_code == 131026
    sent = [r for r in rows if r.status == "sent"]
    assert len({r.wamid for r in sent}) == len(sent) == 29
    assert len(graph.requests) == 30
    by_contact: dict[str, list[str]] = {}
    for request in graph.requests:
        body = request.json or {}
        by_contact.setdefault(str(body["to"]), []).append(body["text"]["body"])
    assert all(parts == ["part 0", "part 1", "part 2"] for parts in by_contact.values())
