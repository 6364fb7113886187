"""Every Redis key and stream optin-bot uses, in one place: its pattern, owner, lifetime, and
whether it holds personal data.

Modelled on arq's single map of keys: the code never spells an `optin:` key itself, it asks this
module (``INBOUND.format(shard=3)``, ``OUTBOUND.name``), so what Redis holds can be read here
rather than searched for. That matters for a consent product: erasure (``bot.erasure``) must
reach every key that names a customer, retention must be known before it is promised, and an
operator inspecting Redis must know what a key is. The README's "Redis keys" table is generated
from `KEYS` (``python -m bot.redis_keys``), and tests fail when the table and this module differ
or when code outside this module spells an `optin:` key.

``personal`` says whose personal data a key holds: ``customer`` (a WhatsApp user's number,
name, messages or what they did), ``agent`` (a console user's name or address) or ``none``;
``erasure`` says what erasing a customer does to a ``customer`` key.
"""

from __future__ import annotations

import re
import string
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class Personal(StrEnum):
    NONE = "none"
    CUSTOMER = "customer"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class RedisKey:
    """One key, or one family of keys: ``pattern`` names its variable parts in braces."""

    pattern: str
    kind: str
    owner: str
    lifetime: str
    personal: Personal
    holds: str
    erasure: str = ""
    #: The names of the variable parts, parsed once: `format` runs on the webhook's hot path.
    fields: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(
            name for _, name, _, _ in string.Formatter().parse(self.pattern) if name is not None
        )
        object.__setattr__(self, "fields", names)

    @property
    def name(self) -> str:
        """The key itself, for a key without variable parts."""
        if self.fields:
            raise ValueError(f"{self.pattern} has variable parts: use format()")
        return self.pattern

    @property
    def prefix(self) -> str:
        """The fixed part before the first variable part, without its trailing colon (what
        ``bot.leases.ShardLeases`` takes as its prefix)."""
        return self.pattern.split("{", 1)[0].rstrip(":")

    @property
    def literal(self) -> str:
        """The pattern without its variable parts (the longer, the more specific)."""
        return "".join(text for text, _, _, _ in string.Formatter().parse(self.pattern))

    def format(self, **parts: object) -> str:
        """The key for these variable parts (every one must be given, no other)."""
        if len(parts) != len(self.fields) or not all(name in parts for name in self.fields):
            raise ValueError(f"{self.pattern} takes {self.fields}, got {tuple(parts)}")
        return self.pattern.format(**parts)

    def regex(self) -> re.Pattern[str]:
        """Matches the keys of this family (a variable part is anything)."""
        pieces = []
        for literal, name, _, _ in string.Formatter().parse(self.pattern):
            pieces.append(re.escape(literal))
            if name is not None:
                pieces.append(".+")
        return re.compile("".join(pieces) + r"\Z")


_KEYS: list[RedisKey] = []


def _key(
    pattern: str,
    kind: str,
    owner: str,
    lifetime: str,
    personal: Personal,
    holds: str,
    erasure: str = "",
) -> RedisKey:
    key = RedisKey(pattern, kind, owner, lifetime, personal, holds, erasure)
    _KEYS.append(key)
    return key


_CUSTOMER = Personal.CUSTOMER
_AGENT = Personal.AGENT
_NONE = Personal.NONE
_WEEK = "7 days (TTL)"

