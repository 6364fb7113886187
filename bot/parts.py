"""The optional parts of handling an event, which must never take its consent decision down.

An inbound STOP is acknowledged to Meta (200) as soon as it is queued; after that, the only thing
that must happen is that the decision lands in the ledger and its confirmation is queued. The
transcript row, the profile name, a flow-step row, an identity change and the hooks are records
around that decision: if one of them fails for a reason retrying will not cure (a constraint, a
bad value, a bug), the worker would retry the whole event five times and then dead-letter it,
STOP included. `OptionalParts.run` instead logs at ERROR what was lost, counts it in
`optin_event_parts_lost_total{part}` and lets the event go on. Infrastructure failures (database
or Redis down) are re-raised: the worker waits for them to recover and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.metrics import EVENT_PARTS, Metrics
from bot.transient import is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")


class OptionalParts:
    """Runs the parts of an event the consent decision does not depend on."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def run(
        self, part: str, event_id: str, action: Callable[[], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        """(True, result) when `action` succeeded; (False, None) when it failed for good,
        after logging and counting the loss."""
        try:
            return True, await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                raise
            log.error(
                "event %s: %s lost (%r); the rest of the event, its consent decision included, "
                "is applied",
                event_id,
                part,
                exc,
                exc_info=exc,
            )
            assert part in EVENT_PARTS, part
            self._metrics.event_parts_lost.labels(part=part).inc()
            return False, None
