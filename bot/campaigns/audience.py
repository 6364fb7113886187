"""Who a campaign asks: the audience query, read one keyset page at a time.

The audience of a 100,000-contact business must not be held in memory, nor read in one long
transaction that pins a snapshot for the campaign's whole run. So it is read as pages of contact
ids in id order (``contact_id > cursor``), each page in its own short transaction, and turned
into recipient rows together with the new cursor. The same predicate (`Criteria.matching`) is
applied again to each recipient just before its message goes out, because consent moves while a
campaign runs: the query finds candidates, the re-check decides.

Policy versions are compared in Python (see `bot.campaigns.spec.version_below`), since dotted
numbers do not sort as text; the SQL narrows by category, status and age first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.campaigns.spec import version_below
from bot.db.consent_models import ConsentState
from flows.consent import ConsentStatus


@dataclass(frozen=True, slots=True)
class ConsentFact:
    """What the audience predicate needs of one (contact, category) state."""

    status: str
    since: datetime
    policy_version: str | None


@dataclass(frozen=True, slots=True)
class Criteria:
    """The audience predicate of one campaign (see `CampaignSpec`)."""

    categories: tuple[str, ...]
    older_than_days: int | None = None
    policy_below: str | None = None

    def cutoff(self, now: datetime) -> datetime | None:
        if self.older_than_days is None:
            return None
        return now - timedelta(days=self.older_than_days)

    def matches(self, fact: ConsentFact, now: datetime) -> bool:
        if fact.status != ConsentStatus.OPTED_IN:
            return False
        cutoff = self.cutoff(now)
        if cutoff is not None and fact.since > cutoff:
            return False
        return self.policy_below is None or version_below(fact.policy_version, self.policy_below)

    def matching(self, facts: Mapping[str, ConsentFact], now: datetime) -> tuple[str, ...]:
        """The campaign's categories this contact is to be asked about (possibly none)."""
        return tuple(c for c in self.categories if c in facts and self.matches(facts[c], now))


@dataclass(frozen=True, slots=True)
class AudiencePage:
    """One page of the audience: matching contact ids, and where the next page starts."""

    contact_ids: list[int]
    cursor: int
    done: bool


async def audience_page(
    session: AsyncSession, criteria: Criteria, *, after: int, limit: int, now: datetime
) -> AudiencePage:
    """The next `limit` candidate contacts after contact id `after`, filtered by `criteria`."""
    candidates = select(ConsentState.contact_id).where(
        col(ConsentState.contact_id) > after,
        col(ConsentState.category).in_(criteria.categories),
        col(ConsentState.status) == ConsentStatus.OPTED_IN.value,
    )
    cutoff = criteria.cutoff(now)
    if cutoff is not None:
        candidates = candidates.where(col(ConsentState.since) <= cutoff)
    statement = candidates.distinct().order_by(col(ConsentState.contact_id)).limit(limit)
    ids = list((await session.exec(statement)).all())
    done = len(ids) < limit
    cursor = ids[-1] if ids else after
    if criteria.policy_below is None or not ids:
        return AudiencePage(ids, cursor, done)
    facts = await consent_facts(session, ids, criteria.categories)
    matching = [i for i in ids if criteria.matching(facts.get(i, {}), now)]
    return AudiencePage(matching, cursor, done)


async def consent_facts(
    session: AsyncSession, contact_ids: Sequence[int], categories: Iterable[str]
) -> dict[int, dict[str, ConsentFact]]:
    """contact id -> category -> its current state, for these contacts and categories."""
    if not contact_ids:
        return {}
    rows = await session.exec(
        select(ConsentState).where(
            col(ConsentState.contact_id).in_(list(contact_ids)),
            col(ConsentState.category).in_(list(categories)),
        )
    )
    facts: dict[int, dict[str, ConsentFact]] = {}
    for state in rows.all():
        facts.setdefault(state.contact_id, {})[state.category] = ConsentFact(
            state.status, state.since, state.policy_version
        )
    return facts
