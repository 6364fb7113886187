"""Erasure of a contact's personal data on request (GDPR Art. 17), without forgetting the STOP.

A business must erase a customer's personal data when asked, and must also never message that
customer again: the second duty needs a record of the first. So erasure does not delete the
contact; it withdraws every category in the ledger, drops the evidence and texts, replaces the
identifiers by keyed pseudonyms (``bot.db.pseudonyms``) and forgets the contact's state in Redis
(the console's audit entries and the business API's remembered answers about the contact
included: ``bot.redis_keys`` lists every key holding a customer's data and what erasure does to
it).
The ledger's hash chains still verify, and the same number writing again is recognised as the
erased, do-not-contact person (``ContactRepository.resolve``). docs/erasure.md says what is
removed, what is kept and why.

The database part is one transaction (``bot.db.erasure``); Redis is cleaned after it commits.
Running an erasure again is safe and repeats the Redis clean-up, so a failure half-way through
is retried by asking again.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import redis_keys
from bot.console.audit import AUDIT_STREAM, contact_audit_stream
from bot.crm.outbox import CRM_DEAD_STREAM
from bot.db.consent_models import ERASED_KEY_PREFIX, erased_event_key
from bot.db.engine import session_factory
from bot.db.erasure import ErasedRecords, ErasureRequest, erase_records
from bot.db.models import TranscriptEntry, utcnow
from bot.db.pseudonyms import Pseudonymiser
from bot.hooks import Hooks
from bot.send_guard import SANDBOX_OUTCOME
from bot.services import Services, check_startup, open_services
from bot.settings import Settings
from bot.streams import DEAD_LETTER_STREAM, OUTBOUND_STREAM, UNKNOWN_STREAM
from bot.timers import TimerStore
from bot.window import WindowStore
from flows.machine import TimerKind

#: Capped streams that keep whole events for operators (failed and unrecognised ones, and CRM
#: events given up, kept for redelivery): entries naming an erased contact's identifiers are
#: deleted. Read this many entries at a time.
KEPT_EVENT_STREAMS = (DEAD_LETTER_STREAM, UNKNOWN_STREAM, CRM_DEAD_STREAM)
# The outbound queue is searched too: a message still queued for an erased contact names their
# number and must not go (their consent was withdrawn with the erasure). The sender's claim of
# pending entries skips deleted ones, and one being sent as the erasure runs is acknowledged as
# usual.
STREAM_SCAN_BATCH = 500


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """What an erasure did: pseudonymous, so it may be stored and shown.

    ``already_erased``: the contact had been erased before; ``erasure_id`` and ``erased_at``
    are then those of that earlier erasure and the counts say what was left this time.
    """

    contact_id: int
    wa_id: str | None
    user_id: str | None
    erasure_id: str
    erased_at: datetime
    already_erased: bool
    withdrawn_categories: tuple[str, ...]
    ledger_evidence_erased: int
    identities_pseudonymised: int
    transcript_entries_cleared: int
    conversation_deleted: bool
    redis_entries_deleted: int

    def to_json(self) -> dict[str, Any]:
        return {
            "contact": {"id": self.contact_id, "wa_id": self.wa_id, "user_id": self.user_id},
            "erasure_id": self.erasure_id,
            "erased_at": self.erased_at.isoformat(),
            "already_erased": self.already_erased,
            "withdrawn_categories": list(self.withdrawn_categories),
            "erased": {
                "ledger_evidence": self.ledger_evidence_erased,
                "identities": self.identities_pseudonymised,
                "transcript_entries": self.transcript_entries_cleared,
                "conversations": int(self.conversation_deleted),
                "redis_entries": self.redis_entries_deleted,
            },
        }


def _mentions(identifiers: tuple[str, ...]) -> re.Pattern[str] | None:
    """A pattern matching any of ``identifiers`` as a whole token (not inside a longer one)."""
    if not identifiers:
        return None
    alternatives = "|".join(re.escape(value) for value in identifiers)
    return re.compile(rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])")


class ContactEraser:
    """Erases contacts' personal data: the database in one transaction, then Redis."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        redis: Redis,
        timers: TimerStore,
        window: WindowStore,
        pseudonyms: Pseudonymiser,
        categories: tuple[str, ...],
        business_name: str,
        hooks: Hooks | None = None,
    ) -> None:
        self._sessions = sessions
        self._redis = redis
        self._timers = timers
        self._window = window
        self._pseudonyms = pseudonyms
        self._categories = categories
        self._business_name = business_name
        self._hooks = hooks or Hooks()

    @classmethod
    def for_services(cls, services: Services) -> ContactEraser:
        return cls(
            sessions=session_factory(services.engine),
            redis=services.redis,
            timers=services.timers,
            window=services.window,
            pseudonyms=Pseudonymiser(services.settings.pseudonym_secret),
            categories=tuple(category.name for category in services.language.categories),
            business_name=services.settings.business_name,
            hooks=services.hooks,
        )

    async def erase(self, contact_id: int, *, requested_via: str = "api") -> ErasureReceipt | None:
        """Erase contact ``contact_id``; None when there is no such contact."""
        request = ErasureRequest(
            contact_id=contact_id,
            erasure_id=uuid.uuid4().hex,
            categories=self._categories,
            business_name=self._business_name,
            requested_via=requested_via,
            now=utcnow(),
        )
        async with self._sessions() as session:
            records = await erase_records(session, request, self._pseudonyms)
            if records is None:
                return None
            await session.commit()
        redis_entries = await self._forget_in_redis(contact_id, records.former_identifiers)
        await self._hooks.emit_consent(records.contact, records.withdrawal_rows)
        await self._hooks.emit_erased(contact_id)
        return _receipt(records, redis_entries)

    async def _forget_in_redis(self, contact_id: int, identifiers: tuple[str, ...]) -> int:
        """Delete the contact's window, timers, kept events and remembered API answers that name
        it, and its number from the sandbox's list; digest the message ids kept by the sender's
        markers; count them."""
        deleted = 0
        if await self._window.closes_at(contact_id) is not None:
            deleted += 1
        await self._window.close(contact_id)
        for kind in TimerKind:
            if await self._timers.due_at(contact_id, kind) is not None:
                deleted += 1
            await self._timers.cancel(contact_id, kind)
        for stream in (*KEPT_EVENT_STREAMS, OUTBOUND_STREAM):
            deleted += await delete_entries_mentioning(self._redis, stream, identifiers)
        deleted += await self._forget_console_audit(contact_id)
        deleted += await self._forget_api_answers(contact_id)
        deleted += await self._digest_sent_markers(contact_id)
        if identifiers:
            deleted += int(await self._redis.srem(redis_keys.SANDBOX_CONTACTS.name, *identifiers))
        return deleted

    async def _digest_sent_markers(self, contact_id: int) -> int:
        """The sender's markers of the contact's sent messages (``optin:delivered:<id>``,
        ``optin:send:outcome:<tag>``) hold Meta's message id, which encodes the number. They
        must stay for their 7 days (they are what stops a second send), so their value becomes
        the same ``erased:`` digest the database now keeps for that message id."""
        async with self._sessions() as session:
            found = await session.exec(
                select(TranscriptEntry.message_id).where(
                    col(TranscriptEntry.contact_id) == contact_id,
                    col(TranscriptEntry.direction) == "outbound",
                    col(TranscriptEntry.message_id).is_not(None),
                )
            )
            message_ids = [message_id for message_id in found.all() if message_id]
        changed = 0
        for start in range(0, len(message_ids), STREAM_SCAN_BATCH):
            batch = message_ids[start : start + STREAM_SCAN_BATCH]
            keys = [
                key
                for message_id in batch
                for key in (
                    redis_keys.DELIVERED.format(message_id=message_id),
                    redis_keys.SEND_OUTCOME.format(tag=message_id),
                )
            ]
            values = await self._redis.mget(keys)
            pipe = self._redis.pipeline(transaction=False)
            for key, value in zip(keys, values, strict=True):
                wamid = _text(value) if value is not None else None
                if wamid and wamid != SANDBOX_OUTCOME and not wamid.startswith(ERASED_KEY_PREFIX):
                    pipe.set(key, erased_event_key(wamid), xx=True, keepttl=True)
                    changed += 1
            await pipe.execute()
        return changed

    async def _forget_api_answers(self, contact_id: int) -> int:
        """The business API's remembered answers naming the contact (``bot.api.idempotency``
        lists them under the contact). The key-to-body bindings stay: they hold only hashes and
        keep a retry from being taken for a new request; a retry then finds no answer and runs
        again, which writes nothing new (its ids derive from the key) and the gate refuses."""
        index = redis_keys.IDEMPOTENT_ANSWERS_OF_CONTACT.format(contact_id=contact_id)
        members: Any = await self._redis.smembers(index)
        answers = sorted(_text(member) for member in members)
        deleted = int(await self._redis.delete(*answers)) if answers else 0
        await self._redis.delete(index)
        return deleted

    async def _forget_console_audit(self, contact_id: int) -> int:
        """The console's audit entries about the contact: agents' notes are free text about
        the person, and the ledger already keeps who withdrew what (method `agent`)."""
        own = contact_audit_stream(contact_id)
        deleted = int(await self._redis.xlen(own))
        await self._redis.delete(own)
        start = "-"
        while True:
            entries: Any = (
                await self._redis.xrange(AUDIT_STREAM, min=start, count=STREAM_SCAN_BATCH) or []
            )
            doomed = [
                _text(entry_id)
                for entry_id, fields in entries
                if fields and _text(fields.get("contact_id", "")) == str(contact_id)
            ]
            if doomed:
                await self._redis.xdel(AUDIT_STREAM, *doomed)
            if len(entries) < STREAM_SCAN_BATCH:
                return deleted
            start = "(" + _text(entries[-1][0])


