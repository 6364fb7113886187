"""Cleaning customer text and checking customer ids where a webhook enters.

Regressions: NUL or a lone surrogate in any customer-fillable field reached PostgreSQL (the event
went dead, the customer could never opt out); `from: "../../etc/passwd"` became a contact.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.api.identifiers import contact_parameter_problem
from bot.normaliser import normalise
from bot.normaliser_clean import INVALID_SENDER, clean_text, valid_user_id, valid_wa_id
from flows import events as ev

WA_ID = "15550001111"


def _webhook(message: dict[str, Any], **value: Any) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "106540352242922"},
                            "contacts": [{"wa_id": WA_ID, "profile": {"name": "Eve\u0000"}}],
                            "messages": [
                                {"from": WA_ID, "id": "wamid.1", "timestamp": "1749416383"}
                                | message
                            ],
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def test_clean_text_drops_nul_and_lone_surrogates_only() -> None:
    assert clean_text("STOP\u0000") == "STOP"
    assert clean_text("Eve\ud800\udfff!") == "Eve!"
    assert clean_text("\U0001f600 ok\tline\n") == "\U0001f600 ok\tline\n"
    plain = "nothing to do é"
    assert clean_text(plain) is plain


HOSTILE = "x\u0000\ud800y"


@pytest.mark.parametrize(
    ("message", "read"),
    [
        ({"type": "text", "text": {"body": HOSTILE}}, lambda e: e.body),
        (
            {"type": "image", "image": {"id": "m1", "caption": HOSTILE, "filename": HOSTILE}},
            lambda e: e.caption + e.filename,
        ),
        ({"type": "button", "button": {"payload": HOSTILE, "text": HOSTILE}}, lambda e: e.payload),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "list_reply",
                    "list_reply": {"id": HOSTILE, "title": HOSTILE, "description": HOSTILE},
                },
            },
            lambda e: e.reply_id + e.title + (e.description or ""),
        ),
        (
            {
                "type": "location",
                "location": {"latitude": 1, "longitude": 2, "name": HOSTILE, "address": HOSTILE},
            },
            lambda e: e.name + e.address,
        ),
        (
            {"type": "contacts", "contacts": [{"name": {"formatted_name": HOSTILE}}]},
            lambda e: "".join(e.names),
        ),
        (
            {"type": "reaction", "reaction": {"message_id": "wamid.0", "emoji": HOSTILE}},
            lambda e: e.emoji,
        ),
        ({"type": "order", "order": {"catalog_id": HOSTILE, "text": HOSTILE}}, lambda e: e.text),
    ],
)
def test_every_customer_field_is_clean(message: dict[str, Any], read: Any) -> None:
    """Regression: NUL / lone surrogates in any field a customer fills reached storage."""
    (event,) = normalise(_webhook(message))
    assert not isinstance(event, ev.Unknown), event
    assert read(event) in ("xy", "xyxy", "xyxyxy")
    assert event.contact is not None and event.contact.profile_name == "Eve"


@pytest.mark.parametrize(
    "sender",
    ["../../etc/passwd", "1234/5", "12 34", "+15550001111", "1" * 21, "\u0661\u0662\u0663"],
)
def test_a_malformed_wa_id_sender_is_an_unknown_event_without_contact(sender: str) -> None:
    """Regression: `from: "../../etc/passwd"` became a contact."""
    (event,) = normalise(_webhook({"from": sender, "type": "text", "text": {"body": "STOP"}}))
    assert isinstance(event, ev.Unknown) and event.contact is None
    assert event.reason.startswith(INVALID_SENDER)


def test_a_malformed_user_id_sender_is_an_unknown_event() -> None:
    message = {"from_user_id": "US/../x", "type": "text", "text": {"body": "STOP"}}
    (event,) = normalise(_webhook(message))
    assert isinstance(event, ev.Unknown) and event.contact is None
    assert event.reason.startswith(INVALID_SENDER)


def test_a_contacts_entry_cannot_smuggle_a_malformed_id_in() -> None:
    """The wa_id taken from `contacts[]` for a user-id-only sender is checked too."""
    payload = _webhook(
        {"from_user_id": "US.1349", "type": "text", "text": {"body": "hi"}},
        contacts=[{"user_id": "US.1349", "wa_id": "../etc", "profile": {"name": "Mallory"}}],
    )
    payload["entry"][0]["changes"][0]["value"]["messages"][0].pop("from")
    (event,) = normalise(payload)
    assert isinstance(event, ev.TextMessage) and event.contact is not None
    assert (event.contact.wa_id, event.contact.user_id) == (None, "US.1349")


def test_a_system_change_to_a_malformed_number_is_unknown() -> None:
    message = {
        "type": "system",
        "system": {"type": "user_changed_number", "body": "x", "wa_id": "../../etc/passwd"},
    }
    (event,) = normalise(_webhook(message))
    assert isinstance(event, ev.Unknown) and event.reason.startswith(INVALID_SENDER)


def test_the_id_rules() -> None:
    assert valid_wa_id("1") and valid_wa_id("1" * 20)
    assert not any(valid_wa_id(x) for x in ("", "1" * 21, "+1", "1a", "\u0661", "1\u0000"))
    assert valid_user_id("US.13491208655302741918") and valid_user_id("US.ENT.1")
    assert not any(
        valid_user_id(x) for x in ("", ".US", "US..1", "US/1", "US.1\u0000", "U" * 129, "ÜS.1")
    )


@pytest.mark.parametrize("text", ["1\u0000", "\u0000", "1\n", "../x", "a/b", "a\\b", "1" * 129])
def test_contact_route_ids_with_nul_control_or_path_characters_are_refused(text: str) -> None:
    assert contact_parameter_problem(text) is not None


@pytest.mark.parametrize("text", ["15550001111", "US.13491208655302741918", "+34 612 34 56 78"])
def test_contact_route_ids_as_businesses_write_them_are_accepted(text: str) -> None:
    assert contact_parameter_problem(text) is None


def test_the_change_field_and_a_business_notice_summary_are_clean() -> None:
    """Found by the property tests: a change's field name and a business notice's keys reached
    the stored event with their NUL."""
    for field, value in (("x\x00", {}), ("account_update", {"\x00key": [], "ban\x00": "yes"})):
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": field, "value": value}]}],
        }
        events = normalise(envelope)
        assert events
        for event in events:
            for text in (getattr(event, "field", ""), getattr(event, "summary", "")):
                assert "\x00" not in text
