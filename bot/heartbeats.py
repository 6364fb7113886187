"""Task heartbeats in Redis, and the health verdict drawn from them.

Every supervised task of every process (`web`, `worker`, `sender`, each child of
`serve --workers N`) writes ``optin:health:beat:{task}:{consumer}`` every `BEAT_SECONDS` with a
TTL of `BEAT_TTL_SECONDS`: how many items it has handled, when it last made progress and how many
entries wait in the queue it consumes (its lag). A `worker` or `sender` process serves no HTTP,
so this is how `/healthz` of a `web` process and `optin-bot health` see it.

The verdict (`assess`, pure):

* ``ok``: the heartbeat is fresh, and the task made progress within `stall_seconds` or its queue
  is empty;
* ``stalled``: the heartbeat is fresh but the task handled nothing for longer than
  `stall_seconds` while its queue held entries;
* ``dead``: the task was seen (``optin:health:seen`` has it) but its heartbeat expired and no
  other process runs the same task: the process died or hangs. ``gone`` (not failing) when
  another process still runs it (a replaced pod: the survivors claim its pending entries). A task
  that stops cleanly removes itself from ``seen``, so scaling down is not a death; a process that
  never comes back is forgotten after a day.

A role that was never deployed has no heartbeats and is simply not listed: a deployment of
`web` plus `serve` is not unhealthy for lacking a separate `sender`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from bot import redis_keys
from bot.supervisor import TaskState
from bot.transient import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0
BEAT_TTL_SECONDS = 30
#: `seen` fields not written for this long are forgotten (a process killed long ago).
FORGET_SECONDS = 86_400.0

Probe = Callable[[], Awaitable[int | None]]


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat as stored."""

    task: str
    consumer: str
    role: str
    pid: int
    handled: int
    last_progress: float
    lag: int | None
    restarts: int
    running: bool
    written: float
    last_error: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "task": self.task,
                "consumer": self.consumer,
                "role": self.role,
                "pid": self.pid,
                "handled": self.handled,
                "last_progress": self.last_progress,
                "lag": self.lag,
                "restarts": self.restarts,
                "running": self.running,
                "written": self.written,
                "last_error": self.last_error,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Beat:
        data: dict[str, Any] = json.loads(text)
        lag = data.get("lag")
        return cls(
            task=str(data["task"]),
            consumer=str(data["consumer"]),
            role=str(data.get("role", "")),
            pid=int(data.get("pid", 0)),
            handled=int(data.get("handled", 0)),
            last_progress=float(data["last_progress"]),
            lag=None if lag is None else int(lag),
            restarts=int(data.get("restarts", 0)),
            running=bool(data.get("running", True)),
            written=float(data["written"]),
            last_error=data.get("last_error"),
        )


@dataclass(frozen=True, slots=True)
class TaskHealth:
    """The verdict on one task of one process."""

    task: str
    consumer: str
    state: str  # ok | stalled | gone | dead
    detail: str
    beat: Beat | None

    @property
    def healthy(self) -> bool:
        """`ok`, or `gone` (this process is gone but another runs the task)."""
        return self.state in ("ok", "gone")

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "task": self.task,
            "consumer": self.consumer,
            "state": self.state,
            "detail": self.detail,
        }
        if self.beat is not None:
            body.update(
                role=self.beat.role,
                pid=self.beat.pid,
                handled=self.beat.handled,
                lag=self.beat.lag,
                restarts=self.beat.restarts,
                last_progress=self.beat.last_progress,
            )
        return body


