"""The events a business's CRM receives, as JSON: `consent.changed` and `message.received`.

Both are built from what is already durable (a consent ledger row, a typed inbound message), so
the body of an event is a fact, never a guess, and building it twice gives the same text. Event
ids are deterministic (`consent:<ledger row id>`, `message:<wamid>`): a re-announcement after a
crash is recognised as the same event by the queue here and by the receiver there.

Every body has the same envelope:

    {"id", "type", "version", "occurred_at", "phone_number_id", "contact": {...}, "data": {...}}

`consent.changed` carries the ledger row (category, action, the status it leads to, source,
method, evidence, policy version, and the row's id, chain position and hash, so the receiver
can check it against `GET /v1/contacts/{contact}/ledger`). `message.received` carries an inbound
message the bot did not answer itself (anything but keywords, buttons and flow replies).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from bot.db.consent_models import ConsentEvent
from bot.db.models import Contact
from flows import events as ev
from flows.consent import ConsentAction, ConsentStatus, status_after

CONSENT_CHANGED: Final = "consent.changed"
MESSAGE_RECEIVED: Final = "message.received"
EVENT_TYPES: Final = (CONSENT_CHANGED, MESSAGE_RECEIVED)
#: Bumped when a field changes meaning or disappears (new fields may appear at any time).
PAYLOAD_VERSION: Final = 1

#: Actions whose status does not depend on what came before.
_FIXED_STATUS: Final[Mapping[ConsentAction, ConsentStatus]] = {
    ConsentAction.GRANTED: ConsentStatus.OPTED_IN,
    ConsentAction.RECONFIRMED: ConsentStatus.OPTED_IN,
    ConsentAction.WITHDRAWN: ConsentStatus.OPTED_OUT,
    ConsentAction.LAPSED: ConsentStatus.LAPSED,
}


@dataclass(frozen=True, slots=True)
class CrmEvent:
    """One event for the CRM: its id, whom it is about (for ordering and the delivery log) and
    the exact JSON text that is POSTed and signed."""

    event_id: str
    type: str
    contact_id: int
    wa_id: str | None
    user_id: str | None
    body: str


def consent_event_id(row_id: int) -> str:
    return f"consent:{row_id}"


def message_event_id(event: ev.MessageEvent) -> str:
    # A `user_id_update` has no wamid; its own event id is just as stable.
    return f"message:{event.wamid}" if event.wamid else f"message:{event.event_id}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "wa_id": contact.wa_id,
        "user_id": contact.user_id,
        "parent_user_id": contact.parent_user_id,
        "username": contact.username,
        "profile_name": contact.profile_name,
    }


def _envelope(
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    phone_number_id: str,
    contact: Contact,
    data: Mapping[str, Any],
) -> CrmEvent:
    if contact.id is None:
        raise ValueError("the contact has not been stored yet")
    body = {
        "id": event_id,
        "type": event_type,
        "version": PAYLOAD_VERSION,
        "occurred_at": _iso(occurred_at),
        "phone_number_id": phone_number_id,
        "contact": contact_json(contact),
        "data": dict(data),
    }
    return CrmEvent(
        event_id=event_id,
        type=event_type,
        contact_id=contact.id,
        wa_id=contact.wa_id,
        user_id=contact.user_id,
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False),
    )


def fixed_status(action: ConsentAction) -> ConsentStatus | None:
    """The status an action leads to whatever came before; None when it depends on history
    (`pending`, `declined`, `expired`)."""
    return _FIXED_STATUS.get(action)


def statuses_after(history: Sequence[ConsentEvent]) -> dict[int, ConsentStatus]:
    """The status each row led to, folding `status_after` over a contact's rows in ledger order
    (per category, from `none`), keyed by row id."""
    current: dict[str, tuple[ConsentStatus, ConsentStatus | None]] = {}
    result: dict[int, ConsentStatus] = {}
    for row in history:
        status, before = current.get(row.category, (ConsentStatus.NONE, None))
        status, before = status_after(ConsentAction(row.action), status, before)
        current[row.category] = (status, before)
        if row.id is not None:
            result[row.id] = status
    return result


def consent_changed(
    contact: Contact, row: ConsentEvent, status: ConsentStatus, *, phone_number_id: str
) -> CrmEvent:
    """`consent.changed` for one ledger row; `status` is the category's status after it."""
    if row.id is None:
        raise ValueError("the ledger row has not been stored yet")
    data = {
        "category": row.category,
        "action": row.action,
        "status": status.value,
        "source": row.source,
        "method": row.method,
        # None once the contact's personal data was erased (the row's hash still verifies).
        "evidence": json.loads(row.evidence_json) if row.evidence_json is not None else None,
        "business_name": row.business_name,
        "policy_version": row.policy_version,
        "recorded_at": _iso(row.recorded_at),
        "ledger": {
            "id": row.id,
            "chain": row.chain,
            "seq": row.seq,
            "hash": row.hash,
            "prev_hash": row.prev_hash,
        },
    }
    return _envelope(
        consent_event_id(row.id), CONSENT_CHANGED, row.occurred_at, phone_number_id, contact, data
    )


