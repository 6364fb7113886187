"""Which template components count as a way out, and the line free-form marketing texts get."""

from __future__ import annotations

from typing import Any

import pytest

from bot.categories import load_categories
from bot.locales import load_locales
from bot.message_templates.catalog import parse_templates
from bot.message_templates.footer_line import (
    LineDoesNotFit,
    holds_opt_out_line,
    with_opt_out_line,
)
from bot.message_templates.optout import footer_opt_out, opt_out_of, quick_reply_opt_out
from flows.keywords import KeywordMatcher
from tests.fakes.graph import template_entry

CATALOGS = load_locales()
MATCHER = KeywordMatcher(CATALOGS, [c.name for c in load_categories(None)])


def _footer(text: str) -> list[dict[str, Any]]:
    return [{"type": "BODY", "text": "Our sale is on"}, {"type": "FOOTER", "text": text}]


def _buttons(*titles: str) -> list[dict[str, Any]]:
    return [{"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": t} for t in titles]}]


@pytest.mark.parametrize(
    "title", ["Stop promotions", "STOP", "Unsubscribe", "BAJA", "Darme de baja", "Stopp", "DUR"]
)
def test_a_quick_reply_the_bot_reads_as_a_stop_is_a_way_out(title: str) -> None:
    assert quick_reply_opt_out(MATCHER, title)
    assert opt_out_of(MATCHER, _buttons("Shop now", title)) == f"quick reply {title!r}"


@pytest.mark.parametrize("title", ["Shop now", "No, thanks", "Yes", "Para mí", "Stop by our store"])
def test_other_quick_replies_are_none(title: str) -> None:
    assert not quick_reply_opt_out(MATCHER, title)
    assert opt_out_of(MATCHER, _buttons(title)) is None


@pytest.mark.parametrize(
    "footer",
    [
        "Reply STOP to unsubscribe",
        "Not interested in any of our sales? Tap Stop Promotions",  # Meta's own example
        "Responde BAJA para darte de baja",
        "Antworten Sie mit STOPP.",
        "Stop offers: reply STOP OFFERS",
    ],
)
def test_a_footer_naming_a_stop_is_a_way_out(footer: str) -> None:
    assert footer_opt_out(MATCHER, footer) is not None
    assert opt_out_of(MATCHER, _footer(footer)) == f"footer {footer!r}"


@pytest.mark.parametrize(
    "footer",
    [
        # Regression: everyday words that are stop keywords somewhere ("para" in Spanish and
        # Portuguese, "end", "basta") must not pass for a way out in a sentence.
        "Ofertas para socios",
        "Offer ends at the end of the month",
        "Reply stop to unsubscribe",
        "Non-stop deals all week",
        "WhatsApp Business API Team",
    ],
)
def test_a_footer_without_a_stop_is_none(footer: str) -> None:
    assert footer_opt_out(MATCHER, footer) is None
    assert opt_out_of(MATCHER, _footer(footer)) is None


@pytest.mark.parametrize("code", sorted(CATALOGS))
def test_every_locale_opt_out_line_is_a_way_out_in_a_footer(code: str) -> None:
    line = CATALOGS[code].messages["opt_out_footer"]
    assert footer_opt_out(MATCHER, line) is not None, line


def test_the_list_gives_each_language_its_category_and_way_out() -> None:
    found = parse_templates(
        [
            template_entry("promo", "en_US", "MARKETING", quick_replies=("Stop promotions",)),
            template_entry("promo", "es", "MARKETING", footer="Ofertas para socios"),
            template_entry("shipped", "en_US", "UTILITY"),
            {"name": "broken"},
            "not an entry",
        ],
        MATCHER,
    )
    assert set(found) == {"promo", "shipped"}
    assert found["promo"]["en_US"].opt_out == "quick reply 'Stop promotions'"
    assert found["promo"]["es"].opt_out is None and found["promo"]["es"].marketing
    assert not found["shipped"]["en_US"].marketing


def test_a_marketing_text_ends_with_the_line_of_the_contacts_language() -> None:
    assert with_opt_out_line("¡Rebajas!", CATALOGS, "es", "en") == (
        "¡Rebajas!\n\nResponde BAJA para darte de baja."
    )
    assert with_opt_out_line("Sale!", CATALOGS, None, "en").endswith("Reply STOP to unsubscribe.")
    assert with_opt_out_line("Sale!", CATALOGS, "xx", "de").endswith(
        "Antworten Sie STOPP, um sich abzumelden."
    )


def test_a_text_that_holds_the_line_does_not_get_it_twice() -> None:
    text = "Sale! reply stop to unsubscribe"
    assert holds_opt_out_line(text, CATALOGS)
    assert with_opt_out_line(text, CATALOGS, "en", "en") == text
    # Any locale's line counts: the business wrote it for this customer.
    spanish = "Rebajas. Responde BAJA para darte de baja."
    assert with_opt_out_line(spanish, CATALOGS, "en", "en") == spanish
    # A stop word in passing is not the line.
    assert with_opt_out_line("PRECIOS A LA BAJA", CATALOGS, "es", "en").endswith("de baja.")


def test_a_text_too_long_for_the_line_is_refused() -> None:
    with pytest.raises(LineDoesNotFit, match="4096"):
        with_opt_out_line("x" * 4090, CATALOGS, "en", "en")
