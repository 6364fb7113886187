"""Finding and keeping one record per customer, whatever identifiers they arrive with.

Meta identifies a customer by phone number (``wa_id``), by business-scoped user id (BSUID,
``user_id``), or both, and which of them a webhook carries changes over time (usernames hide the
number; old webhooks lack the BSUID). ``ContactRepository.resolve`` turns whatever arrived into
exactly one ``Contact``: it fills in identifiers learnt later, merges two records that turn out to
be one person, re-links a recycled number to its new owner, and keeps every identifier's validity
period in ``ContactIdentity`` so an old number still finds the same person.

An erased contact (``bot.erasure``) keeps only pseudonyms of its identifiers and its
withdrawals. Given the ``Pseudonymiser``, ``find`` and ``resolve`` recognise a number or BSUID
whose record was erased by its pseudonym: the person is found again, do-not-contact in every
category, instead of starting afresh with no recorded opt-out.

Concurrent resolves of a contact not seen before race on the unique indexes; the loser gets an
``IntegrityError``, rolls back and reads what the winner wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db.ledger_append import merge_consent_records
from bot.db.models import (
    CONTACTS_TABLE,
    IDENTITY_KINDS,
    Contact,
    ContactIdentity,
    IdentityKind,
    utcnow,
)
from bot.db.pseudonyms import Pseudonymiser

RESOLVE_ATTEMPTS: Final = 5

_BSUID = re.compile(r"^[A-Za-z]{2}\.[A-Za-z0-9]+$")
_PROFILE_FIELDS: Final = ("parent_user_id", "username", "profile_name", "locale")


def identifier_kind(identifier: str) -> IdentityKind:
    """``"user_id"`` for a BSUID such as ``US.13491208655302741918``, else ``"wa_id"``."""
    return "user_id" if _BSUID.match(identifier) else "wa_id"


@dataclass(frozen=True, slots=True)
class _Profile:
    parent_user_id: str | None
    username: str | None
    profile_name: str | None
    locale: str | None


def _current_of(contact: Contact, kind: IdentityKind) -> str | None:
    return contact.wa_id if kind == "wa_id" else contact.user_id


def _set_current(contact: Contact, kind: IdentityKind, value: str | None) -> None:
    if kind == "wa_id":
        contact.wa_id = value
    else:
        contact.user_id = value


async def _holder(session: AsyncSession, kind: IdentityKind, value: str) -> Contact | None:
    column = col(Contact.wa_id) if kind == "wa_id" else col(Contact.user_id)
    result = await session.exec(select(Contact).where(column == value))
    return result.first()


async def _former_holder(session: AsyncSession, kind: IdentityKind, value: str) -> Contact | None:
    """The contact that most recently held ``value`` before giving it up."""
    statement = (
        select(Contact)
        .join(ContactIdentity, col(ContactIdentity.contact_id) == col(Contact.id))
        .where(
            col(ContactIdentity.kind) == kind,
            col(ContactIdentity.value) == value,
            col(ContactIdentity.valid_to).is_not(None),
        )
        .order_by(col(ContactIdentity.valid_to).desc(), col(ContactIdentity.id).desc())
        .limit(1)
    )
    return (await session.exec(statement)).first()


async def _open_identity(
    session: AsyncSession, contact_id: int, kind: IdentityKind, value: str, now: datetime
) -> None:
    session.add(ContactIdentity(contact_id=contact_id, kind=kind, value=value, valid_from=now))
    await session.flush()


async def _close_identity(
    session: AsyncSession, contact_id: int, kind: IdentityKind, value: str, now: datetime
) -> None:
    await session.exec(
        update(ContactIdentity)
        .where(
            col(ContactIdentity.contact_id) == contact_id,
            col(ContactIdentity.kind) == kind,
            col(ContactIdentity.value) == value,
            col(ContactIdentity.valid_to).is_(None),
        )
        .values(valid_to=now)
    )


async def _create(
    session: AsyncSession, wa_id: str | None, user_id: str | None, now: datetime
) -> Contact:
    contact = Contact(wa_id=wa_id, user_id=user_id, created_at=now, updated_at=now)
    session.add(contact)
    await session.flush()
    if wa_id:
        await _open_identity(session, _contact_id(contact), "wa_id", wa_id, now)
    if user_id:
        await _open_identity(session, _contact_id(contact), "user_id", user_id, now)
    return contact


def _contact_id(contact: Contact) -> int:
    if contact.id is None:
        raise RuntimeError("contact has not been flushed")
    return contact.id


class ContactRepository:
    """Contacts and their identity history, stored through ``session_factory``.

    With ``pseudonyms`` (the service always gives it), identifiers of erased contacts are
    recognised; without, an erased person would look like a stranger.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        pseudonyms: Pseudonymiser | None = None,
    ) -> None:
        self._sessions = session_factory
        self._pseudonyms = pseudonyms

    async def get(self, contact_id: int) -> Contact | None:
        async with self._sessions() as session:
            return await session.get(Contact, contact_id)

    async def find(self, identifier: str) -> Contact | None:
        """The contact a wa_id (digits) or BSUID (``CC.digits``) names, now or formerly, or
        names under its pseudonym since the contact was erased."""
        kind = identifier_kind(identifier)
        async with self._sessions() as session:
            current = await _holder(session, kind, identifier)
            return (
                current
                or await _former_holder(session, kind, identifier)
                or await self._erased_holder(session, kind, identifier)
            )

    async def identities(self, contact_id: int) -> list[ContactIdentity]:
        """Every identifier the contact had, oldest first (``valid_to`` None = current)."""
        async with self._sessions() as session:
            result = await session.exec(
                select(ContactIdentity)
                .where(col(ContactIdentity.contact_id) == contact_id)
                .order_by(col(ContactIdentity.valid_from), col(ContactIdentity.id))
            )
            return list(result.all())

    async def resolve(
        self,
        *,
        wa_id: str | None,
        user_id: str | None,
        parent_user_id: str | None = None,
        username: str | None = None,
        profile_name: str | None = None,
        locale: str | None = None,
    ) -> Contact:
        """The one contact for these identifiers, created, completed or merged as needed."""
        if not wa_id and not user_id:
            raise ValueError("a contact needs a wa_id or a user_id")
        profile = _Profile(parent_user_id, username, profile_name, locale)
        for attempt in range(1, RESOLVE_ATTEMPTS + 1):
            async with self._sessions() as session:
                try:
                    contact = await self._resolve(session, wa_id or None, user_id or None, profile)
                    await session.commit()
                    return contact
                except IntegrityError:
                    await session.rollback()
                    if attempt == RESOLVE_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def set_locale(self, contact: Contact, locale: str) -> Contact:
        """Record the language the contact writes in: one UPDATE, where `resolve` would first
        look the contact up again by every identifier (the worker's hot path calls this)."""
        if contact.id is None or contact.locale == locale:
            return contact
        now = utcnow()
        async with self._sessions() as session:
            await session.exec(
                update(Contact)
                .where(col(Contact.id) == contact.id)
                .values(locale=locale, updated_at=now)
            )
            await session.commit()
        return contact.model_copy(update={"locale": locale, "updated_at": now})

    async def change_number(
        self, *, old_wa_id: str, new_wa_id: str, new_user_id: str | None = None
    ) -> Contact:
        """Apply Meta's ``user_changed_number``: same contact, old number kept as history."""
        for attempt in range(1, RESOLVE_ATTEMPTS + 1):
            async with self._sessions() as session:
                try:
                    contact = await self._change_number(session, old_wa_id, new_wa_id, new_user_id)
                    await session.commit()
                    return contact
                except IntegrityError:
                    await session.rollback()
                    if attempt == RESOLVE_ATTEMPTS:
                        raise
        raise AssertionError("unreachable")

    async def _resolve(
        self,
        session: AsyncSession,
        wa_id: str | None,
        user_id: str | None,
        profile: _Profile,
    ) -> Contact:
        now = utcnow()
        by_user = await _holder(session, "user_id", user_id) if user_id else None
        by_wa = await _holder(session, "wa_id", wa_id) if wa_id else None
        if by_wa is not None and user_id and by_wa.user_id not in (None, user_id):
            # The number now belongs to someone else (recycled): don't attach them to its
            # previous owner; binding the wa_id below moves the number over.
            by_wa_is_same_person = False
        else:
            by_wa_is_same_person = True

        contact = by_user or (by_wa if by_wa_is_same_person else None)
        skip: set[IdentityKind] = set()
        if contact is None:
            # A recycled number says nothing about who this is: look up only the BSUID then.
            former_wa_id = wa_id if by_wa is None else None
            contact, skip = await self._find_former(session, former_wa_id, user_id)
            if contact is None:
                # An erased person writing again: bind the identifiers to the erased record,
                # whose withdrawals keep them do-not-contact until a new explicit opt-in.
                contact = await self._find_erased(session, former_wa_id, user_id)
        if contact is None:
            if by_wa is not None:
                await self._release(session, by_wa, "wa_id", now)
            contact = await _create(session, wa_id, user_id, now)
        else:
            if user_id and "user_id" not in skip:
                contact = await self._bind(session, contact, "user_id", user_id, now)
            if wa_id and "wa_id" not in skip:
                contact = await self._bind(session, contact, "wa_id", wa_id, now)
        self._apply_profile(contact, profile, now)
        session.add(contact)
        await session.flush()
        return contact

    async def _find_former(
        self, session: AsyncSession, wa_id: str | None, user_id: str | None
    ) -> tuple[Contact | None, set[IdentityKind]]:
        """A contact known by one of these identifiers in the past, and which one matched."""
        if user_id:
            former = await _former_holder(session, "user_id", user_id)
            if former is not None:
                return former, {"user_id"}
        if wa_id:
            former = await _former_holder(session, "wa_id", wa_id)
            if former is not None and (not user_id or former.user_id in (None, user_id)):
                return former, {"wa_id"}
        return None, set()

    async def _erased_holder(
        self, session: AsyncSession, kind: IdentityKind, value: str
    ) -> Contact | None:
        """The erased contact that held ``value`` (now or before), found by its pseudonym."""
        if self._pseudonyms is None:
            return None
        pseudonym = self._pseudonyms.of(kind, value)
        return await _holder(session, kind, pseudonym) or await _former_holder(
            session, kind, pseudonym
        )

    async def _find_erased(
        self, session: AsyncSession, wa_id: str | None, user_id: str | None
    ) -> Contact | None:
        """An erased contact these identifiers belonged to (a number only when the BSUID, if
        any, does not say it is someone else now: see ``_find_former``)."""
        if user_id:
            erased = await self._erased_holder(session, "user_id", user_id)
            if erased is not None:
                return erased
        if wa_id:
            erased = await self._erased_holder(session, "wa_id", wa_id)
            if erased is not None and (not user_id or erased.user_id is None):
                return erased
        return None

    async def _change_number(
        self, session: AsyncSession, old_wa_id: str, new_wa_id: str, new_user_id: str | None
    ) -> Contact:
        now = utcnow()
        contact = await _holder(session, "wa_id", old_wa_id)
        if contact is None and new_user_id:
            contact = await _holder(session, "user_id", new_user_id)
        if contact is None:
            contact = await _former_holder(session, "wa_id", old_wa_id)
        if contact is None:
            contact = await _holder(session, "wa_id", new_wa_id)
        if contact is None:
            contact = await _create(session, new_wa_id, new_user_id, now)
        else:
            if new_user_id:
                contact = await self._bind(session, contact, "user_id", new_user_id, now)
            contact = await self._bind(session, contact, "wa_id", new_wa_id, now)
        if not await self._had_identity(session, _contact_id(contact), "wa_id", old_wa_id):
            session.add(
                ContactIdentity(
                    contact_id=_contact_id(contact),
                    kind="wa_id",
                    value=old_wa_id,
                    valid_from=now,
                    valid_to=now,
                )
            )
            await session.flush()
        return contact

    @staticmethod
    async def _had_identity(
        session: AsyncSession, contact_id: int, kind: IdentityKind, value: str
    ) -> bool:
        result = await session.exec(
            select(ContactIdentity.id).where(
                col(ContactIdentity.contact_id) == contact_id,
                col(ContactIdentity.kind) == kind,
                col(ContactIdentity.value) == value,
            )
        )
        return result.first() is not None

    async def _bind(
        self,
        session: AsyncSession,
        contact: Contact,
        kind: IdentityKind,
        value: str,
        now: datetime,
    ) -> Contact:
        """Make ``value`` the contact's current ``kind``, taking it from whoever holds it."""
        if _current_of(contact, kind) == value:
            return contact
        holder = await _holder(session, kind, value)
        if holder is not None and holder.id != contact.id:
            recycled = (
                kind == "wa_id"
                and holder.user_id is not None
                and contact.user_id is not None
                and holder.user_id != contact.user_id
            )
            if recycled:
                await self._release(session, holder, kind, now)
            else:
                contact = await self._merge(session, contact, holder, now, prefer=(kind, value))
                if _current_of(contact, kind) == value:
                    return contact
        previous = _current_of(contact, kind)
        if previous is not None:
            await _close_identity(session, _contact_id(contact), kind, previous, now)
        _set_current(contact, kind, value)
        contact.updated_at = now
        session.add(contact)
        await session.flush()
        await _open_identity(session, _contact_id(contact), kind, value, now)
        return contact

    async def _release(
        self, session: AsyncSession, contact: Contact, kind: IdentityKind, now: datetime
    ) -> None:
        """Take ``kind`` away from ``contact`` (it keeps its other identifier)."""
        value = _current_of(contact, kind)
        if value is None:
            return
        await _close_identity(session, _contact_id(contact), kind, value, now)
        _set_current(contact, kind, None)
        contact.updated_at = now
        session.add(contact)
        await session.flush()

    async def _merge(
        self,
        session: AsyncSession,
        first: Contact,
        second: Contact,
        now: datetime,
        *,
        prefer: tuple[IdentityKind, str],
    ) -> Contact:
        """Fold the newer of two records of one person into the older one.

        Every row that references the newer contact (transcript, identities, and any other
        table with a foreign key to contacts.id) is re-pointed, then the newer record goes.
        Where both records hold an identifier of the same kind, the survivor keeps ``prefer``
        (the one just seen) and the other value becomes history.
        """
        keep, drop = sorted((first, second), key=lambda c: (c.created_at, _contact_id(c)))
        keep_id, drop_id = _contact_id(keep), _contact_id(drop)
        inherited = {kind: _current_of(drop, kind) for kind in IDENTITY_KINDS}
        inherited_profile = {name: getattr(drop, name) for name in _PROFILE_FIELDS}
        # Consent states and conversations are one row per contact (and category): settle the
        # ones both records have first, so the re-pointing below cannot collide on them.
        await merge_consent_records(session, keep_id=keep_id, drop_id=drop_id, now=now)
        for table in SQLModel.metadata.sorted_tables:
            for foreign_key in table.foreign_keys:
                if foreign_key.column.table.name != CONTACTS_TABLE:
                    continue
                column = foreign_key.parent
                await session.exec(
                    update(table).where(column == drop_id).values({column.name: keep_id})
                )
        await session.delete(drop)
        await session.flush()
        for kind, value in inherited.items():
            current = _current_of(keep, kind)
            if value is None or value == current:
                continue
            if current is None:
                _set_current(keep, kind, value)
            elif prefer == (kind, value):
                await _close_identity(session, keep_id, kind, current, now)
                _set_current(keep, kind, value)
            else:
                await _close_identity(session, keep_id, kind, value, now)
        for name, value in inherited_profile.items():
            if getattr(keep, name) is None and value is not None:
                setattr(keep, name, value)
        keep.updated_at = now
        session.add(keep)
        await session.flush()
        return keep

    @staticmethod
    def _apply_profile(contact: Contact, profile: _Profile, now: datetime) -> None:
        changed = False
        for name in _PROFILE_FIELDS:
            value = getattr(profile, name)
            if value is not None and getattr(contact, name) != value:
                setattr(contact, name, value)
                changed = True
        if changed:
            contact.updated_at = now
