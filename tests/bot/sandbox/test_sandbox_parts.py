"""The sandbox's pure parts: the webhook bodies it builds, its signature, the bubbles it draws
from transcript rows, and its CSRF tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.db.models import TranscriptEntry
from bot.graph import (
    ListRow,
    ListSection,
    body_component,
    list_message,
    quick_reply_component,
    reply_buttons_message,
    template_message,
)
from bot.normaliser import normalise
from bot.sandbox.csrf import CsrfGuard
from bot.sandbox.envelope import (
    ActionKind,
    CustomerAction,
    InvalidAction,
    new_wamid,
    parse_action,
    webhook_envelope,
)
from bot.sandbox.relay import LoopbackClient
from bot.sandbox.view import bubble_of, quick_reply_label, settled
from bot.signature import SIGNATURE_HEADER, SignatureCheck, check_signature
from flows import events as ev

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
WA_ID = "12025550101"


def only_event(action: CustomerAction, wamid: str = "wamid.X1") -> ev.Event:
    payload = webhook_envelope(action, wa_id=WA_ID, phone_number_id="sandbox", wamid=wamid, now=NOW)
    events = normalise(json.loads(json.dumps(payload)))
    assert len(events) == 1
    return events[0]


def test_typed_text_is_a_text_message_from_the_customer() -> None:
    event = only_event(parse_action({"type": "text", "text": "  STOP "}))
    assert isinstance(event, ev.TextMessage)
    assert event.body == "STOP"
    assert event.event_id == "msg:wamid.X1"
    assert event.contact is not None and event.contact.wa_id == WA_ID
    assert event.occurred_at == NOW
    assert event.phone_number_id == "sandbox"


@pytest.mark.parametrize("kind", ["button_reply", "list_reply"])
def test_taps_are_interactive_replies_answering_the_bots_message(kind: str) -> None:
    action = parse_action(
        {"type": kind, "id": "optin:yes", "title": "Yes", "context": "wamid.SANDBOX.m1"}
    )
    event = only_event(action)
    assert isinstance(event, ev.InteractiveReply)
    assert (event.reply_kind, event.reply_id, event.title) == (kind, "optin:yes", "Yes")
    assert event.context_wamid == "wamid.SANDBOX.m1"


def test_a_template_quick_reply_is_a_button_message() -> None:
    event = only_event(parse_action({"type": "button", "id": "reconsent:yes", "title": "Yes"}))
    assert isinstance(event, ev.ButtonReply)
    assert (event.payload, event.text) == ("reconsent:yes", "Yes")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"type": "text"}, "`text` is required"),
        ({"type": "text", "text": 5}, "must be text"),
        ({"type": "location"}, "`type` is"),
        ({"type": "list_reply", "id": "x"}, "`title` is required"),
        ({"type": "button_reply", "id": "x" * 257, "title": "t"}, "longer than 256"),
    ],
)
def test_what_no_customer_could_send_is_refused(data: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidAction, match=problem):
        parse_action(data)


@pytest.mark.parametrize("wa_id", ["", "0123456", "+12025550101", "12345", "1" * 16, "12a45678"])
def test_numbers_must_be_wa_id_digits(wa_id: str) -> None:
    with pytest.raises(InvalidAction, match="6 to 15 digits"):
        webhook_envelope(
            CustomerAction(ActionKind.TEXT, text="hi"),
            wa_id=wa_id,
            phone_number_id="sandbox",
            wamid=new_wamid(),
            now=NOW,
        )


def test_wamids_are_unique() -> None:
    assert len({new_wamid() for _ in range(100)}) == 100


def test_the_relay_signs_like_meta_when_there_is_an_app_secret() -> None:
    body = b'{"object":"whatsapp_business_account"}'
    signed = LoopbackClient(None, "s3cret", None).webhook_headers(body)  # type: ignore[arg-type]
    assert check_signature("s3cret", body, signed[SIGNATURE_HEADER]) is SignatureCheck.VALID
    unsigned = LoopbackClient(None, None, None).webhook_headers(body)  # type: ignore[arg-type]
    assert SIGNATURE_HEADER not in unsigned


def entry(direction: str, body: dict[str, Any] | None = None, **fields: Any) -> TranscriptEntry:
    values: dict[str, Any] = {
        "id": 7,
        "contact_id": 1,
        "direction": direction,
        "kind": "text",
        "occurred_at": NOW,
        "status": "sandbox" if direction == "outbound" else None,
        "message_id": "m7" if direction == "outbound" else None,
        "payload_json": json.dumps(body) if body is not None else None,
    }
    values.update(fields)
    return TranscriptEntry(**values)


def test_reply_buttons_become_taps_naming_the_message() -> None:
    body = reply_buttons_message(WA_ID, "Confirm?", [("optin:yes", "Yes"), ("optin:no", "No")])
    bubble = bubble_of(entry("outbound", body, kind="interactive", text="Confirm?"))
    assert bubble is not None
    assert bubble.side == "bot" and bubble.text == "Confirm?" and bubble.time == "12:30"
    assert [(c.kind, c.id, c.title) for c in bubble.buttons] == [
        ("button_reply", "optin:yes", "Yes"),
        ("button_reply", "optin:no", "No"),
    ]
    assert bubble.answer_to == "wamid.SANDBOX.m7"


def test_a_list_keeps_its_button_section_and_rows() -> None:
    body = list_message(
        WA_ID,
        "Choose",
        "Menu",
        [ListSection([ListRow("pref:marketing", "Promotions", "Currently off")], "Categories")],
    )
    bubble = bubble_of(entry("outbound", body, kind="interactive", text="Choose"))
    assert bubble is not None
    assert (bubble.list_button, bubble.list_section) == ("Menu", "Categories")
    assert bubble.rows[0].kind == "list_reply"
    assert (bubble.rows[0].id, bubble.rows[0].description) == ("pref:marketing", "Currently off")


def test_a_template_shows_its_name_parameters_and_quick_replies() -> None:
    body = template_message(
        WA_ID,
        "optin_request",
        "en",
        [
            body_component("Acme", "promotions"),
            quick_reply_component(0, "optin:yes"),
            quick_reply_component(1, "optin:no"),
        ],
    )
    bubble = bubble_of(entry("outbound", body, kind="template", text="Acme would like"))
    assert bubble is not None and bubble.template is not None
    assert (bubble.template.name, bubble.template.language) == ("optin_request", "en")
    assert bubble.template.parameters == ("Acme", "promotions")
    assert [(c.kind, c.id, c.title) for c in bubble.quick_replies] == [
        ("button", "optin:yes", "Yes"),
        ("button", "optin:no", "No"),
    ]


def test_quick_reply_labels_are_readable() -> None:
    assert quick_reply_label("reconsent:yes") == "Yes"
    assert quick_reply_label("stop_promotions") == "Stop promotions"
    assert quick_reply_label("") == ""


def test_a_refused_message_says_why_and_a_tap_bubble_is_marked() -> None:
    refused = bubble_of(
        entry("outbound", {}, status="refused", error_title="consent gate: window_closed")
    )
    assert refused is not None
    assert refused.note == "Not sent: consent gate: window_closed"
    tapped = bubble_of(entry("inbound", kind="interactive", text="Yes", wamid="wamid.A"))
    assert tapped is not None
    assert (tapped.side, tapped.tapped, tapped.text, tapped.wamid) == (
        "customer",
        True,
        "Yes",
        "wamid.A",
    )
    assert bubble_of(entry("status")) is None


def test_the_cursor_stops_before_a_message_still_queued() -> None:
    rows = [
        entry("inbound", id=1),
        entry("outbound", {}, id=2, status="sandbox", message_id="a"),
        entry("outbound", {}, id=3, status="queued", message_id="b"),
        entry("inbound", id=4),
    ]
    assert [r.id for r in settled(rows)] == [1, 2]


def test_csrf_tokens_are_bound_to_the_session_and_the_process_key() -> None:
    guard = CsrfGuard(b"k" * 32)
    assert guard.token_for("a") == guard.token_for("a")
    assert guard.token_for("a") != guard.token_for("b")
    assert CsrfGuard(b"j" * 32).token_for("a") != guard.token_for("a")


def test_a_template_labelled_by_the_service_shows_no_duplicate_text() -> None:
    body = template_message(WA_ID, "reconsent_request", "en", [quick_reply_component(0, "x:yes")])
    label = "[template reconsent_request (en): re-consent, campaign 1]"
    bubble = bubble_of(entry("outbound", body, kind="template", text=label))
    assert bubble is not None and bubble.template is not None
    assert bubble.text == ""
