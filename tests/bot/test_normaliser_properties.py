"""Properties of `bot.normaliser` over generated input: whatever arrives, it either refuses the
body with `NotAnEnvelope` or returns events; the same body always gives equal events; it never
changes its input; and every event it makes survives `bot.eventcodec` unchanged."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.eventcodec import decode_event, encode_event
from bot.normaliser import NotAnEnvelope, normalise
from bot.normaliser_clean import INVALID_SENDER, clean_text, valid_wa_id
from flows.events import Event, TextMessage, Unknown

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Keys Meta uses, so generated objects reach deep into the normaliser, not just its first check.
META_KEYS = [
    "object",
    "entry",
    "id",
    "time",
    "changes",
    "field",
    "value",
    "messaging_product",
    "metadata",
    "phone_number_id",
    "contacts",
    "profile",
    "name",
    "username",
    "wa_id",
    "user_id",
    "parent_user_id",
    "messages",
    "from",
    "from_user_id",
    "from_parent_user_id",
    "timestamp",
    "type",
    "text",
    "body",
    "context",
    "button",
    "payload",
    "interactive",
    "button_reply",
    "list_reply",
    "nfm_reply",
    "title",
    "description",
    "reaction",
    "message_id",
    "emoji",
    "image",
    "audio",
    "voice",
    "mime_type",
    "sha256",
    "caption",
    "location",
    "latitude",
    "longitude",
    "order",
    "catalog_id",
    "product_items",
    "system",
    "previous_user_id",
    "errors",
    "code",
    "error_data",
    "details",
    "statuses",
    "status",
    "recipient_id",
    "recipient_user_id",
    "recipient_type",
    "recipient_participant_id",
    "pricing",
    "category",
    "user_preferences",
    "detail",
    "user_id_update",
    "previous",
    "current",
    "groups",
]
FIELDS = [
    "messages",
    "user_preferences",
    "user_id_update",
    "account_update",
    "message_template_status_update",
    "group_lifecycle_update",
    "calls",
    "",
]
MESSAGE_TYPES = [
    "text",
    "button",
    "interactive",
    "reaction",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "voice",
    "location",
    "contacts",
    "order",
    "system",
    "unsupported",
    "unknown",
    "hologram",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "",
            "1749416383",
            "16505551234",
            "US.13491208655302741918",
            "whatsapp",
            "whatsapp_business_account",
            *FIELDS,
            *MESSAGE_TYPES,
        ]
    )
)
keys = st.sampled_from(META_KEYS) | st.text(max_size=6)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


def check(payload: object) -> list[Event]:
    """The properties every input must have; returns the events (or [] when refused)."""
    before = repr(payload)
    try:
        events = normalise(payload)
    except NotAnEnvelope:
        assert repr(payload) == before, "the normaliser changed its input"
        try:
            normalise(copy.deepcopy(payload))
        except NotAnEnvelope:
            return []
        raise AssertionError("refused once, accepted the second time") from None
    assert normalise(copy.deepcopy(payload)) == events
    assert repr(payload) == before, "the normaliser changed its input"
    for event in events:
        assert decode_event(encode_event(event)) == event
        assert event.occurred_at.utcoffset() is not None
        for text in _strings(event):
            assert "\x00" not in text, f"NUL reached {type(event).__name__}"
            text.encode("utf-8")  # no lone surrogate: PostgreSQL text could not store it
    return events


def _strings(value: object) -> list[str]:
    """Every string inside an event (its fields, the contact's, tuples and nested records)."""
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            text for f in dataclasses.fields(value) for text in _strings(getattr(value, f.name))
        ]
    if isinstance(value, tuple | list):
        return [text for item in value for text in _strings(item)]
    return []


@SETTINGS
@given(json_values)
def test_any_json_value(payload: object) -> None:
    check(payload)


@SETTINGS
@given(
    st.lists(json_values, max_size=2),
    st.sampled_from(FIELDS) | st.text(max_size=8),
    st.dictionaries(keys, json_values, max_size=8),
)
def test_any_change_inside_a_valid_envelope(
    entries: list[Any], field: str, value: dict[str, Any]
) -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [*entries, {"id": "1", "changes": [{"field": field, "value": value}]}],
    }
    check(payload)


