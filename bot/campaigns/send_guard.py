"""The sender's campaign parts: a transport wrapper that tells the campaigns what Meta said.

At-most-once delivery is not campaign specific: `bot.send_guard.SendGuard` (which this wraps)
keeps every message tagged with our message id (campaign messages carry
`campaign:<id>:<recipient>`, see `bot.campaigns.messages`) from reaching Meta twice. What is left
here is what only campaigns care about:

- every 130429 refusal (whatever message it was for: the number's throughput is shared) slows
  the campaigns down (`bot.campaigns.throttle`);
- campaign messages Meta accepted are noted so the recipients show `sent` even before the
  worker gets to Meta's status (batched; see `SentMarks`), including those the guard answers
  from Meta's earlier report instead of sending them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from bot.campaigns.messages import parse_message_id
from bot.campaigns.repository import CampaignRepository
from bot.campaigns.throttle import Throttle
from bot.graph import GraphError
from bot.send_guard import tag_of
from bot.sender import Transport
from bot.transient import is_transient

log = logging.getLogger(__name__)

THROUGHPUT_CODE: Final = 130429


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
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("campaign sent marks not written (%r); Meta's statuses will", exc)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._interval)
            await self.flush()


class CampaignTransport:
    """A `Transport` that reports 130429s to the `Throttle` and accepted campaign messages to
    `SentMarks`; the message itself goes to `inner` unchanged."""

    def __init__(self, inner: Transport, throttle: Throttle, marks: SentMarks) -> None:
        self.sandbox = inner.sandbox
        self._inner = inner
        self._throttle = throttle
        self._marks = marks

    async def deliver(self, body: Mapping[str, Any]) -> str | None:
        try:
            wamid = await self._inner.deliver(body)
        except GraphError as exc:
            if exc.code == THROUGHPUT_CODE:
                level = await self._throttle.report()
                log.warning(
                    "Meta refused for throughput (130429): campaigns slow to 1/%d", 2**level
                )
            raise
        ids = parse_message_id(tag_of(body))
        # A sandbox wamid says the message was kept, not that Meta accepted it.
        if wamid is not None and ids is not None and not self.sandbox:
            self._marks.add(ids[1])
        return wamid
