"""Every way a customer says stop: a small, explainable scorer for unclear wishes to stop.

Keywords (STOP, BAJA, ...) are whole messages and act at once (`flows.keywords`). Everything
else that plausibly asks to stop gets the one clarifying question (`Trigger.OPT_OUT_INTENT`),
because silence is the one answer that is never right (an opt-out "by any reasonable means" must
be honoured). A message that says the opposite ("don't stop the promos", "jangan berhenti kirim
promo") gets no question. The rules, in the order they are tried, each with the reason it gives
(the reason goes into the ledger evidence of the decision that follows, key `stop_intent`):

1. The stop-sign emoji alone (`STOP_EMOJI`), or with other emoji that do not approve
   (`_EMOJI_APPROVAL`: a heart, a thumbs up) and at most four words, none of the business:
   ``stop-sign emoji 🛑 on its own``.
2. A negation of a stop word (`negations` of any locale, at word boundaries): no question.
3. A locale file's opt-out phrase (`[intents]`, via `KeywordMatcher.opt_out_intent`):
   ``phrase "stop sending me these" (en)``.
Rules 3, 5, 6 and 7 are skipped when the message names the shop's business (`business_words`:
an order, a size, a colour): "the courier had the wrong number", "no me interesa el azul".
Then, for each sentence of the message (split at . ! ? , ; : and their Arabic and Devanagari
forms), without the politeness words around it (`fillers`: "pls", "porfa", "bitte"...):
4. A sentence that is a stop keyword ("who is this? stop", "stop pls"):
   ``sentence "stop" is the keyword STOP (en)``.
5. A phrase of `phrases` anywhere in the sentence: ``phrase "remove me from" (en)``.
6. A phrase of `short_phrases` that ends the sentence, after at most `max_words_before` other
   words: "not interested", "wrong number" count, "not interested in the blue one" and "the
   wrong number of items" do not: ``phrase "not interested" (en)``.
7. A typo: the sentence within a small edit distance (optimal string alignment, repeated letters
   squeezed) of a stop keyword or phrase of any locale, unless it is an ordinary word of
   `not_typos` ("shop" is not a typo of STOP) or another keyword: ``typo of STOP (en)``. Targets
   of at most 3 letters allow no edit, up to 8 letters one, longer ones two.
8. Cue words (`flows.stop_cues`): a stop word with a message word, or with a contact word, a
   refusal with a message word, or a stop word alone in a short sentence, the last three only
   when the message names nothing of the business: ``words "unsubscrib*" + "messag*" (en)``.
   A refusal right before a stop word ("never stop") counts as a negation (rule 2).

Every locale's rules apply to every message (people mix languages); the reported locale is the
contact's when the rule's locale is theirs or English (understood everywhere), else the rule's.
The data is `locales/stop_intent/<code>.toml` (loaded by `bot.locales.load_stop_words`); the
tables are built once at construction, and `assess` is pure: no clock, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from rapidfuzz.distance import OSA

from flows.keywords import UNIVERSAL_LOCALE, Command, KeywordMatcher
from flows.locale_catalog import LocaleCatalog
from flows.stop_cues import Cue, Lexicon
from flows.text import normalise_text, split_words

__all__ = ["EVIDENCE_KEY", "STOP_EMOJI", "StopIntent", "StopIntentScorer", "StopWords"]

EVIDENCE_KEY: Final = "stop_intent"
"""Evidence key of the reason: on the question's event, and on the decision that answers it."""

STOP_EMOJI: Final = frozenset({"🛑", "⛔", "🚫", "🔕", "📵"})
"""Emoji that, sent alone, say stop: stop sign, no entry, prohibited, muted bell, no phones."""

