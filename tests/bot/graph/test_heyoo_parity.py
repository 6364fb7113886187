"""Our builders carry every field heyoo 0.1.2 sends for the same message, with the same values.

heyoo is a widely used (synchronous) Cloud API wrapper; capturing what it would POST gives an
independent reference for the wire format. Our bodies may add fields heyoo lacks
(`recipient_type` on templates, `language.policy`), never drop or change one of heyoo's.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.graph import (
    ListRow,
    ListSection,
    body_component,
    list_message,
    quick_reply_component,
    reply_buttons_message,
    template_message,
    text_message,
)

heyoo = pytest.importorskip("heyoo")

WA_ID = "15551234567"


class _FakeResponse:
    status_code = 200

    def json(self) -> dict[str, Any]:
        return {"messaging_product": "whatsapp", "messages": [{"id": "wamid.HEYOO"}]}


@pytest.fixture
def heyoo_sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The JSON bodies heyoo posts, captured instead of sent."""
    captured: list[dict[str, Any]] = []

    def fake_post(url: str, **kwargs: Any) -> _FakeResponse:
        assert url == "https://graph.facebook.com/v14.0/106540352242922/messages"
        captured.append(kwargs["json"])
        return _FakeResponse()

    monkeypatch.setattr(heyoo.requests, "post", fake_post)
    return captured


@pytest.fixture
def messenger() -> Any:
    return heyoo.WhatsApp(token="token", phone_number_id="106540352242922")


def missing_from(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where `theirs` is not contained in `ours` (dicts: every key, recursively; lists: same
    length, item by item; anything else: equal)."""
    if isinstance(theirs, dict):
        if not isinstance(ours, dict):
            return [f"{path or '(body)'}: expected an object, got {ours!r}"]
        problems: list[str] = []
        for key, value in theirs.items():
            where = f"{path}.{key}" if path else key
            if key not in ours:
                problems.append(f"{where}: missing")
            else:
                problems.extend(missing_from(ours[key], value, where))
        return problems
    if isinstance(theirs, list):
        if not isinstance(ours, list) or len(ours) != len(theirs):
            return [f"{path}: expected {theirs!r}, got {ours!r}"]
        return [
            problem
            for index, (mine, other) in enumerate(zip(ours, theirs, strict=True))
            for problem in missing_from(mine, other, f"{path}[{index}]")
        ]
    return [] if ours == theirs else [f"{path}: expected {theirs!r}, got {ours!r}"]


def test_subset_check_reports_differences() -> None:
    theirs = {"a": 1, "b": {"c": [1, {"d": 2}]}}
    assert missing_from({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}, "z": 0}, theirs) == []
    assert missing_from({"b": {"c": [1, {"d": 3}]}}, theirs) == [
        "a: missing",
        "b.c[1].d: expected 2, got 3",
    ]


def test_text_message_parity(messenger: Any, heyoo_sent: list[dict[str, Any]]) -> None:
    messenger.send_message("Reply YES to get order updates", WA_ID, preview_url=False)
    ours = text_message(WA_ID, "Reply YES to get order updates")
    assert missing_from(ours, heyoo_sent[0]) == []


def test_reply_to_message_parity(messenger: Any, heyoo_sent: list[dict[str, Any]]) -> None:
    messenger.reply_to_message("wamid.ABC", WA_ID, "Thanks!", preview_url=True)
    ours = text_message(WA_ID, "Thanks!", preview_url=True, reply_to="wamid.ABC")
    assert missing_from(ours, heyoo_sent[0]) == []


def test_reply_buttons_parity(messenger: Any, heyoo_sent: list[dict[str, Any]]) -> None:
    interactive = {
        "type": "button",
        "body": {"text": "Do you want order updates on WhatsApp?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "optin:yes", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "optin:no", "title": "No"}},
            ]
        },
    }
    messenger.send_reply_button(interactive, WA_ID)
    ours = reply_buttons_message(
        WA_ID,
        "Do you want order updates on WhatsApp?",
        [("optin:yes", "Yes"), ("optin:no", "No")],
    )
    assert missing_from(ours, heyoo_sent[0]) == []


def test_list_parity(messenger: Any, heyoo_sent: list[dict[str, Any]]) -> None:
    messenger.send_button(
        {
            "header": "Preferences",
            "body": "Which messages do you want?",
            "footer": "Reply STOP to opt out",
            "action": {
                "button": "Choose",
                "sections": [
                    {
                        "title": "Updates",
                        "rows": [
                            {"id": "cat:orders", "title": "Orders", "description": "Shipping"},
                            {"id": "cat:reminders", "title": "Reminders"},
                        ],
                    }
                ],
            },
        },
        WA_ID,
    )
    ours = list_message(
        WA_ID,
        "Which messages do you want?",
        "Choose",
        [
            ListSection(
                title="Updates",
                rows=[
                    ListRow("cat:orders", "Orders", "Shipping"),
                    ListRow("cat:reminders", "Reminders"),
                ],
            )
        ],
        header="Preferences",
        footer="Reply STOP to opt out",
    )
    assert missing_from(ours, heyoo_sent[0]) == []


def test_template_parity(messenger: Any, heyoo_sent: list[dict[str, Any]]) -> None:
    components = [body_component("Acme Shoes"), quick_reply_component(0, "optin:yes")]
    messenger.send_template("optin_confirmation", WA_ID, components, lang="en_US")
    ours = template_message(WA_ID, "optin_confirmation", "en_US", components)

    assert missing_from(ours, heyoo_sent[0]) == []
    assert ours["recipient_type"] == "individual"  # heyoo omits it; Meta's schema requires it
    assert ours["template"]["language"]["policy"] == "deterministic"
