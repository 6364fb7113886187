"""What agents did in the console, kept in capped Redis streams.

Every reveal of a number, every download of a transcript or proof, every agent action and every
login goes to ``optin:console:audit`` (the last ``KEPT_ENTRIES``); entries about a contact also go
to that contact's own short stream, which its page shows ("who looked at this number, when").
Consent changes themselves are in the ledger; this log is about access.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from redis.asyncio import Redis

from bot import redis_keys

AUDIT_STREAM: Final = redis_keys.CONSOLE_AUDIT.name
KEPT_ENTRIES: Final = 100_000
KEPT_PER_CONTACT: Final = 200


def contact_audit_stream(contact_id: int) -> str:
    return redis_keys.CONSOLE_AUDIT_OF_CONTACT.format(contact_id=contact_id)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    agent: str
    action: str
    contact_id: int | None
    detail: Mapping[str, str]


def _entry(fields: Mapping[str, str]) -> AuditEntry:
    known = {"at", "agent", "action", "contact_id"}
    contact = fields.get("contact_id") or ""
    return AuditEntry(
        at=datetime.fromisoformat(fields["at"]),
        agent=fields.get("agent", ""),
        action=fields.get("action", ""),
        contact_id=int(contact) if contact.isdigit() else None,
        detail={k: v for k, v in fields.items() if k not in known},
    )


class AuditLog:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def record(
        self,
        *,
        agent: str,
        action: str,
        contact_id: int | None = None,
        detail: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> None:
        fields: dict[Any, Any] = {**(detail or {})}
        fields.update(
            {
                "at": (now or datetime.now(UTC)).isoformat(),
                "agent": agent,
                "action": action,
                "contact_id": "" if contact_id is None else str(contact_id),
            }
        )
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(AUDIT_STREAM, fields, maxlen=KEPT_ENTRIES, approximate=True)
        if contact_id is not None:
            pipe.xadd(
                contact_audit_stream(contact_id),
                fields,
                maxlen=KEPT_PER_CONTACT,
                approximate=False,
            )
        await pipe.execute()

    async def for_contact(self, contact_id: int, *, limit: int = 20) -> list[AuditEntry]:
        """The newest entries about one contact, newest first."""
        rows: Any = await self._redis.xrevrange(contact_audit_stream(contact_id), count=limit)
        return [_entry(fields) for _, fields in rows or []]

    async def latest(self, *, limit: int = 50) -> list[AuditEntry]:
        """The newest entries of the whole console, newest first."""
        rows: Any = await self._redis.xrevrange(AUDIT_STREAM, count=limit)
        return [_entry(fields) for _, fields in rows or []]
