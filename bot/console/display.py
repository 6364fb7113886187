"""How the console shows identifiers and times: numbers masked, times in UTC, windows as time left.

A phone number is personal data an agent rarely needs in full, so every page shows it masked
(``+34 6•• •• •• 78``: enough to tell two customers apart) unless the agent asks to reveal it,
which is logged (see ``bot.console.audit``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import phonenumbers

MASK: Final = "•"


def mask_number(wa_id: str | None) -> str:
    """``12125550164`` -> ``+1 2••-•••-••64``: the real country code (read by `phonenumbers`,
    never "the first two digits"), the national number's first digit and last two, the rest
    masked in the country's own grouping. Anything that is not digits is shown as it is (an
    erased contact's pseudonym says nothing about the person)."""
    if not wa_id:
        return ""
    if not wa_id.isdigit():
        return wa_id
    if len(wa_id) <= 5:
        return "+" + MASK * len(wa_id)
    try:
        number = phonenumbers.parse("+" + wa_id)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        return "+" + MASK * (len(wa_id) - 2) + wa_id[-2:]
    shown = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    code = f"+{number.country_code}"
    national = shown[len(code) :]
    digits = sum(c.isdigit() for c in national)
    seen = 0
    masked = []
    for char in national:
        if char.isdigit():
            seen += 1
            keep = seen == 1 or seen > digits - 2
            masked.append(char if keep else MASK)
        else:
            masked.append(char)
    return code + "".join(masked)


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