# -- The webhook's hand-off to the workers, and what comes out of them ----------------------------
INBOUND: Final = _key(
    "optin:in:{shard}",
    "stream",
    "bot.streams",
    "an entry until a worker has handled it (deleted when acknowledged); 16 shards",
    _CUSTOMER,
    "inbound events: number, profile name, message text",
    "not erased: entries are handled within seconds, and one handled after the erasure is "
    "recognised as the erased contact's",
)
SEEN: Final = _key(
    "optin:seen:{event_id}",
    "string",
    "bot.streams",
    _WEEK,
    _CUSTOMER,
    "the key is Meta's message id, which encodes the number",
    "left to expire: it is what keeps a redelivered message from being applied again",
)
UNKNOWN: Final = _key(
    "optin:unknown",
    "stream",
    "bot.pipeline",
    "the newest 100,000 entries (XADD MAXLEN ~)",
    _CUSTOMER,
    "webhook items that were not understood, as received",
    "entries naming the contact are deleted",
)
DEAD_LETTERS: Final = _key(
    "optin:dead",
    "stream",
    "bot.inbound",
    "the newest DEAD_EVENTS_KEPT entries (default 100,000); each trim is logged at ERROR and "
    "counted (optin_dead_letters_trimmed_total); `optin-bot dead replay` takes entries off",
    _CUSTOMER,
    "events that failed 5 times (or could not be decoded), with the error, reason and attempts",
    "entries naming the contact are deleted",
)
BUSINESS_EVENTS: Final = _key(
    "optin:business-events",
    "stream",
    "bot.pipeline",
    "the newest 100,000 entries (XADD MAXLEN ~)",
    _NONE,
    "notices about the business account (errors, account updates)",
)
# -- Outbound -------------------------------------------------------------------------------------
OUTBOUND: Final = _key(
    "optin:out",
    "stream",
    "bot.outbound",
    "an entry until the sender has sent it (deleted when acknowledged)",
    _CUSTOMER,
    "messages to send: recipient number and text",
    "erased: an entry naming the contact is deleted, so a message still queued does not go "
    "(one being sent at that moment still does)",
)
QUEUED: Final = _key(
    "optin:queued:{message_id}",
    "string",
    "bot.outbound",
    _WEEK,
    _NONE,
    "that a message id was queued once (no second copy)",
)
DELIVERED: Final = _key(
    "optin:delivered:{message_id}",
    "string",
    "bot.sender",
    _WEEK,
    _CUSTOMER,
    "Meta's id of the sent message (it encodes the number), or the sandbox's own of a kept one",
    "the value becomes an erased: digest; the key stays its 7 days (it stops a second send)",
)
SEND_ATTEMPT: Final = _key(
    "optin:send:attempt:{tag}",
    "string",
    "bot.send_guard",
    f"{_WEEK}, deleted when the send is answered",
    _NONE,
    "when the latest attempt to send a tagged template started",
)
SEND_OUTCOME: Final = _key(
    "optin:send:outcome:{tag}",
    "string",
    "bot.send_guard",
    _WEEK,
    _CUSTOMER,
    "Meta's id of the sent message (it encodes the number), or the sandbox's own of a kept one",
    "the value becomes an erased: digest; the key stays its 7 days (it stops a second send)",
)
SEND_RATE: Final = _key(
    "optin:rate:{phone_number_id}",
    "string",
    "bot.roles",
    "until the rate limiter's next free slot, plus 1 s (TTL)",
    _NONE,
    "the number's send pace (GCRA, bot.ratelimit)",
)
# -- A contact's conversation state ---------------------------------------------------------------
WINDOW: Final = _key(
    "optin:window:{contact_id}",
    "string",
    "bot.window",
    "24 hours after the customer's last message (TTL)",
    _CUSTOMER,
    "when the contact last wrote",
    "deleted",
)
TIMERS_DUE: Final = _key(
    "optin:timers",
    "zset",
    "bot.timers",
    "a member until its timer fires or is cancelled",
    _CUSTOMER,
    "each contact's pending flow timers and when they are due",
    "the contact's timers are cancelled",
)
TIMERS_STREAMS: Final = _key(
    "optin:timers:stream",
    "hash",
    "bot.timers",
    "a field until its timer fires or is cancelled",
    _CUSTOMER,
    "the inbound shard each pending timer fires into",
    "the contact's timers are cancelled",
)
TIMERS_EVENTS: Final = _key(
    "optin:timers:event",
    "hash",
    "bot.timers",
    "a field until its timer fires or is cancelled",
    _CUSTOMER,
    "the event each pending timer will deliver",
    "the contact's timers are cancelled",
)
# -- Which process owns which shard or campaign ---------------------------------------------------
INBOUND_LEASES: Final = _key(
    "optin:lease:in:{shard}",
    "string",
    "bot.inbound",
    "15 s, renewed by the owning worker (TTL)",
    _NONE,
    "the worker that owns an inbound shard",
)
INBOUND_LEASES_ALIVE: Final = _key(
    "optin:lease:in:alive",
    "zset",
    "bot.inbound",
    "members older than the lease are dropped; the key expires 4 leases after the last beat",
    _NONE,
    "the live workers",
)
CRM_LEASES: Final = _key(
    "optin:lease:crm:{shard}",
    "string",
    "bot.crm.deliverer",
    "the lease, renewed by the owning deliverer (TTL)",
    _NONE,
    "the deliverer that owns a CRM shard",
)
CRM_LEASES_ALIVE: Final = _key(
    "optin:lease:crm:alive",
    "zset",
    "bot.crm.deliverer",
    "members older than the lease are dropped; the key expires 4 leases after the last beat",
    _NONE,
    "the live deliverers",
)
CAMPAIGN_LEASES: Final = _key(
    "optin:campaigns:lease:{campaign_id}",
    "string",
    "bot.campaigns.dispatcher",
    "10 s, renewed every chunk by the dispatcher driving it (TTL)",
    _NONE,
    "the process driving a campaign",
)
CAMPAIGN_LEASES_ALIVE: Final = _key(
    "optin:campaigns:lease:alive",
    "zset",
    "bot.campaigns.dispatcher",
    "members older than the lease are dropped; the key expires 4 leases after the last beat",
    _NONE,
    "the live dispatchers",
)
# -- Campaign pacing ------------------------------------------------------------------------------
CAMPAIGN_RATE: Final = _key(
    "optin:campaigns:rate:{campaign_id}",
    "string",
    "bot.campaigns.dispatcher",
    "until the rate limiter's next free slot, plus 1 s (TTL)",
    _NONE,
    "a campaign's send pace (GCRA, bot.ratelimit)",
)
CAMPAIGN_THROTTLE: Final = _key(
    "optin:campaigns:throttle:{phone_number_id}",
    "string",
    "bot.campaigns.throttle",
    "60 s after the last slow-down report (TTL)",
    _NONE,
    "how many times Meta's 130429 halved the number's campaign pace",
)
CAMPAIGN_THROTTLE_DEBOUNCE: Final = _key(
    "optin:campaigns:throttle:{phone_number_id}:debounce",
    "string",
    "bot.campaigns.throttle",
    "5 s (TTL)",
    _NONE,
    "that a slow-down report was counted just now",
)
# -- Templates ------------------------------------------------------------------------------------
TEMPLATE_LIST: Final = _key(
    "optin:templates:{waba_id}",
    "hash",
    "bot.message_templates.catalog",
    "read again from Meta after 10 minutes; the key lives 24 hours (TTL) as the fallback when "
    "Meta cannot be read",
    _NONE,
    "the WhatsApp Business Account's template list: per template name, each language's "
    "category, status and opt-out, and when the list was read",
)
# -- CRM sync -------------------------------------------------------------------------------------
CRM_OUTBOX: Final = _key(
    "optin:crm:{shard}",
    "stream",
    "bot.crm.outbox",
    "an entry until delivered or given up (then deleted); 16 shards",
    _CUSTOMER,
    "consent events on their way to the business's CRM webhook",
    "not erased: the business's CRM is told of the erasure through the same queue",
)
CRM_DELIVERY: Final = _key(
    "optin:crm:delivery:{event_id}",
    "hash",
    "bot.crm.log",
    "14 days (TTL)",
    _CUSTOMER,
    "one CRM event's delivery log, with the contact's number and user id",
    "the number and user id are removed; the delivery facts stay until they expire",
)
CRM_LOG_INDEX: Final = _key(
    "optin:crm:log",
    "stream",
    "bot.crm.log",
    "the newest 100,000 entries (XADD MAXLEN ~)",
    _NONE,
    "the order of CRM events (ids only)",
)
CRM_LOG_CONTACT_INDEX: Final = _key(
    "optin:crm:log:contact:{contact_id}",
    "stream",
    "bot.crm.log",
    "14 days after the contact's last CRM event (TTL), the newest 1,000 entries",
    _NONE,
    "one contact's CRM events (ids only)",
)
CRM_DEAD_LETTERS: Final = _key(
    "optin:crm:dead",
    "stream",
    "bot.crm.deliverer",
    "the newest 100,000 entries; each trim is logged at ERROR and counted "
    "(optin_dead_letters_trimmed_total)",
    _CUSTOMER,
    "CRM events given up, kept for redelivery",
    "entries naming the contact are deleted",
)
CRM_PAUSED: Final = _key(
    "optin:crm:paused",
    "string",
    "bot.crm.pause",
    "until delivery is resumed",
    _NONE,
    "why CRM delivery is paused (the receiver said 410 Gone)",
)
# -- Business API ---------------------------------------------------------------------------------
IDEMPOTENCY: Final = _key(
    "optin:idem:{scope}:{key}",
    "string",
    "bot.api.idempotency",
    "24 hours (TTL)",
    _NONE,
    "the SHA-256 of the body first sent with an Idempotency-Key",
)
IDEMPOTENT_ANSWER: Final = _key(
    "optin:idem:{scope}:{key}:answer",
    "string",
    "bot.api.idempotency",
    "24 hours (TTL)",
    _CUSTOMER,
    "the answer given to an idempotent request: the contact's number and name",
    "deleted (found through optin:idem:contact:{contact_id})",
)
IDEMPOTENT_ANSWERS_OF_CONTACT: Final = _key(
    "optin:idem:contact:{contact_id}",
    "set",
    "bot.api.idempotency",
    "24 hours after the contact's last remembered answer (TTL)",
    _NONE,
    "which remembered answers name a contact (their keys), for erasure",
)
# -- Console --------------------------------------------------------------------------------------
CONSOLE_SESSION: Final = _key(
    "optin:console:session:{session_hash}",
    "hash",
    "bot.console.sessions",
    "8 hours from login (TTL), or until logout",
    _AGENT,
    "an agent's session: the agent's name and CSRF token (keyed by the SHA-256 of the cookie)",
)
CONSOLE_LOGIN_ATTEMPTS: Final = _key(
    "optin:console:login-failures:{address}",
    "string",
    "bot.console.throttle",
    "15 minutes from the first failure (TTL)",
    _AGENT,
    "wrong console tokens from one client address (the key is the address)",
)
CONSOLE_LOGIN_CHECKS: Final = _key(
    "optin:console:login-checks:{address}",
    "zset",
    "bot.console.throttle",
    "a member until its token is compared (at most 5 s); the key 5 s after the last attempt",
    _AGENT,
    "login attempts from one client address being checked now (the key is the address)",
)
CONSOLE_AUDIT: Final = _key(
    "optin:console:audit",
    "stream",
    "bot.console.audit",
    "the newest 100,000 entries (XADD MAXLEN ~)",
    _CUSTOMER,
    "what agents did, with their notes about contacts",
    "entries about the contact are deleted",
)
CONSOLE_AUDIT_OF_CONTACT: Final = _key(
    "optin:console:audit:contact:{contact_id}",
    "stream",
    "bot.console.audit",
    "the newest 200 entries",
    _CUSTOMER,
    "what agents did about one contact, with their notes",
    "deleted",
)
# -- Task health ----------------------------------------------------------------------------------
HEARTBEAT: Final = _key(
    "optin:health:beat:{task}:{consumer}",
    "string",
    "bot.heartbeats",
    "30 s (TTL), renewed every 5 s while the task lives",
    _NONE,
    "one task's heartbeat (JSON): role, pid, items handled, last progress, queue lag, restarts",
)
HEARTBEATS_SEEN: Final = _key(
    "optin:health:seen",
    "hash",
    "bot.heartbeats",
    "a field per running task, removed when it stops cleanly; fields older than a day are "
    "dropped by whoever reads health",
    _NONE,
    "task:consumer -> when its heartbeat was last written: a task that stops beating without "
    "stopping cleanly is dead, not absent",
)
# -- The business's keywords -----------------------------------------------------------------------
KEYWORDS_VERSION: Final = _key(
    "optin:keywords:version",
    "string",
    "bot.live_language",
    "until the next keyword change replaces it (written again from the database if lost)",
    _NONE,
    "the keywords version in force (`<number>-<digest>`); workers poll it every second and "
    "load that version from the database when it changes",
)
# -- Sandbox --------------------------------------------------------------------------------------
SANDBOX_CONTACTS: Final = _key(
    "optin:sandbox:contacts",
    "set",
    "bot.sandbox.business",
    "until Redis is emptied (sandbox mode only)",
    _CUSTOMER,
    "the numbers played in the sandbox",
    "the number is removed",
)

#: Every key, in the order of the README's table.
KEYS: Final[tuple[RedisKey, ...]] = tuple(_KEYS)


def key_for(name: str) -> RedisKey | None:
    """The family a concrete key belongs to (the most specific pattern that matches)."""
    matches = [key for key in KEYS if key.regex().match(name)]
    return max(matches, key=lambda key: len(key.literal), default=None)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The README's "Redis keys" table."""
    lines = [
        "| key | type | holds | owner | lifetime | personal data | on erasure |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in KEYS:
        personal = "no" if key.personal is Personal.NONE else str(key.personal)
        cells = (
            f"`{key.pattern}`",
            key.kind,
            _cell(key.holds),
            f"`{key.owner}`",
            _cell(key.lifetime),
            personal,
            _cell(key.erasure) or "-",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