def assess(
    beats: Mapping[str, Beat],
    seen: Mapping[str, float],
    *,
    now: float,
    stall_seconds: float,
) -> list[TaskHealth]:
    """The state of each task: `beats` are the live heartbeats and `seen` when each
    ``task:consumer`` last beat (both keyed by ``task:consumer``); `now` is wall-clock seconds.

    A missing heartbeat is ``gone`` (not failing) while another process runs the same task
    (it takes over the pending entries), and ``dead`` when none does."""
    live_tasks = {beat.task for beat in beats.values()}
    verdicts: list[TaskHealth] = []
    for ident in sorted(set(beats) | set(seen)):
        beat = beats.get(ident)
        task, _, consumer = ident.partition(":")
        if beat is None:
            silent = now - seen[ident]
            if silent > FORGET_SECONDS:
                continue
            state = "gone" if task in live_tasks else "dead"
            verdicts.append(
                TaskHealth(task, consumer, state, f"no heartbeat for {silent:.0f} s", None)
            )
            continue
        idle = now - beat.last_progress
        if beat.lag and idle > stall_seconds:
            verdicts.append(
                TaskHealth(
                    beat.task,
                    beat.consumer,
                    "stalled",
                    f"no progress for {idle:.0f} s with {beat.lag} entries waiting",
                    beat,
                )
            )
        else:
            verdicts.append(TaskHealth(beat.task, beat.consumer, "ok", "", beat))
    return verdicts


async def read_health(redis: Redis, *, stall_seconds: float) -> list[TaskHealth]:
    """Every task's verdict, from the heartbeats in Redis."""
    seen_raw: dict[Any, Any] = await redis.hgetall(redis_keys.HEARTBEATS_SEEN.name)
    seen = {_text(k): float(_text(v)) for k, v in seen_raw.items()}
    pattern = redis_keys.HEARTBEAT.prefix + ":*"
    keys = [_text(key) async for key in redis.scan_iter(match=pattern, count=500)]
    beats: dict[str, Beat] = {}
    if keys:
        for raw in await redis.mget(keys):
            if raw is None:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                beat = Beat.from_json(_text(raw))
                beats[f"{beat.task}:{beat.consumer}"] = beat
    now = time.time()
    stale = [ident for ident, at in seen.items() if now - at > FORGET_SECONDS]
    if stale:
        await redis.hdel(redis_keys.HEARTBEATS_SEEN.name, *stale)
    return assess(beats, seen, now=now, stall_seconds=stall_seconds)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Heartbeat:
    """Writes one task's heartbeat every `interval` seconds until stopped.

    `handled()` reads how many items the task has handled (a metric of this process);
    `lag()` how many entries wait in the queue it consumes (None when it consumes none).
    Progress is a change of `handled`; an empty queue counts as being up to date.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        task: str,
        consumer: str,
        role: str,
        state: TaskState,
        handled: Callable[[], int] = lambda: 0,
        lag: Probe | None = None,
        interval: float = BEAT_SECONDS,
        ttl: int = BEAT_TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self._task = task
        self._consumer = consumer
        self._role = role
        self._state = state
        self._handled = handled
        self._lag = lag
        self._interval = interval
        self._ttl = ttl
        self._last_handled = handled()
        self._last_progress = time.time()
        self.ident = f"{task}:{consumer}"
        self.key = redis_keys.HEARTBEAT.format(task=task, consumer=consumer)

    async def beat(self) -> Beat:
        now = time.time()
        handled = self._handled()
        lag = await self._lag() if self._lag is not None else None
        if handled != self._last_handled or not lag:
            self._last_handled = handled
            self._last_progress = now
        beat = Beat(
            task=self._task,
            consumer=self._consumer,
            role=self._role,
            pid=os.getpid(),
            handled=handled,
            last_progress=self._last_progress,
            lag=lag,
            restarts=self._state.restarts,
            running=self._state.running,
            written=now,
            last_error=self._state.last_error,
        )
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self.key, beat.to_json(), ex=self._ttl)
        pipe.hset(redis_keys.HEARTBEATS_SEEN.name, self.ident, str(now))
        await pipe.execute()
        return beat

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until `stop`, then remove this task from `seen` (a clean stop is no death)."""
        try:
            while not stop.is_set():
                try:
                    await self.beat()
                except TRANSIENT_ERRORS as exc:
                    log.warning("heartbeat of %s not written (%r)", self._task, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._interval)
        finally:
            await self._forget()

    async def _forget(self) -> None:
        with contextlib.suppress(*TRANSIENT_ERRORS):
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(self.key)
            if not self._state.abandoned:  # a task given up on stays known: it is dead
                pipe.hdel(redis_keys.HEARTBEATS_SEEN.name, self.ident)
            await pipe.execute()
