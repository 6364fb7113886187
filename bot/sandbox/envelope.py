"""What the person playing the customer does, as the webhook body Meta would post for it.

The sandbox must take the production path, so a typed message or a tapped button becomes exactly
the JSON Meta sends (`messages` field, `contacts` + `messages` arrays, unix timestamp as a string,
a unique wamid, `context` naming the message that was answered). Pure: the clock and the wamid are
passed in, so the shapes are tested without a server.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

WABA_ID = "100000000000001"  # a made-up WhatsApp Business Account id
BUSINESS_DISPLAY_NUMBER = "15550000000"
CUSTOMER_NAME = "Sandbox customer"
TEXT_MAX = 4096
ID_MAX = 256
TITLE_MAX = 100

_WA_ID = re.compile(r"[1-9]\d{5,14}")


class ActionKind(StrEnum):
    """The four things a customer can do in the sandbox, named after Meta's message types."""

    TEXT = "text"
    BUTTON_REPLY = "button_reply"  # a reply button of an interactive message
    LIST_REPLY = "list_reply"  # a row of an interactive list
    TEMPLATE_BUTTON = "button"  # a quick-reply button of a template


class InvalidAction(ValueError):
    """The page sent something a customer could not have done; the message says what."""


def valid_wa_id(value: str) -> bool:
    """A phone-number based WhatsApp id: 6 to 15 digits, no leading zero, no '+'."""
    return bool(_WA_ID.fullmatch(value))


def new_wamid() -> str:
    """A message id in Meta's style, unique per call."""
    return "wamid.SANDBOX" + secrets.token_hex(16).upper()


@dataclass(frozen=True, slots=True)
class CustomerAction:
    """One message from the customer: typed `text`, or a tap answering the bot's message
    `context_wamid` with the reply's `reply_id` and `title` (`description` for list rows)."""

    kind: ActionKind
    text: str = ""
    reply_id: str = ""
    title: str = ""
    description: str = ""
    context_wamid: str | None = None

    @property
    def shown(self) -> str:
        """What the customer's own bubble says."""
        return self.text if self.kind is ActionKind.TEXT else self.title


def _field(data: Mapping[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise InvalidAction(f"`{name}` must be text")
    value = value.strip()
    if required and not value:
        raise InvalidAction(f"`{name}` is required")
    if len(value) > limit:
        raise InvalidAction(f"`{name}` is longer than {limit} characters")
    return value


def parse_action(data: Mapping[str, Any]) -> CustomerAction:
    """Read `{"type": …, "text"|"id"+"title"[+"description"], "context"?}` from the page."""
    try:
        kind = ActionKind(str(data.get("type", "text")))
    except ValueError:
        raise InvalidAction("`type` is text, button_reply, list_reply or button") from None
    context = _field(data, "context", ID_MAX, required=False) or None
    if kind is ActionKind.TEXT:
        return CustomerAction(kind, text=_field(data, "text", TEXT_MAX, required=True))
    return CustomerAction(
        kind,
        reply_id=_field(data, "id", ID_MAX, required=True),
        title=_field(data, "title", TITLE_MAX, required=True),
        description=_field(data, "description", TITLE_MAX, required=False),
        context_wamid=context,
    )


def _message_content(action: CustomerAction) -> dict[str, Any]:
    match action.kind:
        case ActionKind.TEXT:
            return {"type": "text", "text": {"body": action.text}}
        case ActionKind.BUTTON_REPLY:
            reply = {"id": action.reply_id, "title": action.title}
            return {
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": reply},
            }
        case ActionKind.LIST_REPLY:
            row = {"id": action.reply_id, "title": action.title}
            if action.description:
                row["description"] = action.description
            return {"type": "interactive", "interactive": {"type": "list_reply", "list_reply": row}}
        case ActionKind.TEMPLATE_BUTTON:
            return {"type": "button", "button": {"payload": action.reply_id, "text": action.title}}
    raise AssertionError(action.kind)  # pragma: no cover - the enum is exhaustive


def webhook_envelope(
    action: CustomerAction,
    *,
    wa_id: str,
    phone_number_id: str,
    wamid: str,
    now: datetime,
    name: str = CUSTOMER_NAME,
) -> dict[str, Any]:
    """The `messages` webhook Meta posts when customer `wa_id` does `action` at `now`."""
    if not valid_wa_id(wa_id):
        raise InvalidAction("the number must be 6 to 15 digits, without '+' or a leading 0")
    message: dict[str, Any] = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(int(now.timestamp())),
        **_message_content(action),
    }
    if action.context_wamid is not None:
        message["context"] = {"from": BUSINESS_DISPLAY_NUMBER, "id": action.context_wamid}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": BUSINESS_DISPLAY_NUMBER,
            "phone_number_id": phone_number_id,
        },
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}],
    }
