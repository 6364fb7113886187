"""`bot.normaliser` against every webhook example in Meta's own OpenAPI description.

The examples of `POST /whatsapp/webhooks` (and the message examples of the schemas its request
body refers to, wrapped in an envelope) must all normalise without an exception, and no known
type may come out as `Unknown`. Examples known today are checked event by event; an example added
by a later version of the description still gets the general checks.

The description is the project's copy in third_party/meta/.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from bot.eventcodec import decode_event, encode_event
from bot.normaliser import normalise
from flows.events import (
    AccountUpdate,
    BaseEvent,
    ButtonReply,
    ContactRef,
    ContactsMessage,
    InteractiveReply,
    LocationMessage,
    MediaMessage,
    MessageEvent,
    MetaError,
    OrderMessage,
    Reaction,
    StatusUpdate,
    SystemChange,
    TextMessage,
    Unknown,
    UnsupportedMessage,
)
from tests.fakes.meta_schema import OPENAPI_PATH

SPEC_PATH = OPENAPI_PATH
WEBHOOK_PATH = "/whatsapp/webhooks"

SHEENA = ContactRef("16505551234", None, profile_name="Sheena Nelson")
PNID = "106540352242922"

# Meta's message `type` -> the event class it must become.
MESSAGE_CLASSES: dict[str, type[BaseEvent]] = {
    "text": TextMessage,
    "button": ButtonReply,
    "interactive": InteractiveReply,
    "reaction": Reaction,
    "image": MediaMessage,
    "audio": MediaMessage,
    "video": MediaMessage,
    "document": MediaMessage,
    "sticker": MediaMessage,
    "voice": MediaMessage,
    "location": LocationMessage,
    "contacts": ContactsMessage,
    "order": OrderMessage,
    "system": SystemChange,
    "unsupported": UnsupportedMessage,
    "unknown": UnsupportedMessage,
}


@functools.cache
def load_spec() -> dict[str, Any]:
    """Meta's description, parsed once per test session (it is about 1 MB of YAML)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open(encoding="utf-8") as handle:
        spec = yaml.load(handle, Loader=loader)
    assert isinstance(spec, dict)
    return spec


def resolve(spec: dict[str, Any], node: Any) -> Any:
    """Follow a local `$ref` ("#/components/...")."""
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, item in node.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from refs(item)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def request_body_examples(spec: dict[str, Any]) -> dict[str, Any]:
    body = resolve(spec, spec["paths"][WEBHOOK_PATH]["post"]["requestBody"])
    examples: dict[str, Any] = {}
    for media in body["content"].values():
        for name, example in (media.get("examples") or {}).items():
            examples[name] = resolve(spec, example)["value"]
        if "example" in media:
            examples["(media example)"] = media["example"]
    return examples


