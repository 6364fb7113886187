"""A campaign's numbers, as `GET /v1/campaigns/{id}` returns them and the CLI shows them.

`counts` are cumulative along the message's way (`sent` includes those delivered and read,
`delivered` those read), so each is "how many got at least this far"; `states` are the exact
current states. Outcomes are what recipients did, independent of delivery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.campaigns.guard import MIN_DELIVERED
from bot.campaigns.models import Campaign
from bot.campaigns.repository import OUTCOMES, CampaignRepository, Counts
from bot.campaigns.throttle import Throttle, effective_rate


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def phase(campaign: Campaign, now: datetime) -> str:
    """The status, or `capped` while the daily cap holds a running campaign back."""
    if campaign.status == "running" and campaign.capped_until and campaign.capped_until > now:
        return "capped"
    return campaign.status


@dataclass(frozen=True, slots=True)
class Snapshot:
    campaign: Campaign
    counts: Counts
    throttle_level: int
    now: datetime


async def snapshot(
    repository: CampaignRepository, throttle: Throttle, campaign: Campaign, now: datetime
) -> Snapshot:
    assert campaign.id is not None
    return Snapshot(campaign, await repository.counts(campaign.id), await throttle.level(), now)


def summary_json(campaign: Campaign, now: datetime) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "phase": phase(campaign, now),
        "pause_reason": campaign.pause_reason,
        "template": {"name": campaign.template_name, "language": campaign.template_language},
        "policy_version": campaign.policy_version,
        "deadline": _iso(campaign.deadline),
        "created_at": _iso(campaign.created_at),
    }


def report_json(shot: Snapshot) -> dict[str, Any]:
    campaign, counts = shot.campaign, shot.counts
    delivered = counts.at_least("delivered")
    opted_out = counts.outcomes.get("opted_out", 0)
    total = counts.total
    done = counts.dispatched + counts.states.get("skipped", 0)
    return {
        **summary_json(campaign, shot.now),
        "paused_by": campaign.paused_by,
        "template": {
            "name": campaign.template_name,
            "language": campaign.template_language,
            "buttons": json.loads(campaign.buttons_json),
            "body_parameters": json.loads(campaign.body_parameters_json),
        },
        "audience": {
            "categories": json.loads(campaign.categories_json),
            "older_than_days": campaign.older_than_days,
            "policy_below": campaign.policy_below,
            "listed": campaign.from_list,
            "complete": campaign.audience_done,
        },
        "on_deadline": campaign.on_deadline,
        "rate": {
            "configured": campaign.rate,
            "effective": effective_rate(campaign.rate, shot.throttle_level),
            "slowed_by_130429": shot.throttle_level > 0,
        },
        "daily_cap": campaign.daily_cap,
        "capped_until": _iso(campaign.capped_until),
        "counts": {
            "recipients": total,
            "pending": counts.states.get("pending", 0),
            "skipped": counts.states.get("skipped", 0),
            "queued": counts.dispatched,
            "sent": counts.at_least("sent"),
            "delivered": delivered,
            "read": counts.at_least("read"),
            "failed": counts.states.get("failed", 0),
            **{outcome: counts.outcomes.get(outcome, 0) for outcome in OUTCOMES},
        },
        "states": dict(sorted(counts.states.items())),
        "failures": dict(sorted(counts.failures.items())),
        "skipped_reasons": dict(sorted(counts.skipped.items())),
        "progress": {
            "done": done,
            "total": total,
            "fraction": round(done / total, 4)
            if total
            else (1.0 if campaign.audience_done else 0.0),
            "audience_complete": campaign.audience_done,
        },
        "guard": {
            "optout_rate": round(opted_out / delivered, 4) if delivered else 0.0,
            "threshold": campaign.optout_threshold,
            "min_delivered": MIN_DELIVERED,
            "delivered": delivered,
            "opted_out": opted_out,
        },
        "started_at": _iso(campaign.started_at),
        "completed_at": _iso(campaign.completed_at),
        "updated_at": _iso(campaign.updated_at),
    }
