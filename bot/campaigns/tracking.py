"""What became of each campaign message, and what each recipient did about it.

Registered on the service's hooks (`bot.hooks`), so the flows know nothing of campaigns:

- delivery statuses (`status_update`): sent, delivered, read, failed with Meta's code, found by
  the message's `biz_opaque_callback_data` (or, failing that, its wamid in the transcript).
  131050 (the user stopped marketing) also records the withdrawal and counts as an opt-out;
  130429 slows the campaigns (`bot.campaigns.throttle`); 131049 (Meta's per-user marketing limit)
  and 131026 (undeliverable) are failures, not retried by this campaign;
- refusals the sender got synchronously (the sender's failure hook): the same codes;
- consent changes (`consent_changed`): a reconfirmation under the campaign's policy version is
  `reconfirmed`, NO to the question `declined`, any other withdrawal (STOP, Meta's stop, 131050)
  `opted_out`, the deadline's lapse `lapsed`, for the categories the recipient was asked about
  and up to the campaign's deadline; every opt-out lets the quality guard look again;
- business notices (`business_update`): quality drops pause campaigns (`bot.campaigns.guard`).

Hooks are re-announced after a crash, so each write here is conditional and idempotent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from redis.asyncio import Redis

from bot.campaigns.guard import QualityGuard
from bot.campaigns.messages import parse_message_id
from bot.campaigns.repository import CampaignRepository
from bot.campaigns.throttle import Throttle
from bot.db.consent_models import ConsentEvent
from bot.db.models import Contact
from bot.graph import GraphError
from bot.outbound import OutboundMessage
from bot.streams import InboundQueue
from flows import events as ev
from flows.consent import ConsentAction, Method

log = logging.getLogger(__name__)

MARKETING_STOPPED = 131050
THROUGHPUT = 130429
_PROGRESS = ("sent", "delivered", "read")


def outcome_of(event: ConsentEvent, policy_version: str) -> str | None:
    """The campaign outcome a ledger row means, if any."""
    action = ConsentAction(event.action)
    method = Method(event.method)
    if action is ConsentAction.RECONFIRMED and (
        method is Method.CAMPAIGN_REPLY or event.policy_version == policy_version
    ):
        return "reconfirmed"
    if action is ConsentAction.WITHDRAWN:
        return "declined" if method is Method.CAMPAIGN_REPLY else "opted_out"
    if action is ConsentAction.LAPSED and method is Method.CAMPAIGN_DEADLINE:
        return "lapsed"
    return None


class CampaignTracker:
    def __init__(
        self,
        *,
        repository: CampaignRepository,
        redis: Redis,
        inbound: InboundQueue,
        throttle: Throttle,
        guard: QualityGuard,
        phone_number_id: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._repository = repository
        self._redis = redis
        self._inbound = inbound
        self._throttle = throttle
        self._guard = guard
        self._phone_number_id = phone_number_id
        self._clock = clock

    # ---------------------------------------------------------------- delivery
    async def on_status(self, contact: Contact | None, event: ev.StatusUpdate) -> None:
        tag = event.biz_opaque_callback_data
        ids = parse_message_id(tag)
        if ids is None:
            tag = await self._repository.message_id_of(event.wamid)
            ids = parse_message_id(tag)
        if ids is None or tag is None:
            return
        recipient_id = ids[1]
        now = self._clock()
        status = "read" if event.status == "played" else event.status
        if status in _PROGRESS:
            await self._repository.advance([recipient_id], status, now, wamid=event.wamid)
        elif status == "failed":
            error = event.errors[0] if event.errors else None
            code = error.code if error is not None else None
            await self._repository.advance(
                [recipient_id],
                "failed",
                now,
                wamid=event.wamid,
                error_code=code,
                error_title=error.title if error is not None else None,
            )
            await self._refused(recipient_id, code, contact_id=contact.id if contact else None)

    async def on_send_failure(self, message: OutboundMessage, error: GraphError) -> None:
        """The sender's permanent-failure hook (after the RefusalReporter)."""
        ids = parse_message_id(message.message_id)
        if ids is None:
            return
        await self._repository.advance(
            [ids[1]], "failed", self._clock(), error_code=error.code, error_title=error.title
        )
        await self._refused(ids[1], error.code, contact_id=None, already_reported=True)

    async def _refused(
        self,
        recipient_id: int,
        code: int | None,
        *,
        contact_id: int | None,
        already_reported: bool = False,
    ) -> None:
        if code == THROUGHPUT:
            await self._throttle.report()
        if code != MARKETING_STOPPED:
            return
        recipient = await self._repository.recipient(recipient_id)
        if recipient is None:
            return
        if not already_reported:
            await self._report_withdrawal(recipient.contact_id, recipient.campaign_id, recipient_id)
        if await self._repository.record_outcome(recipient_id, "opted_out", self._clock()):
            campaign = await self._repository.get(recipient.campaign_id)
            if campaign is not None:
                await self._guard.check_optouts(campaign)

    async def _report_withdrawal(
        self, contact_id: int, campaign_id: int, recipient_id: int
    ) -> None:
        """A 131050 that arrived as a status webhook: record the withdrawal in the contact's
        order, exactly as the sender does for a synchronous one (same event id)."""
        contact = await self._contact_ref(contact_id)
        if contact is None:
            return
        message_id = f"campaign:{campaign_id}:{recipient_id}"
        await self._inbound.accept(
            [
                ev.SendRefused(
                    event_id=f"refused:{message_id}:{MARKETING_STOPPED}",
                    phone_number_id=self._phone_number_id,
                    occurred_at=self._clock(),
                    contact=contact,
                    contact_id=contact_id,
                    message_id=message_id,
                    code=MARKETING_STOPPED,
                    category=None,
                )
            ]
        )

    async def _contact_ref(self, contact_id: int) -> ev.ContactRef | None:
        row = await self._repository.contact_identifiers(contact_id)
        if row is None or (not row[0] and not row[1]):
            return None
        return ev.ContactRef(wa_id=row[0], user_id=row[1])

    # ---------------------------------------------------------------- consent
    async def on_consent(self, contact: Contact, events: Sequence[ConsentEvent]) -> None:
        if contact.id is None or not events:
            return
        earliest = min(e.occurred_at for e in events)
        asked = await self._repository.asked_of_contact(contact.id, earliest)
        if not asked:
            return
        now = self._clock()
        for recipient, campaign in asked:
            assert recipient.id is not None
            categories = json.loads(recipient.categories_json or campaign.categories_json)
            for event in events:
                if event.category not in categories or event.occurred_at > campaign.deadline:
                    continue
                outcome = outcome_of(event, campaign.policy_version)
                if outcome is None:
                    continue
                changed = await self._repository.record_outcome(recipient.id, outcome, now)
                if changed and outcome == "opted_out":
                    fresh = await self._repository.get(campaign.id or 0)
                    if fresh is not None:
                        await self._guard.check_optouts(fresh)

    # ---------------------------------------------------------------- business
    async def on_business(self, event: ev.AccountUpdate) -> None:
        await self._guard.on_account_update(event)
