"""Readers for what Meta reports besides customer messages: delivery statuses, value-level
webhook errors, preferences set in WhatsApp, user id (BSUID) changes and business-level notices.

These items tell the bot about a message it sent, a customer's standing choices or identity, or
the business account itself; each becomes its own typed event so the consent logic and the
operator hooks can act on it. Like messages, an item missing what identifies it becomes
`Unknown`.
"""

from __future__ import annotations

from bot.normaliser_change import Change, invalid_ids
from bot.normaliser_clean import clean_text
from bot.normaliser_values import MAX_INT64, JsonObject, canonical, meta_errors, text_or_none
from flows import events as ev
from flows.events import Event

__all__ = [
    "read_account_update",
    "read_status",
    "read_user_id_update",
    "read_user_preference",
    "read_webhook_error",
]

_SUMMARY_LIMIT = 300


def read_status(change: Change, item: object) -> Event:
    if not isinstance(item, dict):
        return change.unknown("status", item, "the status is not an object")
    occurred_at = change.time(item.get("timestamp"))
    wa_id = text_or_none(item.get("recipient_id"))
    group_id = text_or_none(item.get("group_id"))
    if item.get("recipient_type") == "group":
        group_id = group_id or wa_id
        wa_id = text_or_none(item.get("recipient_participant_id"))
    recipient = change.contact(
        wa_id,
        text_or_none(item.get("recipient_user_id")),
        text_or_none(item.get("recipient_parent_user_id")),
    )
    wamid = text_or_none(item.get("id"))
    status = text_or_none(item.get("status"))
    if recipient is None or wamid is None or status is None:
        missing = "recipient" if recipient is None else "id" if wamid is None else "status"
        return change.unknown(
            "status",
            item,
            f"the status has no {missing}",
            contact=recipient,
            occurred_at=occurred_at,
        )
    pricing = item.get("pricing")
    return ev.StatusUpdate(
        **change.base(f"status:{wamid}:{status}", occurred_at, recipient),
        wamid=wamid,
        status=status,
        recipient=recipient,
        errors=meta_errors(item.get("errors")),
        pricing_category=text_or_none(pricing.get("category"))
        if isinstance(pricing, dict)
        else None,
        biz_opaque_callback_data=text_or_none(item.get("biz_opaque_callback_data")),
        group_id=group_id,
    )


def read_webhook_error(change: Change, errors: list[object]) -> ev.WebhookError:
    return ev.WebhookError(
        **change.base(change.event_id("error", errors), change.entry_time, None),
        errors=meta_errors(errors),
    )


# -------------------------------------------------------------- customer-level other fields


def read_user_preference(change: Change, item: object) -> Event:
    if not isinstance(item, dict):
        return change.unknown("user_preference", item, "the preference is not an object")
    occurred_at = change.time(item.get("timestamp"))
    contact = change.contact(
        text_or_none(item.get("wa_id")),
        text_or_none(item.get("user_id")),
        text_or_none(item.get("parent_user_id")),
    )
    category = text_or_none(item.get("category"))
    value = text_or_none(item.get("value"))
    if contact is None or category is None or value is None:
        missing = "customer" if contact is None else "category" if category is None else "value"
        return change.unknown(
            "user_preference",
            item,
            f"the preference has no {missing}",
            contact=contact,
            occurred_at=occurred_at,
        )
    return ev.UserPreferencesUpdate(
        **change.base(change.event_id("prefs", item), occurred_at, contact),
        category=category,
        value=value,
        detail=text_or_none(item.get("detail")),
        signup_id=text_or_none(item.get("signup_id")),
    )


def read_user_id_update(change: Change, item: object) -> Event:
    if not isinstance(item, dict):
        return change.unknown("user_id_update", item, "the update is not an object")
    occurred_at = change.time(item.get("timestamp"))
    previous_user_id, new_user_id = _previous_current(item.get("user_id"))
    previous_parent, new_parent = _previous_current(item.get("parent_user_id"))
    contact = change.contact(
        text_or_none(item.get("wa_id")), previous_user_id or new_user_id, previous_parent
    )
    if contact is None:
        return change.unknown(
            "user_id_update", item, "the update names no customer", occurred_at=occurred_at
        )
    invalid = invalid_ids(None, new_user_id, new_parent)
    if invalid is not None:
        return change.unknown("user_id_update", item, invalid, occurred_at=occurred_at)
    return ev.SystemChange(
        **change.base(change.event_id("system", item), occurred_at, contact),
        wamid="",
        system_type="user_id_update",
        body=text_or_none(item.get("detail")) or "",
        new_wa_id=None,
        new_user_id=new_user_id,
        new_parent_user_id=new_parent,
        previous_user_id=previous_user_id,
        previous_parent_user_id=previous_parent,
    )


def _previous_current(raw: object) -> tuple[str | None, str | None]:
    if not isinstance(raw, dict):
        return None, None
    return text_or_none(raw.get("previous")), text_or_none(raw.get("current"))


# --------------------------------------------------------------------------- business level


def read_account_update(change: Change) -> ev.AccountUpdate:
    value = change.value
    return ev.AccountUpdate(
        **change.base(
            change.event_id("account", value), change.time(_notice_timestamp(value)), None
        ),
        field=change.field,
        summary=_summary(value),
        data_json=canonical(value),
    )


def _notice_timestamp(value: JsonObject) -> object:
    """A business notice's `timestamp`, or that of the first item of its list (group events)."""
    if "timestamp" in value:
        return value["timestamp"]
    for item in value.values():
        if isinstance(item, list) and item and isinstance(item[0], dict):
            return item[0].get("timestamp")
    return None


def _summary(value: JsonObject) -> str:
    """One readable line: the value's plain fields, and the types of the items of its lists."""
    parts: list[str] = []
    for key, item in value.items():
        if key in ("messaging_product", "metadata"):
            continue
        if isinstance(item, str | bool | float) or (
            isinstance(item, int) and -MAX_INT64 <= item <= MAX_INT64
        ):
            parts.append(f"{key}={item}")
        elif isinstance(item, list):
            kinds = [
                kind
                for entry in item
                if isinstance(entry, dict)
                if (kind := text_or_none(entry.get("type")) or text_or_none(entry.get("event")))
            ]
            parts.append(f"{key}=[{', '.join(kinds)}]" if kinds else f"{key}: {len(item)} item(s)")
    # Keys and plain values are Meta's, as received: cleaned like every other string we keep.
    summary = clean_text(", ".join(parts))
    return summary if len(summary) <= _SUMMARY_LIMIT else summary[: _SUMMARY_LIMIT - 1] + "…"
