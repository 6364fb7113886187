"""Doing things twice does them once: redelivered webhooks, events handled again after a crash
(by the worker, or by the runner itself half-way through its side effects), and a ledger whose
hash chains `optin-bot ledger verify` proves intact, or names what was tampered with."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot import cli
from bot.conversations import ConversationRunner
from bot.eventcodec import encode_event
from bot.streams import inbound_stream, shard_of
from flows import events as ev
from flows.locale_catalog import LocaleCatalog
from tests.bot.flows.conftest import BUSINESS, every, only, opted_in
from tests.fakes.chat import Chat, envelope, message_webhook


async def test_a_redelivered_stop_webhook_has_one_effect(chat: Chat, en: LocaleCatalog) -> None:
    payload = message_webhook(
        chat.wa_id,
        {"id": "wamid.STOP-ONCE", "type": "text", "text": {"body": "STOP"}},
        phone_number_id=chat.phone_number_id,
    )
    first = await chat.post(payload)
    # Meta retries, sometimes while the first copy is still being handled.
    again = await asyncio.gather(*(chat.post(payload) for _ in range(3)))
    await chat.wait_idle()

    assert (first["events"], first["duplicates"]) == (1, 0)
    assert [(a["events"], a["duplicates"]) for a in again] == [(0, 1)] * 3
    assert len(await chat.ledger()) == 4
    assert [r.text for r in await chat.replies()] == [
        en.render("stop_all_confirmation", business=BUSINESS)
    ]


async def test_a_redelivered_preferences_webhook_has_one_effect(chat: Chat) -> None:
    chat = chat
    payload = envelope(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "sandbox"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": chat.wa_id}],
            "user_preferences": [
                {
                    "wa_id": chat.wa_id,
                    "category": "marketing_messages",
                    "value": "stop",
                    "timestamp": int(datetime.now(UTC).timestamp()),
                }
            ],
        },
    )
    await chat.post(payload)
    assert (await chat.post(payload))["duplicates"] == 1
    await chat.wait_idle()

    assert len(await chat.ledger()) == 1
    assert await chat.consent() == only({"marketing": "opted_out"})


def text_event(chat: Chat, contact_id: int, body: str) -> ev.TextMessage:
    wamid = f"wamid.{uuid.uuid4().hex}"
    return ev.TextMessage(
        event_id=f"msg:{wamid}",
        phone_number_id=chat.phone_number_id,
        occurred_at=datetime.now(UTC),
        contact=ev.ContactRef(wa_id=chat.wa_id, user_id=None),
        wamid=wamid,
        body=body,
    )


async def test_an_event_the_worker_gets_twice_is_decided_once(
    chat: Chat, en: LocaleCatalog
) -> None:
    """A worker that crashed before acknowledging leaves the entry to be read again: the same
    event reaches the conversation twice, bypassing the webhook's de-duplication."""
    contact_id = await chat.contact_id()
    event = text_event(chat, contact_id, "START")
    stream = inbound_stream(shard_of(event.contact.key if event.contact else ""))
    for _ in range(2):
        await chat.services.redis.xadd(stream, {"e": encode_event(event)})
    await chat.wait_idle()

    assert await chat.consent() == every("pending")
    assert len(await chat.ledger()) == 4
    (prompt,) = await chat.replies()
    assert prompt.buttons
    assert await chat.timer_due("optin_expiry") is not None


def runner_of(chat: Chat) -> ConversationRunner:
    """A conversation runner on the app's own services, as the worker role builds it."""
    s = chat.services
    return ConversationRunner(
        settings=s.settings,
        language=s.language,
        contacts=s.contacts,
        ledger=s.ledger,
        transcript=s.transcript,
        outbound=s.outbound_queue,
        timers=s.timers,
        window=s.window,
        metrics=s.metrics,
        hooks=s.hooks,
    )


async def test_the_runner_called_twice_for_one_event_acts_once(
    chat: Chat, en: LocaleCatalog
) -> None:
    chat = chat
    contact = await chat.contact()
    assert contact.id is not None
    runner = runner_of(chat)
    event = text_event(chat, contact.id, "STOP")

    await runner(contact, event)
    await runner(contact, event)
    await chat.wait_idle()

    assert len(await chat.ledger()) == 4
    assert [r.text for r in await chat.replies()] == [
        en.render("stop_all_confirmation", business=BUSINESS)
    ]


