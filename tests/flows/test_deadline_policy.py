"""A re-consent request may carry its own deadline policy (a campaign's `on_deadline`), which
wins over the business-wide RECONSENT_DEADLINE_POLICY; without one the business's setting holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

import pytest

from bot.categories import BUILTIN
from bot.locales import load_locales
from flows import events as ev
from flows.classify import Classifier
from flows.consent import ConsentAction, ConsentStatus
from flows.conversation import Conversation, FlowContext, FlowPolicy
from flows.effects import ConsentRecord
from flows.engine import step
from flows.keywords import KeywordMatcher
from flows.machine import State

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(days=30)
WHO = ev.ContactRef(wa_id="15551234567", user_id=None)


@cache
def classifier() -> Classifier:
    catalogs = load_locales()
    return Classifier(KeywordMatcher(catalogs, [c.name for c in BUILTIN]), BUILTIN)


def context(*, business_lapses: bool) -> FlowContext:
    return FlowContext(
        categories=BUILTIN,
        consents={"marketing": ConsentStatus.OPTED_IN},
        catalog=load_locales()["en"],
        policy=FlowPolicy(business_name="Acme", deadline_lapses=business_lapses),
        window_open=False,
    )


def request(policy: str | None) -> ev.ConsentRequest:
    return ev.ConsentRequest(
        event_id="campaign:1:7",
        phone_number_id="1",
        occurred_at=NOW,
        contact=WHO,
        contact_id=7,
        kind="reconsent",
        categories=("marketing",),
        source="api",
        policy_version="2",
        deadline=DEADLINE,
        deadline_policy=policy,
    )


def deadline_fired(token: str) -> ev.TimerFired:
    return ev.TimerFired(
        event_id="timer:7:reconsent_deadline",
        phone_number_id="1",
        occurred_at=DEADLINE,
        contact=WHO,
        contact_id=7,
        timer="reconsent_deadline",
        token=token,
    )


def run_to_deadline(policy: str | None, *, business_lapses: bool) -> list[ConsentRecord]:
    ctx = context(business_lapses=business_lapses)
    asked = classifier().classify(request(policy), preferred_locale="en").flow
    assert asked is not None
    waiting = step(Conversation(), asked, ctx).conversation
    assert waiting.state is State.AWAITING_RECONSENT
    assert waiting.deadline_policy == policy
    fired = classifier().classify(deadline_fired(waiting.token), preferred_locale="en").flow
    assert fired is not None
    decision = step(waiting, fired, ctx)
    assert decision.conversation.state is State.IDLE
    return [e for e in decision.effects if isinstance(e, ConsentRecord)]


@pytest.mark.parametrize("business_lapses", [True, False])
def test_the_requests_own_policy_wins(business_lapses: bool) -> None:
    lapsed = run_to_deadline("lapse", business_lapses=business_lapses)
    kept = run_to_deadline("keep", business_lapses=business_lapses)

    assert [(r.category, r.action) for r in lapsed] == [("marketing", ConsentAction.LAPSED)]
    assert kept == []


@pytest.mark.parametrize(("business_lapses", "rows"), [(True, 1), (False, 0)])
def test_without_one_the_business_setting_holds(business_lapses: bool, rows: int) -> None:
    assert len(run_to_deadline(None, business_lapses=business_lapses)) == rows


def test_the_policy_survives_the_stored_conversation() -> None:
    conversation = Conversation(
        state=State.AWAITING_RECONSENT, token="t", deadline=DEADLINE, deadline_policy="keep"
    )
    assert Conversation.from_json(conversation.to_json()) == conversation
    # Conversations stored before the field existed read back with no policy of their own.
    legacy = conversation.to_json().replace(',"deadline_policy":"keep"', "")
    assert Conversation.from_json(legacy).deadline_policy is None