#: Emoji that change what a stop sign says when they go with it (love, approval, joy): any other
#: emoji (please, a raised hand, anger, rolled eyes, a wave) leaves it a wish to stop.
_EMOJI_APPROVAL: Final = frozenset("❤😍🥰👍😊🙂😀😁😄😃💕💖💗👌🎉🤩😘♥")
#: Characters that may ride along an emoji: variation selectors, zero-width joiner, skin tones,
#: the female and male signs of gendered emoji (🙅‍♀️).
_EMOJI_EXTRAS: Final = re.compile("[\ufe0e\ufe0f\u200d\U0001f3fb-\U0001f3ff\u2640\u2642\\s]")
#: Sentence breaks: Latin, Spanish inverted, Arabic question mark and comma, Devanagari danda.
_BREAKS: Final = re.compile("[.!?,;:¡¿\n\u061f\u060c\u06d4\u0964…]+")
_STOP_COMMANDS: Final = frozenset({Command.STOP_ALL, Command.STOP_CATEGORY})
#: How many words may go with a stop-sign emoji that still says stop.
_EMOJI_WORDS: Final = 4
#: A stop word alone says stop in a sentence of at most this many words ("unsubscribing me").
SHORT_SENTENCE_WORDS: Final = 3
#: Words a refusal may stand before the stop word it negates ("don't ever stop").
_NEGATION_REACH: Final = 1


@dataclass(frozen=True, slots=True)
class StopWords:
    """One locale's stop-intent data (`locales/stop_intent/<code>.toml`)."""

    code: str
    phrases: tuple[str, ...] = ()
    short_phrases: tuple[str, ...] = ()
    max_words_before: int = 3
    negations: tuple[str, ...] = ()
    fillers: tuple[str, ...] = ()
    not_typos: tuple[str, ...] = ()
    stop_words: tuple[str, ...] = ()
    message_words: tuple[str, ...] = ()
    contact_words: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()
    too_many: tuple[str, ...] = ()
    business_words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StopIntent:
    """An unclear wish to stop: the locale to ask in (None: the contact's), the category it
    names if exactly one, and why, in plain words."""

    locale: str | None
    category: str | None
    reason: str


@dataclass(slots=True)
class _Rule:
    """A normalised phrase: the locales that list it and how to show it."""

    shown: str
    owners: list[str] = field(default_factory=list)


def _key(text: str) -> str:
    return " ".join(split_words(normalise_text(text)))


def _squeeze(text: str) -> str:
    """Repeated letters as one ("STOPPP" -> "STOP", "DURR" -> "DUR")."""
    return re.sub(r"(.)\1+", r"\1", text)


def _written(text: str) -> str:
    """Words as typed, accents kept: lower case, single spaces, no punctuation around."""
    return " ".join(re.findall(r"[^\W_]+", unicodedata.normalize("NFC", text).casefold()))


def _plain(text: str) -> bool:
    """Whether normalisation loses nothing of `text` but case (no accents to tell apart)."""
    return _written(text) == _key(text).casefold()


def _allowed_edits(target: str) -> int:
    letters = len(target.replace(" ", ""))
    if letters <= 3:
        return 0
    return 1 if letters <= 8 else 2


