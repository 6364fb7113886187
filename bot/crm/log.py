"""The delivery log: what happened to each CRM event, readable through the API.

One Redis hash per event id holds the delivery's state (`pending` until the first attempt
answers, `failed` while it is being retried, then `delivered` or `dead`), the number of
attempts, the receiver's last status code or error and the times of the first and last
attempts. The hash also makes enqueueing idempotent: an event id that has a log entry is not
queued again. Entries expire `DELIVERY_LOG_TTL_SECONDS` after their last change, well after the
retry window, so a re-announcement of an old event is still recognised.

Listing goes through index streams (all events, and per contact), newest first, capped in
length; the cursor of a page is the index position to continue from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bot import redis_keys

DELIVERY_LOG_TTL_SECONDS: Final = 14 * 24 * 3600
LOG_INDEX_STREAM: Final = redis_keys.CRM_LOG_INDEX.name
LOG_INDEX_MAXLEN: Final = 100_000
CONTACT_INDEX_MAXLEN: Final = 1_000
#: Index entries one listing request reads at most while looking for matches of a filter.
SCAN_BUDGET: Final = 5_000
_ERROR_CHARS: Final = 500


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # queued, not attempted (or the first attempt has not answered)
    FAILED = "failed"  # the last attempt failed; retried at `next_attempt_at`
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # given up (see `DeadReason`), kept on the dead-letter stream


class DeadReason(StrEnum):
    REJECTED = "rejected"  # a 4xx other than 408, 410 and 429: the receiver refuses this event
    GONE = "gone"  # 410: the receiver says the endpoint is gone; delivery is paused
    EXPIRED = "expired"  # still failing at the end of the retry window
    MALFORMED = "malformed"  # the queued entry could not be read


def delivery_key(event_id: str) -> str:
    return redis_keys.CRM_DELIVERY.format(event_id=event_id)


def contact_index(contact_id: int) -> str:
    return redis_keys.CRM_LOG_CONTACT_INDEX.format(contact_id=contact_id)


def _ms(value: str | None) -> int | None:
    return int(value) if value else None


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event's delivery, as logged; times are Unix milliseconds."""

    event_id: str
    type: str
    status: DeliveryStatus
    attempts: int
    contact_id: int | None
    wa_id: str | None
    user_id: str | None
    enqueued_at: int | None
    first_attempt_at: int | None
    last_attempt_at: int | None
    next_attempt_at: int | None
    finished_at: int | None
    last_status_code: int | None
    last_error: str | None
    dead_reason: DeadReason | None

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> Delivery:
        status = DeliveryStatus(fields.get("status") or DeliveryStatus.PENDING)
        return cls(
            event_id=fields["event_id"],
            type=fields.get("type", ""),
            status=status,
            attempts=int(fields.get("attempts") or 0),
            contact_id=int(fields["contact_id"]) if fields.get("contact_id") else None,
            wa_id=fields.get("wa_id") or None,
            user_id=fields.get("user_id") or None,
            enqueued_at=_ms(fields.get("enqueued_at")),
            first_attempt_at=_ms(fields.get("first_attempt_at")),
            last_attempt_at=_ms(fields.get("last_attempt_at")),
            next_attempt_at=_ms(fields.get("next_attempt_at"))
            if status is DeliveryStatus.FAILED
            else None,
            finished_at=_ms(fields.get("finished_at")),
            last_status_code=int(fields["last_status_code"])
            if fields.get("last_status_code")
            else None,
            last_error=fields.get("last_error") or None,
            dead_reason=DeadReason(fields["dead_reason"]) if fields.get("dead_reason") else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "status": self.status.value,
            "attempts": self.attempts,
            "contact": {"id": self.contact_id, "wa_id": self.wa_id, "user_id": self.user_id},
            "enqueued_at": iso_ms(self.enqueued_at),
            "first_attempt_at": iso_ms(self.first_attempt_at),
            "last_attempt_at": iso_ms(self.last_attempt_at),
            "next_attempt_at": iso_ms(self.next_attempt_at),
            "finished_at": iso_ms(self.finished_at),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "dead_reason": self.dead_reason.value if self.dead_reason else None,
        }


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[Delivery]
    next_cursor: str | None


def _before(stream_id: str) -> str:
    """The greatest stream id below `stream_id` (an exclusive XREVRANGE bound on any Redis)."""
    ms_text, _, seq_text = stream_id.partition("-")
    ms, seq = int(ms_text), int(seq_text or 0)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    if ms == 0:
        return ""
    return f"{ms - 1}-18446744073709551615"