def schema_message_examples(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`example`s of every schema the request body reaches that look like an incoming message."""
    schemas = spec["components"]["schemas"]
    root = spec["paths"][WEBHOOK_PATH]["post"]["requestBody"]
    seen: set[str] = set()
    pending = list(refs(root))
    found: dict[str, dict[str, Any]] = {}
    while pending:
        ref = pending.pop()
        if ref in seen or not ref.startswith("#/components/schemas/"):
            continue
        seen.add(ref)
        name = ref.rsplit("/", 1)[-1]
        schema = schemas[name]
        pending.extend(refs(schema))
        for part in [schema, *schema.get("allOf", [])]:
            example = part.get("example") if isinstance(part, dict) else None
            if (
                isinstance(example, dict)
                and {"id", "type"} <= example.keys()
                and ("from" in example or "from_user_id" in example)
            ):
                found[name] = example
    return found


def wrap(message: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
        "messages": [message],
    }
    if message.get("type") != "system":
        value["contacts"] = [{"profile": {"name": "Sheena Nelson"}, "wa_id": message.get("from")}]
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "419561257915477", "changes": [{"field": "messages", "value": value}]}],
    }


def _cases(*, with_schema_examples: bool) -> list[Any]:
    spec = load_spec()
    cases = [
        pytest.param(name, payload, id=name)
        for name, payload in request_body_examples(spec).items()
    ]
    if with_schema_examples:
        cases += [
            pytest.param(f"schema {name}", wrap(example), id=f"schema-{name}")
            for name, example in schema_message_examples(spec).items()
        ]
    return cases


CASES = _cases(with_schema_examples=True)
BODY_CASES = _cases(with_schema_examples=False)


def _items(payload: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(field, part, item) for every item of every change, in order."""
    for entry in payload["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            if change["field"] != "messages":
                yield change["field"], "change", value
                continue
            for part in ("messages", "statuses"):
                for item in value.get(part, []):
                    yield "messages", part, item


@pytest.mark.parametrize(("name", "payload"), CASES)
def test_every_example_normalises_to_typed_events(name: str, payload: dict[str, Any]) -> None:
    before = copy.deepcopy(payload)
    events = normalise(payload, received_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert payload == before, "the normaliser changed its input"
    items = list(_items(payload))
    assert len(events) == len(items), f"{name}: one event per item"
    for event, (field, part, item) in zip(events, items, strict=True):
        assert not isinstance(event, Unknown), f"{name}: {event.reason}"
        assert decode_event(encode_event(event)) == event
        assert event.occurred_at.utcoffset() is not None
        if part == "messages":
            assert isinstance(event, MESSAGE_CLASSES[item["type"]])
            assert isinstance(event, MessageEvent)
            assert (event.wamid, event.event_id) == (item["id"], f"msg:{item['id']}")
            assert event.contact is not None and event.contact.wa_id == item["from"]
            assert int(item["timestamp"]) == int(event.occurred_at.timestamp())
            context = item.get("context", {}).get("id")
            assert event.context_wamid == context
        elif part == "statuses":
            assert isinstance(event, StatusUpdate) and event.wamid == item["id"]
        else:
            assert isinstance(event, AccountUpdate) and event.field == field


# What each example known today must give, event by event (fields not listed are not compared).
EXPECTED: dict[str, list[tuple[type[BaseEvent], dict[str, Any]]]] = {
    "Text Message": [
        (
            TextMessage,
            {
                "body": "Does it come in another color?",
                "contact": SHEENA,
                "context_wamid": None,
                "phone_number_id": PNID,
                "waba_id": "419561257915477",
                "occurred_at": datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC),
            },
        )
    ],
    "Text Message with Context (Product Inquiry)": [
        (
            TextMessage,
            {
                "body": "Is this still available?",
                "contact": SHEENA,
                "context_wamid": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGA9wcm9kdWN0X2lucXVpcnkA",
            },
        )
    ],
    "Text Message from Click to WhatsApp Ad": [
        (
            TextMessage,
            {
                "body": "Hello! Can I get more info on this?",
                "contact": SHEENA,
            },
        )
    ],
    "Reaction Message": [
        (
            Reaction,
            {
                "target_wamid": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0RTJEOTc2ODVERUY5RDlGNkYA",
                "emoji": "\N{THUMBS UP SIGN}",
                "contact": SHEENA,
            },
        )
    ],
    "Image Message": [
        (
            MediaMessage,
            {
                "media_type": "image",
                "media_id": "1003383421387256",
                "mime_type": "image/jpeg",
                "caption": "Taj Mahal",
                "sha256": "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=",
                "voice": False,
            },
        )
    ],
    "Location Message": [
        (
            LocationMessage,
            {
                "latitude": 37.44221496582,
                "longitude": -122.16165924072,
                "name": "Philz Coffee",
                "address": "101 Forest Ave, Palo Alto, CA 94301",
            },
        )
    ],
    "Contact Sharing Message": [(ContactsMessage, {"names": ("Lucía Gómez",)})],
    "Unsupported Message": [
        (
            UnsupportedMessage,
            {
                "errors": (
                    MetaError(
                        131051,
                        "Message type unknown",
                        "Message type unknown",
                        "Message type is currently not supported.",
                    ),
                )
            },
        )
    ],
    "Button Message": [
        (
            ButtonReply,
            {
                "payload": "Unsubscribe",
                "text": "Unsubscribe",
                "context_wamid": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJFNjk2OTMwNEZCQjhGMzUyQUYA",
            },
        )
    ],
    "Interactive List Reply Message": [
        (
            InteractiveReply,
            {
                "reply_kind": "list_reply",
                "reply_id": "priority_express",
                "title": "Priority Mail Express",
                "description": "Next Day to 2 Days",
            },
        )
    ],
    "Interactive Button Reply Message": [
        (
            InteractiveReply,
            {
                "reply_kind": "button_reply",
                "reply_id": "cancel-button",
                "title": "Cancel",
                "description": None,
            },
        )
    ],
    "Order Message": [
        (
            OrderMessage,
            {
                "catalog_id": "194836987003835",
                "item_count": 2,
                "text": None,
            },
        )
    ],
    "System Message": [
        (
            SystemChange,
            {
                "system_type": "user_changed_number",
                "new_wa_id": "12195555358",
                "new_user_id": None,
                "body": "User Sheena Nelson changed from 16505551234 to 12195555358",
                "contact": ContactRef("16505551234", None),
            },
        )
    ],
    "Group Create Message": [
        (
            AccountUpdate,
            {
                "field": "group_lifecycle_update",
                "summary": "groups=[group_create]",
                "contact": None,
                "occurred_at": datetime(2025, 6, 18, 17, 55, 42, tzinfo=UTC),
            },
        )
    ],
    "Group Settings Update": [
        (
            AccountUpdate,
            {
                "field": "group_settings_update",
                "summary": "groups=[group_settings_update]",
            },
        )
    ],
    "Group Remove Participants": [
        (
            AccountUpdate,
            {
                "field": "group_participants_update",
                "summary": "groups=[group_create]",
            },
        )
    ],
}


@pytest.mark.parametrize(("name", "payload"), BODY_CASES)
def test_known_examples_give_the_expected_events(name: str, payload: dict[str, Any]) -> None:
    events = normalise(payload)
    if name not in EXPECTED:
        # New in this version of the description: the general checks of the other tests cover
        # it; here it must still normalise without error into at least one event.
        assert events, name
        return
    expected = EXPECTED[name]
    assert [type(event) for event in events] == [cls for cls, _ in expected]
    for event, (_, fields) in zip(events, expected, strict=True):
        assert {key: getattr(event, key) for key in fields} == fields


def test_every_known_example_is_in_the_description() -> None:
    spec = load_spec()
    assert set(EXPECTED) <= set(request_body_examples(spec))
    assert len(schema_message_examples(spec)) >= 5
