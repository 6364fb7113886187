"""What an agent can download about one contact: the transcript (text or JSON) and the proof
of consent (JSON).

The proof is the contact's whole ledger, every row with all its columns, its evidence and its
hash, the current state per category, the identity history and the verdict of the hash chains:
what "show me that she said YES" needs, checkable by anyone with the rows (`optin-bot
verify-ledger` recomputes the same chains). The transcript is the console's timeline without its
page limit.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from bot.console.display import mask_number, when
from bot.console.timeline import EXPORT_LIMIT, Timeline
from bot.db.consent_models import ConsentEvent
from bot.db.models import Contact
from bot.services import Services

LEDGER_PAGE: Final = 1000


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _row_json(row: ConsentEvent) -> dict[str, Any]:
    data = {name: _plain(value) for name, value in row.model_dump().items()}
    text = data.get("evidence_json")
    try:
        data["evidence"] = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        data["evidence"] = text
    data["hash_valid"] = row.expected_hash() == row.hash
    return data


async def ledger_rows(services: Services, contact_id: int) -> list[ConsentEvent]:
    rows: list[ConsentEvent] = []
    while True:
        after = rows[-1].id if rows else None
        page = await services.ledger.events(contact_id, limit=LEDGER_PAGE, after_id=after)
        rows.extend(page)
        if len(page) < LEDGER_PAGE:
            return rows


async def proof_document(services: Services, contact: Contact, *, agent: str) -> dict[str, Any]:
    """The proof of consent of one contact, as JSON-ready data."""
    assert contact.id is not None
    rows = await ledger_rows(services, contact.id)
    report = await services.ledger.verify(contact.id)
    states = await services.ledger.current(contact.id)
    identities = await services.contacts.identities(contact.id)
    return {
        "contact": {
            "id": contact.id,
            "wa_id": contact.wa_id,
            "user_id": contact.user_id,
            "username": contact.username,
            "profile_name": contact.profile_name,
            "locale": contact.locale,
        },
        "identities": [
            {
                "kind": i.kind,
                "value": i.value,
                "valid_from": _plain(i.valid_from),
                "valid_to": _plain(i.valid_to),
            }
            for i in identities
        ],
        "consent": {
            name: {k: _plain(v) for k, v in asdict(view).items()}
            for name, view in sorted(states.items())
        },
        "events": [_row_json(row) for row in rows],
        "verification": {
            "ok": report.ok,
            "chains_checked": report.chains_checked,
            "rows_checked": report.rows_checked,
            "problems": [{k: _plain(v) for k, v in asdict(p).items()} for p in report.problems],
        },
        "business_name": services.settings.business_name,
        "generated_at": datetime.now(UTC).isoformat(),
        "generated_by": agent,
    }


def transcript_json(contact: Contact, timeline: Timeline) -> dict[str, Any]:
    return {
        "contact": {
            "id": contact.id,
            "number": mask_number(contact.wa_id),
            "user_id": contact.user_id,
            "profile_name": contact.profile_name,
        },
        "truncated": timeline.truncated,
        "limit": EXPORT_LIMIT,
        "items": [item.as_json() for item in timeline.items],
        "generated_at": datetime.now(UTC).isoformat(),
    }


def transcript_text(contact: Contact, timeline: Timeline, *, business_name: str) -> str:
    who = contact.profile_name or contact.username or contact.user_id or ""
    header = [
        f"Transcript of contact {contact.id} {who} {mask_number(contact.wa_id)}".rstrip(),
        f"Business: {business_name}. Generated {when(datetime.now(UTC))}.",
    ]
    if timeline.truncated:
        header.append(f"Only the newest {EXPORT_LIMIT} items are included.")
    body = [item.as_text() for item in timeline.items]
    return "\n".join(header) + "\n\n" + "\n\n".join(body) + "\n"
