"""Turns one WhatsApp webhook body (already parsed JSON) into typed events (`flows.events`).

Meta batches: one body may hold several entries, each with several changes, each with several
messages or statuses, so every entry, change and item is read. The normaliser is strict only
about the envelope itself, and refuses the whole body (`NotAnEnvelope`, the webhook answers 400
and changes nothing) when it is not a WhatsApp webhook at all: not an object, `object` other
than "whatsapp_business_account", `entry` missing or not a list, an entry, change or value of the
wrong shape, or a message that names no sender (neither `from` nor a user id). Everything else
degrades: what cannot be read becomes an `Unknown` event, kept for the operator, never an
exception. It runs inside the webhook request, so it is plain dictionary access, no validation
library.

Customers are identified by `wa_id` and/or the business-scoped user id (BSUID), using Meta's
field names: `contacts[].wa_id`, `contacts[].user_id`, `contacts[].parent_user_id`,
`contacts[].profile.username`; `messages[].from`, `from_user_id`, `from_parent_user_id`;
`statuses[].recipient_id`, `recipient_user_id`, `recipient_parent_user_id`. No phone number is
assumed. Each message or status is linked to its `contacts[]` entry (by user id, then wa_id) to
fill in the profile name and username.

Hostile text: every string is read through `text_or_none`, which cleans it
(`bot.normaliser_clean`: no NUL, no lone surrogates, which PostgreSQL cannot store), and customer
ids are checked where they enter: a message whose sender is not a well-formed wa_id or user id
becomes an `Unknown` event with reason `invalid_sender: …` and no contact.

Time: `occurred_at` comes from the item's unix `timestamp` (a string of digits, or an integer).
When it is missing or unreadable the event is kept with, in this order, the entry's `time`, the
`received_at` the caller passes (the webhook passes the time it received the body), or the Unix
epoch (1970-01-01T00:00:00Z) so the result stays deterministic. A time later than `received_at`
plus `CLOCK_SKEW_ALLOWANCE` is clamped to that: nobody can write from the future, and a forged
or broken timestamp (now + 10^9 s) must not keep a 24-hour window open for decades or outrank
every later decision.

Whose number: a change whose `metadata.phone_number_id` is not `own_number` (the caller passes
the business's number id; None accepts every number, as the sandbox does before a number is
configured) is kept as one `Unknown` event, reason `foreign_number: …`, with no customer, so
nothing of it reaches a contact of ours. Changes that carry no number (business-account notices)
are read as usual.

The reading is split by what is read: `bot.normaliser_change` (what the events of one change
share, and the `contacts[]` linking), `bot.normaliser_messages` (one reader per message type),
`bot.normaliser_updates` (statuses, preferences, identity changes, business notices) and
`bot.normaliser_values` (lenient scalar readers). This module walks the envelope and owns the
rules that refuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.normaliser_change import Change, invalid_ids
from bot.normaliser_clean import INVALID_SENDER
from bot.normaliser_messages import MESSAGE_READERS, MessageRead
from bot.normaliser_updates import (
    read_account_update,
    read_status,
    read_user_id_update,
    read_user_preference,
    read_webhook_error,
)
from bot.normaliser_values import JsonObject, as_utc, text_or_none, unix_time
from flows.events import ContactRef, Event

__all__ = [
    "BUSINESS_LEVEL_FIELDS",
    "CLOCK_SKEW_ALLOWANCE",
    "EPOCH",
    "FOREIGN_NUMBER",
    "NotAnEnvelope",
    "normalise",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How far ahead of our clock Meta's timestamps may be (their clocks and ours are both NTP-set;
#: a minute covers any honest difference with room to spare).
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=1)
#: The reason prefix of the `Unknown` event a webhook for another business number becomes.
FOREIGN_NUMBER = "foreign_number"

#: Webhook fields about the business (its account, numbers, templates, groups) rather than a
#: customer: they become `AccountUpdate` events.
BUSINESS_LEVEL_FIELDS = frozenset(
    {
        "account_alerts",
        "account_review_update",
        "account_update",
        "automatic_events",
        "business_capability_update",
        "business_status_update",
        "flows",
        "group_lifecycle_update",
        "group_participant_update",
        "group_participants_update",
        "group_settings_update",
        "group_status_update",
        "message_template_components_update",
        "message_template_quality_update",
        "message_template_status_update",
        "partner_solutions",
        "payment_configuration_update",
        "phone_number_name_update",
        "phone_number_quality_update",
        "security",
        "template_category_update",
    }
)


class NotAnEnvelope(ValueError):
    """The body is not a WhatsApp Business webhook envelope; the message says why."""


def normalise(
    payload: object, *, received_at: datetime | None = None, own_number: str | None = None
) -> list[Event]:
    """Every event in one webhook body, in the order Meta listed them.

    Raises `NotAnEnvelope` (see the module docstring); never raises anything else.
    `received_at` (naive values are taken as UTC) is the fallback time for items without a
    readable timestamp, and, plus `CLOCK_SKEW_ALLOWANCE`, the latest time an event may claim.
    `own_number` is the business's phone number id (None: every number is ours).
    """
    if not isinstance(payload, dict):
        raise NotAnEnvelope("the body is not a JSON object")
    if payload.get("object") != "whatsapp_business_account":
        raise NotAnEnvelope('"object" is not "whatsapp_business_account"')
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise NotAnEnvelope('"entry" is missing or not a list')
    fallback = as_utc(received_at) if received_at is not None else EPOCH
    latest = fallback + CLOCK_SKEW_ALLOWANCE if received_at is not None else None
    events: list[Event] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise NotAnEnvelope("an entry is not an object")
        changes = entry.get("changes")
        if not isinstance(changes, list):
            raise NotAnEnvelope('an entry\'s "changes" is missing or not a list')
        waba_id = text_or_none(entry.get("id")) or ""
        entry_time = unix_time(entry.get("time")) or fallback
        if latest is not None:
            entry_time = min(entry_time, latest)
        for change in changes:
            if not isinstance(change, dict):
                raise NotAnEnvelope("a change is not an object")
            value = change.get("value")
            if not isinstance(value, dict):
                raise NotAnEnvelope('a change\'s "value" is missing or not an object')
            read = Change(change.get("field"), waba_id, entry_time, value, latest=latest)
            number = read.phone_number_id
            if own_number is not None and number and number != own_number:
                events.append(
                    read.unknown(
                        "change",
                        value,
                        f"{FOREIGN_NUMBER}: a webhook for phone number id {number}, not ours",
                    )
                )
                continue
            _read_change(read, events)
    return events


def _read_change(change: Change, events: list[Event]) -> None:
    field, value = change.field, change.value
    if field == "messages":
        _read_messages_field(change, events)
    elif field == "user_preferences":
        _read_items(change, "user_preferences", read_user_preference, events)
    elif field == "user_id_update":
        _read_items(change, "user_id_update", read_user_id_update, events)
    elif field in BUSINESS_LEVEL_FIELDS:
        events.append(read_account_update(change))
    elif not field:
        events.append(change.unknown("change", value, "the change names no field"))
    else:
        events.append(change.unknown("change", value, f"field {field!r} is not handled"))


def _read_items(
    change: Change, key: str, read: Callable[[Change, object], Event], events: list[Event]
) -> None:
    items = change.value.get(key)
    if not isinstance(items, list):
        events.append(change.unknown(key, change.value, f'"{key}" is missing or not a list'))
        return
    events.extend(read(change, item) for item in items)


def _read_messages_field(change: Change, events: list[Event]) -> None:
    value = change.value
    found = False
    if "messages" in value:
        found = True
        _read_items(change, "messages", _read_message, events)
    if "statuses" in value:
        found = True
        _read_items(change, "statuses", read_status, events)
    errors = value.get("errors")
    if errors is not None:
        found = True
        if isinstance(errors, list):
            if errors:
                events.append(read_webhook_error(change, errors))
        else:
            events.append(change.unknown("errors", value, '"errors" is not a list'))
    if not found:
        events.append(
            change.unknown("change", value, "no messages, statuses or errors in the change")
        )


def _read_message(change: Change, item: object) -> Event:
    """A message's shared fields, then its type's reader; `Unknown` when either falls short.

    A message that names no sender refuses the whole body (`_sender` raises `NotAnEnvelope`).
    """
    if not isinstance(item, dict):
        return change.unknown("message", item, "the message is not an object")
    message_type = text_or_none(item.get("type")) or ""
    sender = _sender(change, item, message_type)
    contact = sender if isinstance(sender, ContactRef) else None
    occurred_at = change.time(item.get("timestamp"))
    wamid = text_or_none(item.get("id"))
    reader = MESSAGE_READERS.get(message_type)
    read: MessageRead
    if isinstance(sender, str):
        read = sender
    elif wamid is None:
        read = "the message has no id"
    elif reader is None:
        read = f"message type {message_type!r} is not handled"
    else:
        context = item.get("context")
        common = change.base(f"msg:{wamid}", occurred_at, sender)
        common["wamid"] = wamid
        common["context_wamid"] = (
            text_or_none(context.get("id")) if isinstance(context, dict) else None
        )
        common["group_id"] = text_or_none(item.get("group_id"))
        read = reader(common, item, message_type)
    if isinstance(read, str):
        return change.unknown(
            message_type,
            item,
            read,
            contact=contact,
            event_id=f"msg:{wamid}" if wamid is not None else None,
            occurred_at=occurred_at,
        )
    return read


def _sender(change: Change, item: JsonObject, message_type: str) -> ContactRef | str:
    """The customer who wrote, or why their ids cannot name one (`invalid_sender: …`)."""
    wa_id = text_or_none(item.get("from"))
    user_id = text_or_none(item.get("from_user_id"))
    system = item.get("system") if message_type == "system" else None
    if isinstance(system, dict):
        # the customer as they were before the change; a BSUID change may name them only
        # by the old (or, failing that, the new) user id
        user_id = user_id or text_or_none(system.get("previous_user_id"))
        if not wa_id and not user_id:
            user_id = text_or_none(system.get("user_id"))
    if not wa_id and not user_id:
        raise NotAnEnvelope('a message has neither "from" nor "from_user_id"')
    parent_user_id = text_or_none(item.get("from_parent_user_id"))
    invalid = invalid_ids(wa_id, user_id, parent_user_id)
    if invalid is not None:
        return invalid
    contact = change.contact(wa_id, user_id, parent_user_id)
    if contact is None:  # not reached: a valid wa_id or user id is kept
        return f"{INVALID_SENDER}: the message names no well-formed sender"
    return contact
