"""The gate as the service asks it: reads the contact's consent and window, then asks the pure
`flows.gate.can_send`. `/v1/.../can-send` and (later) `POST /v1/messages` both go through here,
so the answer the API gives is the rule the sender applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.db.ledger import LedgerRepository
from bot.db.models import Contact
from bot.window import WindowStore
from flows.consent import Category, ConsentStatus
from flows.effects import Purpose
from flows.gate import GateDecision, can_send


@dataclass(frozen=True, slots=True)
class GateAnswer:
    decision: GateDecision
    status: ConsentStatus
    window_open: bool
    window_closes_at: datetime | None


class ConsentGate:
    def __init__(
        self, ledger: LedgerRepository, window: WindowStore, categories: tuple[Category, ...]
    ) -> None:
        self._ledger = ledger
        self._window = window
        self._categories = {c.name: c for c in categories}

    def category(self, name: str) -> Category | None:
        return self._categories.get(name)

    async def check(
        self,
        contact: Contact | None,
        category_name: str,
        *,
        template: bool,
        now: datetime | None = None,
    ) -> GateAnswer:
        """May a business message of `category_name` go to `contact` now?"""
        now = now or datetime.now(UTC)
        category = self._categories.get(category_name)
        status = ConsentStatus.NONE
        closes_at = None
        if contact is not None and contact.id is not None:
            view = (await self._ledger.current(contact.id)).get(category_name)
            status = view.status if view is not None else ConsentStatus.NONE
            closes_at = await self._window.closes_at(contact.id)
        window_open = closes_at is not None and now < closes_at
        decision = can_send(
            purpose=Purpose.BUSINESS,
            template=template,
            window_open=window_open,
            category=category,
            status=status,
        )
        return GateAnswer(decision, status, window_open, closes_at)
