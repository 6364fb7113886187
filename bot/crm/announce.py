"""The hooks that turn what the conversations did into queued CRM events.

Registered on `Hooks` at the composition root when `BUSINESS_WEBHOOK_URL` is set. The worker
calls them after it has durably decided, and again after a crash (hooks are replayed from the
conversation's outbox), which is why events have deterministic ids and the outbox drops the ones
it already has. A failure here (Redis down) fails the inbound event, which is then retried, so
no consent change goes unannounced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bot.crm.events import CrmEvent, consent_changed, fixed_status, message_received, statuses_after
from bot.crm.outbox import CrmOutbox
from bot.db.consent_models import ConsentEvent
from bot.db.ledger import LedgerRepository
from bot.db.models import Contact
from flows import events as ev
from flows.consent import ConsentAction, ConsentStatus

_HISTORY_PAGE: Final = 1000


class CrmAnnouncer:
    """`consent_changed` and `unhandled_message` observers that queue CRM events."""

    def __init__(
        self, outbox: CrmOutbox, ledger: LedgerRepository, *, phone_number_id: str
    ) -> None:
        self._outbox = outbox
        self._ledger = ledger
        self._phone_number_id = phone_number_id

    async def consent_changed(self, contact: Contact, rows: Sequence[ConsentEvent]) -> None:
        """One `consent.changed` per ledger row, in ledger order."""
        if not rows or contact.id is None:
            return
        statuses = await self._statuses(contact.id, rows)
        events: list[CrmEvent] = []
        for row in rows:
            if row.id is None:
                continue
            status = statuses.get(row.id, ConsentStatus.NONE)
            events.append(
                consent_changed(contact, row, status, phone_number_id=self._phone_number_id)
            )
        await self._outbox.enqueue(events)

    async def unhandled_message(self, contact: Contact, event: ev.Event) -> None:
        """One `message.received` for a customer message the flows did not answer."""
        crm_event = message_received(contact, event, phone_number_id=self._phone_number_id)
        if crm_event is not None:
            await self._outbox.enqueue([crm_event])

    async def _statuses(
        self, contact_id: int, rows: Sequence[ConsentEvent]
    ) -> dict[int, ConsentStatus]:
        """The status after each row: from the action alone when it decides the status, else
        by folding the contact's ledger (a request, a decline or an expiry depends on what the
        category was before)."""
        fixed = {row.id: fixed_status(ConsentAction(row.action)) for row in rows}
        if all(status is not None for status in fixed.values()):
            return {row_id: status for row_id, status in fixed.items() if row_id and status}
        history: list[ConsentEvent] = []
        after: int | None = None
        while True:
            page = await self._ledger.events(contact_id, limit=_HISTORY_PAGE, after_id=after)
            history += page
            if len(page) < _HISTORY_PAGE:
                break
            after = page[-1].id
        return statuses_after(history)
