"""The outbound queue (a Redis Stream) and the message it carries.

Everything we send goes through here: the caller records the message in the transcript as
`queued` and puts it on the stream; the sender loop (`bot.sender`) delivers it at the number's
rate. Message ids are chosen by the caller and deterministic where a retry could repeat the
enqueue (derived from the event that caused the message), and the enqueue is de-duplicated in the
same Lua call as the XADD, so handling an event twice never queues its reply twice. Many messages
go in one call (`put_recorded`): the campaign dispatcher records a whole chunk in one transaction
and queues it in paced groups.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from bot import redis_keys
from bot.db.transcript import OutboundRecord, TranscriptRepository
from bot.streams import DEDUPE_TTL_SECONDS, OUTBOUND_STREAM

# KEYS: one de-duplication key per message (`optin:queued:<message id>`), then the stream;
# ARGV: the encoded messages, then the keys' TTL. Returns 1 (queued) or 0 (queued before) each.
_ENQUEUE_LUA = """
local stream = KEYS[#KEYS]
local ttl = ARGV[#ARGV]
local added = {}
for i = 1, #KEYS - 1 do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', stream, '*', 'm', ARGV[i])
    added[i] = 1
  else
    added[i] = 0
  end
end
return added
"""


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to one contact: the Cloud API body plus what we need to account for it."""

    message_id: str
    contact_id: int
    body: dict[str, Any]
    kind: str
    category: str | None = None
    text: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps(
            {
                "id": self.message_id,
                "contact_id": self.contact_id,
                "body": self.body,
                "kind": self.kind,
                "category": self.category,
                "text": self.text,
                "meta": self.meta,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def record(self) -> OutboundRecord:
        """The transcript row of this message."""
        return OutboundRecord(
            contact_id=self.contact_id,
            message_id=self.message_id,
            kind=self.kind,
            text=self.text,
            payload_json=json.dumps(self.body, ensure_ascii=False),
        )

    @classmethod
    def decode(cls, raw: str) -> OutboundMessage:
        data = json.loads(raw)
        return cls(
            message_id=str(data["id"]),
            contact_id=int(data["contact_id"]),
            body=dict(data["body"]),
            kind=str(data["kind"]),
            category=data.get("category"),
            text=data.get("text"),
            meta={str(k): str(v) for k, v in (data.get("meta") or {}).items()},
        )


class OutboundQueue:
    """Record-then-enqueue, idempotent on `message_id`."""

    def __init__(self, redis: Redis, transcript: TranscriptRepository) -> None:
        self._redis = redis
        self._transcript = transcript
        self._enqueue = redis.register_script(_ENQUEUE_LUA)

    async def enqueue(self, message: OutboundMessage, *, now: datetime) -> bool:
        """Queue `message`; False when a message with this id was queued already."""
        return (await self.enqueue_many([message], now=now))[0]

    async def enqueue_many(
        self, messages: Sequence[OutboundMessage], *, now: datetime
    ) -> list[bool]:
        """Record and queue `messages` in order; for each, False when it was queued already."""
        await self.record(messages, now=now)
        return await self.put_recorded(messages)

    async def record(self, messages: Sequence[OutboundMessage], *, now: datetime) -> None:
        """Record `messages` in the transcript as `queued` (one transaction), to be queued
        with `put_recorded`; a message recorded before stays as it is."""
        await self._transcript.record_outbound_many(
            [m.record() for m in messages], status="queued", occurred_at=now
        )

    async def put_recorded(self, messages: Sequence[OutboundMessage]) -> list[bool]:
        """Queue messages already recorded as `queued` in the transcript, in order, in one
        Redis call; for each, False when a message with its id was queued already."""
        if not messages:
            return []
        added = await self._enqueue(
            keys=[
                *(redis_keys.QUEUED.format(message_id=m.message_id) for m in messages),
                OUTBOUND_STREAM,
            ],
            args=[*(m.encode() for m in messages), DEDUPE_TTL_SECONDS],
        )
        return [bool(flag) for flag in added]
