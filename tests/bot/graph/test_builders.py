"""Message builders: exact shapes, addressing, and every documented limit."""

from __future__ import annotations

from typing import Any

import pytest

from bot.graph import (
    ListRow,
    ListSection,
    MessageBuildError,
    Recipient,
    ReplyButton,
    body_component,
    list_message,
    quick_reply_component,
    reply_buttons_message,
    template_message,
    text_message,
)

WA_ID = "15551234567"
BSUID = "US.13491208655302741918"


def rows(count: int, prefix: str = "r") -> list[ListRow]:
    return [ListRow(f"{prefix}{i}", f"Row {i}") for i in range(count)]


def test_text_message_shape() -> None:
    assert text_message(WA_ID, "Hello") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_ID,
        "type": "text",
        "text": {"preview_url": False, "body": "Hello"},
    }


def test_reply_to_adds_context() -> None:
    message = text_message(WA_ID, "Hello", preview_url=True, reply_to="wamid.ABC")
    assert message["context"] == {"message_id": "wamid.ABC"}
    assert message["text"]["preview_url"] is True


def test_bsuid_recipient_goes_in_recipient_not_to() -> None:
    message = text_message(Recipient(user_id=BSUID), "Hello")
    assert message["recipient"] == BSUID
    assert "to" not in message


def test_phone_number_wins_when_both_ids_are_known() -> None:
    message = text_message(Recipient(wa_id=WA_ID, user_id=BSUID), "Hello")
    assert message["to"] == WA_ID
    assert "recipient" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15551234567", Recipient(wa_id="15551234567")),
        ("+15551234567", Recipient(wa_id="15551234567")),
        (" 4915112345678 ", Recipient(wa_id="4915112345678")),
        (BSUID, Recipient(user_id=BSUID)),
        ("US.ENT.11815799212886844830", Recipient(user_id="US.ENT.11815799212886844830")),
    ],
)
def test_recipient_parse(text: str, expected: Recipient) -> None:
    assert Recipient.parse(text) == expected


@pytest.mark.parametrize("text", ["", "hello", "1555-123", "us.123", "1234567890123456", "US."])
def test_recipient_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(MessageBuildError, match="recipient"):
        Recipient.parse(text)


def test_recipient_needs_an_id() -> None:
    with pytest.raises(MessageBuildError, match="wa_id or a user_id"):
        Recipient()


def test_text_limits() -> None:
    assert text_message(WA_ID, "x" * 4096)["text"]["body"] == "x" * 4096
    with pytest.raises(MessageBuildError, match="text body: at most 4096 characters"):
        text_message(WA_ID, "x" * 4097)
    with pytest.raises(MessageBuildError, match="must not be empty"):
        text_message(WA_ID, "   ")
    with pytest.raises(MessageBuildError, match="context"):
        text_message(WA_ID, "hi", reply_to=" ")


def test_lengths_count_code_points() -> None:
    # "é" as one code point counts 1; as "e" + combining accent it counts 2, like len().
    reply_buttons_message(WA_ID, "Pick", [("a", "é" * 20)])
    with pytest.raises(MessageBuildError, match="button title: at most 20"):
        reply_buttons_message(WA_ID, "Pick", [("a", "e\u0301" * 10 + "x")])


def test_reply_buttons_shape() -> None:
    message = reply_buttons_message(
        WA_ID,
        "Do you want order updates?",
        [ReplyButton("optin:yes", "Yes"), ("optin:no", "No")],
        header="Acme Shoes",
        footer="Reply STOP to opt out",
    )
    assert message["type"] == "interactive"
    assert message["interactive"] == {
        "type": "button",
        "header": {"type": "text", "text": "Acme Shoes"},
        "body": {"text": "Do you want order updates?"},
        "footer": {"text": "Reply STOP to opt out"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "optin:yes", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "optin:no", "title": "No"}},
            ]
        },
    }


@pytest.mark.parametrize(
    ("buttons", "match"),
    [
        ([], "1 to 3 buttons allowed, got 0"),
        ([("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")], "1 to 3 buttons allowed, got 4"),
        ([("a", "A"), ("a", "B")], "button ids must be unique: 'a'"),
        ([("a", "Same"), ("b", "Same")], "button titles must be unique"),
        ([("a", "x" * 21)], "button title: at most 20 characters allowed, got 21"),
        ([("i" * 257, "A")], "button id: at most 256 characters allowed, got 257"),
        ([(" a", "A")], "button id: no leading or trailing spaces"),
        ([("a", "")], "button title: must not be empty"),
    ],
)
def test_reply_buttons_limits(buttons: list[tuple[str, str]], match: str) -> None:
    with pytest.raises(MessageBuildError, match=match):
        reply_buttons_message(WA_ID, "Pick one", buttons)


