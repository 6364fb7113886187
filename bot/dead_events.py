"""Seeing and replaying the inbound events the workers gave up on (`optin:dead`).

An inbound event that fails `MAX_ATTEMPTS` times for a reason retrying does not cure, or that
cannot be decoded, goes to the dead-letter stream with the error (`bot.inbound`). Once the cause
is fixed, an operator lists them and puts them back: `optin-bot dead list | replay ID | replay
--all` and `GET /v1/dead`, `POST /v1/dead/{dead_id}/replay`, `POST /v1/dead/replay` are thin I/O
around the functions here, so the two can never disagree.

Replay is exactly once: one Lua call checks the dead entry is still there, adds its event to
its contact's inbound shard and deletes the dead entry, so two replays at once (or a replay
after another) queue it once. Applying it again is harmless: the ledger skips an `event_key` it
holds, the conversation remembers the last event it applied, the transcript the wamid. The
stream keeps the newest `DEAD_EVENTS_KEPT` entries; each trim is logged and counted
(`optin_dead_letters_trimmed_total`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from redis.asyncio import Redis

from bot.eventcodec import decode_event
from bot.streams import DEAD_LETTER_STREAM, inbound_stream, shard_key, shard_of
from flows.events import Event

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
#: `reason` of an entry that failed every attempt, and of one that could not be decoded.
FAILED: Final = "failed"
UNDECODABLE: Final = "undecodable"
_DEAD_ID_PARTS: Final = 2

# KEYS: dead stream, inbound shard. ARGV: dead entry id. Moves the entry's event field `e`.
_REPLAY_LUA = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
  return 0
end
local fields = found[1][2]
local event = nil
for i = 1, #fields, 2 do
  if fields[i] == 'e' then event = fields[i + 1] end
end
if not event or event == '' then
  return -1
end
redis.call('XADD', KEYS[2], '*', 'e', event, 'replayed_from', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
"""


def is_dead_id(text: str) -> bool:
    """A stream entry id (`<ms>-<seq>`): what `dead_id` and `cursor` must look like."""
    parts = text.split("-")
    return len(parts) == _DEAD_ID_PARTS and all(p.isdigit() and len(p) <= 20 for p in parts)


@dataclass(frozen=True, slots=True)
class DeadEvent:
    """One entry of the dead-letter stream, as an operator reads it."""

    dead_id: str
    reason: str
    error: str
    attempts: int
    died_at: datetime
    event_id: str | None
    kind: str | None
    contact_wa_id: str | None
    contact_user_id: str | None
    stream: str

    @classmethod
    def of(cls, dead_id: str, fields: Mapping[str, str]) -> DeadEvent:
        event: Event | None
        try:
            event = decode_event(fields.get("e", ""))
        except Exception:
            event = None
        error = fields.get("error", "")
        reason = fields.get("reason") or (
            UNDECODABLE if event is None or error.startswith("undecodable") else FAILED
        )
        contact = event.contact if event is not None else None
        return cls(
            dead_id=dead_id,
            reason=reason,
            error=error,
            attempts=int(fields.get("attempts") or 0),
            died_at=datetime.fromtimestamp(int(dead_id.split("-")[0]) / 1000, UTC),
            event_id=event.event_id if event is not None else fields.get("event_id") or None,
            kind=type(event).__name__ if event is not None else None,
            contact_wa_id=contact.wa_id if contact is not None else None,
            contact_user_id=contact.user_id if contact is not None else None,
            stream=fields.get("stream", ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "dead_id": self.dead_id,
            "reason": self.reason,
            "error": self.error,
            "attempts": self.attempts,
            "died_at": self.died_at.isoformat(),
            "event_id": self.event_id,
            "kind": self.kind,
            "contact": {"wa_id": self.contact_wa_id, "user_id": self.contact_user_id},
            "stream": self.stream,
        }


@dataclass(frozen=True, slots=True)
class DeadPage:
    """Dead events, newest first, and the cursor of the next (older) page, None at the end."""

    events: list[DeadEvent]
    next_cursor: str | None
    total: int


async def list_dead(
    redis: Redis, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> DeadPage:
    """A page of the dead-letter stream, newest first, older than `cursor` when given."""
    upper = "+" if cursor is None else f"({cursor}"
    entries: Any = await redis.xrevrange(DEAD_LETTER_STREAM, max=upper, count=limit + 1)
    entries = list(entries or [])
    more = len(entries) > limit
    events = [DeadEvent.of(str(i), dict(f)) for i, f in entries[:limit]]
    total = int(await redis.xlen(DEAD_LETTER_STREAM))
    return DeadPage(events, events[-1].dead_id if more and events else None, total)


class Replayed(StrEnum):
    """What became of a replay request for one dead entry."""

    REPLAYED = "replayed"
    UNKNOWN = "unknown"  # no such entry: never dead, already replayed, trimmed or erased
    UNDECODABLE = "undecodable"  # no event in it that a worker could read


@dataclass(frozen=True, slots=True)
class Replay:
    dead_id: str
    outcome: Replayed
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"dead_id": self.dead_id, "outcome": self.outcome.value, "event_id": self.event_id}


async def replay(redis: Redis, dead_id: str) -> Replay:
    """Put one dead event back on its contact's inbound shard and take it off the dead stream."""
    found: Any = await redis.xrange(DEAD_LETTER_STREAM, min=dead_id, max=dead_id)
    if not found:
        return Replay(dead_id, Replayed.UNKNOWN)
    try:
        event = decode_event(dict(found[0][1]).get("e", ""))
    except Exception:
        return Replay(dead_id, Replayed.UNDECODABLE)
    script = redis.register_script(_REPLAY_LUA)
    moved = int(
        await script(
            keys=[DEAD_LETTER_STREAM, inbound_stream(shard_of(shard_key(event)))], args=[dead_id]
        )
    )
    if moved == 1:
        return Replay(dead_id, Replayed.REPLAYED, event.event_id)
    return Replay(dead_id, Replayed.UNKNOWN if moved == 0 else Replayed.UNDECODABLE)


async def replay_all(redis: Redis, *, batch: int = MAX_LIMIT) -> list[Replay]:
    """Replay every dead event, oldest first (each contact's events keep their order); the
    undecodable ones stay where they are, and are reported."""
    results: list[Replay] = []
    lower = "-"
    while True:
        entries: Any = await redis.xrange(DEAD_LETTER_STREAM, min=lower, count=batch)
        if not entries:
            return results
        for entry_id, _ in entries:
            results.append(await replay(redis, str(entry_id)))
        if len(entries) < batch:
            return results
        lower = f"({entries[-1][0]}"
