"""Text normalisation for keyword and intent matching.

Customers type keywords in every way a phone keyboard allows: "stop", "Stop!", " STOP 🙏",
STOP in full-width letters, "Arrêt" or "arret", "Hayir" with a dotless i or "HAYIR". The public
contract says keywords match the whole message "after normalisation (case, surrounding
punctuation and emoji, repeated spaces; accents on Latin letters; full-width forms)", so both
sides of every comparison (the message and the keyword lists in `locales/*.toml`) go through
`normalise_text`, and a keyword is then a plain dictionary lookup.

What `normalise_text` does, in order, and why:

1. NFKC: full-width and compatibility forms become their plain letters (full-width S, T, O, P
   U+FF33 U+FF34 U+FF2F U+FF30 become "STOP", the ligature U+FB01 becomes "fi").
2. Typographic apostrophes (U+2019, U+2018, U+02BC) become "'" because phone keyboards insert
   them on their own ("d'accord" typed either way is the same word).
3. `casefold()` then `upper()`: the output is UPPER case, like the keywords of the contract
   (STOP, START). Case folding first makes "ß" and "ẞ" both "SS"; upper case last makes the
   Turkish dotless i (U+0131) and dotted capital I (U+0130) both "I", so "hayir" typed with a
   dotless i on a Turkish keyboard matches "HAYIR".
4. Accents are removed only from Latin letters: after canonical decomposition (NFD), a combining
   mark is dropped when the letter it sits on is Latin ("ARRÊT" -> "ARRET", "NÃO" -> "NAO").
   Marks on any other script are kept: Devanagari vowel signs and Arabic marks are part of the
   spelling ("रोकें" keeps its vowel sign and nasal mark). The text is recomposed (NFC) after.
5. The Arabic tatweel (U+0640, a stretching stroke with no meaning) is removed everywhere, so
   "تـوقـف" is "توقف". Arabic short-vowel marks (harakat) are kept like every non-Latin mark:
   people rarely type them, and removing them would merge words the locale files keep apart.
6. Punctuation, symbols, spaces, control and format characters (Unicode categories P*, S*, Z*,
   C*, which covers emoji, emoji skin-tone modifiers, zero-width joiners and characters this
   Python's Unicode database does not know yet, such as newer emoji) are stripped from both ends,
   together with any combining marks attached to them (variation selectors, the keycap mark).
   Inside the text they are kept: "OPT-OUT" stays "OPT-OUT".
7. Runs of whitespace become one space.

The result is a fixed point (`normalise_text(normalise_text(x)) == normalise_text(x)` for every
string). One pass is not always enough: a step can hand a later step's input back to an earlier
one. For example "a", tatweel, combining acute: the accent sits on the tatweel (not a Latin
letter) so it is kept, then the tatweel goes and the accent now sits on the "a", which only a
second pass removes; Arabic presentation forms that NFKC expands into tatweel plus a mark behave
the same. Case mapping and NFKC can also feed each other (upper-casing "ǰ" gives "J" plus a
combining caron). The steps are therefore repeated until nothing changes; two passes plus the
confirming one suffice for every code point (`MAX_PASSES` leaves a wide margin; the tests check
every assigned code point alone and between a Latin letter and an accent, and property tests
check arbitrary strings). Pure ASCII text, the common case, takes a shortcut that gives the same
result (upper case, strip non-alphanumerics at the ends, collapse whitespace).

`normalise_text` never raises: it only calls total functions of the standard library.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["MAX_PASSES", "normalise_text", "split_words"]

MAX_PASSES = 8
"""Upper bound on normalisation passes; the fixed point is reached long before (usually 1-2)."""

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_TATWEEL = "\u0640"
_EDGE_CATEGORIES = frozenset("PSZC")
_ASCII_EDGE = "".join(chr(c) for c in range(128) if not chr(c).isalnum())
_JOINERS = frozenset("\u200c\u200d")


@lru_cache(maxsize=8192)
def _is_latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN ")


def _is_mark(char: str) -> bool:
    return unicodedata.category(char)[0] == "M"


def _is_edge(char: str) -> bool:
    """True for what is stripped at the ends: punctuation, symbols, spaces, control, format."""
    return unicodedata.category(char)[0] in _EDGE_CATEGORIES


def _drop_latin_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    kept: list[str] = []
    base_is_latin = False
    for char in decomposed:
        if _is_mark(char):
            if not base_is_latin:
                kept.append(char)
            continue
        base_is_latin = _is_latin(char)
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept))


def _strip_edges(text: str) -> str:
    """Strip edge characters (and the marks riding on them) from both ends."""
    start = 0
    while start < len(text) and (_is_edge(text[start]) or _is_mark(text[start])):
        start += 1
    end = len(text)
    while end > start:
        base = end - 1
        while base >= start and _is_mark(text[base]):
            base -= 1
        if base < start or _is_edge(text[base]):
            end = base if base >= start else start
            continue
        break
    return text[start:end]


def _one_pass(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    text = unicodedata.normalize("NFKC", text.casefold().upper())
    text = _drop_latin_marks(text).replace(_TATWEEL, "")
    return " ".join(_strip_edges(text).split())


def _ascii_pass(text: str) -> str:
    """The same result as `_one_pass` for ASCII text, without the Unicode machinery."""
    return " ".join(text.upper().strip(_ASCII_EDGE).split())


def normalise_text(text: str) -> str:
    """The comparison form of `text`: upper case, no Latin accents, no decoration at the ends."""
    if text.isascii():
        return _ascii_pass(text)
    for _ in range(MAX_PASSES):
        normalised = _one_pass(text)
        if normalised == text:
            break
        text = normalised
    return text


@lru_cache(maxsize=8192)
def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMN" or char in _JOINERS


def split_words(normalised: str) -> tuple[str, ...]:
    """The words of a normalised text, for phrase matching at word boundaries.

    A word is a run of letters, marks, digits and zero-width (non-)joiners, so Devanagari vowel
    signs stay inside their word; apostrophes are removed rather than splitting ("DON'T" is
    "DONT", like people often type it); every other character separates words.
    """
    words: list[str] = []
    current: list[str] = []
    for char in normalised:
        if char == "'":
            continue
        if _is_word_char(char):
            current.append(char)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return tuple(words)
