"""The consent gate: may this message go to this contact now? One pure function, one reason code.

Every outbound message passes it, the flows' own replies included, and
`GET /v1/contacts/{contact}/can-send` answers from it, so what the API promises is exactly what
the sender enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flows.consent import Category, CategoryKind, ConsentStatus
from flows.effects import Purpose


class Reason(StrEnum):
    OPTED_IN = "opted_in"
    SERVICE_WINDOW = "service_window"
    STOP_CONFIRMATION = "stop_confirmation"
    OPTIN_PROMPT = "optin_prompt"
    UNKNOWN_CATEGORY = "unknown_category"
    OPTED_OUT = "opted_out"
    PENDING = "pending"
    LAPSED = "lapsed"
    NO_CONSENT = "no_consent"
    WINDOW_CLOSED = "window_closed"


ALLOWING = frozenset(
    {Reason.OPTED_IN, Reason.SERVICE_WINDOW, Reason.STOP_CONFIRMATION, Reason.OPTIN_PROMPT}
)

_REFUSED_STATUS = {
    ConsentStatus.OPTED_OUT: Reason.OPTED_OUT,
    ConsentStatus.PENDING: Reason.PENDING,
    ConsentStatus.LAPSED: Reason.LAPSED,
    ConsentStatus.NONE: Reason.NO_CONSENT,
}


@dataclass(frozen=True, slots=True)
class GateDecision:
    allowed: bool
    reason: Reason


def _allow(reason: Reason) -> GateDecision:
    return GateDecision(True, reason)


def _refuse(reason: Reason) -> GateDecision:
    return GateDecision(False, reason)


def can_send(
    *,
    purpose: Purpose,
    template: bool,
    window_open: bool,
    category: Category | None = None,
    status: ConsentStatus = ConsentStatus.NONE,
) -> GateDecision:
    """Decide one message.

    - Free-form messages (text, buttons, lists) need the customer-service window open; outside
      it only a template may go.
    - A STOP confirmation may always go: it is the one message owed to someone who withdrew.
    - A double opt-in prompt may go to a contact without consent, but not to one who opted out
      unless they are writing to us right now (window open: they asked, e.g. with START).
    - The flows' other replies answer a customer who just wrote: the window decides.
    - A business message needs its category: opted in, or, for a non-marketing category, a
      customer who wrote to us in the last 24 hours (a reply in the service window).
    """
    free_form = not template
    if purpose is Purpose.STOP_CONFIRMATION:
        return (
            _allow(Reason.STOP_CONFIRMATION)
            if window_open or not free_form
            else _refuse(Reason.WINDOW_CLOSED)
        )
    if purpose is Purpose.OPTIN_PROMPT:
        if status is ConsentStatus.OPTED_OUT and not window_open:
            return _refuse(Reason.OPTED_OUT)
        if free_form and not window_open:
            return _refuse(Reason.WINDOW_CLOSED)
        return _allow(Reason.OPTIN_PROMPT)
    if purpose is Purpose.SERVICE_REPLY:
        return _allow(Reason.SERVICE_WINDOW) if window_open else _refuse(Reason.WINDOW_CLOSED)
    if category is None:
        return _refuse(Reason.UNKNOWN_CATEGORY)
    if status is ConsentStatus.OPTED_OUT:
        return _refuse(Reason.OPTED_OUT)
    if status is ConsentStatus.OPTED_IN:
        if free_form and not window_open:
            return _refuse(Reason.WINDOW_CLOSED)
        return _allow(Reason.OPTED_IN)
    if category.kind is CategoryKind.UTILITY and window_open:
        return _allow(Reason.SERVICE_WINDOW)
    return _refuse(_REFUSED_STATUS[status])
