"""What the worker does with each inbound event before (and around) the conversation flows.

It resolves the contact (one contact per person across wa_id/BSUID changes), writes the transcript
row (idempotent on the wamid, so a re-delivered stream entry changes nothing), applies identity
changes, tells the send guard that Meta accepted each message a status names by our message id
(`bot.send_guard`), and keeps what it does not understand: `Unknown` events and business-level
notices are logged and appended to capped streams an operator can read back.

Only the contact and the conversation step decide consent; the transcript row, the profile name,
an identity change and the hooks are optional parts (`bot.parts`): one that fails for good is
logged, counted and skipped, so it cannot take a STOP down with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from redis.asyncio import Redis

from bot import redis_keys
from bot.db.contacts import ContactRepository
from bot.db.models import Contact
from bot.db.pseudonyms import is_erased
from bot.db.transcript import TranscriptRepository
from bot.eventcodec import encode_event
from bot.hooks import Hooks
from bot.metrics import Metrics
from bot.parts import OptionalParts
from bot.send_guard import record_outcome
from bot.streams import UNKNOWN_STREAM
from flows import events as ev

log = logging.getLogger(__name__)

BUSINESS_EVENTS_STREAM = redis_keys.BUSINESS_EVENTS.name
KEPT_ENTRIES = 100_000

ContactEventHook = Callable[[Contact, ev.Event], Awaitable[None]]

_MESSAGE_KINDS: dict[type, str] = {
    ev.TextMessage: "text",
    ev.ButtonReply: "button",
    ev.InteractiveReply: "interactive",
    ev.Reaction: "reaction",
    ev.MediaMessage: "media",
    ev.LocationMessage: "location",
    ev.ContactsMessage: "contacts",
    ev.OrderMessage: "order",
    ev.SystemChange: "system",
    ev.UnsupportedMessage: "unsupported",
}


def event_kind(event: ev.Event) -> str:
    """A short, stable label for metrics and transcripts."""
    kind = _MESSAGE_KINDS.get(type(event))
    if kind is not None:
        return kind
    return {
        ev.StatusUpdate: "status",
        ev.UserPreferencesUpdate: "user_preferences",
        ev.WebhookError: "error",
        ev.AccountUpdate: "account_update",
        ev.TimerFired: "timer",
        ev.ConsentRequest: "consent_request",
        ev.SendRefused: "send_refused",
    }.get(type(event), "unknown")


def _message_text(event: ev.Event) -> str | None:
    match event:
        case ev.TextMessage(body=body):
            return body
        case ev.ButtonReply(text=text):
            return text
        case ev.InteractiveReply(title=title):
            return title
        case ev.Reaction(emoji=emoji):
            return emoji
        case ev.MediaMessage(caption=caption):
            return caption
        case ev.SystemChange(body=body):
            return body
    return None


def _payload(event: ev.Event) -> str:
    data = asdict(event)
    data.pop("contact", None)
    return json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"))


class EventPipeline:
    """The inbound worker's handler. `on_contact_event` is where the conversation flows plug in."""

    def __init__(
        self,
        redis: Redis,
        contacts: ContactRepository,
        transcript: TranscriptRepository,
        metrics: Metrics,
        *,
        on_contact_event: ContactEventHook | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self._redis = redis
        self._contacts = contacts
        self._transcript = transcript
        self._metrics = metrics
        self._on_contact_event = on_contact_event
        self._hooks = hooks or Hooks()
        self._parts = OptionalParts(metrics)

    async def __call__(self, event: ev.Event) -> None:
        kind = event_kind(event)
        if isinstance(event, ev.Unknown):
            log.warning(
                "kept unknown webhook item %s/%s: %s", event.field, event.item_type, event.reason
            )
            await self._keep(UNKNOWN_STREAM, event)
        elif isinstance(event, ev.WebhookError | ev.AccountUpdate):
            log.warning("business notice %s: %s", kind, encode_event(event)[:500])
            await self._keep(BUSINESS_EVENTS_STREAM, event)
            if isinstance(event, ev.AccountUpdate):
                account_update = event
                await self._parts.run(
                    "hooks", event.event_id, lambda: self._hooks.emit_business(account_update)
                )
        elif isinstance(event, ev.StatusUpdate):
            await self._status(event)
        elif isinstance(event, ev.TimerFired | ev.ConsentRequest | ev.SendRefused):
            await self._service_event(event)
        elif event.contact is not None:
            contact = await self._resolve_for(event.contact, event.event_id)
            if isinstance(event, ev.SystemChange):
                before, change = contact, event
                done, changed = await self._parts.run(
                    "identity_change",
                    event.event_id,
                    lambda: self._identity_change(before, change),
                )
                if done and changed is not None:
                    contact = changed
            known = contact
            await self._parts.run(
                "transcript", event.event_id, lambda: self._record_inbound(known, event, kind)
            )
            if self._on_contact_event is not None:
                await self._on_contact_event(contact, event)
        self._metrics.events_processed.labels(kind=kind).inc()

    async def _resolve_for(self, ref: ev.ContactRef, event_id: str) -> Contact:
        """The contact, with the profile details the event carries; when storing those details
        fails for good, the contact without them (the decision needs only who it is)."""
        done, contact = await self._parts.run(
            "contact_profile", event_id, lambda: self._resolve(ref)
        )
        if done and contact is not None:
            return contact
        return await self._contacts.resolve(wa_id=ref.wa_id, user_id=ref.user_id)

    async def _resolve(self, ref: ev.ContactRef) -> Contact:
        return await self._contacts.resolve(
            wa_id=ref.wa_id,
            user_id=ref.user_id,
            parent_user_id=ref.parent_user_id,
            username=ref.username,
            profile_name=ref.profile_name,
        )

    async def _identity_change(self, contact: Contact, event: ev.SystemChange) -> Contact:
        if event.new_wa_id and contact.wa_id and event.new_wa_id != contact.wa_id:
            return await self._contacts.change_number(
                old_wa_id=contact.wa_id, new_wa_id=event.new_wa_id, new_user_id=event.new_user_id
            )
        if event.new_user_id and event.new_user_id != contact.user_id:
            return await self._contacts.resolve(wa_id=contact.wa_id, user_id=event.new_user_id)
        return contact

    async def _record_inbound(self, contact: Contact, event: ev.Event, kind: str) -> None:
        assert contact.id is not None
        if isinstance(event, ev.UserPreferencesUpdate):
            await self._transcript.record_inbound(
                contact.id,
                wamid=None,
                kind=kind,
                text=f"{event.category}: {event.value}",
                payload_json=_payload(event),
                occurred_at=event.occurred_at,
            )
            return
        wamid = getattr(event, "wamid", None)
        await self._transcript.record_inbound(
            contact.id,
            wamid=wamid,
            kind=kind,
            text=_message_text(event),
            payload_json=_payload(event),
            occurred_at=event.occurred_at,
        )

    async def _status(self, event: ev.StatusUpdate) -> None:
        if event.biz_opaque_callback_data:
            # Any status, `failed` included, means Meta accepted the request: never resend it.
            await record_outcome(self._redis, event.biz_opaque_callback_data, event.wamid)
        contact = await self._status_contact(event.recipient)
        if contact is None:
            log.info("status %s of a message to an erased contact: not kept", event.event_id)
            return
        first = event.errors[0] if event.errors else None
        known = contact
        await self._parts.run(
            "transcript",
            event.event_id,
            lambda: self._transcript.record_status(
                wamid=event.wamid,
                status=event.status,
                contact_id=known.id,
                error_code=first.code if first else None,
                error_title=first.title if first else None,
                occurred_at=event.occurred_at,
            ),
        )
        await self._parts.run(
            "hooks", event.event_id, lambda: self._hooks.emit_status(known, event)
        )
        if self._on_contact_event is not None:
            await self._on_contact_event(contact, event)

    async def _status_contact(self, ref: ev.ContactRef) -> Contact | None:
        """The contact a status is about, or None when that contact was erased.

        A status is news about a message we sent, not the customer writing again: resolving it
        would bind the real number back onto an erased record (as a new message rightly does),
        and keeping it would store Meta's message id, which encodes the number."""
        for identifier in (ref.user_id, ref.wa_id):
            known = await self._contacts.find(identifier) if identifier else None
            if known is not None and is_erased(known.wa_id, known.user_id):
                return None
        return await self._resolve(ref)

    async def _service_event(
        self, event: ev.TimerFired | ev.ConsentRequest | ev.SendRefused
    ) -> None:
        contact = await self._contacts.get(event.contact_id)
        if contact is None:
            log.info("%s for contact %s, which no longer exists", event.event_id, event.contact_id)
            return
        if self._on_contact_event is not None:
            await self._on_contact_event(contact, event)

    async def _keep(self, stream: str, event: ev.Event) -> None:
        await self._redis.xadd(
            stream, {"e": encode_event(event)}, maxlen=KEPT_ENTRIES, approximate=True
        )
