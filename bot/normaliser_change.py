"""What every event read from one `entry[].changes[]` item has in common, and who the customer is.

All items of a change share its field, business number, account and entry time, so the readers
of messages, statuses and updates build their events from one `Change` rather than passing those
around. It also links an item to the change's `contacts[]` entry (by user id, then wa_id) to fill
in what the item itself does not carry: the profile name, the username, and the other of wa_id
and user id. The `contacts[]` index is built once per change, and only when an item asks.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from bot.normaliser_clean import (
    INVALID_SENDER,
    MAX_WA_ID,
    clean_text,
    valid_user_id,
    valid_wa_id,
)
from bot.normaliser_values import JsonObject, canonical, text_or_none, unix_time
from flows import events as ev
from flows.events import ContactRef

__all__ = ["Change", "invalid_ids"]


class Change:
    """One `entry[].changes[]` item being read, with what its events have in common."""

    __slots__ = (
        "_contacts",
        "entry_time",
        "field",
        "latest",
        "phone_number_id",
        "value",
        "waba_id",
    )

    def __init__(
        self,
        field: object,
        waba_id: str,
        entry_time: datetime,
        value: JsonObject,
        *,
        latest: datetime | None = None,
    ):
        self.field = clean_text(field) if isinstance(field, str) else ""
        self.waba_id = waba_id
        self.entry_time = entry_time
        self.value = value
        metadata = value.get("metadata")
        pnid = text_or_none(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
        self.phone_number_id = pnid or ""
        self._contacts: dict[str, JsonObject] | None = None
        #: The latest time an item may claim (received + the clock-skew allowance), if known.
        self.latest = latest

    def time(self, raw: object) -> datetime:
        moment = unix_time(raw) or self.entry_time
        return moment if self.latest is None or moment <= self.latest else self.latest

    def base(self, event_id: str, occurred_at: datetime, contact: ContactRef | None) -> JsonObject:
        """The fields every event has."""
        return {
            "event_id": event_id,
            "phone_number_id": self.phone_number_id,
            "waba_id": self.waba_id,
            "occurred_at": occurred_at,
            "contact": contact,
        }

    def event_id(self, kind: str, item: object) -> str:
        material = {"field": self.field, "phone_number_id": self.phone_number_id, "item": item}
        digest = hashlib.sha256(canonical(material).encode("utf-8", "surrogatepass"))
        return f"{kind}:{digest.hexdigest()}"

    def unknown(
        self,
        item_type: str,
        item: object,
        reason: str,
        *,
        contact: ContactRef | None = None,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> ev.Unknown:
        return ev.Unknown(
            **self.base(
                event_id or self.event_id("unknown", item), occurred_at or self.entry_time, contact
            ),
            field=self.field,
            item_type=item_type,
            raw_json=canonical(item),
            reason=reason,
        )

    def contact(
        self, wa_id: str | None, user_id: str | None, parent_user_id: str | None
    ) -> ContactRef | None:
        """The customer, completed from the change's `contacts[]` entry that matches.

        Only well-formed ids are kept (`bot.normaliser_clean`): a malformed one is dropped, so
        None when no well-formed wa_id or user id is left. Callers that must say why (a
        message's sender) check the item's own ids first with `invalid_ids`.
        """
        index = self._contacts
        if index is None:
            index = self._contacts = _index_contacts(self.value.get("contacts"))
        entry = index.get("bsuid:" + user_id) if user_id else None
        if entry is None and wa_id:
            entry = index.get("wa:" + wa_id)
        username = profile_name = None
        if entry is not None:
            wa_id = wa_id or text_or_none(entry.get("wa_id"))
            user_id = user_id or text_or_none(entry.get("user_id"))
            parent_user_id = parent_user_id or text_or_none(entry.get("parent_user_id"))
            profile = entry.get("profile")
            if isinstance(profile, dict):
                username = text_or_none(profile.get("username"))
                profile_name = text_or_none(profile.get("name"))
        wa_id = wa_id if wa_id and valid_wa_id(wa_id) else None
        user_id = user_id if user_id and valid_user_id(user_id) else None
        if parent_user_id and not valid_user_id(parent_user_id):
            parent_user_id = None
        if not wa_id and not user_id:
            return None
        return ContactRef(wa_id, user_id, parent_user_id, username, profile_name)


def invalid_ids(wa_id: str | None, *user_ids: str | None) -> str | None:
    """Why the given ids cannot name a customer (`invalid_sender: …`), or None when they can."""
    if wa_id and not valid_wa_id(wa_id):
        return f"{INVALID_SENDER}: wa_id {wa_id[:40]!r} is not 1 to {MAX_WA_ID} digits"
    for user_id in user_ids:
        if user_id and not valid_user_id(user_id):
            return f"{INVALID_SENDER}: user id {user_id[:40]!r} is not a business-scoped user id"
    return None


def _index_contacts(raw: object) -> dict[str, JsonObject]:
    index: dict[str, JsonObject] = {}
    if isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict):
                if wa_id := text_or_none(entry.get("wa_id")):
                    index.setdefault("wa:" + wa_id, entry)
                if user_id := text_or_none(entry.get("user_id")):
                    index.setdefault("bsuid:" + user_id, entry)
    return index
