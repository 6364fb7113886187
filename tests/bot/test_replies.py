"""Reply bodies: template replies carry our message id for Meta to echo back."""

from __future__ import annotations

from bot.db.models import Contact
from bot.replies import message_id, outbound_for
from bot.send_guard import TAG_FIELD
from flows.effects import Purpose, SendReply
from flows.machine import Message

CONTACT = Contact(id=7, wa_id="34612345678")


def reply(**fields: object) -> SendReply:
    return SendReply(
        key="msg:wamid.1:0",
        message=Message.OPTIN_PROMPT,
        purpose=Purpose.OPTIN_PROMPT,
        text="Reply YES",
        **fields,  # type: ignore[arg-type]
    )


def test_a_template_reply_is_tagged_with_its_message_id() -> None:
    """So the send guard can keep it at most once across a sender's crash: Meta echoes the tag
    in every status of the message."""
    message = outbound_for(CONTACT, reply(template="optin_request", template_language="es"))
    assert message.kind == "template"
    assert message.body[TAG_FIELD] == message.message_id == message_id("msg:wamid.1:0")


def test_session_replies_are_not_tagged() -> None:
    """Meta's schema has the tag on template messages only."""
    assert TAG_FIELD not in outbound_for(CONTACT, reply()).body
    assert TAG_FIELD not in outbound_for(CONTACT, reply(buttons=(("yes", "YES"),))).body
