# ruff: noqa: RUF001
"""normalise_text: how people type keywords, what must survive, and the fixed-point property."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flows.text import MAX_PASSES, _ascii_pass, _one_pass, normalise_text, split_words


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("stop", "STOP"),
        ("Stop", "STOP"),
        ("  STOP  ", "STOP"),
        ("stop!", "STOP"),
        ("STOP!!!", "STOP"),
        ("...stop?", "STOP"),
        ("Stop 🙏", "STOP"),
        ("🛑 STOP 🛑", "STOP"),
        ("stop 👍🏽", "STOP"),
        ("yes ❤️", "YES"),
        ("❤️‍🔥 stop", "STOP"),
        ("stop 🇪🇸", "STOP"),
        ("ＳＴＯＰ", "STOP"),
        ("ｓｔｏｐ！", "STOP"),
        ("stop\u3000all", "STOP ALL"),
        ("stop   all", "STOP ALL"),
        ("\tstop\n all\r\n", "STOP ALL"),
        ("stop\u00a0all", "STOP ALL"),
        ("\u200bstop\u200b", "STOP"),
        ("opt-out", "OPT-OUT"),
        ("Arrêt", "ARRET"),
        ("arrêt", "ARRET"),
        ("ARRE\u0302T", "ARRET"),
        ("NÃO", "NAO"),
        ("não", "NAO"),
        ("¡Sí!", "SI"),
        ("¿baja?", "BAJA"),
        ("«ARRÊT»", "ARRET"),
        ("Menü", "MENU"),
        ("straße", "STRASSE"),
        ("STRAẞE", "STRASSE"),
        ("hayır", "HAYIR"),
        ("HAYIR", "HAYIR"),
        ("hayir", "HAYIR"),
        ("İptal", "IPTAL"),
        ("iptal", "IPTAL"),
        ("çık", "CIK"),
        ("d’accord", "D'ACCORD"),
        ("d'accord", "D'ACCORD"),
        ("don’t stop", "DON'T STOP"),
        ("ﬁn", "FIN"),
        ("", ""),
        ("   ", ""),
        ("!!!", ""),
        ("🙏", ""),
        ("👨‍👩‍👧", ""),
    ],
)
def test_normalises_what_people_type(typed: str, expected: str) -> None:
    assert normalise_text(typed) == expected


def test_hindi_keeps_its_vowel_signs_and_nasal_marks() -> None:
    word = "रोकें"  # र ो क े ं: two of the five code points are marks
    assert normalise_text(word) == word
    assert normalise_text(f"  {word}!! 🙏") == word
    assert "\u0947" in normalise_text(word)
    assert "\u0902" in normalise_text(word)
    assert normalise_text("हाँ") == "हाँ"
    assert normalise_text("हाँ") != normalise_text("हां")  # chandrabindu and anusvara differ


def test_devanagari_nukta_forms_are_equal() -> None:
    assert normalise_text("\u095e") == normalise_text("\u092b\u093c")  # फ़ precomposed/combined


def test_arabic_tatweel_is_removed_but_marks_are_kept() -> None:
    assert normalise_text("تـوقـف") == "توقف"
    assert normalise_text("ـــتوقفـــ") == "توقف"
    vowelled = normalise_text("تَوَقَّف")
    assert "\u064e" in vowelled and "\u0651" in vowelled
    assert normalise_text("إيقاف") != normalise_text("ايقاف")  # hamza is a letter form, kept


def test_marks_on_non_latin_letters_are_kept() -> None:
    assert normalise_text("ά") == "Ά"  # Greek keeps its accent
    assert normalise_text("й") == "Й"


def test_punctuation_inside_is_kept() -> None:
    assert normalise_text("stop, please") == "STOP, PLEASE"
    assert normalise_text("e-mail") == "E-MAIL"


def test_one_case_for_all_casings() -> None:
    variants = ["Stop", "sToP", "STOP", "stop", "ＳＴＯＰ", "ｓｔｏｐ"]
    assert {normalise_text(v) for v in variants} == {"STOP"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("PLEASE STOP SENDING ME THESE", ("PLEASE", "STOP", "SENDING", "ME", "THESE")),
        ("STOP, SENDING... ME", ("STOP", "SENDING", "ME")),
        ("DON'T SEND", ("DONT", "SEND")),
        ("ORDER_UPDATES", ("ORDER", "UPDATES")),
        ("RETIREZ-MOI", ("RETIREZ", "MOI")),
        ("मैसेज मत भेजो", ("मैसेज", "मत", "भेजो")),
        ("", ()),
        ("!!", ()),
    ],
)
def test_split_words(text: str, words: tuple[str, ...]) -> None:
    assert split_words(text) == words


def test_split_words_keeps_devanagari_signs_inside_words() -> None:
    assert split_words(normalise_text("रोकें भेजें")) == ("रोकें", "भेजें")


# -- properties ---------------------------------------------------------------------------------

_TRICKY = (
    "aAzZ09 _-'’.,!?¿¡«»\"()[]{}\t\n\r\u00a0\u3000\u200b\u200c\u200d\u2060\ufeff\u00ad"
    "\u0301\u0302\u0303\u0307\u0308\u0327\u20e3\ufe0f\ufe0e\U000e0067\U0001f3fd"
    "ßẞıİiIǰŉǅﬁﬀＳｓ０ΐΣς"
    "क\u093c\u094d\u0947\u0902\u0901ि\u095eت\u0640\u064e\u0651\u0654\u0655أا"
    "🙏🛑👍🏽❤️🇪🇸\U0001fa77\U000f0000\x00\x1c\x7f"
)
tricky_text = st.text(alphabet=st.sampled_from(_TRICKY), max_size=40)
any_text = st.text(alphabet=st.characters(codec=None), max_size=60)
with_surrogates = st.text(alphabet=st.characters(categories=["Cs", "Mn", "L", "P"]), max_size=30)


@settings(max_examples=500)
@given(st.one_of(any_text, tricky_text, with_surrogates))
@example("ǰ")
@example("\u0640")
@example("a\u0340")
@example("´")
@example("!\u0301a")
@example("a\u0640\u0301")
def test_normalise_is_idempotent_and_total(text: str) -> None:
    once = normalise_text(text)
    assert normalise_text(once) == once
    assert once == once.strip()
    assert "  " not in once


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_ascii_fast_path_matches_the_general_path(text: str) -> None:
    general = text
    for _ in range(MAX_PASSES):
        general = _one_pass(general)
    assert _ascii_pass(text) == general


_UNIFORM_BLOCKS = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x20000, 0x323AF))
"""CJK ideographs and Hangul syllables: tens of thousands of letters that behave alike."""


def _sampled_code_points() -> list[str]:
    """Every assigned code point except inside the uniform blocks, plus a sample of those, of
    the unassigned and of the private-use code points (which all behave like their neighbours)."""
    chars = []
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        uniform = unicodedata.category(char) in ("Cn", "Co") or any(
            low <= code <= high for low, high in _UNIFORM_BLOCKS
        )
        if not uniform or code % 101 == 0:
            chars.append(char)
    return chars


def test_every_code_point_reaches_a_fixed_point_within_the_pass_limit() -> None:
    for char in _sampled_code_points():
        for text in (char, f"a{char}\u0301", f"{char}b{char}"):
            passes, current = 0, text
            while True:
                following = _one_pass(current)
                passes += 1
                if following == current:
                    break
                current = following
                assert passes < MAX_PASSES, f"{text!r} needs more than {MAX_PASSES} passes"
            assert normalise_text(text) == current