def _message_fields(event: ev.MessageEvent) -> tuple[str, str | None, str | None, dict[str, Any]]:
    """(message type, text, caption, type-specific details) of an inbound message."""
    details: dict[str, Any]
    match event:
        case ev.TextMessage():
            return "text", event.body, None, {}
        case ev.ButtonReply():
            return "button", event.text, None, {"payload": event.payload}
        case ev.InteractiveReply():
            details = {
                "reply_kind": event.reply_kind,
                "reply_id": event.reply_id,
                "description": event.description,
            }
            if event.response_json is not None:
                details["response"] = json.loads(event.response_json)
            return "interactive", event.title, None, details
        case ev.Reaction():
            return (
                "reaction",
                None,
                None,
                {"emoji": event.emoji, "target_wamid": event.target_wamid},
            )
        case ev.MediaMessage():
            details = {
                "media_id": event.media_id,
                "mime_type": event.mime_type,
                "filename": event.filename,
                "sha256": event.sha256,
                "voice": event.voice,
            }
            return event.media_type, None, event.caption, details
        case ev.LocationMessage():
            details = {
                "latitude": event.latitude,
                "longitude": event.longitude,
                "name": event.name,
                "address": event.address,
            }
            return "location", None, None, details
        case ev.ContactsMessage():
            return "contacts", None, None, {"names": list(event.names)}
        case ev.OrderMessage():
            details = {"catalog_id": event.catalog_id, "item_count": event.item_count}
            return "order", event.text, None, details
        case ev.SystemChange():
            details = {
                "system_type": event.system_type,
                "new_wa_id": event.new_wa_id,
                "new_user_id": event.new_user_id,
            }
            return "system", event.body, None, details
        case ev.UnsupportedMessage():
            errors = [
                {"code": e.code, "title": e.title, "message": e.message} for e in event.errors
            ]
            return "unsupported", None, None, {"errors": errors}
    return type(event).__name__, None, None, {}


def message_received(contact: Contact, event: ev.Event, *, phone_number_id: str) -> CrmEvent | None:
    """`message.received` for an inbound message; None for anything that is not a message."""
    if not isinstance(event, ev.MessageEvent):
        return None
    message_type, text, caption, details = _message_fields(event)
    data = {
        "wamid": event.wamid,
        "message_type": message_type,
        "text": text,
        "caption": caption,
        "context_wamid": event.context_wamid,
        "group_id": event.group_id,
        "details": details,
    }
    return _envelope(
        message_event_id(event),
        MESSAGE_RECEIVED,
        event.occurred_at,
        event.phone_number_id or phone_number_id,
        contact,
        data,
    )