class Crash(RuntimeError):
    """The process died here."""


async def test_a_crash_after_the_decision_is_finished_by_the_replay(
    chat: Chat, en: LocaleCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Committed (ledger rows, new state, outbox) but crashed before the reply was queued: the
    replay sends the reply, writes no second row and decides nothing again."""
    chat = chat
    contact = await chat.contact()
    assert contact.id is not None
    runner = runner_of(chat)
    event = text_event(chat, contact.id, "STOP")

    async def crash(*_args: Any, **_kwargs: Any) -> bool:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(chat.services.outbound_queue, "enqueue", crash)
        with pytest.raises(Crash):
            await runner(contact, event)
    await chat.wait_idle()
    assert len(await chat.ledger()) == 4
    assert await chat.replies() == []
    record = await chat.services.ledger.conversation(contact.id)
    assert record is not None and record.outbox_json

    await runner(contact, event)
    await runner(contact, event)
    await chat.wait_idle()

    assert len(await chat.ledger()) == 4
    assert [r.text for r in await chat.replies()] == [
        en.render("stop_all_confirmation", business=BUSINESS)
    ]
    record = await chat.services.ledger.conversation(contact.id)
    assert record is not None and record.outbox_json is None


async def test_a_crash_half_way_through_the_side_effects_repeats_none(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """START queues the prompt, then crashes setting the expiry timer: the replay queues the
    prompt again under the same id (dropped) and sets the timer."""
    chat = chat
    contact = await chat.contact()
    assert contact.id is not None
    runner = runner_of(chat)
    event = text_event(chat, contact.id, "START")

    async def crash(*_args: Any, **_kwargs: Any) -> None:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(chat.services.timers, "schedule", crash)
        with pytest.raises(Crash):
            await runner(contact, event)
    await chat.wait_idle()
    assert len(await chat.replies()) == 1
    assert await chat.timer_due("optin_expiry") is None

    await runner(contact, event)
    await chat.wait_idle()

    assert await chat.replies() == []
    assert len(await chat.all_replies()) == 1
    assert await chat.timer_due("optin_expiry") is not None
    assert len(await chat.ledger()) == 4
    assert await chat.consent() == every("pending")


async def verify_ledger(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str
) -> int:
    """`optin-bot ledger verify [args]`, configured by the environment like an operator's."""
    monkeypatch.chdir(tmp_path)  # no developer's .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    return await asyncio.to_thread(cli.main, ["ledger", "verify", *args])


async def test_ledger_verify_passes_after_the_flows_and_names_a_tampered_row(
    chat: Chat,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await opted_in(chat)
    await chat.say("STOP PROMOTIONS")
    await chat.meta_preferences("resume")
    await chat.say("STOP", wa_id="15550009002")
    database_url = chat.settings.database_url
    rows = len(await chat.ledger()) + len(await chat.ledger("15550009002"))
    capsys.readouterr()

    assert await verify_ledger(database_url, monkeypatch, tmp_path) == 0
    output = capsys.readouterr().out
    assert f"2 chains, {rows} events checked: OK" in output

    contact_id = await chat.contact_id()
    async with chat.services.engine.begin() as connection:
        target = (
            await connection.execute(
                text(
                    "SELECT id, seq FROM consent_events WHERE contact_id = :c "
                    "AND action = 'granted' ORDER BY seq LIMIT 1"
                ),
                {"c": contact_id},
            )
        ).one()
        await connection.execute(
            text("UPDATE consent_events SET action = 'withdrawn' WHERE id = :id"),
            {"id": target.id},
        )

    assert await verify_ledger(database_url, monkeypatch, tmp_path) == 1
    output = capsys.readouterr().out
    assert f"(contact {contact_id}) at seq {target.seq}: hash_mismatch" in output
    assert "1 problem(s)" in output
    # Checking only the untouched contact passes.
    assert await verify_ledger(database_url, monkeypatch, tmp_path, "--contact", "15550009002") == 0
