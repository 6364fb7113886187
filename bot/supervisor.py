"""Every long-running task of a role runs under a supervisor: it restarts by itself after the
ground gave way, and ends the process when the work itself keeps failing.

Before this, `bot.roles.start_loops` started bare tasks: one uncaught database error in the
sender (``DBAPIError`` from `mark_outbound_many` after `pg_terminate_backend`) ended it for good,
the outbound queue stayed stuck and `/healthz` still said ok. Now:

* a temporary error (`classify` -> ``TEMPORARY``: Redis or the database unreachable, a connection
  dropped mid-transaction, see `bot.transient`) restarts the task after a jittered exponential
  backoff (`Backoff`, 0.1 s doubling up to 5 s), as often as it takes;
* any other error restarts it too, but only `RestartBudget.limit` times within
  `RestartBudget.window` seconds; past that the supervisor gives up: it logs CRITICAL naming the
  task and the error and calls `on_give_up`, which makes the process exit non-zero (a process
  manager restarts it; waiting forever helps no one);
* every restart counts in ``optin_task_restarts_total{task}``;
* while the task lives, a heartbeat (`bot.heartbeats`) says how far it got, so `/healthz` and
  `optin-bot health` see a dead or stalled task in any process of any role.

The decisions (`Backoff`, `classify`, `RestartBudget`) are pure and unit-tested; `Supervisor`
only runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

import asyncpg

from bot.transient import is_transient

log = logging.getLogger(__name__)

__all__ = ["Backoff", "Failure", "RestartBudget", "Supervisor", "TaskState", "classify"]

#: asyncpg's own connection errors, for one that escapes SQLAlchemy's wrapping.
_ASYNCPG_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
)


class Failure(Enum):
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


def classify(exc: BaseException) -> Failure:
    """TEMPORARY when `exc` (or what it wraps) is Redis or the database failing, else PERMANENT."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if is_transient(current) or isinstance(current, _ASYNCPG_ERRORS):
            return Failure.TEMPORARY
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return Failure.TEMPORARY if isinstance(exc, _ASYNCPG_ERRORS) else Failure.PERMANENT


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff: attempt n waits between half and all of
    ``min(cap, base * 2**n)`` seconds, so that processes thrown off together do not all come
    back at the same instant."""

    base: float = 0.1
    cap: float = 5.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 32))
        return float(ceiling * (0.5 + rng() / 2))


@dataclass(slots=True)
class RestartBudget:
    """How many permanent failures a task may have within `window` seconds before the
    supervisor gives up on it."""

    limit: int = 5
    window: float = 60.0
    _failures: deque[float] = field(default_factory=deque)

    def spend(self, now: float) -> bool:
        """Record one failure at `now`; False when this one exceeds the budget."""
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.window:
            self._failures.popleft()
        return len(self._failures) <= self.limit


@dataclass(slots=True)
class TaskState:
    """What the supervisor knows of one task, for its heartbeat."""

    name: str
    restarts: int = 0
    last_error: str | None = None
    running: bool = False
    #: Given up on: the process stops, and the task stays known so that health calls it dead.
    abandoned: bool = False


class GaveUp(Exception):
    """A task failed permanently more often than its budget allows."""


class Supervisor:
    """Runs one role's tasks, restarts them, and gives up on the process when one keeps failing.

    `on_restart(task)` is called for every restart (the metric); `on_give_up(task, error)` once,
    when a task is abandoned (the process then stops and exits non-zero).
    """

    def __init__(
        self,
        *,
        on_restart: Callable[[str], None],
        on_give_up: Callable[[str, BaseException], None],
        backoff: Backoff | None = None,
        budget: Callable[[], RestartBudget] = RestartBudget,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_restart = on_restart
        self._on_give_up = on_give_up
        self._backoff = backoff or Backoff()
        self._budget = budget
        self._clock = clock
        self.states: dict[str, TaskState] = {}
        self.failed: tuple[str, BaseException] | None = None

    def start(
        self, name: str, work: Callable[[], Awaitable[None]], stop: asyncio.Event
    ) -> asyncio.Task[None]:
        """Run `work()` as task `name` until `stop` is set, restarting it when it fails."""
        self.states[name] = TaskState(name)
        return asyncio.create_task(self.run(name, work, stop), name=name)

    async def run(
        self, name: str, work: Callable[[], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        state = self.states.setdefault(name, TaskState(name))
        budget = self._budget()
        attempt = 0
        while not stop.is_set():
            started = self._clock()
            state.running = True
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                state.running = False
                state.last_error = repr(exc)
                kind = classify(exc)
                if kind is Failure.PERMANENT and not budget.spend(self._clock()):
                    log.critical(
                        "%s failed %d times within %g s, giving up: %r",
                        name,
                        budget.limit + 1,
                        budget.window,
                        exc,
                        exc_info=exc,
                    )
                    self.failed = (name, exc)
                    state.abandoned = True
                    self._on_give_up(name, exc)
                    return
                # A task that ran a good while before failing starts its backoff afresh.
                if self._clock() - started > self._backoff.cap * 2:
                    attempt = 0
                delay = self._backoff.delay(attempt)
                attempt += 1
                state.restarts += 1
                self._on_restart(name)
                log.warning(
                    "%s stopped (%s: %r); restarting in %.2f s", name, kind.value, exc, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                continue
            state.running = False
            if not stop.is_set():
                # A loop ended of its own accord while the role still runs: run it again.
                log.warning("%s ended although the process is not stopping; restarting", name)
                state.restarts += 1
                self._on_restart(name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._backoff.delay(attempt))
                attempt += 1
