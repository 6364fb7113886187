"""Which consent decision wins when they arrive out of order: a pure rule, used by the ledger for
every writer (the conversation worker, the business API, agents, campaigns) so they cannot
disagree.

Meta does not promise to deliver webhooks in the order they happened, and a business system may
report an opt-in captured long ago. The rule, for one category of one contact:

- A decision by the customer (their words in the chat, their WhatsApp settings) stands against
  anything older from them: a message or signal that happened before the customer's latest
  decision is recorded as `overruled` and changes nothing (not even that decision's date).
  STOP at t, then "START" stamped t-60 delivered late: the customer stays opted out. START at
  t, then an old STOP from t-60: the customer stays opted in.
- Two decisions less than `DECISION_SKEW` apart cannot be ordered (Meta stamps messages to the
  second: the same second), so the withdrawal wins.
- A business-side grant (an opt-in recorded through the API, an agent, a campaign) never voids a
  customer's STOP, however recent: only the customer's own new opt-in does (a double opt-in
  request may still ask them; that is a request, not a grant).
- Decisions by the business, or anything after the customer's latest decision, apply as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from flows.consent import ConsentAction, ConsentStatus, Source

#: The sources where the customer decided themselves.
CUSTOMER_SOURCES: Final = frozenset({Source.WHATSAPP_THREAD, Source.META_PREFERENCES})
#: Meta's timestamps have one-second resolution: decisions this close are simultaneous.
DECISION_SKEW: Final = timedelta(seconds=1)

_GRANTS: Final = frozenset({ConsentAction.GRANTED, ConsentAction.RECONFIRMED})


@dataclass(frozen=True, slots=True)
class Standing:
    """The category's current status and the decision that set it."""

    status: ConsentStatus
    since: datetime | None
    source: Source | None


def overruled(
    action: ConsentAction, source: Source, occurred_at: datetime, standing: Standing | None
) -> str | None:
    """Why `action` (from `source`, at `occurred_at`) must not change `standing`, or None when
    it applies. The reason is kept in the ledger row's evidence."""
    if standing is None or standing.since is None or standing.source not in CUSTOMER_SOURCES:
        return None
    by_customer = source in CUSTOMER_SOURCES
    decided = standing.since.isoformat()
    opted_out = standing.status is ConsentStatus.OPTED_OUT
    if opted_out and action in _GRANTS and not by_customer:
        return f"a business grant never voids the customer's opt-out of {decided}"
    if not by_customer:
        return None
    if occurred_at <= standing.since - DECISION_SKEW:
        return f"older than the customer's decision of {decided}"
    asks_again = action in _GRANTS or action is ConsentAction.PENDING
    if opted_out and asks_again and occurred_at < standing.since + DECISION_SKEW:
        return f"as old as the customer's opt-out of {decided}: the opt-out stands"
    return None
