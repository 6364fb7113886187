"""Hand-written cases for `bot.normaliser`: batching, BSUID-only customers, statuses, preferences,
identity changes, business notices, what degrades to `Unknown` and what refuses the whole body."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.normaliser import EPOCH, NotAnEnvelope, normalise
from flows.events import (
    AccountUpdate,
    ButtonReply,
    ContactRef,
    ContactsMessage,
    InteractiveReply,
    LocationMessage,
    MediaMessage,
    MetaError,
    OrderMessage,
    Reaction,
    StatusUpdate,
    SystemChange,
    TextMessage,
    Unknown,
    UnsupportedMessage,
    UserPreferencesUpdate,
    WebhookError,
)

PNID = "106540352242922"
WABA = "102290129340398"
BSUID = "US.13491208655302741918"
PARENT = "US.ENT.11815799212886844830"
TS = "1749416383"
TS_TIME = datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)


def value(**parts: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
        **parts,
    }


def envelope(*changes: dict[str, Any], waba: str = WABA) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": list(changes)}],
    }


def change(field: str = "messages", **parts: Any) -> dict[str, Any]:
    return {"field": field, "value": value(**parts)}


def text(
    wamid: str, body: str = "hi", sender: str | None = "16505551234", **extra: Any
) -> dict[str, Any]:
    message: dict[str, Any] = {"id": wamid, "timestamp": TS, "type": "text", "text": {"body": body}}
    if sender is not None:
        message["from"] = sender
    message.update(extra)
    return message


def contact(
    wa_id: str | None = "16505551234", name: str = "Sheena Nelson", **extra: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {"profile": {"name": name}, **extra}
    if wa_id is not None:
        entry["wa_id"] = wa_id
    return entry


def only(payload: dict[str, Any]) -> Any:
    events = normalise(payload)
    assert len(events) == 1, events
    return events[0]


# ------------------------------------------------------------------------------- batching


def test_reads_every_entry_change_and_message_in_order() -> None:
    def batch(prefix: str, sender: str) -> dict[str, Any]:
        return change(
            contacts=[contact(sender)],
            messages=[text(f"wamid.{prefix}.{n}", f"{prefix} {n}", sender) for n in range(3)],
        )

    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "waba-1", "changes": [batch("a", "111"), batch("b", "222")]},
            {"id": "waba-2", "changes": [batch("c", "333"), batch("d", "444")]},
        ],
    }
    events = normalise(payload)
    assert [e.body for e in events if isinstance(e, TextMessage)] == [
        f"{prefix} {n}" for prefix in "abcd" for n in range(3)
    ]
    assert [e.waba_id for e in events] == ["waba-1"] * 6 + ["waba-2"] * 6
    assert [e.contact.wa_id for e in events if e.contact] == (
        ["111"] * 3 + ["222"] * 3 + ["333"] * 3 + ["444"] * 3
    )
    assert len({e.event_id for e in events}) == 12


def test_messages_statuses_and_errors_of_one_change_are_all_read() -> None:
    events = normalise(
        envelope(
            change(
                contacts=[contact()],
                messages=[text("wamid.in")],
                statuses=[
                    {
                        "id": "wamid.out",
                        "status": "read",
                        "timestamp": TS,
                        "recipient_id": "16505551234",
                    }
                ],
                errors=[{"code": 131000, "title": "Something went wrong"}],
            )
        )
    )
    assert [type(e) for e in events] == [TextMessage, StatusUpdate, WebhookError]


def test_empty_entry_list_is_a_valid_envelope_with_no_events() -> None:
    assert normalise({"object": "whatsapp_business_account", "entry": []}) == []


# ---------------------------------------------------------------------------- text message


def test_text_message_fields() -> None:
    event = only(
        envelope(
            change(
                contacts=[contact()],
                messages=[
                    text("wamid.1", "STOP", context={"from": "15550783881", "id": "wamid.0"})
                ],
            )
        )
    )
    assert event == TextMessage(
        event_id="msg:wamid.1",
        phone_number_id=PNID,
        waba_id=WABA,
        occurred_at=TS_TIME,
        contact=ContactRef("16505551234", None, profile_name="Sheena Nelson"),
        wamid="wamid.1",
        context_wamid="wamid.0",
        body="STOP",
    )
    assert event.contact.key == "wa:16505551234"


def test_bsuid_only_sender_is_linked_to_its_contact_entry() -> None:
    event = only(
        envelope(
            change(
                contacts=[
                    {
                        "profile": {"name": "Ana", "username": "@ana"},
                        "user_id": BSUID,
                        "parent_user_id": PARENT,
                    }
                ],
                messages=[text("wamid.1", sender=None, from_user_id=BSUID)],
            )
        )
    )
    assert event.contact == ContactRef(None, BSUID, PARENT, "@ana", "Ana")
    assert event.contact.key == f"bsuid:{BSUID}"


def test_sender_with_both_ids_takes_missing_fields_from_the_contact_entry() -> None:
    event = only(
        envelope(
            change(
                contacts=[contact("16505551234", user_id=BSUID, parent_user_id=PARENT)],
                messages=[text("wamid.1", from_user_id=BSUID, from_parent_user_id=PARENT)],
            )
        )
    )
    assert event.contact == ContactRef("16505551234", BSUID, PARENT, None, "Sheena Nelson")


def test_contact_entry_is_matched_per_message_not_by_position() -> None:
    events = normalise(
        envelope(
            change(
                contacts=[contact("111", "One"), contact("222", "Two")],
                messages=[
                    text("wamid.2", sender="222"),
                    text("wamid.1", sender="111"),
                    text("wamid.3", sender="333"),
                ],
            )
        )
    )
    assert [e.contact.profile_name for e in events if e.contact] == ["Two", "One", None]


# ------------------------------------------------------------------------ other messages


def test_button_interactive_reaction_location_contacts_order() -> None:
    messages = [
        {
            "from": "1",
            "id": "w.button",
            "timestamp": TS,
            "type": "button",
            "button": {"payload": "STOP_MARKETING", "text": "Stop promotions"},
        },
        {
            "from": "1",
            "id": "w.list",
            "timestamp": TS,
            "type": "interactive",
            "interactive": {
                "type": "list_reply",
                "list_reply": {
                    "id": "cat.marketing",
                    "title": "Marketing",
                    "description": "Offers",
                },
            },
        },
        {
            "from": "1",
            "id": "w.flow",
            "timestamp": TS,
            "type": "interactive",
            "interactive": {
                "type": "nfm_reply",
                "nfm_reply": {"name": "flow", "body": "Sent", "response_json": '{"agree": true}'},
            },
        },
        {
            "from": "1",
            "id": "w.react",
            "timestamp": TS,
            "type": "reaction",
            "reaction": {"message_id": "w.target"},
        },
        {
            "from": "1",
            "id": "w.loc",
            "timestamp": TS,
            "type": "location",
            "location": {"latitude": "37.5", "longitude": -122.25, "name": "Cafe"},
        },
        {
            "from": "1",
            "id": "w.cards",
            "timestamp": TS,
            "type": "contacts",
            "contacts": [{"name": {"first_name": "Lucía", "last_name": "Gómez"}}, {"org": {}}],
        },
        {
            "from": "1",
            "id": "w.order",
            "timestamp": TS,
            "type": "order",
            "order": {"catalog_id": "cat", "product_items": [{"quantity": 2}, {"quantity": 1}]},
        },
    ]
    button, list_reply, flow, reaction, location, cards, order = normalise(
        envelope(change(messages=messages))
    )
    assert isinstance(button, ButtonReply)
    assert (button.payload, button.text) == ("STOP_MARKETING", "Stop promotions")
    assert isinstance(list_reply, InteractiveReply)
    assert (
        list_reply.reply_kind,
        list_reply.reply_id,
        list_reply.title,
        list_reply.description,
    ) == ("list_reply", "cat.marketing", "Marketing", "Offers")
    assert isinstance(flow, InteractiveReply)
    assert (flow.reply_kind, flow.reply_id, flow.response_json) == (
        "nfm_reply",
        "flow",
        '{"agree": true}',
    )
    assert isinstance(reaction, Reaction)
    assert (reaction.target_wamid, reaction.emoji) == ("w.target", None)
    assert isinstance(location, LocationMessage)
    assert (location.latitude, location.longitude, location.name) == (37.5, -122.25, "Cafe")
    assert isinstance(cards, ContactsMessage) and cards.names == ("Lucía Gómez",)
    assert isinstance(order, OrderMessage)
    assert (order.catalog_id, order.item_count, order.text) == ("cat", 2, None)


@pytest.mark.parametrize("media_type", ["image", "audio", "video", "document", "sticker", "voice"])
def test_media_messages(media_type: str) -> None:
    event = only(
        envelope(
            change(
                messages=[
                    {
                        "from": "1",
                        "id": "w.media",
                        "timestamp": TS,
                        "type": media_type,
                        media_type: {
                            "id": "media-1",
                            "mime_type": "x/y",
                            "sha256": "abc",
                            "caption": "c",
                            "filename": "f.pdf",
                        },
                    }
                ]
            )
        )
    )
    assert isinstance(event, MediaMessage)
    assert (
        event.media_type,
        event.media_id,
        event.mime_type,
        event.sha256,
        event.caption,
        event.filename,
        event.voice,
    ) == (media_type, "media-1", "x/y", "abc", "c", "f.pdf", media_type == "voice")


def test_voice_note_sent_as_audio_is_marked() -> None:
    event = only(
        envelope(
            change(
                messages=[
                    {
                        "from": "1",
                        "id": "w",
                        "timestamp": TS,
                        "type": "audio",
                        "audio": {"id": "m", "mime_type": "audio/ogg; codecs=opus", "voice": True},
                    }
                ]
            )
        )
    )
    assert isinstance(event, MediaMessage) and event.voice and event.media_type == "audio"


def test_unsupported_message_keeps_its_errors() -> None:
    event = only(
        envelope(
            change(
                messages=[
                    {
                        "from": "1",
                        "id": "w",
                        "timestamp": TS,
                        "type": "unsupported",
                        "errors": [
                            {
                                "code": 131051,
                                "title": "Message type unknown",
                                "message": "Message type unknown",
                                "error_data": {
                                    "details": "Message type is currently not supported."
                                },
                            }
                        ],
                    }
                ]
            )
        )
    )
    assert isinstance(event, UnsupportedMessage)
    assert event.errors == (
        MetaError(
            131051,
            "Message type unknown",
            "Message type unknown",
            "Message type is currently not supported.",
        ),
    )


# ------------------------------------------------------------------------- identity changes


def test_system_number_change() -> None:
    event = only(
        envelope(
            change(
                messages=[
                    {
                        "from": "16505551234",
                        "id": "wamid.sys",
                        "timestamp": TS,
                        "type": "system",
                        "system": {
                            "body": "User A changed from 16505551234 to 12195555358",
                            "wa_id": "12195555358",
                            "type": "user_changed_number",
                            "user_id": "US.NEW",
                            "previous_user_id": BSUID,
                        },
                    }
                ]
            )
        )
    )
    assert isinstance(event, SystemChange)
    assert event.event_id == "msg:wamid.sys"
    assert event.contact == ContactRef("16505551234", BSUID)  # as it was before the change
    assert (event.system_type, event.new_wa_id, event.new_user_id, event.previous_user_id) == (
        "user_changed_number",
        "12195555358",
        "US.NEW",
        BSUID,
    )
    assert event.body.startswith("User A changed")


def test_system_user_id_change_without_from_names_the_customer_by_the_previous_id() -> None:
    only_new = only(
        envelope(
            change(
                messages=[
                    {
                        "id": "wamid.sys",
                        "timestamp": TS,
                        "type": "system",
                        "system": {
                            "body": "changed",
                            "type": "user_changed_user_id",
                            "user_id": "US.NEW",
                        },
                    }
                ]
            )
        )
    )
    assert only_new.contact == ContactRef(None, "US.NEW")
    event = only(
        envelope(
            change(
                messages=[
                    {
                        "id": "wamid.sys",
                        "timestamp": TS,
                        "type": "system",
                        "system": {
                            "body": "changed",
                            "type": "user_changed_user_id",
                            "user_id": "US.NEW",
                            "previous_user_id": BSUID,
                            "previous_parent_user_id": PARENT,
                        },
                    }
                ]
            )
        )
    )
    assert isinstance(event, SystemChange)
    assert event.contact == ContactRef(None, BSUID)
    assert (event.new_user_id, event.previous_parent_user_id) == ("US.NEW", PARENT)


def test_customer_identity_changed() -> None:
    event = only(
        envelope(
            change(
                contacts=[contact("1")],
                messages=[
                    {
                        "from": "1",
                        "id": "wamid.id",
                        "timestamp": TS,
                        "type": "system",
                        "system": {
                            "body": "Identity changed",
                            "customer": "1",
                            "type": "customer_identity_changed",
                        },
                        "identity": {"acknowledged": True, "created_timestamp": 1, "hash": "h"},
                    }
                ],
            )
        )
    )
    assert isinstance(event, SystemChange)
    assert event.system_type == "customer_identity_changed" and event.new_wa_id is None


def test_user_id_update_field() -> None:
    event = only(
        envelope(
            change(
                "user_id_update",
                user_id_update=[
                    {
                        "wa_id": "16505551234",
                        "detail": "User id updated",
                        "timestamp": TS,
                        "user_id": {"previous": BSUID, "current": "US.NEW"},
                    }
                ],
            )
        )
    )
    assert isinstance(event, SystemChange)
    assert event.contact == ContactRef("16505551234", BSUID)
    assert (event.system_type, event.wamid, event.new_user_id, event.previous_user_id) == (
        "user_id_update",
        "",
        "US.NEW",
        BSUID,
    )
    assert event.event_id.startswith("system:")


# -------------------------------------------------------------------------------- statuses


def test_status_with_only_recipient_user_id() -> None:
    event = only(
        envelope(
            change(
                contacts=[{"profile": {"name": "Ana", "username": "@ana"}, "user_id": BSUID}],
                statuses=[
                    {
                        "id": "wamid.out",
                        "status": "delivered",
                        "timestamp": TS,
                        "recipient_user_id": BSUID,
                        "pricing": {
                            "billable": True,
                            "pricing_model": "PMP",
                            "category": "marketing",
                        },
                        "biz_opaque_callback_data": "campaign-7",
                    }
                ],
            )
        )
    )
    assert isinstance(event, StatusUpdate)
    assert event.recipient == ContactRef(None, BSUID, None, "@ana", "Ana")
    assert event.contact == event.recipient
    assert event.recipient.key == f"bsuid:{BSUID}"
    assert (
        event.event_id,
        event.status,
        event.pricing_category,
        event.biz_opaque_callback_data,
        event.occurred_at,
    ) == ("status:wamid.out:delivered", "delivered", "marketing", "campaign-7", TS_TIME)


def test_failed_status_keeps_its_errors() -> None:
    event = only(
        envelope(
            change(
                statuses=[
                    {
                        "id": "wamid.out",
                        "status": "failed",
                        "timestamp": TS,
                        "recipient_id": "16505551234",
                        "errors": [
                            {
                                "code": 131049,
                                "title": "This message was not delivered",
                                "message": "healthy ecosystem",
                                "error_data": {
                                    "details": "not delivered to maintain healthy ecosystem"
                                },
                                "href": "https://developers.facebook.com/docs/",
                            }
                        ],
                    }
                ]
            )
        )
    )
    assert isinstance(event, StatusUpdate) and event.status == "failed"
    assert event.recipient == ContactRef("16505551234", None)
    assert event.errors == (
        MetaError(
            131049,
            "This message was not delivered",
            "healthy ecosystem",
            "not delivered to maintain healthy ecosystem",
        ),
    )


@pytest.mark.parametrize("status", ["sent", "delivered", "read", "played", "deleted"])
def test_each_status_has_its_own_event_id(status: str) -> None:
    event = only(
        envelope(
            change(
                statuses=[
                    {"id": "wamid.out", "status": status, "timestamp": TS, "recipient_id": "1"}
                ]
            )
        )
    )
    assert isinstance(event, StatusUpdate) and event.event_id == f"status:wamid.out:{status}"


def test_group_status_names_the_participant_and_the_group() -> None:
    event = only(
        envelope(
            change(
                statuses=[
                    {
                        "id": "wamid.out",
                        "status": "read",
                        "timestamp": TS,
                        "recipient_id": "group-1",
                        "recipient_type": "group",
                        "recipient_participant_id": "16505551234",
                    }
                ]
            )
        )
    )
    assert isinstance(event, StatusUpdate)
    assert (event.recipient.wa_id, event.group_id) == ("16505551234", "group-1")


def test_status_without_recipient_is_unknown() -> None:
    event = only(envelope(change(statuses=[{"id": "w", "status": "sent", "timestamp": TS}])))
    assert isinstance(event, Unknown) and "recipient" in event.reason


# ------------------------------------------------------------------------ user preferences


@pytest.mark.parametrize("preference", ["stop", "resume", "signup"])
def test_user_preferences(preference: str) -> None:
    event = only(
        envelope(
            change(
                "user_preferences",
                contacts=[contact("16505551234", user_id=BSUID)],
                user_preferences=[
                    {
                        "wa_id": "16505551234",
                        "detail": f"User requested to {preference}",
                        "category": "marketing_messages",
                        "value": preference,
                        "timestamp": TS,
                    }
                ],
            )
        )
    )
    assert isinstance(event, UserPreferencesUpdate)
    assert (event.category, event.value, event.detail, event.occurred_at) == (
        "marketing_messages",
        preference,
        f"User requested to {preference}",
        TS_TIME,
    )
    assert event.contact == ContactRef("16505551234", BSUID, profile_name="Sheena Nelson")
    assert event.event_id.startswith("prefs:")


def test_user_preferences_reads_every_item() -> None:
    events = normalise(
        envelope(
            change(
                "user_preferences",
                user_preferences=[
                    {
                        "user_id": BSUID,
                        "category": "marketing_messages",
                        "value": "stop",
                        "timestamp": TS,
                    },
                    {
                        "wa_id": "2",
                        "category": "marketing_messages",
                        "value": "resume",
                        "timestamp": TS,
                    },
                    {"category": "marketing_messages", "value": "stop"},
                ],
            )
        )
    )
    assert [type(e).__name__ for e in events] == [
        "UserPreferencesUpdate",
        "UserPreferencesUpdate",
        "Unknown",
    ]
    assert events[0].contact == ContactRef(None, BSUID)


# ---------------------------------------------------------- errors and business notices


def test_value_level_errors_become_one_webhook_error() -> None:
    event = only(
        envelope(
            change(
                errors=[
                    {
                        "code": 131000,
                        "title": "Something went wrong",
                        "message": "m",
                        "error_data": {"details": "d"},
                    },
                    {"code": "130429", "title": "Rate limit hit"},
                ]
            )
        )
    )
    assert isinstance(event, WebhookError) and event.contact is None
    assert event.errors == (
        MetaError(131000, "Something went wrong", "m", "d"),
        MetaError(130429, "Rate limit hit"),
    )


@pytest.mark.parametrize(
    "field",
    [
        "phone_number_quality_update",
        "message_template_quality_update",
        "message_template_status_update",
        "account_update",
    ],
)
def test_business_level_fields_become_account_updates(field: str) -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "time": 1749416383,
                "changes": [
                    {
                        "field": field,
                        "value": {
                            "event": "APPROVED",
                            "message_template_id": 1234,
                            "message_template_name": "optin",
                            "reason": None,
                        },
                    }
                ],
            }
        ],
    }
    event = only(payload)
    assert isinstance(event, AccountUpdate)
    assert event.field == field and event.contact is None and event.phone_number_id == ""
    assert event.summary == "event=APPROVED, message_template_id=1234, message_template_name=optin"
    assert '"message_template_name":"optin"' in event.data_json
    assert event.occurred_at == TS_TIME  # from the entry's `time`
    assert event.event_id.startswith("account:")


def test_unrecognised_field_is_kept_as_unknown() -> None:
    event = only(envelope(change("smb_message_echoes", message_echoes=[{"id": "x"}])))
    assert isinstance(event, Unknown)
    assert (event.field, event.item_type) == ("smb_message_echoes", "change")
    assert '"message_echoes"' in event.raw_json


# ------------------------------------------------------------------------ Unknown items


def test_unknown_message_type_is_kept_with_its_sender() -> None:
    event = only(
        envelope(
            change(
                contacts=[contact()],
                messages=[
                    {
                        "from": "16505551234",
                        "id": "wamid.x",
                        "timestamp": TS,
                        "type": "hologram",
                        "hologram": {"id": "h"},
                    }
                ],
            )
        )
    )
    assert isinstance(event, Unknown)
    assert (event.event_id, event.field, event.item_type) == ("msg:wamid.x", "messages", "hologram")
    assert event.contact == ContactRef("16505551234", None, profile_name="Sheena Nelson")
    assert "hologram" in event.reason and '"hologram":{"id":"h"}' in event.raw_json


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"from": "1", "timestamp": TS, "type": "text", "text": {"body": "x"}}, "no id"),
        ({"from": "1", "id": "w", "type": "text", "text": "x"}, "no text object"),
        ({"from": "1", "id": "w", "type": "image", "image": {}}, "no media id"),
        ({"from": "1", "id": "w", "type": "reaction", "reaction": {"emoji": "x"}}, "names no"),
        (
            {
                "from": "1",
                "id": "w",
                "type": "location",
                "location": {"latitude": "nan", "longitude": 1},
            },
            "latitude",
        ),
        (
            {
                "from": "1",
                "id": "w",
                "type": "interactive",
                "interactive": {"type": "call_permission_reply", "call_permission_reply": {}},
            },
            "not handled",
        ),
        ({"from": "1", "id": "w", "type": "system", "system": {"body": "b"}}, "no type"),
    ],
)
def test_unreadable_messages_degrade_to_unknown(message: dict[str, Any], reason: str) -> None:
    event = only(envelope(change(messages=[message])))
    assert isinstance(event, Unknown) and reason in event.reason


@pytest.mark.parametrize(
    "parts",
    [
        {"messages": [17]},
        {"messages": "not a list"},
        {"statuses": [None]},
        {"errors": {"code": 1}},
        {},
    ],
)
def test_malformed_parts_of_a_change_degrade_to_unknown(parts: dict[str, Any]) -> None:
    assert isinstance(only(envelope(change(**parts))), Unknown)


def test_change_without_field_is_unknown() -> None:
    event = only(envelope({"value": value(messages=[text("w")])}))
    assert isinstance(event, Unknown) and event.reason == "the change names no field"


def test_unknown_items_have_stable_event_ids() -> None:
    payload = envelope(change("hologram_update", anything=[1, 2]))
    assert only(payload).event_id == only(copy.deepcopy(payload)).event_id
    other = envelope(change("hologram_update", anything=[1, 3]))
    assert only(payload).event_id != only(other).event_id


# ------------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("timestamp", [None, "", "soon", "12.5", "-5", "99999999999999", True, 1.5])
def test_unreadable_timestamp_falls_back_to_received_at(timestamp: object) -> None:
    message = text("w")
    if timestamp is None:
        del message["timestamp"]
    else:
        message["timestamp"] = timestamp
    received = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        normalise(envelope(change(messages=[message])), received_at=received)[0].occurred_at
        == received
    )
    assert only(envelope(change(messages=[message]))).occurred_at == EPOCH


def test_integer_timestamp_is_read() -> None:
    assert only(envelope(change(messages=[text("w", timestamp=1749416383)]))).occurred_at == TS_TIME


def test_received_at_is_converted_to_utc() -> None:
    message = text("w")
    del message["timestamp"]
    received = datetime(2026, 1, 2, 5, 0, tzinfo=timezone(timedelta(hours=2)))
    occurred = normalise(envelope(change(messages=[message])), received_at=received)[0].occurred_at
    assert occurred == received and occurred.utcoffset() == timedelta(0)


def test_entry_time_is_the_fallback_before_received_at() -> None:
    message = text("w")
    del message["timestamp"]
    payload = envelope(change(messages=[message]))
    payload["entry"][0]["time"] = 1749416383
    assert (
        normalise(payload, received_at=datetime(2026, 1, 1, tzinfo=UTC))[0].occurred_at == TS_TIME
    )


# -------------------------------------------------------------------------- NotAnEnvelope


def _valid() -> dict[str, Any]:
    return envelope(change(contacts=[contact()], messages=[text("wamid.1")]))


def _set(path: tuple[str | int, ...], new: object) -> dict[str, Any]:
    payload = _valid()
    node: Any = payload
    for key in path[:-1]:
        node = node[key]
    if new is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = new
    return payload


_DELETE = object()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([], id="list body"),
        pytest.param("whatsapp", id="string body"),
        pytest.param(None, id="null body"),
        pytest.param(_set(("object",), "page"), id="object is page"),
        pytest.param(_set(("object",), _DELETE), id="object missing"),
        pytest.param(_set(("entry",), _DELETE), id="entry missing"),
        pytest.param(_set(("entry",), {"id": "1"}), id="entry not a list"),
        pytest.param(_set(("entry", 0), "entry"), id="entry item not an object"),
        pytest.param(_set(("entry", 0, "changes"), _DELETE), id="changes missing"),
        pytest.param(_set(("entry", 0, "changes"), {}), id="changes not a list"),
        pytest.param(_set(("entry", 0, "changes", 0), ["change"]), id="change not an object"),
        pytest.param(_set(("entry", 0, "changes", 0, "value"), _DELETE), id="value missing"),
        pytest.param(_set(("entry", 0, "changes", 0, "value"), "v"), id="value not an object"),
        pytest.param(
            _set(("entry", 0, "changes", 0, "value", "messages", 0, "from"), _DELETE),
            id="message without sender",
        ),
        pytest.param(
            _set(("entry", 0, "changes", 0, "value", "messages", 0, "from"), ""),
            id="message with empty sender",
        ),
    ],
)
def test_not_an_envelope(payload: object) -> None:
    with pytest.raises(NotAnEnvelope):
        normalise(payload)


def test_one_message_without_sender_refuses_the_whole_body() -> None:
    payload = envelope(change(messages=[text("w.1"), text("w.2", sender=None)]))
    with pytest.raises(NotAnEnvelope, match="from"):
        normalise(payload)


def test_normalise_does_not_change_its_input() -> None:
    payload = _valid()
    before = copy.deepcopy(payload)
    normalise(payload)
    assert payload == before
