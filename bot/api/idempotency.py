"""`Idempotency-Key`: a retried POST does what the first did, and a reused key is caught.

A client that timed out cannot know whether its request arrived; it sends it again with the same
key. For 24 hours a key is bound to the body it first came with (its SHA-256): the same key with
the same body is the same request (the operation replays it, and the ids it derives from the key
make the replay write nothing new); the same key with another body is a client bug and is refused
with 409 `idempotency_conflict` instead of silently doing one of the two.

A remembered answer names its contact, so each is also listed under the contact
(`optin:idem:contact:{contact_id}`, ``bot.redis_keys``): erasure deletes them from there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from redis.asyncio import Redis

from bot import redis_keys
from bot.api.validation import ApiProblem

HEADER: Final = "Idempotency-Key"
KEY_MAX: Final = 255
TTL_SECONDS: Final = 24 * 3600

#: How the header is described in the OpenAPI document.
OPENAPI_PARAMETER: Final[dict[str, Any]] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: for 24 hours the same key with the same body returns the first "
        "answer and writes nothing new; the same key with a different body is refused with "
        "409 `idempotency_conflict`."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": KEY_MAX, "pattern": "^[!-~]+$"},
}


def canonical_hash(value: Any) -> str:
    """SHA-256 of `value` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Idempotency:
    """The request's identity: `key` is stable across retries (derived from the header when
    given, else from the body), `replay` says the header's key was seen before with this body,
    `from_header` that the client sent a key."""

    key: str
    replay: bool
    from_header: bool


def header_key(request: web.Request) -> str | None:
    value = request.headers.get(HEADER)
    if value is None:
        return None
    value = value.strip()
    if not 0 < len(value) <= KEY_MAX or not all("!" <= c <= "~" for c in value):
        raise ApiProblem(
            422,
            "invalid_request",
            f"`{HEADER}` must be 1 to {KEY_MAX} visible ASCII characters (no spaces)",
        )
    return value


async def claim(redis: Redis, scope: str, request: web.Request, body_hash: str) -> Idempotency:
    """Bind the request's `Idempotency-Key` (if any) to `body_hash` within `scope`.

    Without the header the key is the body hash itself, so sending the same body twice is one
    request too.
    """
    header = header_key(request)
    if header is None:
        return Idempotency(key=body_hash, replay=False, from_header=False)
    key = hashlib.sha256(f"{scope}\0{header}".encode()).hexdigest()
    redis_key = redis_keys.IDEMPOTENCY.format(scope=scope, key=key)
    if await redis.set(redis_key, body_hash, nx=True, ex=TTL_SECONDS):
        return Idempotency(key=key, replay=False, from_header=True)
    bound = await redis.get(redis_key)
    if isinstance(bound, bytes):
        bound = bound.decode()
    if bound is not None and bound != body_hash:
        raise ApiProblem(
            409,
            "idempotency_conflict",
            f"this {HEADER} was used in the last 24 hours with a different body",
        )
    return Idempotency(key=key, replay=True, from_header=True)


def _answer_key(scope: str, key: str) -> str:
    return redis_keys.IDEMPOTENT_ANSWER.format(scope=scope, key=key)


def _answers_of(contact_id: int) -> str:
    return redis_keys.IDEMPOTENT_ANSWERS_OF_CONTACT.format(contact_id=contact_id)


async def remember(
    redis: Redis, scope: str, key: str, answer: Mapping[str, Any], *, contact_id: int
) -> None:
    """Keep the answer given under `key`, so a retry gets the same one; it names contact
    `contact_id`, whose erasure (``bot.erasure``) finds it through the contact's list."""
    answer_key = _answer_key(scope, key)
    index = _answers_of(contact_id)
    pipe = redis.pipeline(transaction=True)
    pipe.set(answer_key, json.dumps(answer), ex=TTL_SECONDS)
    pipe.sadd(index, answer_key)
    pipe.expire(index, TTL_SECONDS)
    await pipe.execute()


async def recall(redis: Redis, scope: str, key: str) -> dict[str, Any] | None:
    """The answer given earlier under `key`, if any."""
    raw = await redis.get(_answer_key(scope, key))
    if raw is None:
        return None
    answer = json.loads(raw)
    return answer if isinstance(answer, dict) else None
