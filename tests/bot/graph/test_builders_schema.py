"""Every builder's output is valid under Meta's own OpenAPI description of the Cloud API.

The description is the project's copy in third_party/meta/.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bot.graph import (
    ListRow,
    ListSection,
    Recipient,
    body_component,
    list_message,
    quick_reply_component,
    reply_buttons_message,
    template_message,
    text_message,
)
from tests.fakes.meta_schema import OPENAPI_PATH, MessageSchema, load_message_schema

OPENAPI = OPENAPI_PATH

WA_ID = "15551234567"
BSUID = "US.13491208655302741918"


@pytest.fixture(scope="module")
def schema() -> MessageSchema:
    return load_message_schema(OPENAPI)


MESSAGES: dict[str, Callable[[], dict[str, Any]]] = {
    "text": lambda: text_message(WA_ID, "Hello from Acme Shoes", preview_url=True),
    "text to a BSUID": lambda: text_message(Recipient(user_id=BSUID), "Hello"),
    "text with context": lambda: text_message(WA_ID, "Noted", reply_to="wamid.HBgLMTU1NTEyMzQ1"),
    "reply buttons": lambda: reply_buttons_message(
        WA_ID, "Order updates on WhatsApp?", [("optin:yes", "Yes"), ("optin:no", "No")]
    ),
    "reply buttons with header, footer and context": lambda: reply_buttons_message(
        WA_ID,
        "b" * 1024,
        [("a" * 256, "t" * 20), ("b", "B"), ("c", "C")],
        header="h" * 60,
        footer="f" * 60,
        reply_to="wamid.X",
    ),
    "list": lambda: list_message(
        WA_ID,
        "Which messages?",
        "Choose",
        [ListSection(rows=[ListRow("cat:orders", "Order updates", "Shipping news")])],
    ),
    "list with sections": lambda: list_message(
        Recipient(user_id=BSUID),
        "Which messages?",
        "b" * 20,
        [
            ListSection(
                title="s" * 24,
                rows=[ListRow(f"a{i}", "t" * 24, "d" * 72) for i in range(5)],
            ),
            ListSection(title="Other", rows=[ListRow(f"b{i}", f"Row {i}") for i in range(5)]),
        ],
        header="Preferences",
        footer="Reply STOP to opt out",
        reply_to="wamid.Y",
    ),
    "template": lambda: template_message(WA_ID, "hello_world", "en_US"),
    "template with body and buttons": lambda: template_message(
        WA_ID,
        "optin_confirmation",
        "en",
        [
            body_component("Acme Shoes", "order updates"),
            quick_reply_component(0, "optin:yes"),
            quick_reply_component(1, "optin:no"),
        ],
    ),
    "template with context to a BSUID": lambda: template_message(
        Recipient(user_id=BSUID), "hello_world", "pt_BR", reply_to="wamid.Z"
    ),
}


@pytest.mark.parametrize("name", list(MESSAGES))
def test_builder_output_is_valid(schema: MessageSchema, name: str) -> None:
    message = MESSAGES[name]()
    assert schema.errors(message) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda m: m.update(txt={"body": "x"}), "'txt' was unexpected"),
        (lambda m: m["text"].update(bdy="x"), "'bdy' was unexpected"),
        (lambda m: m.pop("to"), "not valid under any of the given schemas"),
        (lambda m: m.update(type="sms"), "'sms' is not one of"),
        (lambda m: m.update(recipient_type="everyone"), "'everyone' is not one of"),
        (lambda m: m["text"].update(preview_url="yes"), "'yes' is not of type 'boolean'"),
    ],
)
def test_wrong_text_message_is_rejected(
    schema: MessageSchema, mutate: Callable[[dict[str, Any]], object], expected: str
) -> None:
    message = text_message(WA_ID, "Hello")
    mutate(message)
    errors = schema.errors(message)
    assert errors, message
    assert any(expected in error for error in errors), errors
    assert not schema.is_valid(message)


def test_wrong_interactive_and_template_are_rejected(schema: MessageSchema) -> None:
    buttons = reply_buttons_message(WA_ID, "Pick", [("a", "A")])
    too_long = copy.deepcopy(buttons)
    too_long["interactive"]["action"]["buttons"][0]["reply"]["title"] = "x" * 21
    assert schema.errors(too_long)

    template = template_message(WA_ID, "t", "en", [body_component("Acme")])
    missing_text = copy.deepcopy(template)
    missing_text["template"]["components"][0]["parameters"][0].pop("text")
    assert schema.first_error(missing_text) == (
        "template/components/0/parameters/0: 'text' is a required property"
    )

    no_policy = copy.deepcopy(template)
    no_policy["template"]["language"].pop("policy")
    assert any("'policy' is a required property" in e for e in schema.errors(no_policy))


def test_validate_raises_the_best_match(schema: MessageSchema) -> None:
    from jsonschema import ValidationError

    message = text_message(WA_ID, "Hello")
    message["text"]["body"] = 42
    with pytest.raises(ValidationError, match="42 is not of type 'string'"):
        schema.validate(message)
