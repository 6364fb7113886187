"""Fixtures of the campaign tests: the app in live mode against the fake Graph server, contacts
seeded in bulk, and Meta's side of a campaign (status webhooks, quality notices).

`Harness` drives one running app (every role, as `optin-bot serve`): it creates and starts
campaigns through the API, waits for them, plays Meta's status callbacks for what the fake Graph
server accepted, and plays the customers through `Chat`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.campaigns.models import CampaignRecipient
from bot.campaigns.repository import CampaignRepository
from bot.db.engine import session_factory
from bot.db.models import Contact
from tests.fakes.chat import Chat, chat_app, envelope
from tests.fakes.consent_seed import seed_opted_in, wa_id_of
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import eventually

API_TOKEN = "campaign-token"
OLD = datetime.now(UTC) - timedelta(days=400)
HarnessOpener = Callable[..., Awaitable["Harness"]]


def status_item(wamid: str, status: str, to: str, tag: str | None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": to,
        **extra,
    }
    if tag is not None:
        item["biz_opaque_callback_data"] = tag
    return item


class Harness:
    """One app and its fake Graph server, seen from the business and from Meta."""

    def __init__(self, chat: Chat, graph: FakeGraph) -> None:
        self.chat = chat
        self.graph = graph
        self.repository = CampaignRepository(session_factory(chat.services.engine))
        self._reported = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_TOKEN}"}

    async def seed(self, count: int, *, start: int = 0, **options: Any) -> list[str]:
        options.setdefault("since", OLD)
        await seed_opted_in(self.chat.services.engine, count, start=start, **options)
        return [wa_id_of(n) for n in range(start, start + count)]

    def body(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": "policy 2",
            "template": {
                "name": "reconsent_v2",
                "language": "en_US",
                "body_parameters": ["{business_name}"],
            },
            "audience": {"categories": ["marketing"], "older_than_days": 365},
            "policy_version": "2",
            "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            "rate": 200,
        }
        for key, value in overrides.items():
            if key in ("audience", "template") and isinstance(value, dict):
                body[key] = {**body[key], **value}
            else:
                body[key] = value
        return body

    async def api(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        response = await self.chat.client.request(method, path, json=json, headers=self.headers)
        return response.status, await response.json()

    async def create(self, **overrides: Any) -> dict[str, Any]:
        status, body = await self.api("POST", "/v1/campaigns", self.body(**overrides))
        assert status == 201, body
        return dict(body)

    async def start(self, **overrides: Any) -> int:
        campaign = await self.create(**overrides)
        status, body = await self.api("POST", f"/v1/campaigns/{campaign['id']}/start")
        assert status == 200, body
        return int(campaign["id"])

    async def report(self, campaign_id: int) -> dict[str, Any]:
        status, body = await self.api("GET", f"/v1/campaigns/{campaign_id}")
        assert status == 200, body
        return dict(body)

    async def until(
        self, campaign_id: int, check: Callable[[dict[str, Any]], bool], within: float = 20.0
    ) -> dict[str, Any]:
        async def met() -> dict[str, Any] | None:
            report = await self.report(campaign_id)
            return report if check(report) else None

        result: dict[str, Any] = await eventually(met, within=within, interval=0.1)
        return result

    async def finished(self, campaign_id: int, within: float = 20.0) -> dict[str, Any]:
        report = await self.until(campaign_id, lambda r: r["status"] == "completed", within)
        await self.chat.wait_idle()
        return report

    def templates(self) -> list[dict[str, Any]]:
        """Every template message the fake Graph server received."""
        return [r.json for r in self.graph.requests if (r.json or {}).get("type") == "template"]

    def messaged(self) -> Counter[str]:
        """How many template messages each number got."""
        return Counter(str(body["to"]) for body in self.templates())

    async def report_statuses(self, status: str = "delivered", **extra: Any) -> int:
        """Meta's status webhooks (with the callback tag) for every message accepted since the
        last call; returns how many."""
        fresh = self.graph.accepted[self._reported :]
        self._reported = len(self.graph.accepted)
        for start in range(0, len(fresh), 50):
            items = [
                status_item(
                    m.wamid,
                    status,
                    str(m.body.get("to")),
                    m.body.get("biz_opaque_callback_data"),
                    **extra,
                )
                for m in fresh[start : start + 50]
            ]
            await self.notify("messages", {"messaging_product": "whatsapp", "statuses": items})
        await self.chat.wait_idle()
        return len(fresh)

    async def notify(self, field: str, value: Mapping[str, Any]) -> None:
        """Post one webhook change as Meta would (business notices, statuses)."""
        value = {
            "metadata": {
                "display_phone_number": "15550783881",
                "phone_number_id": self.chat.phone_number_id,
            },
            **value,
        }
        await self.chat.post(envelope(field, value))

    async def recipients(self, campaign_id: int) -> dict[str, tuple[str, str | None, str | None]]:
        """wa_id -> (state, outcome, skip reason) of every recipient."""
        async with session_factory(self.chat.services.engine)() as session:
            result = await session.exec(
                select(CampaignRecipient, Contact)
                .join(Contact, col(Contact.id) == col(CampaignRecipient.contact_id))
                .where(col(CampaignRecipient.campaign_id) == campaign_id)
            )
            return {
                str(contact.wa_id): (row.state, row.outcome, row.skip_reason)
                for row, contact in result.all()
            }


async def _opener(urls: tuple[str, str], settings_for: Any) -> AsyncIterator[HarnessOpener]:
    database_url, redis_url = urls
    async with contextlib.AsyncExitStack() as stack:

        async def open_harness(**overrides: Any) -> Harness:
            graph = await stack.enter_async_context(FakeGraph())
            settings = settings_for(
                database_url=database_url,
                redis_url=redis_url,
                access_token="t",
                graph_api_url=graph.base_url,
                api_token=API_TOKEN,
                send_rate=1000.0,
                **overrides,
            )
            chat = await stack.enter_async_context(chat_app(settings, graph=graph))
            return Harness(chat, graph)

        yield open_harness


@pytest.fixture
async def open_harness(
    stack_urls: tuple[str, str], settings_for: Any
) -> AsyncIterator[HarnessOpener]:
    """On both stacks: embedded, then PostgreSQL + Redis."""
    async for opener in _opener(stack_urls, settings_for):
        yield opener


@pytest.fixture
async def open_embedded_harness(tmp_path: Path, settings_for: Any) -> AsyncIterator[HarnessOpener]:
    urls = (f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}", f"memory://{uuid.uuid4().hex}")
    from bot.db.migrate import migrate

    await migrate(urls[0])
    async for opener in _opener(urls, settings_for):
        yield opener


@pytest.fixture
async def harness(open_harness: HarnessOpener) -> Harness:
    return await open_harness()


@pytest.fixture
async def embedded(open_embedded_harness: HarnessOpener) -> Harness:
    return await open_embedded_harness()
