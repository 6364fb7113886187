"""Seeing through a disguised keyword: invisible characters, look-alike letters, letter spacing.

A STOP can be hidden without meaning to (a keyboard or a copy-paste adds a zero-width space or a
soft hyphen, a font picker gives small capitals) or on purpose (a forwarded STOP typed in Cyrillic
letters that a filter would not see). Either way the customer asked to stop, and a consent bot
must hear it. `unmask` gives the text as it reads on screen:

1. NFKC: fullwidth and mathematical (bold, italic, script...) letters become plain letters.
2. Invisible characters are removed: format characters (Unicode category Cf: zero-width space
   and (non-)joiners, soft hyphen, BOM, word joiner, bidi marks and isolates, tag characters),
   variation selectors, the combining grapheme joiner and the Hangul fillers.
3. Letters that only look Latin (Cyrillic, Greek, Latin small capitals) become the Latin capital
   they imitate (`flows.lookalikes`, generated from Unicode's confusables data). Letters of other
   scripts (Arabic, Devanagari...) are left as written.

Keyword matching (`flows.keywords`) tries the message as written first and only then its
unmasked form, so words of a locale written in Greek or Cyrillic would still mean what they
say. `spelled_out` joins a word spelled letter by letter ("S T O P", "S.T.O.P"); the matcher
accepts that only when the result is an opt-out word, so "S I" and "O K" never become YES.

Pure functions of the text, no I/O; the table is a module constant.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from flows.lookalikes import LOOKALIKES

__all__ = ["spelled_out", "unmask"]

_INVISIBLE_OUTSIDE_CF: Final = frozenset(
    [
        "\u034f",  # combining grapheme joiner
        "\u115f",  # Hangul choseong filler
        "\u1160",  # Hangul jungseong filler
        "\u3164",  # Hangul filler
        "\uffa0",  # halfwidth Hangul filler
        *(chr(c) for c in range(0x180B, 0x1810)),  # Mongolian free variation selectors
        *(chr(c) for c in range(0xFE00, 0xFE10)),  # variation selectors 1-16
        *(chr(c) for c in range(0xE0100, 0xE01F0)),  # variation selectors 17-256
    ]
)
_LOOKALIKES: Final = dict(LOOKALIKES)


def _visible(char: str) -> bool:
    return char not in _INVISIBLE_OUTSIDE_CF and unicodedata.category(char) != "Cf"


def unmask(text: str) -> str:
    """The text as it reads on screen: no invisible characters, look-alikes as Latin letters."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = "".join(char for char in text if _visible(char)).translate(_LOOKALIKES)
    return text


def spelled_out(words: tuple[str, ...]) -> str | None:
    """ "STOP" for the words S, T, O, P: two or more single letters joined, else None."""
    if len(words) < 2 or any(len(word) != 1 for word in words):
        return None
    return "".join(words)
