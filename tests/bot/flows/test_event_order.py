"""Consent is order-aware (issue 9, item 2).

Regression: STOP stamped t was delivered, then "START marketing" stamped t-60 (Meta does not
guarantee order): marketing ended `opted_in`, with a grant whose `occurred_at` preceded the
withdrawal.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from flows.consent import ConsentAction, ConsentStatus, Source
from flows.consent_order import DECISION_SKEW, Standing, overruled
from tests.bot.flows.conftest import ChatOpener
from tests.fakes.chat import Chat, message_webhook

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CUSTOMER = Source.WHATSAPP_THREAD


async def say_at(chat: Chat, text: str, stamp: int) -> None:
    body = message_webhook(
        chat.wa_id,
        {
            "id": f"wamid.{text}.{stamp}",
            "type": "text",
            "text": {"body": text},
            "timestamp": str(stamp),
        },
        phone_number_id=chat.phone_number_id,
    )
    await chat.post(body)
    await chat.settle()


async def test_an_older_start_delivered_after_a_stop_changes_nothing(
    open_chat: ChatOpener,
) -> None:
    chat = await open_chat()
    now = int(time.time())
    await say_at(chat, "STOP", now)
    assert set((await chat.consent()).values()) == {"opted_out"}
    await chat.replies()
    await say_at(chat, "START marketing", now - 60)
    assert (await chat.consent())["marketing"] == "opted_out"
    assert await chat.replies() == [], "no answer to a message the customer has since overruled"
    overruled_rows = [r for r in await chat.ledger() if r.action == "overruled"]
    assert [r.category for r in overruled_rows] == ["marketing"]
    evidence = overruled_rows[0].evidence
    assert evidence["requested"] in {"granted", "pending"}
    assert "older than the customer's decision" in str(evidence["not_applied"])
    assert await chat.state() == "idle"


async def test_an_older_stop_delivered_after_a_start_changes_nothing(
    open_chat: ChatOpener,
) -> None:
    chat = await open_chat()
    now = int(time.time())
    await say_at(chat, "START", now - 5)
    await say_at(chat, "YES", now)
    assert set((await chat.consent()).values()) == {"opted_in"}
    await say_at(chat, "STOP", now - 120)
    assert set((await chat.consent()).values()) == {"opted_in"}
    assert {r.action for r in await chat.ledger()} >= {"overruled"}


async def test_a_stop_and_a_start_in_the_same_second_resolve_to_the_stop(
    open_chat: ChatOpener,
) -> None:
    chat = await open_chat()
    now = int(time.time())
    await say_at(chat, "STOP", now)
    await say_at(chat, "START", now)
    assert set((await chat.consent()).values()) == {"opted_out"}


def test_the_rule() -> None:
    out = Standing(ConsentStatus.OPTED_OUT, T, CUSTOMER)
    inn = Standing(ConsentStatus.OPTED_IN, T, CUSTOMER)
    earlier, later = T - timedelta(seconds=60), T + timedelta(seconds=60)
    # an older grant, or one within the skew, does not undo the customer's STOP
    assert overruled(ConsentAction.GRANTED, CUSTOMER, earlier, out)
    assert overruled(ConsentAction.PENDING, CUSTOMER, T + DECISION_SKEW / 2, out)
    assert overruled(ConsentAction.PENDING, CUSTOMER, T + DECISION_SKEW, out) is None
    assert overruled(ConsentAction.GRANTED, CUSTOMER, later, out) is None
    # a business grant never does, however recent; a business request may still ask
    assert overruled(ConsentAction.GRANTED, Source.API, later, out)
    assert overruled(ConsentAction.RECONFIRMED, Source.AGENT, later, out)
    assert overruled(ConsentAction.PENDING, Source.API, later, out) is None
    # an older STOP does not undo a newer opt-in; within the skew the STOP wins
    assert overruled(ConsentAction.WITHDRAWN, CUSTOMER, earlier, inn)
    assert overruled(ConsentAction.WITHDRAWN, CUSTOMER, T - DECISION_SKEW / 2, inn) is None
    # an older repeat of the same decision does not move its date back
    assert overruled(ConsentAction.WITHDRAWN, CUSTOMER, earlier, out)
    # withdrawals by the business always apply; decisions by the business protect nothing
    assert overruled(ConsentAction.WITHDRAWN, Source.AGENT, earlier, inn) is None
    business_in = Standing(ConsentStatus.OPTED_IN, T, Source.API)
    assert overruled(ConsentAction.WITHDRAWN, CUSTOMER, earlier, business_in) is None
    assert overruled(ConsentAction.GRANTED, CUSTOMER, earlier, None) is None
