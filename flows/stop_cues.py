"""Cue words of a wish to stop: what lets the scorer recognise phrasings nobody listed.

A list of whole phrases ("stop sending me these") recalls only the phrasings someone thought of:
measured on messages written independently of the data, it missed about one wish to stop in two
(tests/corpus/README.md). People vary the verb form, the pronoun, the object and the words
around them, but a wish to stop keeps two parts: a word of stopping or leaving ("stop",
"unsubscribe", "abbestellen", "बंद") and what is to stop, the messages or the sender's hold on
the customer ("messages", "Nachrichten", "my number", "me"), or a refusal of the messages ("no
more texts", "no me manden"). A near miss keeps the first part but stops something of the
shop's business instead ("cancel my order", "remove the item"). So the rule here is a
co-occurrence of word classes within one sentence, each class data per locale
(`locales/stop_intent/<code>.toml`, keys `stop_words`, `message_words`, `contact_words`,
`refusals` and `business_words`):

- a stop word and a message word: ``words "unsubscribe" + "emails" (en)``;
- a stop word and a contact word, with no business word: ``words "remove" + "my number" (en)``;
- a refusal and a message or contact word, with no business word: ``words "no more" + "texts"``;
- a stop word alone in a short sentence (at most `max_cue_words` words once politeness words
  are gone) with no business word: ``word "unsubscribing" in a short sentence (en)``.

A refusal right before a stop word ("don't stop", "no paren", "jangan berhenti") negates it: no
question. An entry ending in ``*`` is a stem ("messag*" covers "message", "messages",
"messaging"); entries may be several words. Stop words of six letters or more also match with
one typing error ("unsusbcribe"). Arabic words are compared without their hamza forms, and with
the article and the conjunctions and prepositions written joined to them ("والرسائل") removed,
because Arabic writes them as part of the word.

A library would not be better here: stemmers (Snowball) cover neither Arabic dialects, romanised
Hindi nor Indonesian slang, and give no reason a person can read; this is a few dozen words per
locale that anyone can review.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from rapidfuzz.distance import OSA

from flows.text import normalise_text, split_words

__all__ = ["Cue", "Lexicon", "fold"]

#: Arabic letters written several ways: hamza seats, alef maqsura, ta marbuta; and the marks
#: (harakat, tatweel) that people mostly leave out.
_ARABIC_FOLD: Final = str.maketrans(
    {
        "\u0623": "\u0627",  # alef with hamza above -> alef
        "\u0625": "\u0627",  # alef with hamza below -> alef
        "\u0622": "\u0627",  # alef with madda -> alef
        "\u0649": "\u064a",  # alef maqsura -> yeh
        "\u0629": "\u0647",  # ta marbuta -> heh
        "\u0640": None,  # tatweel
    }
)
_ARABIC_MARKS: Final = re.compile("[\u064b-\u0652\u0670]")
#: Written joined to the next word: "and", "so", "with/by", "this" (Gulf "هال"), "for/to", the
#: article.
_ARABIC_PROCLITICS: Final = ("وال", "فال", "بال", "هال", "لل", "ال", "و", "ف", "ب", "ل")
_TYPO_MIN_LETTERS: Final = 7
#: French and Italian elisions, joined to the next word once the apostrophe is gone
#: ("l'échange" -> "LECHANGE", "nell'ordine" -> "NELLORDINE", "m'envoyez" -> "MENVOYEZ").
_ELISIONS: Final = (
    "DELL",
    "NELL",
    "DALL",
    "SULL",
    "ALL",
    "QU",
    "L",
    "D",
    "M",
    "N",
    "J",
    "S",
    "T",
    "C",
)
_VOWELS: Final = frozenset("AEIOUYH")
_ELIDING: Final = frozenset({"fr", "it"})
_PREFIX: Final = 3
_REPEATS: Final = re.compile(r"(.)\1+")


def fold(word: str) -> str:
    """A normalised word as the cue lists compare it (Arabic spelling variants folded)."""
    if word.isascii():
        return word
    return _ARABIC_MARKS.sub("", word.translate(_ARABIC_FOLD))


@lru_cache(maxsize=16384)
def _elided(word: str) -> tuple[str, ...]:
    """`word` without a French or Italian elision in front ("LECHANGE" -> "ECHANGE"): only for
    those languages' cue words, since "SOTP" is no "S'OTP"."""
    return tuple(
        word[len(elision) :]
        for elision in _ELISIONS
        if word.startswith(elision)
        and len(word) - len(elision) >= 3
        and word[len(elision)] in _VOWELS
    )


