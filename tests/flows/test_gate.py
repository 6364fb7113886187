"""The consent gate's reason codes, one rule at a time."""

from __future__ import annotations

import pytest

from flows.consent import Category, CategoryKind, ConsentStatus
from flows.effects import Purpose
from flows.gate import Reason, can_send

MARKETING = Category("marketing", CategoryKind.MARKETING)
ORDERS = Category("order_updates", CategoryKind.UTILITY)


@pytest.mark.parametrize(
    ("category", "status", "template", "window", "allowed", "reason"),
    [
        (MARKETING, ConsentStatus.OPTED_IN, True, False, True, Reason.OPTED_IN),
        (MARKETING, ConsentStatus.OPTED_IN, False, True, True, Reason.OPTED_IN),
        (MARKETING, ConsentStatus.OPTED_IN, False, False, False, Reason.WINDOW_CLOSED),
        (MARKETING, ConsentStatus.OPTED_OUT, True, True, False, Reason.OPTED_OUT),
        (MARKETING, ConsentStatus.NONE, False, True, False, Reason.NO_CONSENT),
        (MARKETING, ConsentStatus.PENDING, True, False, False, Reason.PENDING),
        (MARKETING, ConsentStatus.LAPSED, True, False, False, Reason.LAPSED),
        (ORDERS, ConsentStatus.NONE, False, True, True, Reason.SERVICE_WINDOW),
        (ORDERS, ConsentStatus.NONE, True, False, False, Reason.NO_CONSENT),
        (ORDERS, ConsentStatus.OPTED_OUT, False, True, False, Reason.OPTED_OUT),
        (None, ConsentStatus.OPTED_IN, True, True, False, Reason.UNKNOWN_CATEGORY),
    ],
)
def test_business_messages(
    category: Category | None,
    status: ConsentStatus,
    template: bool,
    window: bool,
    allowed: bool,
    reason: Reason,
) -> None:
    decision = can_send(
        purpose=Purpose.BUSINESS,
        template=template,
        window_open=window,
        category=category,
        status=status,
    )
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_a_stop_confirmation_goes_to_anyone_who_just_wrote() -> None:
    decision = can_send(
        purpose=Purpose.STOP_CONFIRMATION,
        template=False,
        window_open=True,
        status=ConsentStatus.OPTED_OUT,
    )
    assert decision.allowed and decision.reason is Reason.STOP_CONFIRMATION


def test_free_form_never_goes_outside_the_window() -> None:
    for purpose in Purpose:
        decision = can_send(
            purpose=purpose,
            template=False,
            window_open=False,
            category=MARKETING,
            status=ConsentStatus.OPTED_IN,
        )
        assert not decision.allowed, purpose


def test_an_optin_prompt_does_not_chase_someone_who_said_stop() -> None:
    refused = can_send(
        purpose=Purpose.OPTIN_PROMPT,
        template=True,
        window_open=False,
        status=ConsentStatus.OPTED_OUT,
    )
    assert (refused.allowed, refused.reason) == (False, Reason.OPTED_OUT)
    asked = can_send(
        purpose=Purpose.OPTIN_PROMPT,
        template=False,
        window_open=True,
        status=ConsentStatus.OPTED_OUT,
    )
    assert asked.allowed, "they wrote START themselves: the window is open"
    fresh = can_send(purpose=Purpose.OPTIN_PROMPT, template=True, window_open=False)
    assert fresh.allowed and fresh.reason is Reason.OPTIN_PROMPT


def test_flow_replies_need_the_window() -> None:
    assert can_send(purpose=Purpose.SERVICE_REPLY, template=False, window_open=True).allowed
    closed = can_send(purpose=Purpose.SERVICE_REPLY, template=False, window_open=False)
    assert closed.reason is Reason.WINDOW_CLOSED
