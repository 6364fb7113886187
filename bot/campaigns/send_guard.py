"""The sender's half of "each recipient at most once": a transport wrapper for campaign messages.

The sender is at-least-once: a message whose HTTP request was in flight when the process died
is sent again by whichever sender reclaims it, and the Cloud API has no idempotency key. For a
campaign that would message people twice, so campaign messages (recognised by their
`biz_opaque_callback_data`, see `bot.campaigns.messages`) get an attempt marker in Redis before
the request goes out:

- first attempt: marker set, message sent;
- Meta answered with an error (HTTP status known): it was not sent, the marker is removed so
  the sender's retry goes out;
- the outcome is unknown (timeout, reset, the process died) and the message comes round again:
  if a status webhook has reported it since (the tracker keeps its wamid), it was sent and that
  wamid is the answer; if `grace_seconds` pass without a status, it never reached Meta and is
  sent once more; before that it is put back (a retryable error) and looked at again later.

Meta reports every message it accepted with a `sent` status within seconds, so the grace period
(five minutes by default) is long enough to tell "sent, reply lost" from "never sent".
The wrapper also reports 130429 refusals to the campaigns' `Throttle`, and notes successful
sends so the recipients show `sent` even before Meta's status arrives (batched; see `SentMarks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from redis.asyncio import Redis

from bot.campaigns.messages import parse_message_id
from bot.campaigns.repository import CampaignRepository
from bot.campaigns.throttle import Throttle
from bot.graph import GraphError
from bot.inbound import TRANSIENT_ERRORS
from bot.sender import Transport
from bot.streams import DEDUPE_TTL_SECONDS

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS: Final = 300.0
THROUGHPUT_CODE: Final = 130429


def attempt_key(tag: str) -> str:
    return f"optin:campaigns:attempt:{tag}"


def outcome_key(tag: str) -> str:
    """Where Meta's word that a campaign message was sent is kept (its wamid)."""
    return f"optin:campaigns:outcome:{tag}"


class OutcomeUnknown(GraphError):
    """A campaign message's earlier attempt may have reached Meta; wait for its status."""


class SentMarks:
    """Recipients whose message Meta accepted, written to the database in batches.

    A mark lost with the process is harmless: Meta's own `sent` status says the same.
    """

    def __init__(
        self, repository: CampaignRepository, clock: Callable[[], datetime], *, interval: float
    ) -> None:
        self._repository = repository
        self._clock = clock
        self._interval = interval
        self._pending: list[int] = []

    def add(self, recipient_id: int) -> None:
        self._pending.append(recipient_id)

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            try:
                await self._repository.advance(batch, "sent", self._clock())
            except TRANSIENT_ERRORS as exc:
                log.warning("campaign sent marks not written (%s); Meta's statuses will", exc)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            await self.flush()


class CampaignSendGuard:
    """A `Transport` that keeps campaign messages at most once; others pass straight through."""

    def __init__(
        self,
        inner: Transport,
        redis: Redis,
        throttle: Throttle,
        marks: SentMarks,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sandbox = inner.sandbox
        self._inner = inner
        self._redis = redis
        self._throttle = throttle
        self._marks = marks
        self._grace = grace_seconds
        self._time = wall_clock

    async def deliver(self, body: Mapping[str, Any]) -> str | None:
        tag = body.get("biz_opaque_callback_data")
        ids = parse_message_id(tag if isinstance(tag, str) else None)
        if ids is None or not isinstance(tag, str):
            return await self._send(body)
        key = attempt_key(tag)
        now_ms = int(self._time() * 1000)
        first = await self._redis.set(key, now_ms, nx=True, ex=DEDUPE_TTL_SECONDS)
        if not first:
            known = await self._redis.get(outcome_key(tag))
            if known:
                return None if known == "sandbox" else str(known)
            started = int(await self._redis.get(key) or now_ms)
            waited = (now_ms - started) / 1000
            if waited < self._grace:
                raise OutcomeUnknown(
                    f"campaign message {tag}: an earlier attempt may have reached Meta; "
                    f"waiting {self._grace - waited:.0f}s more for its status",
                    retryable=True,
                    retry_after=self._grace - waited,
                )
            log.warning(
                "campaign message %s: no status from Meta after %.0fs; resending", tag, waited
            )
            await self._redis.set(key, now_ms, ex=DEDUPE_TTL_SECONDS)
        try:
            wamid = await self._send(body)
        except GraphError as exc:
            if exc.http_status is not None and not 200 <= exc.http_status < 300:
                await self._redis.delete(key)  # Meta answered no: nothing went out
            raise
        await self._redis.set(outcome_key(tag), wamid or "sandbox", ex=DEDUPE_TTL_SECONDS)
        if wamid is not None:
            self._marks.add(ids[1])
        return wamid

    async def _send(self, body: Mapping[str, Any]) -> str | None:
        try:
            return await self._inner.deliver(body)
        except GraphError as exc:
            if exc.code == THROUGHPUT_CODE:
                level = await self._throttle.report()
                log.warning(
                    "Meta refused for throughput (130429): campaigns slow to 1/%d", 2**level
                )
            raise
