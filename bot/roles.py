"""The process roles of the contract and the background loops each one runs.

`serve` is all three in one process; `web`, `worker` and `sender` are the scale-out roles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from enum import Enum

from bot import redis_keys
from bot.campaigns.wiring import CampaignSending
from bot.conversations import ConversationRunner
from bot.inbound import InboundWorker
from bot.pipeline import EventPipeline
from bot.ratelimit import RateLimiter
from bot.sender import RefusalReporter, Sender
from bot.services import Services
from bot.timers import run_timer_poller

log = logging.getLogger(__name__)


class Role(Enum):
    WEB = "web"
    WORKER = "worker"
    SENDER = "sender"


ALL_ROLES = frozenset(Role)


def start_loops(
    services: Services, roles: Iterable[Role], stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """Start the worker and sender loops that `roles` ask for; they end when `stop` is set."""
    tasks: list[asyncio.Task[None]] = []
    roles = frozenset(roles)
    if Role.WORKER in roles:
        runner = ConversationRunner(
            settings=services.settings,
            language=services.language,
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
        tasks.append(asyncio.create_task(worker.run(stop), name="inbound-worker"))
        tasks.append(
            asyncio.create_task(run_timer_poller(services.timers, stop), name="timer-poller")
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
        tasks.append(asyncio.create_task(sender.run(stop), name="sender"))
        tasks.extend(campaigns.start(stop))
        if services.crm is not None:
            deliverer = services.crm.deliverer(consumer=services.consumer, metrics=services.metrics)
            tasks.append(asyncio.create_task(deliverer.run(stop), name="crm-deliverer"))
    for task in tasks:
        task.add_done_callback(_report_crash)
    return tasks


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("%s stopped: %r", task.get_name(), task.exception(), exc_info=task.exception())