@lru_cache(maxsize=16384)
def _forms(word: str) -> tuple[str, ...]:
    """`word` and, for Arabic, the word without the article, conjunctions and prepositions
    written joined in front of it."""
    folded = fold(word)
    if folded.isascii() or not "\u0600" <= folded[0] <= "\u06ff":
        return (folded,)
    forms = [folded]
    for proclitic in _ARABIC_PROCLITICS:
        if folded.startswith(proclitic) and len(folded) - len(proclitic) >= 3:
            forms.append(folded[len(proclitic) :])
    return tuple(forms)


@lru_cache(maxsize=16384)
def _squeeze(text: str) -> str:
    """Repeated letters as one: "STOPPP" and "STOP" are one word to a typist."""
    return _REPEATS.sub(r"\1", text)


@dataclass(slots=True)
class Cue:
    """One entry of a cue list: its words (the last may be a stem) and the locales listing it."""

    shown: str
    words: tuple[str, ...]
    stem: bool
    owners: list[str] = field(default_factory=list)
    elides: bool = False  # a French or Italian word: seen after an elided article or pronoun

    def at(self, words: tuple[str, ...], start: int) -> bool:
        """Whether the cue's words begin at `words[start]`, as written (no typo)."""
        if start + len(self.words) > len(words):
            return False
        last = len(self.words) - 1
        for index, target in enumerate(self.words):
            forms = _forms(words[start + index])
            if self.elides:
                forms = (*forms, *_elided(forms[0]))
            if target in forms:
                continue
            if not (index == last and self.stem and any(f.startswith(target) for f in forms)):
                return False
        return True

    def typo_of(self, typed: str) -> bool:
        """Whether `typed` (folded, repeats squeezed) is this one-word cue with one typing
        error, or with two letters swapped around another ("ablemden" for "abmelden": the same
        letters in another order, which one more error would not give "kemarin" for
        "keluarin")."""
        target = _squeeze(self.words[0])
        candidates = (
            (typed,)
            if not self.stem
            else tuple(
                typed[:n] for n in range(len(target) - 1, min(len(target) + 1, len(typed)) + 1)
            )
        )
        for candidate in candidates:
            distance = OSA.distance(candidate, target, score_cutoff=2)
            if distance <= 1 or (distance == 2 and sorted(candidate) == sorted(target)):
                return True
        return False


class Lexicon:
    """Cue entries of one class over every locale, found in a sentence's words."""

    def __init__(
        self,
        entries: Iterable[tuple[str, str]],
        *,
        typos: bool = False,
        not_typos: Iterable[str] = (),
    ) -> None:
        self._not_typos = frozenset(
            fold(w) for text in not_typos for w in split_words(normalise_text(text))
        )
        by_key: dict[tuple[tuple[str, ...], bool], Cue] = {}
        for code, text in entries:
            stem = text.endswith("*")
            words = tuple(fold(w) for w in split_words(normalise_text(text.rstrip("*"))))
            if not words:
                continue
            cue = by_key.setdefault((words, stem), Cue(text.lower(), words, stem))
            if code not in cue.owners:
                cue.owners.append(code)
        # Candidates by their first word, as written or (a stem) by its first three letters:
        # each word is compared only with the entries it could match; typo candidates by first
        # letter (a typo of the first letter is left to the sentence rule).
        self._by_first: dict[str, list[Cue]] = {}
        self._by_prefix: dict[str, list[Cue]] = {}
        self._short_stems: list[Cue] = []
        self._typo_by_initial: dict[str, list[Cue]] = {}
        for cue in by_key.values():
            cue.elides = not _ELIDING.isdisjoint(cue.owners)
            first = cue.words[0]
            if not (cue.stem and len(cue.words) == 1):
                self._by_first.setdefault(first, []).append(cue)
            elif len(first) >= _PREFIX:
                self._by_prefix.setdefault(first[:_PREFIX], []).append(cue)
            else:
                self._short_stems.append(cue)
            if typos and len(cue.words) == 1 and len(_squeeze(cue.words[0])) >= _TYPO_MIN_LETTERS:
                self._typo_by_initial.setdefault(cue.words[0][0], []).append(cue)

    def find(self, words: tuple[str, ...]) -> Iterator[tuple[int, int, Cue]]:
        """Every (start, end, cue) found in `words`, in order of `start`."""
        for start, word in enumerate(words):
            forms = _forms(word)
            matched = False
            seen: set[int] = set()
            for form in (*forms, *_elided(forms[0])):
                for cue in (
                    *self._by_first.get(form, ()),
                    *self._by_prefix.get(form[:_PREFIX], ()),
                    *self._short_stems,
                ):
                    if id(cue) not in seen and cue.at(words, start):
                        seen.add(id(cue))
                        matched = True
                        yield start, start + len(cue.words), cue
            if matched or forms[0] in self._not_typos:
                continue
            typed = _squeeze(forms[0])
            if len(typed) < _TYPO_MIN_LETTERS - 1:
                continue
            for cue in self._typo_by_initial.get(typed[0], ()):
                if cue.typo_of(typed):
                    yield start, start + 1, cue
