"""A campaign's reply and opt-out rates over time, for the charts of its console page.

The recipients table keeps when each message was claimed for sending (``claimed_at``) and when
the recipient's row last changed (``updated_at``, which is when their answer was recorded: an
answer comes after delivery and reading). Counting, at evenly spaced instants from the start to
now, the messages sent and the answers recorded so far gives cumulative rates; one aggregate
query over the campaign's rows computes every point, whatever the audience's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, case, func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.campaigns.models import Campaign, CampaignRecipient

POINTS: Final = 24
REPLIES: Final = ("reconfirmed", "declined", "opted_out")


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    at: datetime
    sent: int
    replies: int
    optouts: int

    @property
    def reply_rate(self) -> float:
        return self.replies / self.sent if self.sent else 0.0

    @property
    def optout_rate(self) -> float:
        return self.optouts / self.sent if self.sent else 0.0


def instants(start: datetime, end: datetime, points: int = POINTS) -> list[datetime]:
    """``points`` evenly spaced instants after ``start``, the last one ``end``."""
    if end <= start:
        return []
    step = (end - start) / points
    return [start + step * (i + 1) for i in range(points)]


def _count_until(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def campaign_series(
    sessions: async_sessionmaker[AsyncSession], campaign: Campaign, now: datetime
) -> list[SeriesPoint]:
    """Cumulative sent, replies and opt-outs at each instant since the campaign started."""
    if campaign.started_at is None or campaign.id is None:
        return []
    moments = instants(campaign.started_at, campaign.completed_at or now)
    if not moments:
        return []
    claimed = col(CampaignRecipient.claimed_at)
    updated = col(CampaignRecipient.updated_at)
    outcome = col(CampaignRecipient.outcome)
    columns = []
    for moment in moments:
        columns.append(_count_until(claimed <= moment))
        columns.append(_count_until(and_(outcome.in_(REPLIES), updated <= moment)))
        columns.append(_count_until(and_(outcome == "opted_out", updated <= moment)))
    statement = select(*columns).where(
        col(CampaignRecipient.campaign_id) == campaign.id, claimed.is_not(None)
    )
    async with sessions() as session:
        row = (await session.exec(statement)).one()
    values = [int(v) for v in row]
    return [SeriesPoint(moment, *values[3 * i : 3 * i + 3]) for i, moment in enumerate(moments)]
