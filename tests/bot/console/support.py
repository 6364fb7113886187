"""A logged-in agent's side of the console for the tests: the app runs for real (every role, as
`optin-bot serve`), customers write through signed webhooks (`tests.fakes.chat.Chat`), and the
agent fetches pages and posts forms with the CSRF token each page carries."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import create_app
from bot.campaigns.models import Campaign, CampaignRecipient
from bot.db.engine import session_factory
from bot.db.models import Contact
from bot.roles import Role
from bot.services import Services
from bot.settings import Settings
from tests.fakes.chat import Chat, chat_app
from tests.fakes.webhooks import APP_SECRET

ADMIN_TOKEN = "admin-token-0123456789"
ALICE_TOKEN = "alice-token-0123456789"
BOB_TOKEN = "bob-token-01234567890"
AGENT_TOKENS = (("alice", ALICE_TOKEN), ("bob", BOB_TOKEN))

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match, "the page has no form with a CSRF token"
    return html.unescape(match.group(1))


def console_settings(settings_for: Any, stack: tuple[str, str], **overrides: Any) -> Settings:
    database_url, redis_url = stack
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "api_token": ADMIN_TOKEN,
        "agent_tokens": AGENT_TOKENS,
    }
    values.update(overrides)
    settings: Settings = settings_for(**values)
    return settings


class Agent:
    """One browser-less agent: the test client's cookie jar holds the session."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.client = chat.client

    @property
    def services(self) -> Services:
        return self.chat.services

    async def login(
        self,
        token: str = ALICE_TOKEN,
        *,
        next_path: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> ClientResponse:
        query = f"?next={next_path}" if next_path else ""
        form_page = await self.client.get(f"/console/login{query}", allow_redirects=False)
        assert form_page.status == 200, await form_page.text()
        page = await form_page.text()
        fields = {"csrf": csrf_of(page), "token": token}
        match = re.search(r'name="next" value="([^"]*)"', page)
        if match:
            fields["next"] = html.unescape(match.group(1))
        return await self.client.post(
            "/console/login", data=fields, allow_redirects=False, headers=headers
        )

    async def get(self, path: str, **params: Any) -> tuple[int, str]:
        response = await self.client.get(path, params=params or None, allow_redirects=False)
        return response.status, await response.text()

    async def page(self, path: str, **params: Any) -> str:
        status, text = await self.get(path, **params)
        assert status == 200, (status, text[:500])
        return text

    async def submit(
        self, path: str, fields: Mapping[str, Any], *, from_page: str, csrf: bool = True
    ) -> ClientResponse:
        """Post a form found on the page at `from_page`, with its CSRF token (unless not)."""
        page = await self.page(from_page)
        data: list[tuple[str, str]] = []
        for name, value in fields.items():
            values = value if isinstance(value, list | tuple) else [value]
            data.extend((name, str(v)) for v in values)
        if csrf:
            data.append(("csrf", csrf_of(page)))
        action = re.search(r'name="action_id" value="([0-9a-f]{32})"', page)
        if action and "action_id" not in fields:
            data.append(("action_id", action.group(1)))
        return await self.client.post(path, data=data, allow_redirects=False)


@asynccontextmanager
async def console_app(
    settings: Settings, *, wa_id: str = "15550001001", web_only: bool = False
) -> AsyncIterator[Agent]:
    """The app and an agent not logged in yet; `web_only` runs no worker or sender (nothing
    moves unless the test moves it)."""
    if web_only:
        app = create_app(settings, roles=[Role.WEB])
        async with TestClient(TestServer(app)) as client:
            yield Agent(Chat(client, wa_id=wa_id, app_secret=settings.app_secret or APP_SECRET))
        return
    async with chat_app(settings, wa_id=wa_id) as chat:
        yield Agent(chat)


async def seed_campaign(
    engine: AsyncEngine,
    *,
    name: str = "Policy 2 re-consent",
    status: str = "paused",
    paused_by: str | None = "guard",
    started: datetime | None = None,
    recipients: int = 60,
) -> int:
    """A campaign started six hours ago (or at `started`) over `recipients` contacts: every
    message sent (`claimed_at` two minutes apart), most delivered, a third read, two failed; ten
    answered YES, five NO and four opted out (`updated_at` five minutes apart)."""
    sessions = session_factory(engine)
    if started is None:
        started = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)
    campaign = Campaign(
        name=name,
        template_name="reconsent_v2",
        template_language="en_US",
        buttons_json="[]",
        body_parameters_json="[]",
        categories_json='["marketing"]',
        policy_version="2",
        deadline=started + timedelta(days=30),
        on_deadline="lapse",
        rate=20.0,
        optout_threshold=0.02,
        status=status,
        paused_by=paused_by if status == "paused" else None,
        pause_reason=(
            "opt-out rate 6.9% (4 of 58 delivered) passed the 2.0% threshold"
            if status == "paused" and paused_by == "guard"
            else None
        ),
        audience_done=True,
        created_at=started - timedelta(hours=1),
        started_at=started,
        updated_at=started + timedelta(hours=6),
    )
    outcomes = ["reconfirmed"] * 10 + ["declined"] * 5 + ["opted_out"] * 4
    async with sessions() as session:
        session.add(campaign)
        await session.flush()
        assert campaign.id is not None
        for n in range(recipients):
            contact = Contact(wa_id=f"4479{n:08d}", profile_name=f"Recipient {n}")
            session.add(contact)
            await session.flush()
            assert contact.id is not None
            state = "failed" if n >= recipients - 2 else ("read" if n % 3 == 0 else "delivered")
            outcome = outcomes[n] if n < len(outcomes) else None
            session.add(
                CampaignRecipient(
                    campaign_id=campaign.id,
                    contact_id=contact.id,
                    state=state,
                    outcome=outcome,
                    categories_json='["marketing"]',
                    error_code=131026 if state == "failed" else None,
                    error_title="Message undeliverable" if state == "failed" else None,
                    claimed_at=started + timedelta(minutes=2 * n),
                    updated_at=started + timedelta(minutes=5 + 5 * n),
                )
            )
        await session.commit()
    return campaign.id
