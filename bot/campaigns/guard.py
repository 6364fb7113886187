"""The quality guard: a campaign pauses itself before it costs the business its number.

Meta rates a number (and each template) by how recipients react; many blocks and opt-outs lower
the rating, then the messaging limit, and finally get the number restricted. So a campaign stops
by itself, saying why, when:

- its opt-out rate passes its threshold (default QUALITY_GUARD_OPTOUT_RATE, 2 %): recipients
  who opted out (STOP, Meta's "stop marketing", 131050) divided by recipients whose message was
  delivered, checked on every opt-out once at least `MIN_DELIVERED` (50) were delivered, so two
  early STOPs cannot halt a campaign of thousands; a reply NO to the re-consent question is an
  answer, not a complaint, and does not count;
- Meta reports the number's quality dropped (`phone_number_quality_update` with event FLAGGED or
  DOWNGRADE): every running campaign pauses;
- Meta lowers a template's quality score (`message_template_quality_update`, new score YELLOW or
  RED below the previous one): the running campaigns sending that template pause.

Resuming is the operator's call (`resume`); the guard looks again at the next opt-out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from bot.campaigns.models import Campaign
from bot.campaigns.repository import CampaignRepository
from flows import events as ev

log = logging.getLogger(__name__)

MIN_DELIVERED: Final = 50
NUMBER_DROPS: Final = frozenset({"FLAGGED", "DOWNGRADE"})
_TEMPLATE_RANK: Final = {"GREEN": 3, "YELLOW": 2, "RED": 1}


class QualityGuard:
    def __init__(self, repository: CampaignRepository, clock: Callable[[], datetime]) -> None:
        self._repository = repository
        self._clock = clock

    async def check_optouts(self, campaign: Campaign) -> bool:
        """Pause `campaign` if its opt-out rate is past its threshold; True when paused."""
        assert campaign.id is not None
        if campaign.status != "running":
            return False
        delivered, opted_out = await self._repository.optout_sample(campaign.id)
        if delivered < MIN_DELIVERED or opted_out / delivered <= campaign.optout_threshold:
            return False
        reason = (
            f"opt-out rate {opted_out / delivered:.1%} ({opted_out} of {delivered} delivered) "
            f"passed the {campaign.optout_threshold:.1%} threshold"
        )
        paused = await self._repository.pause_running(
            reason=reason, now=self._clock(), only=campaign.id
        )
        if paused:
            log.warning("campaign %s paused: %s", campaign.id, reason)
        return bool(paused)

    async def on_account_update(self, event: ev.AccountUpdate) -> list[int]:
        """Pause campaigns when Meta reports a quality drop; return the ids paused."""
        try:
            value: Any = json.loads(event.data_json)
        except ValueError:
            return []
        if not isinstance(value, dict):
            return []
        if event.field == "phone_number_quality_update":
            change = str(value.get("event") or "").upper()
            if change not in NUMBER_DROPS:
                return []
            limit = value.get("current_limit") or value.get("max_daily_conversations_per_business")
            reason = f"Meta reported the number's quality: {change}"
            if limit:
                reason += f" (messaging limit now {limit})"
            return await self._pause(reason, template=None)
        if event.field == "message_template_quality_update":
            new = str(value.get("new_quality_score") or "").upper()
            old = str(value.get("previous_quality_score") or "").upper()
            name = value.get("message_template_name")
            if new not in ("YELLOW", "RED") or not isinstance(name, str):
                return []
            if _TEMPLATE_RANK.get(new, 0) >= _TEMPLATE_RANK.get(old, 4):
                return []
            language = value.get("message_template_language")
            reason = f"Meta lowered template {name}'s quality from {old or 'unknown'} to {new}"
            if isinstance(language, str) and language:
                reason += f" ({language})"
            return await self._pause(reason, template=name)
        return []

    async def _pause(self, reason: str, *, template: str | None) -> list[int]:
        paused = await self._repository.pause_running(
            reason=reason, now=self._clock(), template=template
        )
        for campaign_id in paused:
            log.warning("campaign %s paused: %s", campaign_id, reason)
        return paused
