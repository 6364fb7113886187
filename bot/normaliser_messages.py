"""Readers for each type of customer message (`messages[]` items), one function per `type`.

Meta adds message types over time and sends each type's own part under the key its `type`
names, so a message is read by looking its type up in `MESSAGE_READERS`: a type with no reader,
or a reader that cannot find what identifies the message, makes it `Unknown` rather than a
half-read event. What every message shares (id, sender, time, context) is read by
`bot.normaliser` before the reader is called.

Each reader takes the fields every message event shares, the message and its type, and returns
the typed event, or the reason it cannot (the message then becomes `Unknown`). The part named by
the type must be an object; inside it, identifying fields are required and the rest default.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from bot.normaliser_change import invalid_ids
from bot.normaliser_values import JsonObject, meta_errors, text_or_none
from flows import events as ev

__all__ = ["MESSAGE_READERS", "MessageRead"]

_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker", "voice"})

MessageRead = ev.InboundMessage | str
"""A message's typed event, or the reason it cannot be read (it then becomes `Unknown`)."""


def _text_message(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    text = item.get("text")
    if not isinstance(text, dict):
        return "the text message has no text object"
    return ev.TextMessage(**common, body=text_or_none(text.get("body")) or "")


def _button(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    button = item.get("button")
    if not isinstance(button, dict):
        return "the button message has no button object"
    return ev.ButtonReply(
        **common,
        payload=text_or_none(button.get("payload")) or "",
        text=text_or_none(button.get("text")) or "",
    )


def _interactive(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    interactive = item.get("interactive")
    if not isinstance(interactive, dict):
        return "the interactive message has no interactive object"
    kind = text_or_none(interactive.get("type")) or ""
    reply = interactive.get(kind) if kind else None
    if not isinstance(reply, dict):
        return f"the interactive reply has no {kind or 'type'} object"
    if kind in ("button_reply", "list_reply"):
        reply_id = text_or_none(reply.get("id"))
        if reply_id is None:
            return f"the {kind} has no id"
        return ev.InteractiveReply(
            **common,
            reply_kind=kind,
            reply_id=reply_id,
            title=text_or_none(reply.get("title")) or "",
            description=text_or_none(reply.get("description")),
        )
    if kind == "nfm_reply":
        return ev.InteractiveReply(
            **common,
            reply_kind=kind,
            reply_id=text_or_none(reply.get("name")) or "",
            title=text_or_none(reply.get("body")) or "",
            response_json=text_or_none(reply.get("response_json")),
        )
    return f"interactive reply kind {kind!r} is not handled"


def _reaction(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    reaction = item.get("reaction")
    if not isinstance(reaction, dict):
        return "the reaction has no reaction object"
    target = text_or_none(reaction.get("message_id"))
    if target is None:
        return "the reaction names no message"
    return ev.Reaction(**common, target_wamid=target, emoji=text_or_none(reaction.get("emoji")))


def _media(common: JsonObject, item: JsonObject, media_type: str) -> MessageRead:
    media = item.get(media_type)
    if media is None and media_type == "voice":
        media = item.get("audio")
    if not isinstance(media, dict):
        return f"the {media_type} message has no {media_type} object"
    media_id = text_or_none(media.get("id"))
    if media_id is None:
        return f"the {media_type} has no media id"
    return ev.MediaMessage(
        **common,
        media_type=media_type,
        media_id=media_id,
        mime_type=text_or_none(media.get("mime_type")),
        caption=text_or_none(media.get("caption")),
        filename=text_or_none(media.get("filename")),
        sha256=text_or_none(media.get("sha256")),
        voice=media_type == "voice" or media.get("voice") is True,
    )


def _location(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    location = item.get("location")
    if not isinstance(location, dict):
        return "the location message has no location object"
    latitude = _coordinate(location.get("latitude"))
    longitude = _coordinate(location.get("longitude"))
    if latitude is None or longitude is None:
        return "the location has no readable latitude and longitude"
    return ev.LocationMessage(
        **common,
        latitude=latitude,
        longitude=longitude,
        name=text_or_none(location.get("name")),
        address=text_or_none(location.get("address")),
    )


def _contacts(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    cards = item.get("contacts")
    if not isinstance(cards, list):
        return "the contacts message has no contacts list"
    names: list[str] = []
    for card in cards:
        name = card.get("name") if isinstance(card, dict) else None
        if isinstance(name, dict):
            full = text_or_none(name.get("formatted_name")) or " ".join(
                part for key in ("first_name", "last_name") if (part := text_or_none(name.get(key)))
            )
            if full:
                names.append(full)
    return ev.ContactsMessage(**common, names=tuple(names))


def _order(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    order = item.get("order")
    if not isinstance(order, dict):
        return "the order message has no order object"
    lines = order.get("product_items")
    count = sum(isinstance(line, dict) for line in lines) if isinstance(lines, list) else 0
    return ev.OrderMessage(
        **common,
        catalog_id=text_or_none(order.get("catalog_id")) or "",
        item_count=count,
        text=text_or_none(order.get("text")),
    )


def _system(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    system = item.get("system")
    if not isinstance(system, dict):
        return "the system message has no system object"
    system_type = text_or_none(system.get("type"))
    if system_type is None:
        return "the system message has no type"
    new_wa_id = text_or_none(system.get("wa_id")) or text_or_none(system.get("new_wa_id"))
    new_user_id = text_or_none(system.get("user_id"))
    new_parent = text_or_none(system.get("parent_user_id"))
    previous_user_id = text_or_none(system.get("previous_user_id"))
    previous_parent = text_or_none(system.get("previous_parent_user_id"))
    # the customer's new ids become theirs: they must be as well-formed as a sender's
    invalid = invalid_ids(new_wa_id, new_user_id, new_parent, previous_user_id, previous_parent)
    if invalid is not None:
        return invalid
    return ev.SystemChange(
        **common,
        system_type=system_type,
        body=text_or_none(system.get("body")) or "",
        new_wa_id=new_wa_id,
        new_user_id=new_user_id,
        new_parent_user_id=new_parent,
        previous_user_id=previous_user_id,
        previous_parent_user_id=previous_parent,
    )


def _unsupported(common: JsonObject, item: JsonObject, _type: str) -> MessageRead:
    return ev.UnsupportedMessage(**common, errors=meta_errors(item.get("errors")))


MESSAGE_READERS: dict[str, Callable[[JsonObject, JsonObject, str], MessageRead]] = {
    "text": _text_message,
    "button": _button,
    "interactive": _interactive,
    "reaction": _reaction,
    "location": _location,
    "contacts": _contacts,
    "order": _order,
    "system": _system,
    "unsupported": _unsupported,
    "unknown": _unsupported,
    **{media_type: _media for media_type in _MEDIA_TYPES},
}


def _coordinate(raw: object) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float | int):
        try:
            number = float(raw)
        except OverflowError:
            return None
    elif isinstance(raw, str) and len(raw) <= 64:
        try:
            number = float(raw)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
