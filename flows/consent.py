"""The vocabulary of consent: statuses, ledger actions, sources, methods, categories.

These are the words the ledger is written in, so they are plain string enums whose values are
stored as they are: renaming a member is a data migration, not a refactor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ConsentStatus(StrEnum):
    """Current state of one (contact, category), as the contract's `/consent` reports it."""

    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"
    PENDING = "pending"
    LAPSED = "lapsed"
    NONE = "none"


class ConsentAction(StrEnum):
    """What one ledger row records."""

    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    RECONFIRMED = "reconfirmed"
    DECLINED = "declined"
    EXPIRED = "expired"
    LAPSED = "lapsed"
    PENDING = "pending"
    #: A decision that arrived but was not applied: older than the customer's own later decision
    #: on the category, or a business grant against the customer's STOP (`flows.consent_order`).
    #: Recorded so the ledger shows what arrived; it changes no status.
    OVERRULED = "overruled"


_STATUS_AFTER: Mapping[ConsentAction, ConsentStatus] = {
    ConsentAction.GRANTED: ConsentStatus.OPTED_IN,
    ConsentAction.RECONFIRMED: ConsentStatus.OPTED_IN,
    ConsentAction.WITHDRAWN: ConsentStatus.OPTED_OUT,
    ConsentAction.LAPSED: ConsentStatus.LAPSED,
}


def status_after(
    action: ConsentAction, current: ConsentStatus, before_pending: ConsentStatus | None
) -> tuple[ConsentStatus, ConsentStatus | None]:
    """The projection rule: (status, status before the pending request) after `action`.

    A request for consent (`pending`) never downgrades an opt-in. When it ends without consent
    (`declined`, `expired`) the category returns to what it was before the request, so a STOP
    is never erased by an unanswered invitation: only a new, explicit opt-in lifts it.
    """
    if action is ConsentAction.PENDING:
        if current is ConsentStatus.OPTED_IN:
            return current, None
        if current is ConsentStatus.PENDING:
            return current, before_pending
        return ConsentStatus.PENDING, current
    if action is ConsentAction.OVERRULED:
        return current, before_pending
    if action in (ConsentAction.DECLINED, ConsentAction.EXPIRED):
        if current is ConsentStatus.PENDING:
            return before_pending or ConsentStatus.NONE, None
        return current, None
    return _STATUS_AFTER[action], None


class Source(StrEnum):
    """Where the customer gave (or withdrew) their word."""

    WEBSITE = "website"
    SMS = "sms"
    EMAIL = "email"
    IVR = "ivr"
    PAPER = "paper"
    IN_PERSON = "in_person"
    WHATSAPP_THREAD = "whatsapp_thread"
    QR_CODE = "qr_code"
    CTWA_AD = "ctwa_ad"
    API = "api"
    META_PREFERENCES = "meta_preferences"
    AGENT = "agent"


class Method(StrEnum):
    """How it was captured."""

    DOUBLE_OPT_IN = "double_opt_in"
    KEYWORD = "keyword"
    BUTTON = "button"
    PREFERENCES_MENU = "preferences_menu"
    META_USER_PREFERENCES = "meta_user_preferences"
    META_TEMPLATE_BUTTON = "meta_template_button"
    META_SEND_ERROR = "meta_send_error"
    CLARIFICATION = "clarification"
    CLARIFICATION_TIMEOUT = "clarification_timeout"
    CAMPAIGN_REPLY = "campaign_reply"
    CAMPAIGN_DEADLINE = "campaign_deadline"
    OPTIN_EXPIRY = "optin_expiry"
    API_RECORD = "api_record"
    CONTACT_MERGE = "contact_merge"
    AGENT_ACTION = "agent_action"
    ERASURE = "erasure"


class CategoryKind(StrEnum):
    """Meta's template categories: marketing needs opt-in, utility may answer in the window."""

    MARKETING = "marketing"
    UTILITY = "utility"


@dataclass(frozen=True, slots=True)
class Category:
    """A kind of message a business sends, which customers consent to separately."""

    name: str
    kind: CategoryKind = CategoryKind.UTILITY
    default: bool = True
    names: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def display(self, locale: str, fallback: str | None = None) -> str:
        return self.names.get(locale) or fallback or self.name.replace("_", " ")
