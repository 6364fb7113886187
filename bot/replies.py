"""Turning the engine's `SendReply` into a Cloud API body and an outbound queue entry."""

from __future__ import annotations

from typing import Any

from bot.db.models import Contact
from bot.graph import (
    ListRow,
    ListSection,
    Recipient,
    ReplyButton,
    body_component,
    list_message,
    quick_reply_component,
    reply_buttons_message,
    template_message,
    text_message,
)
from bot.outbound import OutboundMessage
from bot.send_guard import TAG_FIELD
from flows.effects import SendReply, reply_id


def recipient(contact: Contact) -> Recipient:
    return Recipient(wa_id=contact.wa_id, user_id=contact.user_id)


def message_id(key: str) -> str:
    """Deterministic id of the reply decided under `key` (event id + effect position), so a
    replayed decision queues the same message, which the queue then drops."""
    return reply_id(key)


def reply_body(contact: Contact, reply: SendReply) -> tuple[str, dict[str, Any]]:
    """(kind, Cloud API body) of a reply."""
    to = recipient(contact)
    if reply.template is not None:
        components = (
            [body_component(*reply.template_parameters)] if reply.template_parameters else []
        )
        components += [
            quick_reply_component(i, payload)
            for i, payload in enumerate(reply.template_button_payloads)
        ]
        return "template", template_message(
            to, reply.template, reply.template_language or "en", components
        )
    if reply.rows:
        section = ListSection(
            rows=[ListRow(r.id, r.title, r.description) for r in reply.rows],
            title=reply.list_section,
        )
        return "interactive", list_message(to, reply.text, reply.list_button or "Menu", [section])
    if reply.buttons:
        return "interactive", reply_buttons_message(
            to, reply.text, [ReplyButton(id=i, title=t) for i, t in reply.buttons]
        )
    return "text", text_message(to, reply.text)


def outbound_for(contact: Contact, reply: SendReply) -> OutboundMessage:
    assert contact.id is not None
    kind, body = reply_body(contact, reply)
    mid = message_id(reply.key)
    if kind == "template":
        body[TAG_FIELD] = mid  # Meta echoes it in the statuses: at most once (bot.send_guard)
    return OutboundMessage(
        message_id=mid,
        contact_id=contact.id,
        body=body,
        kind=kind,
        text=reply.text,
        meta={
            "purpose": reply.purpose.value,
            "message": reply.message.value,
            "wa_id": contact.wa_id or "",
            "user_id": contact.user_id or "",
        },
    )
