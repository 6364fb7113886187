"""The conversation records each step it takes (from which state to which, on what) so the
console can show how a contact got where they are; steps that change nothing are not kept."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.chat import Chat, chat_app


async def _steps(chat: Chat) -> list[tuple[str, str, str, str]]:
    contact_id = await chat.contact_id()
    rows = await chat.services.transcript.list_for_contact(contact_id, flow_steps=True)
    steps = []
    for row in rows:
        if row.direction == "flow":
            data: dict[str, Any] = json.loads(row.payload_json or "{}")
            steps.append((data["from"], data["to"], data["trigger"], data["label"]))
    return steps


async def test_the_runner_records_the_steps_of_a_conversation(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    database_url, redis_url = stack_urls
    async with chat_app(settings_for(database_url=database_url, redis_url=redis_url)) as chat:
        await chat.say("hello")
        assert await _steps(chat) == []
        await chat.say("START")
        await chat.say("YES")
        await chat.say("STOP")
        assert await _steps(chat) == [
            ("idle", "awaiting_optin", "start_all", "ask to confirm"),
            ("awaiting_optin", "idle", "yes", "YES: grant"),
            ("idle", "idle", "stop_all", "withdraw all, confirm"),
        ]