def test_reply_buttons_boundaries_are_allowed() -> None:
    message = reply_buttons_message(
        WA_ID, "b" * 1024, [("i" * 256, "t" * 20), ("b", "B"), ("c", "C")], header="h" * 60
    )
    assert len(message["interactive"]["action"]["buttons"]) == 3


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"body": "b" * 1025}, "interactive body: at most 1024 characters allowed, got 1025"),
        ({"header": "h" * 61}, "header text: at most 60"),
        ({"footer": "f" * 61}, "footer text: at most 60"),
    ],
)
def test_interactive_text_limits(options: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {"body": "Pick one"} | options
    with pytest.raises(MessageBuildError, match=match):
        reply_buttons_message(WA_ID, buttons=[("a", "A")], **arguments)


def test_list_message_shape() -> None:
    message = list_message(
        WA_ID,
        "Which messages do you want?",
        "Choose",
        [
            ListSection(
                title="Updates",
                rows=[ListRow("cat:orders", "Order updates", "Shipping and delivery")],
            ),
            ListSection(title="Offers", rows=[ListRow("cat:marketing", "Promotions")]),
        ],
        footer="You can change this any time",
    )
    assert message["interactive"] == {
        "type": "list",
        "body": {"text": "Which messages do you want?"},
        "footer": {"text": "You can change this any time"},
        "action": {
            "button": "Choose",
            "sections": [
                {
                    "title": "Updates",
                    "rows": [
                        {
                            "id": "cat:orders",
                            "title": "Order updates",
                            "description": "Shipping and delivery",
                        }
                    ],
                },
                {"title": "Offers", "rows": [{"id": "cat:marketing", "title": "Promotions"}]},
            ],
        },
    }


def test_single_section_needs_no_title() -> None:
    message = list_message(WA_ID, "Pick", "Open", [ListSection(rows=rows(10))])
    assert "title" not in message["interactive"]["action"]["sections"][0]
    assert len(message["interactive"]["action"]["sections"][0]["rows"]) == 10


@pytest.mark.parametrize(
    ("button", "sections", "match"),
    [
        ("b" * 21, [ListSection(rows=rows(1))], "list button text: at most 20"),
        ("Open", [], "1 to 10 sections allowed, got 0"),
        (
            "Open",
            [ListSection(title=f"S{i}", rows=rows(1, f"s{i}-")) for i in range(11)],
            "1 to 10 sections allowed, got 11",
        ),
        (
            "Open",
            [ListSection(title="A", rows=rows(6, "a")), ListSection(title="B", rows=rows(5, "b"))],
            "at most 10 rows in total allowed, got 11",
        ),
        ("Open", [ListSection(rows=[])], "list section 1: at least one row"),
        (
            "Open",
            [ListSection(rows=rows(1, "a")), ListSection(title="B", rows=rows(1, "b"))],
            "list section 1: a title is required",
        ),
        ("Open", [ListSection(title="t" * 25, rows=rows(1))], "section title: at most 24"),
        ("Open", [ListSection(rows=[ListRow("a", "t" * 25)])], "row title: at most 24"),
        ("Open", [ListSection(rows=[ListRow("a", "A", "d" * 73)])], "row description: at most 72"),
        ("Open", [ListSection(rows=[ListRow("i" * 201, "A")])], "row id: at most 200"),
        (
            "Open",
            [ListSection(title="A", rows=rows(1)), ListSection(title="B", rows=rows(1))],
            "row ids must be unique: 'r0'",
        ),
    ],
)
def test_list_limits(button: str, sections: list[ListSection], match: str) -> None:
    with pytest.raises(MessageBuildError, match=match):
        list_message(WA_ID, "Pick", button, sections)


def test_template_message_shape() -> None:
    message = template_message(
        BSUID,
        "optin_confirmation",
        "pt_BR",
        [body_component("Acme Shoes", "order updates"), quick_reply_component(0, "optin:yes")],
        reply_to="wamid.X",
    )
    assert message == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "recipient": BSUID,
        "type": "template",
        "context": {"message_id": "wamid.X"},
        "template": {
            "name": "optin_confirmation",
            "language": {"policy": "deterministic", "code": "pt_BR"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Acme Shoes"},
                        {"type": "text", "text": "order updates"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": "optin:yes"}],
                },
            ],
        },
    }


def test_template_without_components_has_none() -> None:
    message = template_message(WA_ID, "hello_world", "en")
    assert "components" not in message["template"]


def test_template_components_are_copied() -> None:
    component = {"type": "body", "parameters": []}
    message = template_message(WA_ID, "hello_world", "en", [component])
    message["template"]["components"][0]["type"] = "header"
    assert component["type"] == "body"


@pytest.mark.parametrize(
    ("name", "language", "components", "match"),
    [
        ("Hello World", "en", None, "template name"),
        ("", "en", None, "template name"),
        ("x" * 513, "en", None, "template name: 1 to 512"),
        ("hello_world", "english", None, "template language"),
        ("hello_world", "", None, "template language"),
        ("hello_world", "en", [{"parameters": []}], "template component 1: a 'type'"),
    ],
)
def test_template_limits(
    name: str, language: str, components: list[dict[str, Any]] | None, match: str
) -> None:
    with pytest.raises(MessageBuildError, match=match):
        template_message(WA_ID, name, language, components)


def test_component_helpers_validate() -> None:
    with pytest.raises(MessageBuildError, match="index: 0 to 9"):
        quick_reply_component(10, "p")
    with pytest.raises(MessageBuildError, match="payload: must not be empty"):
        quick_reply_component(0, "")
    with pytest.raises(MessageBuildError, match="template body parameter"):
        body_component("")


def test_message_build_error_is_a_value_error() -> None:
    assert issubclass(MessageBuildError, ValueError)
