"""Webhooks for another business number, and timestamps from the future (issue 9, items 2 and 5).

Regressions:
- `metadata.phone_number_id = "99999"` with "START marketing" opted the contact in for our
  business and the reply went out from our number;
- a message stamped now + 10^9 s kept the 24-hour window open until 2058.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bot.normaliser import CLOCK_SKEW_ALLOWANCE, FOREIGN_NUMBER, normalise
from flows import events as ev
from tests.bot.flows.conftest import ChatOpener
from tests.fakes.chat import message_webhook
from tests.fakes.graph import FakeGraph

OURS = "106540352242922"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_a_webhook_for_another_number_changes_nothing_and_sends_nothing(
    graph: FakeGraph, open_chat: ChatOpener
) -> None:
    chat = await open_chat(
        graph=graph,
        access_token="t",
        graph_api_url=graph.base_url,
        pseudonym_key="flows-test-pseudonym-key",
        phone_number_id=OURS,
    )
    foreign = message_webhook(
        chat.wa_id,
        {"id": "wamid.foreign1", "type": "text", "text": {"body": "START marketing"}},
        phone_number_id="99999",
    )
    answer = await chat.post(foreign)
    assert answer["status"] == "accepted"
    await chat.settle()
    assert set((await chat.consent()).values()) == {"none"}
    assert await chat.services.contacts.find(chat.wa_id) is None, "no contact made from it"
    assert chat.graph_requests() == [], "nothing went out from our number"
    assert await chat.services.redis.xlen("optin:unknown") >= 1, "kept for the operator"
    metrics = chat.services.metrics.render().decode()
    assert 'optin_webhook_foreign_number_events_total{field="messages"} 1.0' in metrics

    # The same message for our own number is ours.
    await chat.say("START marketing")
    assert (await chat.consent())["marketing"] in {"pending", "opted_in"}


def test_the_normaliser_keeps_a_foreign_change_as_one_unknown_event_without_a_customer() -> None:
    body = message_webhook(
        "15550001001",
        {"id": "wamid.x", "type": "text", "text": {"body": "STOP"}},
        phone_number_id="99999",
    )
    (event,) = normalise(body, received_at=NOW, own_number=OURS)
    assert isinstance(event, ev.Unknown) and event.contact is None
    assert event.reason.startswith(FOREIGN_NUMBER) and "99999" in event.reason
    # No number configured (the sandbox's placeholder): every number is accepted.
    (text,) = normalise(body, received_at=NOW, own_number=None)
    assert isinstance(text, ev.TextMessage)


def test_a_business_notice_without_a_number_is_read_as_before() -> None:
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "time": int(NOW.timestamp()),
                "changes": [
                    {
                        "field": "account_update",
                        "value": {"event": "VERIFIED_ACCOUNT", "phone_number": "15550783881"},
                    }
                ],
            }
        ],
    }
    (event,) = normalise(body, received_at=NOW, own_number=OURS)
    assert isinstance(event, ev.AccountUpdate)


def test_a_timestamp_from_the_future_is_clamped_to_the_time_received() -> None:
    far = int(NOW.timestamp()) + 10**9
    body = message_webhook(
        "15550001001",
        {"id": "wamid.y", "type": "text", "text": {"body": "hello"}},
        phone_number_id=OURS,
    )
    body["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(far)
    body["entry"][0]["time"] = far
    (event,) = normalise(body, received_at=NOW, own_number=OURS)
    assert event.occurred_at == NOW + CLOCK_SKEW_ALLOWANCE
    # An honest past timestamp is kept as it is.
    body["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(
        int((NOW - timedelta(minutes=5)).timestamp())
    )
    (past,) = normalise(body, received_at=NOW, own_number=OURS)
    assert past.occurred_at == NOW - timedelta(minutes=5)


async def test_a_message_from_the_future_does_not_keep_the_window_open_for_decades(
    open_chat: ChatOpener,
) -> None:
    chat = await open_chat()
    far = int(time.time()) + 10**9
    body = message_webhook(
        chat.wa_id,
        {"id": "wamid.future", "type": "text", "text": {"body": "hello"}, "timestamp": str(far)},
        phone_number_id=chat.phone_number_id,
    )
    await chat.post(body)
    await chat.settle()
    closes = await chat.services.window.closes_at(await chat.contact_id())
    assert closes is not None
    assert closes <= datetime.now(UTC) + timedelta(hours=24) + CLOCK_SKEW_ALLOWANCE
