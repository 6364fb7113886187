"""Storage of campaigns and recipients: every write is one short, conditional statement.

Several dispatchers, senders, workers and API processes touch the same rows, so nothing here
reads, decides in Python and writes back. A status change is an UPDATE whose WHERE clause names
the states it may move from (a claim moves only `pending` rows, a delivery status only moves
forward, `failed` is final), and the caller learns from the rows it changed whether it won.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, func, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.campaigns.audience import ConsentFact, Criteria, audience_page, consent_facts
from bot.campaigns.messages import RecipientRef
from bot.campaigns.models import Campaign, CampaignRecipient
from bot.campaigns.spec import CampaignSpec, normalise_identifier
from bot.db.contacts import identifier_kind
from bot.db.models import Contact, ContactIdentity, TranscriptEntry, utcnow
from bot.db.transcript import TranscriptRepository
from bot.outbound import OutboundMessage

#: Where a recipient's message stands; a status only moves to a higher rank. `skipped` and
#: `failed` are final.
STATE_RANK: Final[Mapping[str, int]] = {
    "pending": 0,
    "claimed": 1,
    "queued": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "failed": 100,
    "skipped": 100,
}
DISPATCHED: Final = ("claimed", "queued", "sent", "delivered", "read", "failed")
OUTCOMES: Final = ("reconfirmed", "declined", "opted_out", "lapsed")
STATUSES: Final = ("draft", "running", "paused", "completed")
_INSERT_BATCH: Final = 1000


class TransitionError(ValueError):
    """The campaign is not in a status the requested change can start from."""

    def __init__(self, campaign_id: int, status: str, wanted: str) -> None:
        super().__init__(f"campaign {campaign_id} is {status}; it cannot be {wanted}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Counts:
    """A campaign's recipients by state, by outcome, by Meta error code, by skip reason."""

    states: dict[str, int]
    outcomes: dict[str, int]
    failures: dict[str, int]
    skipped: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.states.values())

    def at_least(self, state: str) -> int:
        """Recipients whose message reached `state` or beyond (failed ones excluded)."""
        rank = STATE_RANK[state]
        return sum(n for s, n in self.states.items() if rank <= STATE_RANK[s] < 100)

    @property
    def dispatched(self) -> int:
        return sum(self.states.get(s, 0) for s in DISPATCHED)


def criteria_of(campaign: Campaign) -> Criteria:
    return Criteria(
        categories=tuple(json.loads(campaign.categories_json)),
        older_than_days=campaign.older_than_days,
        policy_below=campaign.policy_below,
    )


def _lower_than(state: str) -> list[str]:
    rank = STATE_RANK[state]
    return [s for s, r in STATE_RANK.items() if r < rank and s != "pending"]