# ------------------------------------------------------------------ mutated valid envelopes

BSUID = "US.13491208655302741918"


def _envelope(field: str, **parts: Any) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "419561257915477",
                "changes": [
                    {
                        "field": field,
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "1065",
                            },
                            **parts,
                        },
                    }
                ],
            }
        ],
    }


def _message(message_type: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "from": "16505551234",
        "id": f"wamid.{message_type}",
        "timestamp": "1749416383",
        "type": message_type,
        **body,
        **extra,
    }


CONTACTS = [
    {
        "profile": {"name": "Sheena", "username": "@sheena"},
        "wa_id": "16505551234",
        "user_id": BSUID,
        "parent_user_id": "US.ENT.1",
    }
]
VALID_ENVELOPES: list[dict[str, Any]] = [
    _envelope(
        "messages",
        contacts=CONTACTS,
        messages=[
            _message("text", {"text": {"body": "STOP"}}, context={"id": "wamid.0"}),
            _message("button", {"button": {"payload": "p", "text": "t"}}),
            _message(
                "interactive",
                {
                    "interactive": {
                        "type": "button_reply",
                        "button_reply": {"id": "b", "title": "B"},
                    }
                },
            ),
            _message(
                "interactive",
                {
                    "interactive": {
                        "type": "nfm_reply",
                        "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{}"},
                    }
                },
            ),
            _message(
                "reaction",
                {"reaction": {"message_id": "wamid.0", "emoji": "\N{HEAVY BLACK HEART}"}},
            ),
            _message("image", {"image": {"id": "m", "mime_type": "image/jpeg", "sha256": "s"}}),
            _message("location", {"location": {"latitude": 37.4, "longitude": "-122.1"}}),
            _message("contacts", {"contacts": [{"name": {"formatted_name": "Lucía"}}]}),
            _message("order", {"order": {"catalog_id": "c", "product_items": [{}], "text": ""}}),
            _message("unsupported", {"errors": [{"code": 131051, "title": "Unknown"}]}),
        ],
    ),
    _envelope(
        "messages",
        contacts=[{"profile": {"name": "A"}, "user_id": BSUID}],
        messages=[
            {
                "from_user_id": BSUID,
                "id": "wamid.b",
                "timestamp": "1",
                "type": "text",
                "text": {"body": "hi"},
            }
        ],
    ),
    _envelope(
        "messages",
        messages=[
            _message(
                "system",
                {
                    "system": {
                        "body": "changed",
                        "wa_id": "12195555358",
                        "type": "user_changed_number",
                        "previous_user_id": BSUID,
                    }
                },
            )
        ],
    ),
    _envelope(
        "messages",
        contacts=CONTACTS,
        statuses=[
            {
                "id": "wamid.s",
                "status": "read",
                "timestamp": "1749416383",
                "recipient_id": "1",
                "recipient_user_id": BSUID,
                "pricing": {"category": "marketing"},
            },
            {
                "id": "wamid.f",
                "status": "failed",
                "timestamp": "1749416383",
                "recipient_id": "1",
                "errors": [{"code": 131049, "title": "t", "error_data": {"details": "d"}}],
            },
        ],
        errors=[{"code": 1, "title": "x"}],
    ),
    _envelope(
        "user_preferences",
        contacts=CONTACTS,
        user_preferences=[
            {
                "wa_id": "16505551234",
                "detail": "d",
                "category": "marketing_messages",
                "value": "stop",
                "timestamp": "1749416383",
            }
        ],
    ),
    _envelope(
        "user_id_update",
        user_id_update=[
            {"wa_id": "1", "detail": "d", "user_id": {"previous": BSUID, "current": "US.2"}}
        ],
    ),
    _envelope("message_template_status_update", event="APPROVED", message_template_id=1),
]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(node, dict):
        for key, item in node.items():
            found += _paths(item, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _paths(item, (*path, index))
    return found


def _mutate(data: st.DataObject, payload: Any) -> Any:
    paths = _paths(payload)[1:]
    inside_values = [path for path in paths if len(path) > 5]  # below entry/changes/value
    if inside_values and data.draw(st.integers(0, 4), label="depth") > 0:
        paths = inside_values
    if not paths:
        return payload
    path = data.draw(st.sampled_from(paths), label="path")
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    operation = data.draw(st.sampled_from(["drop", "replace", "unicode", "empty", "wrap"]))
    if operation == "drop":
        del parent[key]
    elif operation == "replace":
        parent[key] = data.draw(json_values, label="new value")
    elif operation == "unicode":
        parent[key] = data.draw(st.text(min_size=0, max_size=20), label="new text")
    elif operation == "empty":
        parent[key] = type(parent[key])() if isinstance(parent[key], dict | list | str) else None
    else:
        parent[key] = [parent[key]]
    return payload


@SETTINGS
@given(st.data(), st.sampled_from(range(len(VALID_ENVELOPES))), st.integers(1, 5))
def test_mutated_valid_envelopes(data: st.DataObject, which: int, mutations: int) -> None:
    payload = copy.deepcopy(VALID_ENVELOPES[which])
    for _ in range(mutations):
        payload = _mutate(data, payload)
    check(payload)


def test_valid_envelopes_give_only_known_events() -> None:
    for payload in VALID_ENVELOPES:
        events = check(payload)
        assert events and all(type(event).__name__ != "Unknown" for event in events)


_STORABLE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_WA_IDS = st.text("0123456789", min_size=1, max_size=20)


@SETTINGS
@given(body=_STORABLE, wamid=_STORABLE.filter(bool), sender=_WA_IDS)
def test_text_survives_untouched(body: str, wamid: str, sender: str) -> None:
    """Text PostgreSQL can store passes through exactly; the sender is any well-formed wa_id."""
    payload = _envelope(
        "messages",
        messages=[
            {
                "from": sender,
                "id": wamid,
                "timestamp": "1749416383",
                "type": "text",
                "text": {"body": body},
            }
        ],
    )
    (event,) = check(payload)
    assert isinstance(event, TextMessage)
    assert (event.body, event.wamid, event.event_id) == (body, wamid, f"msg:{wamid}")
    assert event.contact is not None and event.contact.wa_id == sender


@SETTINGS
@given(body=st.text(), profile=st.text(min_size=1))
def test_nul_and_lone_surrogates_never_reach_an_event(body: str, profile: str) -> None:
    """Regression: "STOP\\u0000" or a profile name "Eve\\u0000" / "\\ud800" reached
    PostgreSQL, failed five times and went dead, and the customer could never opt out."""
    payload = _envelope(
        "messages",
        contacts=[{"wa_id": "15550001111", "profile": {"name": profile}}],
        messages=[
            {
                "from": "15550001111",
                "id": "wamid.1",
                "timestamp": "1749416383",
                "type": "text",
                "text": {"body": body},
            }
        ],
    )
    (event,) = check(payload)  # check() asserts every string is storable
    assert isinstance(event, TextMessage)
    assert event.body == body.replace("\x00", "").encode("utf-8", "ignore").decode()
    assert event.contact is not None and event.contact.wa_id == "15550001111"


@SETTINGS
@given(sender=st.text(min_size=1).filter(lambda s: not valid_wa_id(clean_text(s))))
def test_a_malformed_sender_is_never_a_contact(sender: str) -> None:
    """Regression: `from: "../../etc/passwd"` became a contact readable through the API."""
    payload = _envelope(
        "messages",
        messages=[
            {
                "from": sender,
                "id": "wamid.1",
                "timestamp": "1749416383",
                "type": "text",
                "text": {"body": "STOP"},
            }
        ],
    )
    events = check(payload)
    if not events:  # a sender of only NUL / surrogates is no sender at all: refused
        assert not clean_text(sender)
        return
    (event,) = events
    assert isinstance(event, Unknown) and event.contact is None
    assert event.reason.startswith(INVALID_SENDER)
