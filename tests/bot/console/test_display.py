"""Masked numbers, times in UTC and the service window in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.console.display import duration, full_number, mask_number, when, window_state

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wa_id", "shown"),
    [
        ("34612345678", "+34 6•• •• •• 78"),
        ("447700900002", "+44 7••• ••••02"),
        # Regression: the first two digits were taken for the country code (+12 1•• ••• •64).
        ("12125550164", "+1 2••-•••-••64"),
        ("15550001001", "+1 5••-•••-••01"),
        ("966501234567", "+966 5• ••• ••67"),
        ("1234", "+••••"),
        ("erased:abcdef", "erased:abcdef"),
        (None, ""),
    ],
)
def test_numbers_are_masked(wa_id: str | None, shown: str) -> None:
    assert mask_number(wa_id) == shown


def test_full_numbers_and_times() -> None:
    assert full_number("34612345678") == "+34612345678"
    assert when(NOW) == "2025-03-01 12:00:00 UTC"
    assert when(None) == ""
    assert duration(timedelta(hours=3, minutes=12, seconds=59)) == "3 h 12 min"
    assert duration(timedelta(hours=2)) == "2 h"
    assert duration(timedelta(seconds=59)) == "less than a minute"


def test_the_window_in_words() -> None:
    assert window_state(None, NOW) == (False, "closed: the customer has never written")
    assert window_state(NOW + timedelta(minutes=90), NOW) == (
        True,
        "open, closes in 1 h 30 min (2025-03-01 13:30:00 UTC)",
    )
    assert window_state(NOW - timedelta(hours=1), NOW) == (
        False,
        "closed since 2025-03-01 11:00:00 UTC",
    )