_MAX_U64 = 2**64 - 1


def is_cursor(value: str) -> bool:
    """A stream id Redis accepts: two unsigned 64-bit numbers (a bigger one made it answer 500)."""
    ms, sep, seq = value.partition("-")
    return (
        bool(sep)
        and ms.isdigit()
        and seq.isdigit()
        and int(ms) <= _MAX_U64
        and int(seq) <= _MAX_U64
    )


class DeliveryLog:
    """Reads and writes the log entries; the deliverer writes, the API reads."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, event_id: str) -> Delivery | None:
        fields: Any = await self._redis.hgetall(delivery_key(event_id))
        return Delivery.from_hash(fields) if fields.get("event_id") else None

    async def attempt_started(self, event_id: str, attempt: int, at_ms: int) -> None:
        key = delivery_key(event_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(key, "first_attempt_at", at_ms)
        pipe.hset(
            key, mapping={"event_id": event_id, "attempts": attempt, "last_attempt_at": at_ms}
        )
        pipe.expire(key, DELIVERY_LOG_TTL_SECONDS)
        await pipe.execute()

    async def attempt_failed(
        self, event_id: str, *, status_code: int | None, error: str | None, next_attempt_ms: int
    ) -> None:
        key = delivery_key(event_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "status": DeliveryStatus.FAILED.value,
                "last_status_code": "" if status_code is None else status_code,
                "last_error": (error or "")[:_ERROR_CHARS],
                "next_attempt_at": next_attempt_ms,
            },
        )
        pipe.expire(key, DELIVERY_LOG_TTL_SECONDS)
        await pipe.execute()

    @staticmethod
    def finish(
        pipe: Pipeline,
        event_id: str,
        status: DeliveryStatus,
        *,
        at_ms: int,
        status_code: int | None,
        error: str | None = None,
        dead_reason: DeadReason | None = None,
    ) -> None:
        """Queue the final state of a delivery on `pipe` (with the stream commands it goes with)."""
        key = delivery_key(event_id)
        pipe.hset(
            key,
            mapping={
                "event_id": event_id,
                "status": status.value,
                "finished_at": at_ms,
                "last_status_code": "" if status_code is None else status_code,
                "last_error": (error or "")[:_ERROR_CHARS],
                "dead_reason": dead_reason.value if dead_reason else "",
                "next_attempt_at": "",
            },
        )
        pipe.expire(key, DELIVERY_LOG_TTL_SECONDS)

    async def page(
        self,
        *,
        contact_id: int | None = None,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> DeliveryPage:
        """Newest first; `cursor` continues a previous page. A page may hold fewer than `limit`
        entries (filters) and still have a `next_cursor`: read until it is None."""
        index = contact_index(contact_id) if contact_id is not None else LOG_INDEX_STREAM
        upper = "+" if cursor is None else _before(cursor)
        batch = max(limit, 100) if status is not None else limit
        found: list[Delivery] = []
        last_id: str | None = None
        scanned = 0
        while upper and scanned < SCAN_BUDGET:
            entries: Any = await self._redis.xrevrange(index, max=upper, min="-", count=batch)
            pipe = self._redis.pipeline(transaction=False)
            for _, fields in entries:
                pipe.hgetall(delivery_key(fields.get("id", "")))
            hashes: list[dict[str, str]] = await pipe.execute() if entries else []
            for (entry_id, _), fields in zip(entries, hashes, strict=True):
                scanned += 1
                last_id, upper = entry_id, _before(entry_id)
                if not fields.get("event_id"):
                    continue  # expired
                delivery = Delivery.from_hash(fields)
                if status is None or delivery.status is status:
                    found.append(delivery)
                    if len(found) == limit:
                        return DeliveryPage(found, last_id)
            if len(entries) < batch:
                return DeliveryPage(found, None)
        return DeliveryPage(found, last_id if upper else None)

    async def scrub_contact(self, contact_id: int) -> int:
        """Forget whom a contact's log entries were about (erasure): their identifiers go,
        the delivery facts stay until they expire. Returns the number of entries scrubbed."""
        index = contact_index(contact_id)
        entries: Any = await self._redis.xrange(index)
        pipe = self._redis.pipeline(transaction=True)
        for _, fields in entries:
            pipe.hdel(delivery_key(fields.get("id", "")), "wa_id", "user_id")
        pipe.delete(index)
        await pipe.execute()
        return len(entries)
