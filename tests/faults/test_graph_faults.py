"""The Graph API answering 429, 500, timeouts and connection resets, end to end.

Real servers throughout: the recording fake Graph server on loopback (scripted to fail, stall,
reset), Redis and PostgreSQL, the app's web and worker roles (status webhooks in, the pipeline
recording what Meta reported) and the production sender loop behind the production send guard,
with a short grace period and visibility. Meta's side is played as the Cloud API does: every
message the fake accepted is reported with a `sent` status carrying our message id.

What must hold, counted at the fake per our message id: every message reaches Meta exactly once,
whatever the fault; a permanent refusal is recorded once and never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.graph import CloudApiClient, RetryPolicy, template_message
from bot.outbound import OutboundMessage
from bot.ratelimit import RateLimiter
from bot.roles import Role
from bot.send_guard import SendGuard
from bot.sender import GraphTransport, Sender
from bot.services import Services
from tests.bot.campaigns.conftest import API_TOKEN, Harness, status_item
from tests.fakes.chat import Chat
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import eventually

pytestmark = [pytest.mark.services, pytest.mark.slow]

GRACE_SECONDS = 4.0
CLIENT_TIMEOUT = 1.0


@dataclass
class Rig:
    harness: Harness
    graph: FakeGraph
    services: Services

    def accepted_per_tag(self) -> Counter[str]:
        return Counter(str(m.body.get("biz_opaque_callback_data")) for m in self.graph.accepted)

    async def enqueue(self, tags: list[str]) -> None:
        for n, tag in enumerate(tags):
            wa_id = f"1555000{n:05d}"
            contact = await self.services.contacts.resolve(wa_id=wa_id, user_id=None)
            assert contact.id is not None
            body = template_message(wa_id, "order_update", "en_US")
            body["biz_opaque_callback_data"] = tag
            message = OutboundMessage(
                message_id=tag, contact_id=contact.id, body=body, kind="template"
            )
            await self.services.outbound_queue.enqueue(message, now=datetime.now(UTC))

    async def transcript(self, tag: str) -> Any:
        return await self.services.transcript.get_outbound(tag)


async def play_meta(harness: Harness, stop: asyncio.Event) -> None:
    """A `sent` status for every message the fake accepted, as Meta reports them."""
    reported = 0
    while not stop.is_set():
        fresh = harness.graph.accepted[reported:]
        reported += len(fresh)
        if fresh:
            items = [
                status_item(
                    m.wamid, "sent", str(m.body.get("to")), m.body.get("biz_opaque_callback_data")
                )
                for m in fresh
            ]
            await harness.notify("messages", {"messaging_product": "whatsapp", "statuses": items})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.1)


@pytest.fixture
async def rig(real_stack_urls: tuple[str, str], settings_for: Any) -> AsyncIterator[Rig]:
    database_url, redis_url = real_stack_urls
    async with FakeGraph() as graph:
        settings = settings_for(
            database_url=database_url,
            redis_url=redis_url,
            access_token="t",
            graph_api_url=graph.base_url,
            api_token=API_TOKEN,
            send_rate=100.0,
        )
        app = create_app(settings, roles={Role.WEB, Role.WORKER}, auto_migrate=False)
        async with TestClient(TestServer(app)) as client, aiohttp.ClientSession() as http:
            harness = Harness(Chat(client, graph=graph), graph)
            services = harness.chat.services
            graph_client = CloudApiClient(
                http,
                base_url=graph.base_url,
                phone_number_id=settings.phone_number_id,
                access_token="t",
                timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
                retry=RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2),
            )
            sender = Sender(
                services.redis,
                services.transcript,
                SendGuard(
                    GraphTransport(graph_client), services.redis, grace_seconds=GRACE_SECONDS
                ),
                RateLimiter(services.redis, "optin:rate:faults", 100.0),
                services.metrics,
                consumer="faults-sender",
                visibility_ms=1000,
            )
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(sender.run(stop)),
                asyncio.create_task(play_meta(harness, stop)),
            ]
            try:
                yield Rig(harness, graph, services)
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)


async def until(check: Callable[[], Any], within: float = 60.0) -> None:
    async def probe() -> bool:
        return bool(await check())

    await eventually(probe, within=within, interval=0.1)


async def test_429_and_500_are_retried_with_backoff_and_sent_once(rig: Rig) -> None:
    rig.graph.fail_next(1, status=500)
    rig.graph.fail_next(1, status=429, retry_after=0)
    rig.graph.fail_next(1, status=503)
    await rig.enqueue(["faults:retry"])

    await until(lambda: _status_is(rig, "faults:retry", "sent"))

    assert [r.action for r in rig.graph.requests] == ["failed", "failed", "failed", "accepted"]
    assert rig.accepted_per_tag() == {"faults:retry": 1}


async def test_timeout_after_meta_accepted_is_not_sent_again(rig: Rig) -> None:
    """The fake accepts the message but answers after the client gave up: the status tells
    the guard it went out, so it is not sent a second time."""
    rig.graph.stall_next(1, seconds=CLIENT_TIMEOUT * 3)
    await rig.enqueue(["faults:stalled"])

    await until(lambda: _status_is(rig, "faults:stalled", "sent"))
    row = await rig.transcript("faults:stalled")
    await asyncio.sleep(GRACE_SECONDS + 2)  # past the grace period: still no second send

    assert rig.accepted_per_tag() == {"faults:stalled": 1}
    assert len(rig.graph.requests) == 1
    assert row.wamid == rig.graph.accepted[0].wamid


async def test_reset_before_meta_accepted_is_sent_once_after_the_grace(rig: Rig) -> None:
    """A reset leaves the outcome unknown; no status comes, so after the grace it is sent."""
    rig.graph.reset_next(1)
    await rig.enqueue(["faults:reset"])

    await until(lambda: _status_is(rig, "faults:reset", "sent"), within=GRACE_SECONDS + 30)

    assert [r.action for r in rig.graph.requests] == ["reset", "accepted"]
    gap = rig.graph.requests[1].received_at - rig.graph.requests[0].received_at
    assert gap >= GRACE_SECONDS - 0.5
    assert rig.accepted_per_tag() == {"faults:reset": 1}


async def test_permanent_error_is_recorded_once_and_never_resent(rig: Rig) -> None:
    rig.graph.fail_next(1, status=400, code=131026)
    await rig.enqueue(["faults:undeliverable"])

    await until(lambda: _status_is(rig, "faults:undeliverable", "failed"))
    await asyncio.sleep(2.0)

    row = await rig.transcript("faults:undeliverable")
    assert row.error_code == 131026
    assert [r.action for r in rig.graph.requests] == ["failed"]
    assert rig.accepted_per_tag() == {}


async def test_mixed_faults_across_many_messages_each_reach_meta_once(rig: Rig) -> None:
    """Every fault at once, on a stream of messages: exactly one acceptance per message id."""
    tags = [f"faults:mixed:{n}" for n in range(30)]
    rig.graph.fail_next(2, status=500)
    rig.graph.stall_next(2, seconds=CLIENT_TIMEOUT * 3)
    rig.graph.reset_next(2)
    rig.graph.fail_next(2, status=429, retry_after=0)
    await rig.enqueue(tags)

    async def all_sent() -> bool:
        return all([await _status_is(rig, tag, "sent") for tag in tags])

    await until(all_sent, within=GRACE_SECONDS + 60)
    await asyncio.sleep(GRACE_SECONDS + 2)

    assert rig.accepted_per_tag() == dict.fromkeys(tags, 1)


async def _status_is(rig: Rig, tag: str, status: str) -> bool:
    row = await rig.transcript(tag)
    return row is not None and row.status == status
