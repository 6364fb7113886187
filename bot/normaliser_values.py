"""Lenient readers for the scalar values inside Meta's webhook JSON, shared by the normaliser's
modules.

Meta's bodies are untrusted input, and the normaliser must never raise on what it cannot read, so
each reader here returns a usable value or None (or an empty result) instead: a non-empty text,
a unix timestamp as UTC, an error list as `MetaError`s, and the canonical JSON text that event
ids and `Unknown.raw_json` are made from.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bot.normaliser_clean import clean_text
from flows.events import MetaError

__all__ = [
    "MAX_INT64",
    "JsonObject",
    "as_utc",
    "canonical",
    "meta_errors",
    "text_or_none",
    "unix_time",
]

JsonObject = dict[str, Any]

#: The largest integer read as a number (an error code, a summary value); larger ones are junk,
#: and turning a huge integer into text is slow or refused.
MAX_INT64 = 2**63 - 1

_LAST_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z, the last second a datetime can hold


def text_or_none(raw: object) -> str | None:
    """A non-empty string, or None: Meta's ids and texts are strings, "" means absent.

    Every string the normaliser keeps is read here, so this is where it is cleaned
    (`bot.normaliser_clean.clean_text`: no NUL, no lone surrogates); a string that was nothing
    but such characters is absent.
    """
    if not isinstance(raw, str) or not raw:
        return None
    return clean_text(raw) or None


def as_utc(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def unix_time(raw: object) -> datetime | None:
    """Meta's unix `timestamp` (seconds, a digit string or an integer) as UTC, if readable."""
    if isinstance(raw, str):
        if not (0 < len(raw) <= 12 and raw.isascii() and raw.isdigit()):
            return None
        seconds = int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        seconds = raw
    else:
        return None
    if not 0 <= seconds <= _LAST_TIMESTAMP:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def meta_errors(raw: object) -> tuple[MetaError, ...]:
    if not isinstance(raw, list):
        return ()
    errors: list[MetaError] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        data = item.get("error_data")
        errors.append(
            MetaError(
                _error_code(item.get("code")),
                text_or_none(item.get("title")) or "",
                text_or_none(item.get("message")),
                text_or_none(data.get("details")) if isinstance(data, dict) else None,
            )
        )
    return tuple(errors)


def _error_code(raw: object) -> int:
    if isinstance(raw, str) and 0 < len(raw) <= 18 and raw.isascii() and raw.isdigit():
        return int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool) and -MAX_INT64 <= raw <= MAX_INT64:
        return raw
    return 0


def canonical(item: object) -> str:
    """Sorted-key compact JSON: the same item always gives the same text (and event id).

    Cleaned like every other text (`clean_text`): JSON escapes NUL, but a lone surrogate would
    stay as it is and could not be stored.
    """
    try:
        text = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        # Not JSON (a caller passed Python objects), or beyond the int-to-text limit: its repr.
        try:
            text = repr(item)
        except (ValueError, RecursionError):
            return "<unrepresentable>"
    return clean_text(text)
