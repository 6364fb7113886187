"""How the service's roles run campaigns: hooks in every process, sending in the sender role.

`register_campaign_tracking` puts the tracker on the composition root's hooks (statuses, consent
changes, business notices reach it in the worker). `CampaignSending` is what the `sender` role
adds: the transport (the general at-most-once `bot.send_guard.SendGuard`, wrapped by the
campaigns' own reporting so that a message the guard knows Meta took is marked sent too), the
failure hook chained after the sender's own, the dispatcher loop and the flusher of sent marks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.campaigns.dispatcher import CampaignDispatcher, DispatchContext
from bot.campaigns.guard import QualityGuard
from bot.campaigns.repository import CampaignRepository
from bot.campaigns.send_guard import CampaignTransport, SentMarks
from bot.campaigns.throttle import Throttle
from bot.campaigns.tracking import CampaignTracker
from bot.db.engine import session_factory
from bot.graph import GraphError
from bot.hooks import Hooks
from bot.outbound import OutboundMessage
from bot.send_guard import SendGuard
from bot.sender import FailureHook, Transport
from bot.streams import InboundQueue

if TYPE_CHECKING:
    from bot.services import Services


#: A named loop's body, started afresh on every (re)start.
Loop = Callable[[], Coroutine[Any, Any, None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def campaign_tracker(
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis,
    phone_number_id: str,
    clock: Callable[[], datetime] = utcnow,
) -> CampaignTracker:
    repository = CampaignRepository(sessions)
    return CampaignTracker(
        repository=repository,
        redis=redis,
        inbound=InboundQueue(redis),
        throttle=Throttle(redis, phone_number_id),
        guard=QualityGuard(repository, clock),
        phone_number_id=phone_number_id,
        clock=clock,
    )


def register_campaign_tracking(
    hooks: Hooks,
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis,
    phone_number_id: str,
) -> CampaignTracker:
    """Observe statuses, consent changes and business notices for the campaigns (called by
    the composition root, for every process)."""
    tracker = campaign_tracker(sessions, redis, phone_number_id)
    hooks.status_update.append(tracker.on_status)
    hooks.consent_changed.append(tracker.on_consent)
    hooks.business_update.append(tracker.on_business)
    return tracker


def chain_failures(*hooks: FailureHook) -> FailureHook:
    """One failure hook that calls each of `hooks` in order."""

    async def chained(message: OutboundMessage, error: GraphError) -> None:
        for hook in hooks:
            await hook(message, error)

    return chained


@dataclass(frozen=True, slots=True)
class CampaignSending:
    """The sender role's campaign parts, built from the services."""

    transport: Transport
    tracker: CampaignTracker
    dispatcher: CampaignDispatcher
    marks: SentMarks

    @classmethod
    def build(
        cls,
        services: Services,
        *,
        transport: Transport | None = None,
        lease_ttl_ms: int = 10_000,
        clock: Callable[[], datetime] = utcnow,
    ) -> CampaignSending:
        """`transport` is what the campaigns' reporting wraps: by default the services'
        transport behind a `SendGuard` with the configured grace period."""
        sessions = session_factory(services.engine)
        repository = CampaignRepository(sessions)
        throttle = Throttle(services.redis, services.settings.phone_number_id)
        marks = SentMarks(repository, clock, interval=0.5)
        context = DispatchContext(
            repository=repository,
            transcript=services.transcript,
            redis=services.redis,
            inbound=services.inbound_queue,
            outbound=services.outbound_queue,
            throttle=throttle,
            business_name=services.settings.business_name,
            phone_number_id=services.settings.phone_number_id,
            clock=clock,
            template_languages=dict(services.settings.template_languages),
            templates=services.templates,
        )
        return cls(
            transport=CampaignTransport(
                transport
                if transport is not None
                else SendGuard(
                    services.transport,
                    services.redis,
                    grace_seconds=services.settings.send_guard_grace_seconds,
                ),
                throttle,
                marks,
            ),
            tracker=campaign_tracker(
                sessions, services.redis, services.settings.phone_number_id, clock
            ),
            dispatcher=CampaignDispatcher(
                context, consumer=services.consumer, lease_ttl_ms=lease_ttl_ms
            ),
            marks=marks,
        )

    def on_failure(self, first: FailureHook) -> FailureHook:
        """`first` (the sender's refusal reporter), then the campaign tracker."""
        return chain_failures(first, self.tracker.on_send_failure)

    def loops(
        self, stop: asyncio.Event
    ) -> list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]]:
        """The sender role's campaign loops, by name, for `bot.roles` to supervise."""
        return [
            ("campaign-dispatcher", lambda: self.dispatcher.run(stop)),
            ("campaign-sent-marks", lambda: self.marks.run(stop)),
        ]

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """The loops as bare tasks (tests that drive a sender by hand)."""
        return [asyncio.create_task(work(), name=name) for name, work in self.loops(stop)]
