"""A STOP survives the failure of the parts of its event it does not depend on.

The bug: the transcript row (or the profile update, a flow-step row, a hook) failing for good
made the worker retry the whole event five times and then dead-letter it: the STOP had been
acknowledged to Meta (200) and was then lost, the customer still opted in and unanswered.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from flows.locale_catalog import LocaleCatalog
from tests.bot.flows.conftest import BUSINESS, every, opted_in
from tests.fakes.chat import Chat


class BrokenRow(RuntimeError):
    """A write the database refuses for good (a constraint, a value it cannot store)."""


def lost(chat: Chat, part: str) -> float:
    value = chat.services.metrics.registry.get_sample_value(
        "optin_event_parts_lost_total", {"part": part}
    )
    return value or 0.0


async def test_stop_is_applied_when_its_transcript_row_cannot_be_written(
    chat: Chat, en: LocaleCatalog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a failing transcript write dead-lettered the STOP after its 200."""
    await opted_in(chat)

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise BrokenRow("value too long for type character varying")

    monkeypatch.setattr(chat.services.transcript, "record_inbound", refuse)
    with caplog.at_level(logging.ERROR, logger="bot.parts"):
        await chat.say("STOP")  # waits until idle and asserts nothing went dead

    assert await chat.consent() == every("opted_out")
    assert [r.text for r in await chat.replies()] == [
        en.render("stop_all_confirmation", business=BUSINESS)
    ]
    assert lost(chat, "transcript") == 1.0
    assert any(
        r.levelno == logging.ERROR and "transcript lost" in r.getMessage() for r in caplog.records
    )


async def test_stop_is_applied_when_the_profile_name_and_hooks_fail(
    chat: Chat, en: LocaleCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile update is part of the contact upsert, and the consent hook runs after the
    ledger write: neither may take the STOP down."""
    await opted_in(chat)
    contacts = chat.services.contacts
    resolve = contacts.resolve

    async def no_profile(**kwargs: Any) -> Any:
        if kwargs.get("profile_name"):
            raise BrokenRow("profile name refused")
        return await resolve(**kwargs)

    async def broken_hook(*args: Any) -> None:
        raise BrokenRow("hook failed")

    monkeypatch.setattr(contacts, "resolve", no_profile)
    monkeypatch.setattr(chat.services.hooks, "consent_changed", [broken_hook])
    await chat.say("STOP")

    assert await chat.consent() == every("opted_out")
    assert [r.text for r in await chat.replies()] == [
        en.render("stop_all_confirmation", business=BUSINESS)
    ]
    assert lost(chat, "contact_profile") == 1.0
    assert lost(chat, "hooks") == 1.0
