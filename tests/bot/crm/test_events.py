"""The CRM event bodies, the status each ledger row leads to, and how an answer is read."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import jsonschema
import pytest

from bot.crm.attempt import RetryPolicy, Verdict, classify, parse_retry_after, signed_headers
from bot.crm.event_schemas import EVENT_SCHEMAS
from bot.crm.events import (
    consent_changed,
    fixed_status,
    message_received,
    statuses_after,
)
from bot.db.consent_models import ConsentEvent
from bot.db.models import Contact
from bot.signature import SignatureCheck, check_signature
from flows import events as ev
from flows.consent import ConsentAction, ConsentStatus

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
CONTACT = Contact(id=7, wa_id="15550001111", user_id="US.1349", username="ana", profile_name="Ana")


def row(
    row_id: int, category: str, action: ConsentAction, *, seq: int | None = None
) -> ConsentEvent:
    return ConsentEvent(
        id=row_id,
        contact_id=7,
        chain=7,
        seq=seq or row_id,
        category=category,
        action=action.value,
        source="whatsapp_thread",
        method="keyword",
        evidence_json='{"text":"STOP","wamid":"wamid.1"}',
        evidence_digest="d" * 64,
        business_name="Acme Shoes",
        policy_version="3",
        occurred_at=AT,
        recorded_at=AT + timedelta(seconds=1),
        event_key=f"key-{row_id}",
        prev_hash="0" * 64,
        hash="a" * 64,
    )


def validate(body: str) -> dict[str, object]:
    payload = json.loads(body)
    jsonschema.validate(
        payload, EVENT_SCHEMAS[payload["type"]], format_checker=jsonschema.FormatChecker()
    )
    return dict(payload)


def test_consent_changed_carries_the_ledger_row() -> None:
    event = consent_changed(
        CONTACT,
        row(42, "marketing", ConsentAction.WITHDRAWN),
        ConsentStatus.OPTED_OUT,
        phone_number_id="106540352242922",
    )
    assert (event.event_id, event.type, event.contact_id) == ("consent:42", "consent.changed", 7)
    body = validate(event.body)
    assert body["id"] == "consent:42" and body["version"] == 1
    assert body["occurred_at"] == "2026-03-01T09:30:00+00:00"
    assert body["contact"] == {
        "id": 7,
        "wa_id": "15550001111",
        "user_id": "US.1349",
        "parent_user_id": None,
        "username": "ana",
        "profile_name": "Ana",
    }
    assert body["data"] == {
        "category": "marketing",
        "action": "withdrawn",
        "status": "opted_out",
        "source": "whatsapp_thread",
        "method": "keyword",
        "evidence": {"text": "STOP", "wamid": "wamid.1"},
        "business_name": "Acme Shoes",
        "policy_version": "3",
        "recorded_at": "2026-03-01T09:30:01+00:00",
        "ledger": {"id": 42, "chain": 7, "seq": 42, "hash": "a" * 64, "prev_hash": "0" * 64},
    }
    # The same row always gives the same text: a re-announcement is byte for byte the same.
    again = consent_changed(
        CONTACT,
        row(42, "marketing", ConsentAction.WITHDRAWN),
        ConsentStatus.OPTED_OUT,
        phone_number_id="106540352242922",
    )
    assert again == event


def test_an_erased_row_has_no_evidence() -> None:
    erased = row(5, "marketing", ConsentAction.GRANTED)
    erased.evidence_json = None
    body = validate(
        consent_changed(CONTACT, erased, ConsentStatus.OPTED_IN, phone_number_id="1").body
    )
    assert body["data"]["evidence"] is None  # type: ignore[index]


def test_the_status_after_each_row_follows_the_projection_rule() -> None:
    history = [
        row(1, "marketing", ConsentAction.PENDING),
        row(2, "marketing", ConsentAction.EXPIRED),  # back to none
        row(3, "reminders", ConsentAction.WITHDRAWN),
        row(4, "reminders", ConsentAction.PENDING),
        row(5, "reminders", ConsentAction.DECLINED),  # a STOP is never erased by a request
        row(6, "marketing", ConsentAction.GRANTED),
        row(7, "marketing", ConsentAction.PENDING),  # a request never downgrades an opt-in
    ]
    assert statuses_after(history) == {
        1: ConsentStatus.PENDING,
        2: ConsentStatus.NONE,
        3: ConsentStatus.OPTED_OUT,
        4: ConsentStatus.PENDING,
        5: ConsentStatus.OPTED_OUT,
        6: ConsentStatus.OPTED_IN,
        7: ConsentStatus.OPTED_IN,
    }
    assert fixed_status(ConsentAction.WITHDRAWN) is ConsentStatus.OPTED_OUT
    assert fixed_status(ConsentAction.LAPSED) is ConsentStatus.LAPSED
    assert fixed_status(ConsentAction.PENDING) is None


def message(cls: type[ev.MessageEvent], **fields: object) -> Any:
    return cls(
        event_id="msg:wamid.X",
        phone_number_id="106540352242922",
        occurred_at=AT,
        contact=ev.ContactRef(wa_id="15550001111", user_id=None),
        wamid="wamid.X",
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("event", "kind", "text", "caption", "details"),
    [
        (message(ev.TextMessage, body="hello"), "text", "hello", None, {}),
        (
            message(ev.MediaMessage, media_type="image", media_id="m1", caption="my receipt"),
            "image",
            None,
            "my receipt",
            {"media_id": "m1", "mime_type": None, "filename": None, "sha256": None, "voice": False},
        ),
        (
            message(ev.LocationMessage, latitude=38.7, longitude=-9.1, name="Shop"),
            "location",
            None,
            None,
            {"latitude": 38.7, "longitude": -9.1, "name": "Shop", "address": None},
        ),
        (
            message(ev.Reaction, target_wamid="wamid.Y", emoji="👍"),
            "reaction",
            None,
            None,
            {"emoji": "👍", "target_wamid": "wamid.Y"},
        ),
        (
            message(ev.ButtonReply, payload="P", text="Talk to us"),
            "button",
            "Talk to us",
            None,
            {"payload": "P"},
        ),
        (
            message(ev.ContactsMessage, names=("Bo", "Cy")),
            "contacts",
            None,
            None,
            {"names": ["Bo", "Cy"]},
        ),
        (
            message(ev.OrderMessage, catalog_id="c1", item_count=2, text="asap"),
            "order",
            "asap",
            None,
            {"catalog_id": "c1", "item_count": 2},
        ),
    ],
)
def test_message_received_for_each_kind_of_message(
    event: ev.InboundMessage,
    kind: str,
    text: str | None,
    caption: str | None,
    details: dict[str, object],
) -> None:
    crm_event = message_received(CONTACT, event, phone_number_id="ignored")
    assert crm_event is not None and crm_event.event_id == "message:wamid.X"
    body = validate(crm_event.body)
    assert body["phone_number_id"] == "106540352242922"
    assert body["data"] == {
        "wamid": "wamid.X",
        "message_type": kind,
        "text": text,
        "caption": caption,
        "context_wamid": None,
        "group_id": None,
        "details": details,
    }


def test_only_messages_become_message_received() -> None:
    status = ev.StatusUpdate(
        event_id="status:wamid.X:read",
        phone_number_id="1",
        occurred_at=AT,
        contact=ev.ContactRef(wa_id="15550001111", user_id=None),
        wamid="wamid.X",
        status="read",
        recipient=ev.ContactRef(wa_id="15550001111", user_id=None),
    )
    assert message_received(CONTACT, status, phone_number_id="1") is None


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (400, Verdict.REJECTED),
        (401, Verdict.REJECTED),
        (404, Verdict.REJECTED),
        (422, Verdict.REJECTED),
        (410, Verdict.GONE),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (302, Verdict.RETRY),
    ],
)
def test_what_an_answer_means(status: int, verdict: Verdict) -> None:
    assert classify(status) is verdict


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = AT.timestamp()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(format_datetime(AT + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(AT - timedelta(hours=1), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_jittered_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=600.0, give_up_after=3600.0)
    rng = random.Random(7)
    for attempt in range(1, 40):
        delay = policy.delay(attempt, None, rng)
        assert 0 <= delay <= min(600.0, 2 ** (attempt - 1))
    assert policy.delay(1, 90.0, rng) >= 90.0
    assert policy.delay(1, 10**9, rng) == 3600.0  # never past the retry window


def test_the_signature_is_metas_scheme_over_the_raw_body() -> None:
    body = b'{"id":"consent:1"}'
    headers = signed_headers("s3cret", "consent:1", body, 3)
    assert check_signature("s3cret", body, headers["X-Optin-Signature-256"]) is SignatureCheck.VALID
    assert headers["X-Optin-Event-Id"] == "consent:1"
    assert headers["X-Optin-Delivery-Attempt"] == "3"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("optin-bot/")