def _sentences(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Each sentence of `text` (split at `_BREAKS`) as written and as normalised words."""
    return [
        (part, words)
        for part in _BREAKS.split(text)
        if (words := split_words(normalise_text(part)))
    ]


def _together(one: Cue, other: Cue, preferred: str | None) -> bool:
    """Whether two cue words can belong to one wish: one of them English (mixed into every
    language), or both listed by one locale; for a contact whose language is known (and not
    English), each word must be of their language or English. Turkish "ne" (what) never pairs
    with a French word, nor Portuguese "no" (in the) with "whatsapp" as if it were Spanish."""
    if preferred not in (None, UNIVERSAL_LOCALE):
        readable = {preferred, UNIVERSAL_LOCALE}
        if readable.isdisjoint(one.owners) or readable.isdisjoint(other.owners):
            return False
    return UNIVERSAL_LOCALE in (*one.owners, *other.owners) or not set(one.owners).isdisjoint(
        other.owners
    )


_Hit = tuple[int, int, Cue]
"""A cue found in a sentence: start and end word, the cue."""


@dataclass(frozen=True, slots=True)
class _Context:
    """What the whole message says that each sentence's rules need."""

    preferred: str | None
    business: bool  # it names something of the shop's business: an order, a size, a store


def _table(entries: Iterable[tuple[str, str, str]]) -> dict[str, _Rule]:
    """(locale, text, shown) -> normalised key -> rule."""
    table: dict[str, _Rule] = {}
    for code, text, shown in entries:
        key = _key(text)
        if not key:
            continue
        rule = table.setdefault(key, _Rule(shown))
        if code not in rule.owners:
            rule.owners.append(code)
    return table


class StopIntentScorer:
    """Finds unclear wishes to stop (see the module docstring) for a set of locales."""

    def __init__(
        self,
        matcher: KeywordMatcher,
        catalogs: Mapping[str, LocaleCatalog],
        words: Mapping[str, StopWords],
    ) -> None:
        unknown = set(words) - set(catalogs)
        if unknown:
            raise ValueError(f"stop-intent data for unknown locales: {', '.join(sorted(unknown))}")
        self._matcher = matcher
        self._order = tuple(catalogs)
        self._phrases = _table((w.code, p, p.lower()) for w in words.values() for p in w.phrases)
        self._short = _table(
            (w.code, p, p.lower()) for w in words.values() for p in w.short_phrases
        )
        self._before = {w.code: w.max_words_before for w in words.values()}
        self._negations = _table(
            (w.code, p, p.lower()) for w in words.values() for p in w.negations
        )
        self._fillers = frozenset(_key(f) for w in words.values() for f in w.fillers)
        # An ordinary word is recognised after normalisation, unless its accents make the
        # difference ("arrêté", stopped, against "arrete", a stop typed without its accent):
        # such an entry counts only as written.
        entries = [entry for w in words.values() for entry in w.not_typos]
        self._not_typos = frozenset(_key(e) for e in entries if _plain(e))
        self._written_not_typos = frozenset(_written(e) for e in entries if not _plain(e))
        self._longest = max(
            (
                len(k.split(" "))
                for k in (*self._phrases, *self._short, *self._negations, *self._fillers)
            ),
            default=1,
        )

        def lexicon(kind: str, *, typos: bool = False) -> Lexicon:
            return Lexicon(
                ((w.code, entry) for w in words.values() for entry in getattr(w, kind)),
                typos=typos,
            )

        # A typo of a stop word may be another word altogether ("anmelden", to sign up, is one
        # letter from "abmelden"): the locales' ordinary words and every keyword that is not a
        # stop word are never read as typos.
        others = {
            word
            for catalog in catalogs.values()
            for kind, listed in catalog.keywords.items()
            if kind != "stop_all"
            for word in listed
        }
        self._stop_cues = Lexicon(
            ((w.code, entry) for w in words.values() for entry in w.stop_words),
            typos=True,
            not_typos=(*others, *(e for w in words.values() for e in w.not_typos)),
        )
        self._message_cues = lexicon("message_words")
        self._contact_cues = lexicon("contact_words")
        self._refusals = lexicon("refusals")
        self._too_many = lexicon("too_many")
        self._business = lexicon("business_words")
        spellings = [
            *(
                (code, word, word)
                for code, catalog in catalogs.items()
                for word in catalog.keywords.get("stop_all", ())
            ),
            *(
                (code, phrase, f'"{phrase.lower()}"')
                for code, catalog in catalogs.items()
                for phrase in catalog.opt_out_phrases
                if "{" not in phrase
            ),
            *((w.code, p, f'"{p.lower()}"') for w in words.values() for p in w.phrases),
            *((w.code, p, f'"{p.lower()}"') for w in words.values() for p in w.short_phrases),
        ]
        # Keyed by the squeezed spelling (STOP and STOPP are one target), English first so that
        # a target several locales share is shown as the word every locale understands.
        spellings.sort(key=lambda spelling: spelling[0] != UNIVERSAL_LOCALE)
        targets = _table((code, _squeeze(_key(text)), shown) for code, text, shown in spellings)
        # Typo targets by length, so a message is compared only with targets it could be
        # within two edits of.
        self._typos: dict[int, list[tuple[str, _Rule]]] = {}
        for key, rule in targets.items():
            self._typos.setdefault(len(key), []).append((key, rule))

    # rules --------------------------------------------------------------------------------

    def _locale(self, owners: list[str], preferred: str | None) -> str | None:
        if preferred is not None and (preferred in owners or UNIVERSAL_LOCALE in owners):
            return preferred
        ranked = sorted(owners, key=lambda c: self._order.index(c) if c in self._order else 99)
        return ranked[0] if ranked else preferred

    def _grams(self, words: tuple[str, ...]) -> Iterable[tuple[int, int, str]]:
        for start in range(len(words)):
            for end in range(start + 1, min(start + self._longest, len(words)) + 1):
                yield start, end, " ".join(words[start:end])

    def _names_business(self, words: tuple[str, ...], preferred: str | None) -> bool:
        """Whether `words` name the shop's business in the contact's language or English
        (Indonesian "total" says nothing of a German "nervt total")."""
        readable = None if preferred in (None, UNIVERSAL_LOCALE) else {preferred, UNIVERSAL_LOCALE}
        return any(
            readable is None or not readable.isdisjoint(cue.owners)
            for _, _, cue in self._business.find(words)
        )

    def negation(self, text: str) -> str | None:
        """The negated stop word in `text` ("don't stop" (en)), or None: a listed negation, or
        a refusal right before a stop word ("never ever stop", "no paren")."""
        return self._negation(split_words(normalise_text(text)), _sentences(text))

    def _negation(
        self, words: tuple[str, ...], sentences: list[tuple[str, tuple[str, ...]]]
    ) -> str | None:
        for _, _, gram in self._grams(words):
            rule = self._negations.get(gram)
            if rule is not None:
                return f'"{rule.shown}" ({", ".join(rule.owners)})'
        for _, sentence in sentences:
            stops = list(self._stop_cues.find(sentence))
            for _, end, refusal in self._refusals.find(sentence) if stops else ():
                for start, _, stop in stops:
                    if end <= start <= end + _NEGATION_REACH:
                        return f'"{refusal.shown} {stop.shown}" ({", ".join(refusal.owners)})'
        return None

    def _cues(
        self, words: tuple[str, ...], core: tuple[str, ...], context: _Context
    ) -> StopIntent | None:
        """The co-occurrence rules of `flows.stop_cues` over one sentence (`core`: its words
        without the politeness words at either end)."""
        preferred = context.preferred
        stops = list(self._stop_cues.find(words))
        messages = list(self._message_cues.find(words))

        def pair(
            ones: list[_Hit], others: list[_Hit], *, adjacent: bool = False
        ) -> StopIntent | None:
            for one in ones:
                for other in others:
                    if adjacent and not 0 <= other[0] - one[1] <= 1:
                        continue
                    if other[0] < one[1] and one[0] < other[1]:
                        continue  # one word cannot be both ("falsche nummer" + "nummer")
                    if _together(one[2], other[2], preferred):
                        owners = [*one[2].owners, *other[2].owners]
                        shown = ", ".join(dict.fromkeys(owners))
                        return StopIntent(
                            self._locale(owners, preferred),
                            None,
                            f'words "{one[2].shown}" + "{other[2].shown}" ({shown})',
                        )
            return None

        # "stop sending me order updates": a stop word right before the messages says what is
        # to stop, whatever else the message names.
        found = pair(stops, messages, adjacent=context.business)
        if found is not None or context.business:
            return found
        found = (
            pair(stops, list(self._contact_cues.find(words)))
            or pair(list(self._refusals.find(words)), messages)
            or pair(list(self._too_many.find(words)), messages)
        )
        if found is not None:
            return found
        # "udah cukup 2 aja" (two is enough): a number speaks of quantities, not of messages.
        short = (
            list(self._stop_cues.find(core))
            if len(core) <= SHORT_SENTENCE_WORDS and not any(w.isdigit() for w in core)
            else []
        )
        if short:
            # The contact's own language's word, else English, else any.
            cue = min(
                (hit[2] for hit in short),
                key=lambda c: (preferred not in c.owners, UNIVERSAL_LOCALE not in c.owners),
            )
            return StopIntent(
                self._locale(cue.owners, preferred),
                None,
                f'word "{cue.shown}" in a short sentence ({", ".join(cue.owners)})',
            )
        return None

    def _core(self, words: tuple[str, ...]) -> tuple[str, ...]:
        """`words` without politeness words at either end ("stop pls" -> "stop")."""
        changed = True
        while changed and words:
            changed = False
            for n in range(min(self._longest, len(words)), 0, -1):
                if " ".join(words[:n]) in self._fillers:
                    words, changed = words[n:], True
                    break
                if " ".join(words[-n:]) in self._fillers:
                    words, changed = words[:-n], True
                    break
        return words

    def _typo(self, core: str, written: str) -> _Rule | None:
        if core in self._not_typos or written in self._written_not_typos:
            return None
        if any(char.isdigit() for char in core):
            return None  # "udah cukup 2 aja": a number is never a typing error of a word
        squeezed = _squeeze(core)
        best: tuple[int, _Rule] | None = None
        for length in range(len(squeezed) - 2, len(squeezed) + 3):
            for target, rule in self._typos.get(length, ()):
                allowed = _allowed_edits(target)
                if not allowed and target != squeezed:
                    continue
                distance = OSA.distance(squeezed, target, score_cutoff=allowed)
                if distance <= allowed and (best is None or distance < best[0]):
                    best = (distance, rule)
        return best[1] if best is not None else None

    def _sentence(
        self, part: str, words: tuple[str, ...], several: bool, context: _Context
    ) -> StopIntent | None:
        preferred = context.preferred
        core = self._core(words)
        if not core:
            return None
        text = " ".join(core)
        keyword = self._matcher.match(text, preferred_locale=preferred)
        if keyword is not None:
            if keyword.command in _STOP_COMMANDS and (several or core != words):
                return StopIntent(
                    keyword.locale,
                    keyword.category,
                    f'sentence "{text.lower()}" is the keyword {text} ({keyword.locale})',
                )
            return None
        if context.business:
            # "am grünen kein interesse, gibts das auch in blau?", "the courier had the wrong
            # number": beside the shop's business a phrase or a typo is about the business;
            # only a stop word right before the messages still asks (the cue rules).
            return self._cues(words, core, context)
        for _, _, gram in self._grams(words):
            rule = self._phrases.get(gram)
            if rule is not None:
                locale = self._locale(rule.owners, preferred)
                return StopIntent(locale, None, f'phrase "{rule.shown}" ({", ".join(rule.owners)})')
        for start, end, gram in self._grams(core):
            rule = self._short.get(gram)
            if rule is None or end != len(core):
                continue
            if any(start <= self._before.get(code, 3) for code in rule.owners):
                locale = self._locale(rule.owners, preferred)
                return StopIntent(locale, None, f'phrase "{rule.shown}" ({", ".join(rule.owners)})')
        typo = self._typo(text, _written(part))
        if typo is not None:
            locale = self._locale(typo.owners, preferred)
            return StopIntent(locale, None, f"typo of {typo.shown} ({', '.join(typo.owners)})")
        if _written(part) in self._written_not_typos:
            return None  # "arrêté" (stopped) as written, not "arrete" (stop) without accents
        return self._cues(words, core, context)

    def assess(self, text: str, *, preferred_locale: str | None = None) -> StopIntent | None:
        """The unclear wish to stop that `text` expresses, with its reason, or None.

        `text` is a message that is not a keyword (the caller tried `KeywordMatcher.match`).
        """
        bare = _EMOJI_EXTRAS.sub("", text)
        signs = [char for char in bare if char in STOP_EMOJI]
        symbols = [char for char in bare if unicodedata.category(char)[0] in "SC"]
        if signs and _EMOJI_APPROVAL.isdisjoint(symbols):
            # Beside the sign, a few words that are not about the business: "🛑 bitte",
            # "🛑 ab aur nahi bhai", "🛑 chega né".
            words = split_words(normalise_text(bare))
            if len(words) <= _EMOJI_WORDS and not self._names_business(words, preferred_locale):
                return StopIntent(preferred_locale, None, f"stop-sign emoji {signs[0]} on its own")
        sentences = _sentences(text)
        if self._negation(split_words(normalise_text(text)), sentences) is not None:
            return None
        business = any(self._names_business(words, preferred_locale) for _, words in sentences)
        context = _Context(preferred_locale, business)
        intent = (
            None
            if business
            else self._matcher.opt_out_intent(text, preferred_locale=preferred_locale)
        )
        if intent is not None:
            return StopIntent(
                intent.locale,
                intent.category,
                f'phrase "{intent.phrase.lower()}" ({intent.locale})',
            )
        for part, words in sentences:
            found = self._sentence(part, words, len(sentences) > 1, context)
            if found is not None:
                return found
        return None
