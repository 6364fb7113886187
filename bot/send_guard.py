"""Each tagged message reaches Meta at most once: a transport wrapper keyed by our message id.

The sender is at-least-once: a message whose outcome is unknown (the HTTP request was in flight
when the process died, or the client gave up with `MaybeSentError` after a timeout or a reset)
stays on the stream and is tried again, and the Cloud API has no idempotency key. So every
message carrying our message id in `biz_opaque_callback_data` (Meta echoes it in each status
webhook of the message) gets an attempt marker in Redis before the request goes out:

- first attempt: marker set, message sent;
- Meta answered no, or the request never left (`GraphError.may_have_been_sent` is False):
  nothing went out, the marker is removed so the sender's retry goes out;
- the outcome is unknown and the message comes round again: if a status webhook has reported
  it since (`bot.pipeline` keeps its wamid under `outcome_key`), it was sent and that wamid is
  the answer; if `grace_seconds` pass without a status, it never reached Meta and is sent once
  more; before that it is put back (a retryable `OutcomeUnknown`) and looked at again later.

Meta's statuses are recorded for the guard where they enter (`bot.webhook`, right after they are
queued), not only where the worker gets to them: under load the worker can lag by more than the
grace period, and a guard judging by the worker alone resent messages whose `sent` status was
already waiting in the inbound queue (the duplicate after a sender's SIGKILL).

Meta reports every message it accepted with a `sent` status within seconds, so the grace period
(five minutes by default) is long enough to tell "sent, reply lost" from "never sent". Deciding
and marking happen in one Lua call, so two senders holding the same stream entry (one reclaimed
it while the other was still waiting for Meta) never both send.

Messages without the tag pass straight through: at least once, as the sender makes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from redis.asyncio import Redis

from bot import redis_keys
from bot.graph import GraphError
from bot.streams import DEDUPE_TTL_SECONDS
from flows import events as ev

if TYPE_CHECKING:
    from bot.sender import Transport

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS: Final = 300.0
TAG_FIELD: Final = "biz_opaque_callback_data"
SANDBOX_OUTCOME: Final = "sandbox"

# KEYS: attempt, outcome. ARGV: now (ms), grace (ms), ttl (s).
# Returns {"known", wamid} | {"first", now} | {"resend", waited ms} | {"wait", waited ms}.
_BEGIN_LUA = """
local known = redis.call('GET', KEYS[2])
if known then
  return {'known', known}
end
local now = tonumber(ARGV[1])
local started = redis.call('GET', KEYS[1])
if not started then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  return {'first', ARGV[1]}
end
local waited = now - tonumber(started)
if waited >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  return {'resend', tostring(waited)}
end
return {'wait', tostring(waited)}
"""

# Remove the attempt marker only if it is still ours (KEYS: attempt; ARGV: our start stamp).
_CLEAR_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def attempt_key(tag: str) -> str:
    """When the latest attempt to send the message tagged `tag` started (epoch ms)."""
    return redis_keys.SEND_ATTEMPT.format(tag=tag)


def outcome_key(tag: str) -> str:
    """Where the word that the message tagged `tag` reached Meta is kept (its wamid)."""
    return redis_keys.SEND_OUTCOME.format(tag=tag)


def tag_of(body: Mapping[str, Any]) -> str | None:
    """Our message id as carried to Meta in a body, if it carries one."""
    tag = body.get(TAG_FIELD)
    return tag if isinstance(tag, str) and tag else None


async def record_outcome(redis: Redis, tag: str, wamid: str) -> None:
    """Meta reported the message tagged `tag` (any status means it accepted it): no resend."""
    await redis.set(outcome_key(tag), wamid, ex=DEDUPE_TTL_SECONDS)


async def record_outcomes(redis: Redis, events: Iterable[ev.Event]) -> int:
    """`record_outcome` for every tagged status among `events`, in one round trip.

    Called by the webhook as soon as Meta's statuses are safely queued: the worker records them
    too, but it may be minutes behind under load, and a guard that has not heard of a status
    within its grace period would send the message again.
    """
    pipe = redis.pipeline(transaction=False)
    count = 0
    for event in events:
        if isinstance(event, ev.StatusUpdate) and event.biz_opaque_callback_data:
            pipe.set(
                outcome_key(event.biz_opaque_callback_data), event.wamid, ex=DEDUPE_TTL_SECONDS
            )
            count += 1
    if count:
        await pipe.execute()
    return count


class OutcomeUnknown(GraphError):
    """An earlier attempt at this message may have reached Meta; wait for its status."""


class SendGuard:
    """A `Transport` that sends each tagged message at most once; others pass straight through."""

    def __init__(
        self,
        inner: Transport,
        redis: Redis,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sandbox = inner.sandbox
        self._inner = inner
        self._redis = redis
        self._grace = grace_seconds
        self._time = wall_clock
        self._begin = redis.register_script(_BEGIN_LUA)
        self._clear = redis.register_script(_CLEAR_LUA)

    @property
    def grace_seconds(self) -> float:
        return self._grace

    async def deliver(self, body: Mapping[str, Any]) -> str | None:
        tag = tag_of(body)
        if tag is None:
            return await self._inner.deliver(body)
        now_ms = int(self._time() * 1000)
        state, value = await self._begin(
            keys=[attempt_key(tag), outcome_key(tag)],
            args=[now_ms, int(self._grace * 1000), DEDUPE_TTL_SECONDS],
        )
        state, value = _text(state), _text(value)
        if state == "known":
            return None if value == SANDBOX_OUTCOME else value
        if state == "wait":
            left = self._grace - int(value) / 1000
            raise OutcomeUnknown(
                f"message {tag}: an earlier attempt may have reached Meta; "
                f"waiting {left:.0f}s more for its status",
                retryable=True,
                retry_after=left,
            )
        if state == "resend":
            log.warning(
                "message %s: no status from Meta %.0fs after an unanswered attempt; resending",
                tag,
                int(value) / 1000,
            )
        try:
            wamid = await self._inner.deliver(body)
        except GraphError as exc:
            if not exc.may_have_been_sent:
                # Meta answered no, or the request never left: nothing went out.
                await self._clear(keys=[attempt_key(tag)], args=[now_ms])
            raise
        await record_outcome(self._redis, tag, wamid or SANDBOX_OUTCOME)
        return wamid


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
