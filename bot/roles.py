"""The process roles of the contract and the background loops each one runs.

`serve` is all three in one process; `web`, `worker` and `sender` are the scale-out roles. Every
loop runs under a `bot.supervisor.Supervisor` (restarted after Redis or the database failed, the
process ended when it keeps failing otherwise) and writes a heartbeat (`bot.heartbeats`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from bot import redis_keys
from bot.campaigns.wiring import CampaignSending
from bot.conversations import ConversationRunner
from bot.crm.outbox import queued_events
from bot.heartbeats import Heartbeat, Probe
from bot.inbound import InboundWorker
from bot.pipeline import EventPipeline
from bot.ratelimit import RateLimiter
from bot.sender import RefusalReporter, Sender
from bot.services import Services
from bot.streams import (
    INBOUND_GROUP,
    OUTBOUND_GROUP,
    OUTBOUND_STREAM,
    inbound_stream,
)
from bot.supervisor import Supervisor
from bot.timers import run_timer_poller

log = logging.getLogger(__name__)


class Role(Enum):
    WEB = "web"
    WORKER = "worker"
    SENDER = "sender"


ALL_ROLES = frozenset(Role)


@dataclass(slots=True)
class Loops:
    """The supervised tasks of one process's roles, and their heartbeats."""

    supervisor: Supervisor
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A task was given up on: the process must exit non-zero."""
        return self.supervisor.failed is not None


def start_loops(
    services: Services,
    roles: Iterable[Role],
    stop: asyncio.Event,
    *,
    supervisor: Supervisor | None = None,
) -> list[asyncio.Task[None]]:
    """Start the worker and sender loops that `roles` ask for; they end when `stop` is set.

    A task given up on (see `bot.supervisor`) sets `stop`, so the whole process stops; callers
    learn it from `supervise_loops(...).failed`."""
    return supervise_loops(services, roles, stop, supervisor=supervisor).tasks


def supervise_loops(
    services: Services,
    roles: Iterable[Role],
    stop: asyncio.Event,
    *,
    supervisor: Supervisor | None = None,
) -> Loops:
    """`start_loops`, returning the supervisor too (whether a task was given up on)."""
    metrics = services.metrics

    def give_up(task: str, error: BaseException) -> None:
        log.critical("%s stopped: %r; stopping the process", task, error)
        stop.set()

    loops = Loops(
        supervisor
        or Supervisor(
            on_restart=lambda task: metrics.task_restarts.labels(task=task).inc(),
            on_give_up=give_up,
        )
    )
    roles = frozenset(roles)

    def run(
        role: Role,
        name: str,
        work: Callable[[], Awaitable[None]],
        *,
        handled: Callable[[], int] = lambda: 0,
        lag: Probe | None = None,
    ) -> None:
        metrics.task_restarts.labels(task=name)
        task = loops.supervisor.start(name, work, stop)
        beat = Heartbeat(
            services.redis,
            task=name,
            consumer=services.consumer,
            role=role.value,
            state=loops.supervisor.states[name],
            handled=handled,
            lag=lag,
        )
        loops.tasks.append(task)
        loops.tasks.append(asyncio.create_task(beat.run(stop), name=f"{name}-heartbeat"))

    if Role.WORKER in roles:
        runner = ConversationRunner(
            settings=services.settings,
            language=services.keywords,
            contacts=services.contacts,
            ledger=services.ledger,
            transcript=services.transcript,
            outbound=services.outbound_queue,
            timers=services.timers,
            window=services.window,
            metrics=services.metrics,
            hooks=services.hooks,
        )
        pipeline = EventPipeline(
            services.redis,
            services.contacts,
            services.transcript,
            services.metrics,
            on_contact_event=runner,
            hooks=services.hooks,
        )
        worker = InboundWorker(
            services.redis,
            pipeline,
            consumer=services.consumer,
            metrics=services.metrics,
            dead_letter_maxlen=services.settings.dead_events_kept,
        )
        # Only the shards this process holds: another worker's backlog is not this one's stall.
        inbound_lag = _group_lag(
            services,
            lambda: [(inbound_stream(shard), INBOUND_GROUP) for shard in worker.owned_shards],
        )
        run(
            Role.WORKER,
            "inbound-worker",
            lambda: worker.run(stop),
            handled=lambda: metrics.total(metrics.events_processed),
            lag=inbound_lag,
        )
        run(Role.WORKER, "timer-poller", lambda: run_timer_poller(services.timers, stop))
        keywords = services.keywords
        run(
            Role.WORKER,
            "keywords-watcher",
            lambda: keywords.run(stop),
            handled=lambda: keywords.reloads,
        )
    if Role.SENDER in roles:
        limiter = RateLimiter(
            services.redis,
            redis_keys.SEND_RATE.format(phone_number_id=services.settings.phone_number_id),
            services.settings.send_rate,
        )
        campaigns = CampaignSending.build(services)
        sender = Sender(
            services.redis,
            services.transcript,
            campaigns.transport,
            limiter,
            services.metrics,
            consumer=services.consumer,
            on_permanent_failure=campaigns.on_failure(
                RefusalReporter(services.inbound_queue, services.settings.phone_number_id)
            ),
        )
        run(
            Role.SENDER,
            "sender",
            lambda: sender.run(stop),
            handled=lambda: metrics.total(
                metrics.outbound_messages, result=("sent", "sandbox", "failed")
            ),
            lag=_group_lag(services, lambda: [(OUTBOUND_STREAM, OUTBOUND_GROUP)]),
        )
        for name, work in campaigns.loops(stop):
            run(Role.SENDER, name, work)
        if services.crm is not None:
            deliverer = services.crm.deliverer(consumer=services.consumer, metrics=services.metrics)

            async def crm_lag() -> int | None:
                return await queued_events(services.redis)

            run(
                Role.SENDER,
                "crm-deliverer",
                lambda: deliverer.run(stop),
                handled=lambda: metrics.total(metrics.crm_deliveries),
                lag=crm_lag,
            )
    return loops


def _group_lag(services: Services, consumed: Callable[[], list[tuple[str, str]]]) -> Probe:
    """Entries of the `consumed()` (stream, group) pairs not yet acknowledged: delivered but
    pending, plus not yet read (XINFO GROUPS `pending` + `lag`)."""

    async def lag() -> int | None:
        groups = consumed()
        if not groups:
            return 0
        pipe = services.redis.pipeline(transaction=False)
        for stream, _ in groups:
            pipe.xinfo_groups(stream)
        total = 0
        results = await pipe.execute(raise_on_error=False)
        for (_, group), infos in zip(groups, results, strict=True):
            if isinstance(infos, Exception):
                continue  # no stream yet: nothing waits in it
            for info in infos:
                name = info.get("name")
                if (name.decode() if isinstance(name, bytes) else name) != group:
                    continue
                total += int(info.get("pending") or 0) + int(info.get("lag") or 0)
        return total

    return lag
