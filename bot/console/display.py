"""How the console shows identifiers and times: numbers masked, times in UTC, windows as time left.

A phone number is personal data an agent rarely needs in full, so every page shows it masked
(``+34 6•• ••• •78``: enough to tell two customers apart) unless the agent asks to reveal it,
which is logged (see ``bot.console.audit``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

MASK: Final = "•"


def mask_number(wa_id: str | None) -> str:
    """``34612345678`` -> ``+34 6•• ••• •78``; anything that is not digits is shown as it is
    (an erased contact's pseudonym says nothing about the person)."""
    if not wa_id:
        return ""
    if not wa_id.isdigit():
        return wa_id
    if len(wa_id) <= 5:
        return "+" + MASK * len(wa_id)
    head, rest = wa_id[:2], wa_id[2:]
    masked = rest[0] + MASK * (len(rest) - 3) + rest[-2:]
    # Grouped in threes from the end, so the last two digits always end a group.
    groups = [masked[max(0, i - 3) : i] for i in range(len(masked), 0, -3)]
    return f"+{head} " + " ".join(reversed(groups))


def full_number(wa_id: str | None) -> str:
    """The number as a person dials it (``+34612345678``)."""
    if not wa_id:
        return ""
    return "+" + wa_id if wa_id.isdigit() else wa_id


def when(moment: datetime | None) -> str:
    """``2025-11-22 07:00:03 UTC``, or an empty string."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(span: timedelta) -> str:
    """``3 h 12 min`` (minutes rounded down; ``less than a minute`` below one)."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def window_state(closes_at: datetime | None, now: datetime) -> tuple[bool, str]:
    """(open?, a sentence) about the 24-hour customer-service window."""
    if closes_at is None:
        return False, "closed: the customer has never written"
    if now < closes_at:
        return True, f"open, closes in {duration(closes_at - now)} ({when(closes_at)})"
    return False, f"closed since {when(closes_at)}"
