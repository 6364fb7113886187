"""Sandbox mode gives every message it keeps a wamid, as the Cloud API's `messages[0].id` does,
and records it, so that a tap names the message it was made on and the flows can tell an old
message's button from the open question's (see also `test_sandbox_http` and docs/flows.md)."""

from __future__ import annotations

from typing import Any

from bot import redis_keys
from bot.graph import Recipient, text_message
from bot.send_guard import SANDBOX_OUTCOME, SendGuard
from bot.sender import SANDBOX_WAMID_PREFIX, SandboxTransport
from tests.bot.test_sender import outbound_row, queue_text, sender_stack
from tests.fakes.webhooks import eventually


async def test_the_sandbox_transport_answers_a_new_wamid_for_every_message() -> None:
    transport = SandboxTransport()
    body = text_message(Recipient(wa_id="15557770010"), "Hi")
    wamids = [await transport.deliver(body) for _ in range(50)]
    assert len(set(wamids)) == 50
    for wamid in wamids:
        assert wamid is not None and wamid.startswith(SANDBOX_WAMID_PREFIX)


async def test_a_kept_message_is_recorded_with_its_wamid_and_marked_delivered(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """The transcript row, the lookup a tap's context goes through, and the delivered marker
    (which keeps a redelivered entry from being kept twice) all hold the same wamid."""
    database_url, redis_url = stack_urls
    settings = settings_for(database_url=database_url, redis_url=redis_url)  # no access token
    async with sender_stack(settings) as services:
        contact_id = await queue_text(services, "15557770011", "m-11", "Hi")

        async def kept() -> Any:
            row = await outbound_row(services, contact_id, "m-11")
            return row if row is not None and row.status == "sandbox" else None

        row = await eventually(kept)
        assert row.wamid.startswith(SANDBOX_WAMID_PREFIX)
        assert await services.transcript.message_id_of(row.wamid) == "m-11"
        marker = await services.redis.get(redis_keys.DELIVERED.format(message_id="m-11"))
        assert marker == row.wamid


async def test_a_delivered_marker_without_a_wamid_is_still_honoured(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """A message an earlier version kept without a wamid (its marker says only "sandbox") and
    whose entry comes round again is recorded as kept, not kept a second time under a new
    wamid, and gets no made-up wamid."""
    database_url, redis_url = stack_urls
    settings = settings_for(database_url=database_url, redis_url=redis_url)
    async with sender_stack(settings) as services:
        key = redis_keys.DELIVERED.format(message_id="m-12")
        await services.redis.set(key, SANDBOX_OUTCOME, ex=600)
        contact_id = await queue_text(services, "15557770012", "m-12", "Hi")

        async def kept() -> Any:
            row = await outbound_row(services, contact_id, "m-12")
            return row if row is not None and row.status == "sandbox" else None

        row = await eventually(kept)
        assert row.wamid is None
        assert await services.redis.get(key) == SANDBOX_OUTCOME


async def test_the_send_guard_answers_a_kept_messages_own_wamid_again(
    stack_urls: tuple[str, str], settings_for: Any
) -> None:
    """A tagged message kept once and tried again gets the wamid it was kept under, not a
    second one: its buttons stay bound to the message the customer saw."""
    database_url, redis_url = stack_urls
    settings = settings_for(database_url=database_url, redis_url=redis_url)
    async with sender_stack(settings) as services:
        guard = SendGuard(SandboxTransport(), services.redis)
        body = {**text_message(Recipient(wa_id="15557770013"), "Hi")}
        body["biz_opaque_callback_data"] = "m-13"
        first = await guard.deliver(body)
        assert first is not None and first.startswith(SANDBOX_WAMID_PREFIX)
        assert await guard.deliver(body) == first