class CampaignRepository:
    """Campaigns and their recipients, stored through `session_factory`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # ------------------------------------------------------------------ campaigns
    async def create(
        self, spec: CampaignSpec, *, contact_ids: Sequence[int] | None, now: datetime
    ) -> Campaign:
        """Store a draft campaign; a listed audience becomes its recipients at once."""
        campaign = Campaign(
            name=spec.name,
            template_name=spec.template.name,
            template_language=spec.template.language,
            buttons_json=json.dumps(list(spec.template.buttons)),
            body_parameters_json=json.dumps(list(spec.template.body_parameters)),
            categories_json=json.dumps(list(spec.categories)),
            older_than_days=spec.older_than_days,
            policy_below=spec.policy_below,
            from_list=contact_ids is not None,
            policy_version=spec.policy_version,
            deadline=spec.deadline,
            on_deadline=spec.on_deadline,
            rate=spec.rate,
            daily_cap=spec.daily_cap,
            optout_threshold=spec.optout_threshold,
            status="draft",
            audience_done=contact_ids is not None,
            created_at=now,
            updated_at=now,
        )
        async with self._sessions() as session:
            session.add(campaign)
            await session.flush()
            assert campaign.id is not None
            unique = list(dict.fromkeys(contact_ids or ()))
            for start in range(0, len(unique), _INSERT_BATCH):
                await _insert_recipients(
                    session, campaign.id, unique[start : start + _INSERT_BATCH], now
                )
            await session.commit()
        return campaign

    async def get(self, campaign_id: int) -> Campaign | None:
        async with self._sessions() as session:
            return await session.get(Campaign, campaign_id, populate_existing=True)

    async def recent(self, *, limit: int = 100) -> list[Campaign]:
        async with self._sessions() as session:
            rows = await session.exec(
                select(Campaign).order_by(col(Campaign.id).desc()).limit(limit)
            )
            return list(rows.all())

    async def transition(
        self,
        campaign_id: int,
        *,
        allowed_from: Iterable[str],
        to: str,
        now: datetime,
        paused_by: str | None = None,
        reason: str | None = None,
    ) -> Campaign:
        """Move the campaign to `to` if its status is one of `allowed_from`.

        Raises LookupError for an unknown campaign and TransitionError otherwise.
        """
        values: dict[str, Any] = {
            "status": to,
            "updated_at": now,
            "paused_by": paused_by,
            "pause_reason": reason,
        }
        if to == "running":
            values["capped_until"] = None
        async with self._sessions() as session:
            result = await session.exec(
                update(Campaign)
                .where(col(Campaign.id) == campaign_id, col(Campaign.status).in_(allowed_from))
                .values(**values)
            )
            if to == "running" and result.rowcount == 1:
                await session.exec(
                    update(Campaign)
                    .where(col(Campaign.id) == campaign_id, col(Campaign.started_at).is_(None))
                    .values(started_at=now)
                )
            await session.commit()
        campaign = await self.get(campaign_id)
        if campaign is None:
            raise LookupError(f"no campaign {campaign_id}")
        if result.rowcount != 1:
            raise TransitionError(campaign_id, campaign.status, to)
        return campaign

    async def pause_running(
        self, *, reason: str, now: datetime, template: str | None = None, only: int | None = None
    ) -> list[int]:
        """Pause (by the quality guard) every running campaign, or those sending `template`,
        or campaign `only`; return the ids paused."""
        statement = select(Campaign.id).where(col(Campaign.status) == "running")
        if template is not None:
            statement = statement.where(col(Campaign.template_name) == template)
        if only is not None:
            statement = statement.where(col(Campaign.id) == only)
        paused: list[int] = []
        async with self._sessions() as session:
            for campaign_id in (await session.exec(statement)).all():
                assert campaign_id is not None
                result = await session.exec(
                    update(Campaign)
                    .where(col(Campaign.id) == campaign_id, col(Campaign.status) == "running")
                    .values(status="paused", paused_by="guard", pause_reason=reason, updated_at=now)
                )
                if result.rowcount == 1:
                    paused.append(campaign_id)
            await session.commit()
        return paused

    async def runnable(self, now: datetime) -> list[int]:
        """Running campaigns the daily cap does not hold back now."""
        async with self._sessions() as session:
            rows = await session.exec(
                select(Campaign.id).where(
                    col(Campaign.status) == "running",
                    or_(col(Campaign.capped_until).is_(None), col(Campaign.capped_until) <= now),
                )
            )
            return [i for i in rows.all() if i is not None]

    async def set_capped(self, campaign_id: int, until: datetime | None, now: datetime) -> None:
        async with self._sessions() as session:
            await session.exec(
                update(Campaign)
                .where(col(Campaign.id) == campaign_id)
                .values(capped_until=until, updated_at=now)
            )
            await session.commit()

    async def complete_if_done(self, campaign_id: int, now: datetime) -> bool:
        """Mark a running campaign completed when its audience is read and nobody is waiting."""
        async with self._sessions() as session:
            waiting = (
                await session.exec(
                    select(CampaignRecipient.id)
                    .where(
                        col(CampaignRecipient.campaign_id) == campaign_id,
                        col(CampaignRecipient.state).in_(("pending", "claimed")),
                    )
                    .limit(1)
                )
            ).first()
            if waiting is not None:
                return False
            result = await session.exec(
                update(Campaign)
                .where(
                    col(Campaign.id) == campaign_id,
                    col(Campaign.status) == "running",
                    col(Campaign.audience_done).is_(True),
                )
                .values(status="completed", completed_at=now, updated_at=now)
            )
            await session.commit()
            return result.rowcount == 1

    # ------------------------------------------------------------------ audience
    async def resolve_identifiers(self, identifiers: Sequence[str]) -> tuple[list[int], list[str]]:
        """Contact ids of wa_ids / BSUIDs (current or former holders), and those not known."""
        found: dict[str, int] = {}
        values = [normalise_identifier(i) for i in identifiers]
        async with self._sessions() as session:
            for start in range(0, len(values), _INSERT_BATCH):
                chunk = values[start : start + _INSERT_BATCH]
                rows = await session.exec(
                    select(
                        ContactIdentity.value,
                        ContactIdentity.kind,
                        ContactIdentity.contact_id,
                        ContactIdentity.valid_to,
                    ).where(col(ContactIdentity.value).in_(chunk))
                )
                best: dict[str, tuple[bool, datetime, int]] = {}
                for value, kind, contact_id, valid_to in rows.all():
                    if kind != identifier_kind(value):
                        continue
                    current = valid_to is None
                    rank = (current, valid_to or now_floor(), contact_id)
                    if value not in best or rank > best[value]:
                        best[value] = rank
                found.update({value: rank[2] for value, rank in best.items()})
        ids = list(dict.fromkeys(found[v] for v in values if v in found))
        unknown = [v for v in values if v not in found]
        return ids, unknown

    async def materialise(self, campaign: Campaign, *, limit: int, now: datetime) -> int:
        """Turn the next audience page into pending recipients; return how many were added.

        The cursor moves in the same transaction, guarded by its old value, so two
        dispatchers racing on one campaign cannot add a page twice.
        """
        assert campaign.id is not None
        async with self._sessions() as session:
            page = await audience_page(
                session, criteria_of(campaign), after=campaign.audience_cursor, limit=limit, now=now
            )
            moved = await session.exec(
                update(Campaign)
                .where(
                    col(Campaign.id) == campaign.id,
                    col(Campaign.audience_cursor) == campaign.audience_cursor,
                    col(Campaign.audience_done).is_(False),
                )
                .values(audience_cursor=page.cursor, audience_done=page.done, updated_at=now)
            )
            if moved.rowcount != 1:
                await session.rollback()
                return 0
            await _insert_recipients(session, campaign.id, page.contact_ids, now)
            await session.commit()
        campaign.audience_cursor = page.cursor
        campaign.audience_done = page.done
        return len(page.contact_ids)

    # ------------------------------------------------------------------ dispatching
    async def waiting(
        self, campaign_id: int, state: str, *, after: int, limit: int
    ) -> list[RecipientRef]:
        """Recipients in `state` (pending or claimed) after recipient id `after`, in id order,
        with their contact's current identifiers."""
        async with self._sessions() as session:
            rows = await session.exec(
                select(CampaignRecipient.id, CampaignRecipient.contact_id, Contact)
                .join(Contact, col(Contact.id) == col(CampaignRecipient.contact_id))
                .where(
                    col(CampaignRecipient.campaign_id) == campaign_id,
                    col(CampaignRecipient.state) == state,
                    col(CampaignRecipient.id) > after,
                )
                .order_by(col(CampaignRecipient.id))
                .limit(limit)
            )
            return [
                RecipientRef(rid, campaign_id, contact_id, c.wa_id, c.user_id, c.locale)
                for rid, contact_id, c in rows.all()
                if rid is not None
            ]

    async def consent_facts(
        self, contact_ids: Sequence[int], categories: Iterable[str]
    ) -> dict[int, dict[str, ConsentFact]]:
        async with self._sessions() as session:
            return await consent_facts(session, contact_ids, categories)

    async def skip(self, reasons: Mapping[int, str], now: datetime) -> None:
        """Mark pending (or claimed, on recovery) recipients skipped, with the reason."""
        by_reason: dict[str, list[int]] = {}
        for rid, reason in reasons.items():
            by_reason.setdefault(reason, []).append(rid)
        if not by_reason:
            return
        async with self._sessions() as session:
            for reason, ids in by_reason.items():
                await session.exec(
                    update(CampaignRecipient)
                    .where(
                        col(CampaignRecipient.id).in_(ids),
                        col(CampaignRecipient.state).in_(("pending", "claimed")),
                    )
                    .values(state="skipped", skip_reason=reason, updated_at=now)
                )
            await session.commit()

    async def claim(
        self, groups: Mapping[tuple[str, ...], Sequence[int]], now: datetime
    ) -> set[int]:
        """Move pending recipients to claimed (with the categories they are asked about);
        return the ids this call claimed. A recipient is claimed once, ever."""
        claimed: set[int] = set()
        async with self._sessions() as session:
            for categories, ids in groups.items():
                rows = await session.exec(
                    update(CampaignRecipient)
                    .where(
                        col(CampaignRecipient.id).in_(list(ids)),
                        col(CampaignRecipient.state) == "pending",
                    )
                    .values(
                        state="claimed",
                        claimed_at=now,
                        categories_json=json.dumps(list(categories)),
                        updated_at=now,
                    )
                    .returning(col(CampaignRecipient.id))
                )
                claimed.update(int(i) for i in rows.scalars().all())
            await session.commit()
        return claimed

    async def mark_queued(self, ids: Sequence[int], now: datetime) -> None:
        if not ids:
            return
        async with self._sessions() as session:
            await session.exec(
                update(CampaignRecipient)
                .where(
                    col(CampaignRecipient.id).in_(list(ids)),
                    col(CampaignRecipient.state) == "claimed",
                )
                .values(state="queued", updated_at=now)
            )
            await session.commit()

    async def record_outbound(self, messages: Sequence[OutboundMessage], now: datetime) -> None:
        """Write the transcript rows of a chunk's messages in one transaction, as `queued`.

        `OutboundQueue.enqueue` records each message again and finds it there (a no-op that
        writes nothing), so a chunk costs one commit instead of one per message: on a disk
        whose flush takes milliseconds that is what lets a campaign reach 1,000 messages/s.
        """
        if not messages:
            return
        rows = [
            {
                "contact_id": m.contact_id,
                "direction": "outbound",
                "kind": m.kind,
                "message_id": m.message_id,
                "status": "queued",
                "text": m.text,
                "payload_json": json.dumps(m.body, ensure_ascii=False),
                "occurred_at": now,
                "recorded_at": now,
            }
            for m in messages
        ]
        table = TranscriptEntry.__table__  # type: ignore[attr-defined]
        async with self._sessions() as session:
            dialect = session.bind.dialect.name if session.bind is not None else ""
            statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
            await session.exec(statement.values(rows).on_conflict_do_nothing())
            await session.commit()

    async def claimed_since(self, campaign_id: int, since: datetime) -> int:
        """Recipients claimed at or after `since` (the daily cap's count)."""
        async with self._sessions() as session:
            count = (
                await session.exec(
                    select(func.count())
                    .select_from(CampaignRecipient)
                    .where(
                        col(CampaignRecipient.campaign_id) == campaign_id,
                        col(CampaignRecipient.claimed_at) >= since,
                    )
                )
            ).one()
        return int(count)

    # ------------------------------------------------------------------ tracking
    async def advance(
        self,
        recipient_ids: Sequence[int],
        state: str,
        now: datetime,
        *,
        wamid: str | None = None,
        error_code: int | None = None,
        error_title: str | None = None,
    ) -> list[int]:
        """Move recipients' messages forward to `state`; return the ids that moved."""
        values: dict[str, Any] = {"state": state, "updated_at": now}
        if wamid is not None:
            values["wamid"] = wamid
        if error_code is not None:
            values["error_code"] = error_code
        if error_title is not None:
            values["error_title"] = error_title[:500]
        async with self._sessions() as session:
            rows = await session.exec(
                update(CampaignRecipient)
                .where(
                    col(CampaignRecipient.id).in_(list(recipient_ids)),
                    col(CampaignRecipient.state).in_(_lower_than(state)),
                )
                .values(**values)
                .returning(col(CampaignRecipient.id))
            )
            moved = [int(i) for i in rows.scalars().all()]
            await session.commit()
        return moved

    async def record_outcome(self, recipient_id: int, outcome: str, now: datetime) -> bool:
        """Note what the contact did; an opt-out overrides any earlier answer, nothing else
        replaces one. True when the row changed."""
        condition: ColumnElement[bool] = col(CampaignRecipient.outcome).is_(None)
        if outcome == "opted_out":
            condition = or_(condition, col(CampaignRecipient.outcome) != "opted_out")
        async with self._sessions() as session:
            result = await session.exec(
                update(CampaignRecipient)
                .where(col(CampaignRecipient.id) == recipient_id, condition)
                .values(outcome=outcome, updated_at=now)
            )
            await session.commit()
        return bool(result.rowcount == 1)

    async def asked_of_contact(
        self, contact_id: int, at: datetime
    ) -> list[tuple[CampaignRecipient, Campaign]]:
        """The contact's recipient rows whose message went out, in campaigns whose deadline is
        not past at `at`, newest first."""
        async with self._sessions() as session:
            rows = await session.exec(
                select(CampaignRecipient, Campaign)
                .join(Campaign, col(Campaign.id) == col(CampaignRecipient.campaign_id))
                .where(
                    col(CampaignRecipient.contact_id) == contact_id,
                    col(CampaignRecipient.state).in_(DISPATCHED),
                    col(Campaign.deadline) >= at,
                )
                .order_by(col(CampaignRecipient.id).desc())
            )
            return [(r, c) for r, c in rows.all()]

    async def message_id_of(self, wamid: str) -> str | None:
        """Our id of the outbound message Meta knows as `wamid` (from the transcript)."""
        return await TranscriptRepository(self._sessions).message_id_of(wamid)

    async def contact_identifiers(self, contact_id: int) -> tuple[str | None, str | None] | None:
        """(wa_id, user_id) of a contact, None when it no longer exists."""
        async with self._sessions() as session:
            contact = await session.get(Contact, contact_id)
        return None if contact is None else (contact.wa_id, contact.user_id)

    async def recipient(self, recipient_id: int) -> CampaignRecipient | None:
        async with self._sessions() as session:
            return await session.get(CampaignRecipient, recipient_id, populate_existing=True)

    async def counts(self, campaign_id: int) -> Counts:
        mine = col(CampaignRecipient.campaign_id) == campaign_id
        counts = Counts({}, {}, {}, {})
        async with self._sessions() as session:
            by_state = await session.exec(
                select(CampaignRecipient.state, CampaignRecipient.outcome, func.count())
                .where(mine)
                .group_by(col(CampaignRecipient.state), col(CampaignRecipient.outcome))
            )
            for state, outcome, n in by_state.all():
                counts.states[state] = counts.states.get(state, 0) + n
                if outcome is not None:
                    counts.outcomes[outcome] = counts.outcomes.get(outcome, 0) + n
            by_reason = await session.exec(
                select(CampaignRecipient.error_code, CampaignRecipient.skip_reason, func.count())
                .where(mine, col(CampaignRecipient.state).in_(("failed", "skipped")))
                .group_by(col(CampaignRecipient.error_code), col(CampaignRecipient.skip_reason))
            )
            for code, reason, n in by_reason.all():
                if reason is not None:
                    counts.skipped[reason] = counts.skipped.get(reason, 0) + n
                else:
                    key = str(code) if code is not None else "unknown"
                    counts.failures[key] = counts.failures.get(key, 0) + n
        return counts

    async def optout_sample(self, campaign_id: int) -> tuple[int, int]:
        """(delivered, opted out) among a campaign's recipients, for the quality guard."""
        async with self._sessions() as session:
            delivered, opted_out = (
                await session.exec(
                    select(
                        func.count().filter(
                            col(CampaignRecipient.state).in_(("delivered", "read"))
                        ),
                        func.count().filter(col(CampaignRecipient.outcome) == "opted_out"),
                    ).where(col(CampaignRecipient.campaign_id) == campaign_id)
                )
            ).one()
        return int(delivered), int(opted_out)


def now_floor() -> datetime:
    """A time earlier than any identity's end (sorts current identities first)."""
    return datetime.min.replace(tzinfo=utcnow().tzinfo)


async def _insert_recipients(
    session: AsyncSession, campaign_id: int, contact_ids: Sequence[int], now: datetime
) -> None:
    if not contact_ids:
        return
    table = CampaignRecipient.__table__  # type: ignore[attr-defined]
    await session.exec(
        insert(table).values(
            [
                {"campaign_id": campaign_id, "contact_id": c, "state": "pending", "updated_at": now}
                for c in contact_ids
            ]
        )
    )
