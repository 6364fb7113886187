# ruff: noqa: RUF001
"""Disguised keywords: invisible characters, look-alike letters and letter spacing.

Regression for: "S\\u200bTOP", "STO\\u00adP", "S T O P", small capitals and Cyrillic letters
that read STOP got neither an opt-out nor a question.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.locales import load_locales
from flows.disguise import spelled_out, unmask
from flows.keywords import Command, KeywordMatcher
from flows.locale_catalog import BUILTIN_CATEGORIES
from flows.lookalikes import LOOKALIKES
from scripts.lookalikes import OUTPUT as LOOKALIKES_FILE
from scripts.lookalikes import build_table, generate

CATALOGS = load_locales()
MATCHER = KeywordMatcher(CATALOGS, BUILTIN_CATEGORIES)

DISGUISED_STOPS = {
    "zero-width space": "S\u200bTOP",
    "soft hyphen": "STO\u00adP",
    "BOM": "\ufeffST\ufeffOP",
    "word joiner": "ST\u2060OP",
    "zero-width joiner": "S\u200dT\u200cOP",
    "bidi marks": "\u202eS\u200eTO\u200fP\u202c",
    "bidi isolates": "\u2066STOP\u2069 ",
    "variation selectors": "S\ufe0fT\ufe00OP",
    "letter spacing": "S T O P",
    "letter spacing, lower case": "s t o p",
    "dotted": "S.T.O.P",
    "dashed": "S-T-O-P.",
    "small capitals": "ꜱᴛᴏᴘ",
    "Cyrillic": "ЅТОР",
    "Cyrillic, lower case": "ѕтор",
    "Greek and Cyrillic mixed": "SΤΟР",
    "fullwidth": "ＳＴＯＰ",
    "mathematical bold": "𝐒𝐓𝐎𝐏",
    "mathematical script": "𝒮𝒯𝒪𝒫",
    "spaced small capitals": "ꜱ ᴛ ᴏ ᴘ",
    "invisible and Cyrillic": "Ѕ\u200bТОР!",
    "spelled unsubscribe": "U N S U B S C R I B E",
}


@pytest.mark.parametrize("text", DISGUISED_STOPS.values(), ids=DISGUISED_STOPS.keys())
def test_every_disguised_stop_is_stop(text: str) -> None:
    """Regression: each of these read STOP on screen but was no keyword and no question."""
    match = MATCHER.match(text)
    assert match is not None and match.command is Command.STOP_ALL, text


@pytest.mark.parametrize(
    "text",
    [
        "S I",  # spells the Spanish YES
        "O K",
        "Y E S",
        "N O",
        "S T A R T",
        "H E L P",
        "S T O P P E D",
        "S T O",
        "ST OP",  # not letter by letter
        "S T O P S",
        "S T O P PROMOTIONS",
        "ST\u200bO",
        "Ѕ\u200bТО",
    ],
)
def test_near_misses_and_other_spelled_words_are_not_keywords(text: str) -> None:
    """Letter spacing is collapsed for the opt-out words only: "S I" never becomes YES."""
    assert MATCHER.match(text) is None, text


def test_hidden_keywords_other_than_stop_still_match_when_not_spelled() -> None:
    """Invisible characters and look-alikes hide any keyword; spacing hides only STOP."""
    for text, command in [("Y\u200bES", Command.YES), ("ЅТАRТ", Command.START_ALL)]:
        match = MATCHER.match(text)
        assert match is not None and match.command is command, text


@pytest.mark.parametrize(
    ("text", "locale"),
    [("توقف", "ar"), ("تـ\u200cوقف", None), ("रोकें", "hi"), ("रो\u200dकें", None)],
)
def test_other_scripts_are_left_as_written(text: str, locale: str | None) -> None:
    """Arabic and Devanagari letters are never folded into Latin ones; a keyword written in
    them still matches (as written, or with a joiner removed)."""
    assert unmask(text).replace("\u200c", "").replace("\u200d", "") == unicodedata.normalize(
        "NFKC", text
    ).replace("\u200c", "").replace("\u200d", "")
    if locale is not None:
        match = MATCHER.match(text)
        assert match is not None and match.command is Command.STOP_ALL
        assert locale in match.candidates


def test_a_disguised_opt_out_phrase_gets_the_question() -> None:
    """Not a keyword but a wish to stop, hidden by an invisible character: the flow asks."""
    plain = MATCHER.opt_out_intent("please stop sending me messages")
    assert plain is not None
    hidden = MATCHER.opt_out_intent("please st\u200bop sending me mеssages")  # a Cyrillic ie
    assert hidden == plain


def test_spelled_out() -> None:
    assert spelled_out(("S", "T", "O", "P")) == "STOP"
    assert spelled_out(("S",)) is None
    assert spelled_out(("ST", "OP")) is None


def test_the_lookalike_table_is_generated_from_the_confusables_data() -> None:
    """flows/lookalikes.py is what scripts/lookalikes.py builds (run it after an upgrade)."""
    assert {chr(code): target for code, target in LOOKALIKES.items()} == build_table()
    assert LOOKALIKES_FILE.read_text(encoding="utf-8") == generate()


def test_the_table_folds_only_cyrillic_greek_and_latin_letters_into_ascii_capitals() -> None:
    for code, target in LOOKALIKES.items():
        name = unicodedata.name(chr(code))
        assert name.startswith(("CYRILLIC ", "GREEK ", "LATIN ")), name
        assert len(target) == 1 and target.isascii() and target.isupper()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_unmask_never_raises_and_leaves_no_invisible_character(text: str) -> None:
    unmasked = unmask(text)
    assert not any(unicodedata.category(char) == "Cf" for char in unmasked)
    assert not any(0xFE00 <= ord(char) <= 0xFE0F for char in unmasked)
    MATCHER.match(text)
    MATCHER.opt_out_intent(text)
