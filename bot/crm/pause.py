"""Delivery paused because the receiver answered 410 Gone.

410 is a receiver's way of saying "this endpoint no longer exists, stop sending". Every
deliverer (in every process) stops posting to that URL while the pause names it; events keep
queuing. The pause ends when `BUSINESS_WEBHOOK_URL` changes (a deliverer configured with another
URL lifts it when it starts) or through `POST /v1/webhooks/resume`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from bot import redis_keys
from bot.crm.log import iso_ms

PAUSE_KEY: Final = redis_keys.CRM_PAUSED.name


@dataclass(frozen=True, slots=True)
class Pause:
    """Why delivery stopped: which URL answered 410 (as `url_digest`, so no token in a URL
    ends up in Redis), for which event, and when (Unix ms)."""

    url_digest: str
    event_id: str
    since_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"reason": "gone", "event_id": self.event_id, "since": iso_ms(self.since_ms)}


async def current_pause(redis: Redis) -> Pause | None:
    raw = await redis.get(PAUSE_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Pause(str(data["url_digest"]), str(data["event_id"]), int(data["since_ms"]))
    except (ValueError, KeyError, TypeError):
        return None


def url_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def encode_pause(value: Pause) -> str:
    return json.dumps(
        {"url_digest": value.url_digest, "event_id": value.event_id, "since_ms": value.since_ms}
    )


async def resume(redis: Redis) -> bool:
    """Lift the pause; True when there was one."""
    return bool(await redis.delete(PAUSE_KEY))
