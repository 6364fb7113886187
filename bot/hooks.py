"""Extension points where other parts of the service learn what the conversations did.

The worker calls these after it has durably decided (consent changes are announced from the
outbox, so a crash re-announces rather than forgets: observers must be idempotent, and get the
ledger row ids to be so). Campaign tracking, the quality guard and CRM sync register here at
the composition root instead of being called from the flows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.db.consent_models import ConsentEvent
from bot.db.models import Contact
from flows import events as ev

log = logging.getLogger(__name__)

ConsentHook = Callable[[Contact, Sequence[ConsentEvent]], Awaitable[None]]
MessageHook = Callable[[Contact, ev.Event], Awaitable[None]]
StatusHook = Callable[[Contact | None, ev.StatusUpdate], Awaitable[None]]
BusinessHook = Callable[[ev.AccountUpdate], Awaitable[None]]
#: Called with the contact id after its personal data was erased (``bot.erasure``): observers
#: that keep identifiers of their own (CRM delivery log...) forget them. Runs again on a repeated
#: erasure, so it must be idempotent.
ErasureHook = Callable[[int], Awaitable[None]]


@dataclass(slots=True)
class Hooks:
    """Lists of observers; each is awaited in order and its failure is the event's failure
    (the stream entry is retried), so nothing is announced only halfway."""

    consent_changed: list[ConsentHook] = field(default_factory=list)
    unhandled_message: list[MessageHook] = field(default_factory=list)
    status_update: list[StatusHook] = field(default_factory=list)
    business_update: list[BusinessHook] = field(default_factory=list)
    contact_erased: list[ErasureHook] = field(default_factory=list)

    async def emit_consent(self, contact: Contact, events: Sequence[ConsentEvent]) -> None:
        if events:
            for hook in self.consent_changed:
                await hook(contact, events)

    async def emit_unhandled(self, contact: Contact, event: ev.Event) -> None:
        for hook in self.unhandled_message:
            await hook(contact, event)

    async def emit_status(self, contact: Contact | None, event: ev.StatusUpdate) -> None:
        for hook in self.status_update:
            await hook(contact, event)

    async def emit_business(self, event: ev.AccountUpdate) -> None:
        for hook in self.business_update:
            await hook(event)

    async def emit_erased(self, contact_id: int) -> None:
        for hook in self.contact_erased:
            await hook(contact_id)
