"""What each kind of event means to the conversation."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import pytest

from bot.categories import BUILTIN
from bot.locales import load_locales
from flows import events as ev
from flows.classify import Classifier
from flows.consent import Method, Source
from flows.keywords import KeywordMatcher
from flows.machine import Trigger

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WHO = ev.ContactRef(wa_id="15551234567", user_id=None)


@cache
def classifier() -> Classifier:
    catalogs = load_locales()
    return Classifier(KeywordMatcher(catalogs, [c.name for c in BUILTIN]), BUILTIN)


def text(body: str) -> ev.TextMessage:
    return ev.TextMessage(
        event_id="msg:w1", phone_number_id="1", occurred_at=NOW, contact=WHO, wamid="w1", body=body
    )


def tap(reply_id: str, title: str = "x", kind: str = "button_reply") -> ev.InteractiveReply:
    return ev.InteractiveReply(
        event_id="msg:w2",
        phone_number_id="1",
        occurred_at=NOW,
        contact=WHO,
        wamid="w2",
        reply_kind=kind,
        reply_id=reply_id,
        title=title,
    )


@pytest.mark.parametrize(
    ("body", "trigger", "categories", "locale"),
    [
        ("STOP", Trigger.STOP_ALL, (), "en"),
        ("stop promotions", Trigger.STOP_CATEGORY, ("marketing",), "en"),
        ("BAJA OFERTAS", Trigger.STOP_CATEGORY, ("marketing",), "es"),
        ("start", Trigger.START_ALL, (), "en"),
        ("Sí", Trigger.YES, (), "es"),
        ("please stop sending me these", Trigger.OPT_OUT_INTENT, (), "en"),
        ("I want to cancel my order", Trigger.OTHER_MESSAGE, (), None),
    ],
)
def test_typed_words(
    body: str, trigger: Trigger, categories: tuple[str, ...], locale: str | None
) -> None:
    result = classifier().classify(text(body), preferred_locale=None)
    assert result.customer_message
    assert result.flow is not None
    assert (result.flow.trigger, result.flow.categories, result.flow.locale) == (
        trigger,
        categories,
        locale,
    )
    assert result.flow.evidence["wamid"] == "w1" and result.flow.evidence["text"] == body


@pytest.mark.parametrize(
    ("reply_id", "trigger", "categories"),
    [
        ("optin:yes", Trigger.YES, ()),
        ("optin:no", Trigger.NO, ()),
        ("clarify:stop_all", Trigger.CLARIFY_STOP_ALL, ()),
        ("clarify:stop:reminders", Trigger.CLARIFY_STOP_CATEGORY, ("reminders",)),
        ("clarify:keep", Trigger.CLARIFY_KEEP, ()),
        ("pref:order_updates", Trigger.PREFERENCE_TOGGLE, ("order_updates",)),
        ("pref:not_a_category", Trigger.OTHER_MESSAGE, ()),
    ],
)
def test_our_buttons_and_rows(reply_id: str, trigger: Trigger, categories: tuple[str, ...]) -> None:
    flow = classifier().classify(tap(reply_id), preferred_locale=None).flow
    assert flow is not None
    assert (flow.trigger, flow.categories) == (trigger, categories)


def test_a_template_stop_promotions_button_withdraws_marketing() -> None:
    button = ev.ButtonReply(
        event_id="msg:w3",
        phone_number_id="1",
        occurred_at=NOW,
        contact=WHO,
        wamid="w3",
        payload="STOP_PROMOS",
        text="Stop promotions",
    )
    flow = classifier().classify(button, preferred_locale=None).flow
    assert flow is not None
    assert (flow.trigger, flow.categories, flow.method) == (
        Trigger.STOP_CATEGORY,
        ("marketing",),
        Method.META_TEMPLATE_BUTTON,
    )


@pytest.mark.parametrize(
    ("value", "trigger"),
    [
        ("stop", Trigger.META_STOP_MARKETING),
        ("resume", Trigger.META_RESUME_MARKETING),
        ("signup", Trigger.META_RESUME_MARKETING),
    ],
)
def test_meta_user_preferences(value: str, trigger: Trigger) -> None:
    update = ev.UserPreferencesUpdate(
        event_id="prefs:1",
        phone_number_id="1",
        occurred_at=NOW,
        contact=WHO,
        category="marketing_messages",
        value=value,
    )
    result = classifier().classify(update, preferred_locale=None)
    assert not result.customer_message, "a preference change does not open the window"
    assert result.flow is not None
    assert (result.flow.trigger, result.flow.categories, result.flow.source) == (
        trigger,
        ("marketing",),
        Source.META_PREFERENCES,
    )


def test_statuses_and_system_changes_are_not_conversation() -> None:
    status = ev.StatusUpdate(
        event_id="status:w:read",
        phone_number_id="1",
        occurred_at=NOW,
        contact=WHO,
        wamid="w",
        status="read",
        recipient=WHO,
    )
    result = classifier().classify(status, preferred_locale=None)
    assert result.flow is None and not result.customer_message


def test_other_messages_open_the_window_quietly() -> None:
    image = ev.MediaMessage(
        event_id="msg:w4",
        phone_number_id="1",
        occurred_at=NOW,
        contact=WHO,
        wamid="w4",
        media_type="image",
        media_id="m",
    )
    result = classifier().classify(image, preferred_locale=None)
    assert result.customer_message
    assert result.flow is not None and result.flow.trigger is Trigger.OTHER_MESSAGE