async def delete_entries_mentioning(
    redis: Redis, stream: str, identifiers: tuple[str, ...], *, batch: int = STREAM_SCAN_BATCH
) -> int:
    """Delete the entries of ``stream`` whose fields name one of ``identifiers`` (as a whole
    token); return how many went. Reads ``batch`` entries at a time."""
    pattern = _mentions(identifiers)
    if pattern is None:
        return 0
    deleted = 0
    start = "-"
    while True:
        entries = await redis.xrange(stream, min=start, count=batch) or []
        doomed = [
            _text(entry_id)
            for entry_id, fields in entries
            if fields and any(pattern.search(_text(value)) for value in fields.values())
        ]
        if doomed:
            deleted += int(await redis.xdel(stream, *doomed))
        if len(entries) < batch:
            return deleted
        start = "(" + _text(entries[-1][0])


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _receipt(records: ErasedRecords, redis_entries: int) -> ErasureReceipt:
    contact = records.contact
    assert contact.id is not None
    return ErasureReceipt(
        contact_id=contact.id,
        wa_id=contact.wa_id,
        user_id=contact.user_id,
        erasure_id=records.erasure_id,
        erased_at=records.erased_at,
        already_erased=records.already_erased,
        withdrawn_categories=tuple(row.category for row in records.withdrawal_rows),
        ledger_evidence_erased=records.evidence_erased,
        identities_pseudonymised=records.identities_pseudonymised,
        transcript_entries_cleared=records.transcript_entries_cleared,
        conversation_deleted=records.conversation_deleted,
        redis_entries_deleted=redis_entries,
    )


async def run_erase_command(
    settings: Settings, identifier: str, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """`optin-bot contact erase <contact>`: erase and print the receipt as JSON; 2 when no
    contact has that identifier. With REDIS_URL=memory:// the Redis part reaches only this
    process's own store: erase through the API of the running `serve` instead."""
    check_startup(settings, insecure_no_signature=True, multi_process=False)
    async with open_services(settings, auto_migrate=False) as services:
        contact = await services.contacts.find(identifier)
        if contact is None or contact.id is None:
            print(f"optin-bot: no contact {identifier}", file=err)
            return 2
        eraser = ContactEraser.for_services(services)
        receipt = await eraser.erase(contact.id, requested_via="cli")
    if receipt is None:
        print(f"optin-bot: no contact {identifier}", file=err)
        return 2
    print(json.dumps(receipt.to_json(), indent=2), file=out)
    return 0
