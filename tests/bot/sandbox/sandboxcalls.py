"""Driving the sandbox over HTTP as its page's script does: open a chat, send, poll the state."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient

from tests.fakes.webhooks import eventually

_TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_token(html: str) -> str:
    found = _TOKEN.search(html)
    assert found is not None, "the page carries no CSRF token"
    return found.group(1)


@dataclass
class SandboxPage:
    """One browser's view of one sandbox chat: its cookie lives in the client's jar."""

    client: TestClient[Any, Any]
    wa_id: str
    token: str
    after: int = 0
    panel_html: str = ""
    bubbles: list[str] = field(default_factory=list)

    @classmethod
    async def open(
        cls, client: TestClient[Any, Any], wa_id: str, locale: str = "en"
    ) -> SandboxPage:
        start = await client.get("/sandbox")
        assert start.status == 200
        token = csrf_token(await start.text())
        chat = await client.post(
            "/sandbox/start", data={"csrf_token": token, "wa_id": wa_id, "locale": locale}
        )
        assert chat.status == 200, await chat.text()
        assert chat.url.path == "/sandbox/chat"
        return cls(client, wa_id, csrf_token(await chat.text()))

    async def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        response = await self.client.post(
            path, json={"wa_id": self.wa_id, **body}, headers={"X-CSRF-Token": self.token}
        )
        return response.status, dict(await response.json())

    async def say(self, text: str) -> dict[str, Any]:
        status, answer = await self.post("/sandbox/api/send", {"type": "text", "text": text})
        assert status == 200, answer
        return answer

    async def tap(
        self, kind: str, reply_id: str, title: str, *, context: str | None = None
    ) -> dict[str, Any]:
        """Tap a choice; `context` names the message it is on, as the page's buttons do."""
        body = {"type": kind, "id": reply_id, "title": title}
        if context is not None:
            body["context"] = context
        status, answer = await self.post("/sandbox/api/send", body)
        assert status == 200, answer
        return answer

    async def poll(self) -> list[str]:
        """New bubbles' HTML since the last poll; keeps the panel's latest HTML."""
        response = await self.client.get(
            "/sandbox/api/state", params={"wa_id": self.wa_id, "after": str(self.after)}
        )
        assert response.status == 200
        state = await response.json()
        self.after = state["after"]
        self.panel_html = state.get("panel_html", self.panel_html)
        fresh = [m["html"] for m in state["messages"]]
        self.bubbles.extend(fresh)
        return fresh

    async def until(self, *needles: str, within: float = 15.0) -> str:
        """Poll until one bubble contains every needle; return that bubble's HTML."""

        async def found() -> str | None:
            await self.poll()
            for html in self.bubbles:
                if all(n in html for n in needles):
                    return html
            return None

        result: str = await eventually(found, within=within)
        return result

    async def panel_until(self, *needles: str, within: float = 15.0) -> str:
        async def found() -> str | None:
            await self.poll()
            return self.panel_html if all(n in self.panel_html for n in needles) else None

        result: str = await eventually(found, within=within)
        return result


def choice_context(bubble_html: str, reply_id: str) -> str:
    """The context a tap on `reply_id` in this bubble sends: its message's wamid."""
    found = re.search(rf'data-id="{re.escape(reply_id)}"[^>]*data-context="([^"]+)"', bubble_html)
    assert found is not None, f"no {reply_id} choice in the bubble"
    return found.group(1)


def status_of(panel_html: str, category: str) -> str:
    """The consent status the panel shows for `category`."""
    found = re.search(
        rf'data-category="{category}">.*?data-status="([a-z_]+)"', panel_html, re.DOTALL
    )
    assert found is not None, f"no row for {category} in the panel"
    return found.group(1)
