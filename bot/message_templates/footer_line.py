"""The way out of a free-form marketing text: the locale's "Reply STOP to unsubscribe." line.

A template's way out is approved with it at Meta; a free-form text (inside the 24-hour window)
has none unless the service adds one. So a text of a marketing category sent through
`/v1/messages` ends with the `opt_out_footer` of the contact's language (their recorded locale,
else `DEFAULT_LOCALE`), after an empty line, unless it already holds that line in any language
(a business that writes it itself does not get it twice). Only the exact line counts: a text
merely mentioning a stop word in passing ("PRICES A LA BAJA") still gets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from bot.graph.builders import TEXT_BODY_MAX
from flows.locale_catalog import LocaleCatalog
from flows.text import normalise_text, split_words

SEPARATOR: Final = "\n\n"


class LineDoesNotFit(ValueError):
    """The text is too long to carry the line within WhatsApp's 4,096 characters."""


def _words(text: str) -> str:
    return " ".join(split_words(normalise_text(text)))


def holds_opt_out_line(text: str, catalogs: Mapping[str, LocaleCatalog]) -> bool:
    """Whether `text` already says one locale's `opt_out_footer` (case, accents and
    punctuation aside)."""
    words = f" {_words(text)} "
    return any(
        f" {_words(catalog.messages['opt_out_footer'])} " in words for catalog in catalogs.values()
    )


def with_opt_out_line(
    text: str, catalogs: Mapping[str, LocaleCatalog], locale: str | None, default_locale: str
) -> str:
    """`text` ending with the opt-out line of `locale` (else the default's), unless it holds
    one already; raises `LineDoesNotFit` when the result would be over `TEXT_BODY_MAX`."""
    if holds_opt_out_line(text, catalogs):
        return text
    catalog = catalogs.get(locale or "") or catalogs[default_locale]
    line = catalog.messages["opt_out_footer"]
    result = f"{text.rstrip()}{SEPARATOR}{line}"
    if len(result) > TEXT_BODY_MAX:
        raise LineDoesNotFit(
            f"a marketing text ends with the opt-out line {line!r}, and with it this text is "
            f"{len(result)} characters (at most {TEXT_BODY_MAX}): shorten it, or end it with "
            "that line yourself"
        )
    return result
