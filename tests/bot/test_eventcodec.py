"""`bot.eventcodec`: every event class round-trips exactly, the text is compact tagged JSON, and
anything that is not an encoded event is refused with `EventDecodeError`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.eventcodec import EventDecodeError, decode_event, encode_event
from flows.events import (
    EVENT_CLASSES,
    AccountUpdate,
    ButtonReply,
    ConsentRequest,
    ContactRef,
    ContactsMessage,
    Event,
    InteractiveReply,
    LocationMessage,
    MediaMessage,
    MetaError,
    OrderMessage,
    Reaction,
    SendRefused,
    StatusUpdate,
    SystemChange,
    TextMessage,
    TimerFired,
    Unknown,
    UnsupportedMessage,
    UserPreferencesUpdate,
    WebhookError,
)

WHEN = datetime(2025, 6, 8, 20, 59, 43, 123456, tzinfo=UTC)
ANA = ContactRef("16505551234", "US.13491208655302741918", "US.ENT.1", "@ana", "Ana Lúcia")
BSUID_ONLY = ContactRef(None, "US.13491208655302741918")
ERRORS = (
    MetaError(131049, "Not delivered", "healthy ecosystem", "details"),
    MetaError(0, "", None, None),
)

COMMON: dict[str, Any] = {
    "phone_number_id": "106540352242922",
    "waba_id": "4195",
    "occurred_at": WHEN,
}
MESSAGE: dict[str, Any] = {
    **COMMON,
    "contact": ANA,
    "wamid": "wamid.1",
    "context_wamid": "wamid.0",
    "group_id": None,
}

SAMPLES: list[Event] = [
    TextMessage(event_id="msg:wamid.1", **MESSAGE, body='STOP ✋ \ud800 \x00 "quoted"'),
    ButtonReply(event_id="msg:2", **MESSAGE, payload="stop", text="Stop"),
    InteractiveReply(
        event_id="msg:3",
        **MESSAGE,
        reply_kind="list_reply",
        reply_id="r",
        title="T",
        description=None,
    ),
    InteractiveReply(
        event_id="msg:4",
        **MESSAGE,
        reply_kind="nfm_reply",
        reply_id="flow",
        title="Sent",
        response_json='{"a": 1}',
    ),
    Reaction(event_id="msg:5", **MESSAGE, target_wamid="wamid.0", emoji=None),
    MediaMessage(
        event_id="msg:6",
        **MESSAGE,
        media_type="audio",
        media_id="m",
        mime_type="audio/ogg",
        voice=True,
    ),
    LocationMessage(
        event_id="msg:7",
        **MESSAGE,
        latitude=37.44221496582,
        longitude=-122.16165924072,
        name="Philz",
        address=None,
    ),
    LocationMessage(event_id="msg:8", **MESSAGE, latitude=-0.0, longitude=1e-300),
    ContactsMessage(event_id="msg:9", **MESSAGE, names=("Lucía Gómez", "")),
    ContactsMessage(event_id="msg:10", **MESSAGE, names=()),
    OrderMessage(event_id="msg:11", **MESSAGE, catalog_id="c", item_count=2, text=None),
    SystemChange(
        event_id="msg:12",
        **MESSAGE,
        system_type="user_changed_number",
        body="b",
        new_wa_id="12195555358",
        new_user_id=None,
        previous_user_id="US.1",
    ),
    UnsupportedMessage(event_id="msg:13", **MESSAGE, errors=ERRORS),
    StatusUpdate(
        event_id="status:w:failed",
        **COMMON,
        contact=BSUID_ONLY,
        wamid="w",
        status="failed",
        recipient=BSUID_ONLY,
        errors=ERRORS,
        pricing_category="marketing",
        biz_opaque_callback_data="c",
        group_id="g",
    ),
    UserPreferencesUpdate(
        event_id="prefs:1",
        **COMMON,
        contact=ANA,
        category="marketing_messages",
        value="stop",
        detail=None,
    ),
    WebhookError(event_id="error:1", **COMMON, contact=None, errors=ERRORS),
    AccountUpdate(
        event_id="account:1",
        **COMMON,
        contact=None,
        field="account_update",
        summary="event=X",
        data_json='{"event":"X"}',
    ),
    Unknown(
        event_id="unknown:1",
        **COMMON,
        contact=None,
        field="calls",
        item_type="change",
        raw_json='{"x":NaN}',
        reason="field 'calls' is not handled",
    ),
    TimerFired(
        event_id="timer:7:optin_expiry:abc",
        **COMMON,
        contact=ContactRef(wa_id="15551234567", user_id=None),
        contact_id=7,
        timer="optin_expiry",
        token="abc",
    ),
    ConsentRequest(
        event_id="request:1",
        **COMMON,
        contact=ContactRef(wa_id=None, user_id="US.123"),
        contact_id=7,
        kind="reconsent",
        categories=("marketing", "reminders"),
        source="website",
        evidence_json='{"ip":"203.0.113.9"}',
        policy_version="2026-11",
        deadline=datetime(2026, 12, 1, tzinfo=UTC),
        locale="es",
    ),
    SendRefused(
        event_id="refused:m-1",
        **COMMON,
        contact=ContactRef(wa_id="15551234567", user_id=None),
        contact_id=7,
        message_id="m-1",
        code=131050,
        category="marketing",
    ),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_round_trip(event: Event) -> None:
    text = encode_event(event)
    assert decode_event(text) == event
    assert decode_event(text.encode("utf-8")) == event
    assert encode_event(decode_event(text)) == text


def test_every_event_class_has_a_sample() -> None:
    assert {type(event) for event in SAMPLES} == set(EVENT_CLASSES)


def test_text_is_compact_ascii_json_tagged_with_the_class_name() -> None:
    text = encode_event(SAMPLES[0])
    assert text.isascii() and ", " not in text and ": " not in text
    data = json.loads(text)
    assert data["type"] == "TextMessage"
    assert data["body"] == SAMPLES[0].body  # type: ignore[union-attr]


def test_time_keeps_its_instant_and_microseconds() -> None:
    moment = datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=-3)))
    event = WebhookError(
        event_id="e", phone_number_id="p", occurred_at=moment, contact=None, errors=()
    )
    decoded = decode_event(encode_event(event))
    assert decoded == event and decoded.occurred_at.utcoffset() == timedelta(hours=-3)


@pytest.mark.parametrize(
    "text",
    [
        b"\xff\xfe",
        "not json",
        "[]",
        '{"type": "Nope"}',
        '{"event_id": "x"}',
        '{"type": "WebhookError", "event_id": "e"}',
    ],
)
def test_refuses_what_is_not_an_encoded_event(text: str | bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(text)


def _tampered(**changes: Any) -> str:
    data = json.loads(encode_event(SAMPLES[13]))  # the StatusUpdate
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"occurred_at": "2025-06-08T20:59:43"},  # no UTC offset
        {"occurred_at": 1749416383},
        {"event_id": None},
        {"group_id": 5},
        {"recipient": None},
        {"recipient": [None, None, None, None, None]},
        {"recipient": ["1", "2"]},
        {"errors": [[1, "t", None]]},
        {"errors": [["1", "t", None, None]]},
        {"errors": [[True, "t", None, None]]},
    ],
)
def test_refuses_fields_of_the_wrong_type(changes: dict[str, Any]) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(_tampered(**changes))


def test_refuses_to_encode_what_is_not_an_event() -> None:
    with pytest.raises(TypeError):
        encode_event(ANA)  # type: ignore[arg-type]


def test_events_refuse_naive_times_and_contacts_without_an_id() -> None:
    with pytest.raises(ValueError, match="timezone"):
        WebhookError(
            event_id="e",
            phone_number_id="p",
            occurred_at=datetime(2026, 1, 1),
            contact=None,
            errors=(),
        )
    with pytest.raises(ValueError, match="wa_id or a user_id"):
        ContactRef(None, "")


def test_an_entry_written_before_a_defaulted_field_existed_still_decodes() -> None:
    """Regression: a ConsentRequest queued before `deadline_policy` was added (a campaign's
    request waiting on a stream across an upgrade) failed to decode and went to dead letters."""
    (request,) = [s for s in SAMPLES if isinstance(s, ConsentRequest)][:1]
    data = json.loads(encode_event(request))
    del data["deadline_policy"]
    decoded = decode_event(json.dumps(data))
    assert isinstance(decoded, ConsentRequest) and decoded.deadline_policy is None


def test_a_missing_field_without_a_default_is_still_refused() -> None:
    data = json.loads(encode_event(SAMPLES[13]))
    del data["wamid"]
    with pytest.raises(EventDecodeError, match="wamid"):
        decode_event(json.dumps(data))
