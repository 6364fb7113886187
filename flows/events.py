"""The typed events a WhatsApp webhook turns into, and the only form in which webhook content
travels past the normaliser (`bot.normaliser`).

Why typed: Meta's JSON changes shape by message type, by API version and, since the 2026
business-scoped user ids, by whether a phone number may be shared at all. Reading it in one place
means the consent flows handle a closed set of cases the type checker can follow (`match` on the
class), instead of guessing at optional dictionary keys deep inside consent logic. Anything the
normaliser cannot read becomes `Unknown`, so nothing is silently dropped and nothing half-read
reaches a consent decision.

Why frozen: an event is a fact that already happened at Meta. It is queued, de-duplicated by
`event_id`, retried and recorded as evidence, so it must never change after it was read; frozen
dataclasses are also hashable and compare by value, which makes re-deliveries easy to recognise.

Conventions shared by every event:
- `event_id` is the de-duplication key: `msg:<wamid>` for messages, `status:<wamid>:<status>` for
  statuses, otherwise `<kind>:<sha256 of the item's canonical JSON>`.
- `phone_number_id` is the business number that received it (`""` when Meta sent none, as for
  account-level notices), `waba_id` the WhatsApp Business Account of the webhook entry.
- `occurred_at` is tz-aware UTC, taken from Meta's unix `timestamp`.
- `contact` identifies the customer, or is None for business-level events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

__all__ = [
    "EVENT_CLASSES",
    "AccountUpdate",
    "BaseEvent",
    "ButtonReply",
    "ContactRef",
    "ContactsMessage",
    "Event",
    "InboundMessage",
    "InteractiveReply",
    "LocationMessage",
    "MediaMessage",
    "MessageEvent",
    "MetaError",
    "OrderMessage",
    "Reaction",
    "StatusUpdate",
    "SystemChange",
    "TextMessage",
    "Unknown",
    "UnsupportedMessage",
    "UserPreferencesUpdate",
    "WebhookError",
]


@dataclass(frozen=True, slots=True)
class ContactRef:
    """Who a customer is, as far as one webhook says.

    A phone-number based `wa_id` may be absent (users with a username, 2026), so the
    business-scoped user id (`user_id`, e.g. "US.13491208655302741918") is just as good an
    identifier; at least one of the two is always present.
    """

    wa_id: str | None
    user_id: str | None
    parent_user_id: str | None = None
    username: str | None = None
    profile_name: str | None = None

    def __post_init__(self) -> None:
        if not self.wa_id and not self.user_id:
            raise ValueError("a contact needs a wa_id or a user_id")

    @property
    def key(self) -> str:
        """Stable routing key (sharding, locks): the wa_id when known, else the BSUID."""
        if self.wa_id:
            return f"wa:{self.wa_id}"
        return f"bsuid:{self.user_id}"


@dataclass(frozen=True, slots=True)
class MetaError:
    """One error object from Meta (`code`, `title`, `message`, `error_data.details`)."""

    code: int
    title: str
    message: str | None = None
    details: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseEvent:
    """Fields every event carries; see the module docstring for their meaning."""

    event_id: str
    phone_number_id: str
    occurred_at: datetime
    contact: ContactRef | None
    waba_id: str = ""

    def __post_init__(self) -> None:
        if self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEvent(BaseEvent):
    """Something a customer sent: `wamid` is Meta's message id, `context_wamid` the message it
    replies to, `group_id` the group it was sent in (None for a one-to-one chat)."""

    wamid: str
    context_wamid: str | None = None
    group_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TextMessage(MessageEvent):
    """A typed text message; `body` is where keywords such as STOP arrive."""

    body: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ButtonReply(MessageEvent):
    """A tap on a template's quick-reply button (Meta's `button` type)."""

    payload: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InteractiveReply(MessageEvent):
    """A reply to an interactive message: `reply_kind` is Meta's `interactive.type`
    ("button_reply", "list_reply", "nfm_reply"). For a flow reply (`nfm_reply`), `reply_id` is the
    flow's `name`, `title` its `body` and `response_json` the flow's answers."""

    reply_kind: str
    reply_id: str
    title: str
    description: str | None = None
    response_json: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaction(MessageEvent):
    """An emoji reaction to `target_wamid`; `emoji` is None when the reaction was removed."""

    target_wamid: str
    emoji: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaMessage(MessageEvent):
    """Image, audio, video, document or sticker; `voice` marks a recorded voice note."""

    media_type: str
    media_id: str
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None
    sha256: str | None = None
    voice: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationMessage(MessageEvent):
    """A shared location."""

    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactsMessage(MessageEvent):
    """Contact cards the customer shared; only their display names are kept."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderMessage(MessageEvent):
    """A cart sent from a catalog; `item_count` is the number of product lines."""

    catalog_id: str
    item_count: int
    text: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemChange(MessageEvent):
    """A change of the customer's identity reported by WhatsApp.

    `system_type` is Meta's `system.type` ("user_changed_number", "user_changed_user_id",
    "customer_identity_changed") or "user_id_update" for the field of that name. `contact` is the
    identity as it was before the change, the `new_*` fields what it is now. A `user_id_update`
    carries no message id, so its `wamid` is "".
    """

    system_type: str
    body: str
    new_wa_id: str | None
    new_user_id: str | None
    new_parent_user_id: str | None = None
    previous_user_id: str | None = None
    previous_parent_user_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsupportedMessage(MessageEvent):
    """A message type the Cloud API cannot deliver to us (`unsupported`/`unknown`)."""

    errors: tuple[MetaError, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusUpdate(BaseEvent):
    """What happened to a message we sent: sent, delivered, read, played, failed, deleted.

    `recipient` (also `contact`) may hold only a BSUID (`recipient_user_id`); `group_id` is set
    for a message sent to a group."""

    wamid: str
    status: str
    recipient: ContactRef
    errors: tuple[MetaError, ...] = ()
    pricing_category: str | None = None
    biz_opaque_callback_data: str | None = None
    group_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserPreferencesUpdate(BaseEvent):
    """The customer changed a preference in WhatsApp itself (`user_preferences` field), e.g.
    category "marketing_messages" with value "stop", "resume" or "signup"."""

    category: str
    value: str
    detail: str | None = None
    signup_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookError(BaseEvent):
    """Errors Meta reported for the business number itself (value-level `errors`)."""

    errors: tuple[MetaError, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountUpdate(BaseEvent):
    """A business-level notice (quality rating, template status, account or group changes):
    `summary` is one readable line, `data_json` Meta's value as canonical JSON."""

    field: str
    summary: str
    data_json: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown(BaseEvent):
    """Something the normaliser could not read into a known event, kept verbatim so it can be
    logged and looked at: `item_type` is the message type or the part of the change it came from,
    `raw_json` the item as canonical JSON, `reason` why it was not understood."""

    field: str
    item_type: str
    raw_json: str
    reason: str


# ---- events the service makes itself -------------------------------------------------------
# They travel on the same per-contact streams as Meta's, so a timer or a business request is
# handled in order with what the customer writes.


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(BaseEvent):
    """A durable flow timer came due (opt-in expiry, clarification timeout, re-consent deadline).

    `token` names the flow instance that set it; a flow that has moved on ignores it.
    """

    contact_id: int
    timer: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentRequest(BaseEvent):
    """The business asks a contact for consent: a double opt-in or a re-consent.

    `evidence_json` is the request's own evidence (wording shown, IP, user agent...), kept with
    the pending ledger row and again with the customer's answer.
    """

    contact_id: int
    kind: str  # "optin" | "reconsent"
    categories: tuple[str, ...]
    source: str
    evidence_json: str = "{}"
    policy_version: str | None = None
    deadline: datetime | None = None
    locale: str | None = None
    # What the re-consent deadline does to a silent contact ("lapse" | "keep"); None follows
    # RECONSENT_DEADLINE_POLICY. A campaign carries its own setting here.
    deadline_policy: str | None = None
    # Our id of the message that asks the question when the business sends it itself (a
    # campaign's re-consent template), so that only an answer to that message counts.
    prompt_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SendRefused(BaseEvent):
    """Meta refused one of our messages for a reason that changes consent or the window
    (131050: the user stopped marketing messages; 131047: the window is closed)."""

    contact_id: int
    message_id: str
    code: int
    category: str | None = None


InboundMessage: TypeAlias = (
    TextMessage
    | ButtonReply
    | InteractiveReply
    | Reaction
    | MediaMessage
    | LocationMessage
    | ContactsMessage
    | OrderMessage
    | SystemChange
    | UnsupportedMessage
)

Event: TypeAlias = (
    InboundMessage
    | StatusUpdate
    | UserPreferencesUpdate
    | WebhookError
    | AccountUpdate
    | Unknown
    | TimerFired
    | ConsentRequest
    | SendRefused
)

EVENT_CLASSES: tuple[type[BaseEvent], ...] = (
    TextMessage,
    ButtonReply,
    InteractiveReply,
    Reaction,
    MediaMessage,
    LocationMessage,
    ContactsMessage,
    OrderMessage,
    SystemChange,
    UnsupportedMessage,
    StatusUpdate,
    UserPreferencesUpdate,
    WebhookError,
    AccountUpdate,
    Unknown,
    TimerFired,
    ConsentRequest,
    SendRefused,
)
