"""Keyword commands and unclear opt-out intent, recognised in every configured language.

Keywords (STOP, START, YES, ...) are matched on the WHOLE message after `normalise_text`, never
on a substring: "I want to cancel my order" is not an opt-out. The only two-part keywords are a
category verb with a category word, in either order ("STOP PROMOTIONS", "BAJA OFERTAS",
"प्रचार बंद करें"), where the category word is an alias from a locale file, a locale's display
name, an extra alias of a custom category, or the category identifier itself ("MARKETING",
"ORDER UPDATES", "ORDER_UPDATES"). A verb with an unknown word ("STOP PROMOTINS") is NOT a
keyword: opting someone out of everything because of a typo in a category is worse than asking,
so such a message falls through to `opt_out_intent`, which reports it and the flow asks.

Languages: each locale owns its words; the English words (`UNIVERSAL_LOCALE`) and the category
identifiers work in every locale, because people everywhere type STOP. A match reports every
locale in which the message is a valid keyword (`candidates`), best first: locales where more
parts of the message are valid, then locales that list those words themselves, then the order of
the catalogs given. `locale` is the contact's current locale when it is a candidate (a Spanish
speaker typing STOP keeps Spanish), else the first candidate.

A word must mean the same command in every locale (the loader checks it), so the command never
depends on the language; only the language of the reply does.

Disguises: a message that is no keyword as written is tried again as it reads on screen
(`flows.disguise.unmask`: no invisible characters, look-alike Cyrillic, Greek and small-capital
letters as Latin), and a word spelled letter by letter ("S T O P", "S.T.O.P") counts only when it
spells an opt-out word (`stop_all`): "S I" or "O K" are never YES.

Everything is precomputed into dictionaries at construction: matching runs on every inbound
message and costs a few dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from flows.disguise import spelled_out, unmask
from flows.locale_catalog import LocaleCatalog
from flows.text import normalise_text, split_words

__all__ = [
    "KEYWORD_COMMANDS",
    "UNIVERSAL_LOCALE",
    "Command",
    "IntentMatch",
    "KeywordMatch",
    "KeywordMatcher",
]

UNIVERSAL_LOCALE = "en"
"""The locale whose keywords, aliases and phrases are understood in every locale."""


class Command(Enum):
    """What a keyword asks for."""

    STOP_ALL = "stop_all"
    STOP_CATEGORY = "stop_category"
    START_ALL = "start_all"
    START_CATEGORY = "start_category"
    YES = "yes"
    NO = "no"
    HELP = "help"
    PREFERENCES = "preferences"


KEYWORD_COMMANDS: Mapping[str, Command] = MappingProxyType(
    {
        "stop_all": Command.STOP_ALL,
        "stop_one": Command.STOP_CATEGORY,
        "start_all": Command.START_ALL,
        "start_one": Command.START_CATEGORY,
        "yes": Command.YES,
        "no": Command.NO,
        "help": Command.HELP,
        "preferences": Command.PREFERENCES,
    }
)
"""Keyword kind of a locale file -> the command it gives."""

_VERB_KINDS = frozenset({"stop_one", "start_one"})
#: Commands whose English words every locale's messages tell the customer to type ("responde
#: ALTA o START"): typed by a contact of another language, they keep that language.
_UNIVERSAL_COMMANDS = frozenset(
    {Command.STOP_ALL, Command.STOP_CATEGORY, Command.START_ALL, Command.START_CATEGORY}
)


@dataclass(frozen=True, slots=True)
class KeywordMatch:
    """A recognised keyword: the command, its category (category commands only), the locale
    to answer in and every locale in which the message is a valid keyword, best first."""

    command: Command
    category: str | None
    locale: str
    candidates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IntentMatch:
    """A message that asks to stop receiving messages without being a keyword: the locale of
    the phrase, the category it names if it names exactly one, and the words that matched."""

    locale: str
    category: str | None
    phrase: str = field(default="", compare=False)


@dataclass(slots=True)
class _Word:
    """One normalised word or phrase: what it means and which locales own it."""

    meaning: Command | str
    owners: set[str]
    universal: bool = False
    priority: int = 0


def _key(text: str) -> str:
    return " ".join(split_words(normalise_text(text)))


def _add(table: dict[str, _Word], key: str, word: _Word, what: str) -> None:
    """Record `word` under `key`; the same meaning merges, a different one is refused unless
    one of the two has a stronger (lower) priority."""
    if not key:
        return
    known = table.get(key)
    if known is None:
        table[key] = _Word(word.meaning, set(word.owners), word.universal, word.priority)
    elif known.meaning == word.meaning:
        known.owners |= word.owners
        known.universal = known.universal or word.universal
        known.priority = min(known.priority, word.priority)
    elif word.priority < known.priority:
        table[key] = _Word(word.meaning, set(word.owners), word.universal, word.priority)
    elif word.priority == known.priority:
        raise ValueError(f"{what} {key!r} means both {known.meaning} and {word.meaning}")


class KeywordMatcher:
    """Recognises keywords and opt-out intent for a set of locales and message categories.

    `categories` are the category identifiers in use; aliases of other categories are ignored.
    `extra_aliases` adds words for (custom) categories per locale: locale -> category -> words;
    they win over a locale file's alias for another category, and category identifiers win over
    both. Raises ValueError at construction for contradictory data (a word meaning two things).
    """

    def __init__(
        self,
        catalogs: Mapping[str, LocaleCatalog],
        categories: Sequence[str],
        extra_aliases: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    ) -> None:
        self._order = tuple(catalogs)
        known_categories = frozenset(categories)
        self._whole: dict[str, _Word] = {}
        self._verbs: dict[str, _Word] = {}
        self._aliases: dict[str, _Word] = {}
        self._phrases: dict[str, _Word] = {}
        for code, catalog in catalogs.items():
            self._add_keywords(code, catalog)
        for category in categories:
            for form in (category, category.replace("_", " ")):
                _add(self._aliases, _key(form), _Word(category, set(), True, 0), "category word")
        for code, by_category in (extra_aliases or {}).items():
            if code not in catalogs:
                raise ValueError(f"extra aliases for unknown locale {code!r}")
            for category, words in by_category.items():
                if category not in known_categories:
                    raise ValueError(f"extra aliases for unknown category {category!r}")
                self._add_aliases(code, category, words, priority=1)
        for code, catalog in catalogs.items():
            for category, text in catalog.categories.items():
                if category in known_categories:
                    self._add_aliases(code, category, (text.display, *text.aliases), priority=2)
        for code, catalog in catalogs.items():
            self._add_phrases(code, catalog, catalogs.get(UNIVERSAL_LOCALE))
        self._stop_verbs = {
            key: word for key, word in self._verbs.items() if word.meaning is Command.STOP_CATEGORY
        }
        self._max_verb = max((len(k.split(" ")) for k in self._verbs), default=0)
        self._max_alias = max((len(k.split(" ")) for k in self._aliases), default=0)
        self._max_phrase = max(
            (len(k.split(" ")) for k in (*self._phrases, *self._aliases)), default=0
        )
        self._ranked = {key: self._rank([word]) for key, word in self._whole.items()}

    # construction -------------------------------------------------------------------------

    def _owned(self, code: str, meaning: Command | str, priority: int = 0) -> _Word:
        return _Word(meaning, {code}, code == UNIVERSAL_LOCALE, priority)

    def _add_keywords(self, code: str, catalog: LocaleCatalog) -> None:
        for kind, words in catalog.keywords.items():
            command = KEYWORD_COMMANDS.get(kind)
            if command is None:
                raise ValueError(f"locale {code!r}: unknown keyword kind {kind!r}")
            table = self._verbs if kind in _VERB_KINDS else self._whole
            for word in words:
                normalised = normalise_text(word)
                entry = self._owned(code, command)
                _add(table, normalised, entry, "keyword")
                _add(table, " ".join(split_words(normalised)), entry, "keyword")

    def _add_aliases(self, code: str, category: str, words: Iterable[str], priority: int) -> None:
        for word in words:
            _add(self._aliases, _key(word), self._owned(code, category, priority), "alias")

    def _add_phrases(
        self, code: str, catalog: LocaleCatalog, universal: LocaleCatalog | None
    ) -> None:
        """Expand `{messages}` with the message words and category words valid in `code`."""
        fillers = {
            key for key, word in self._aliases.items() if word.universal or code in word.owners
        }
        fillers.update(catalog.message_words)
        if universal is not None:
            fillers.update(universal.message_words)
        for phrase in catalog.opt_out_phrases:
            expanded = (
                [phrase.replace("{messages}", filler) for filler in fillers]
                if "{messages}" in phrase
                else [phrase]
            )
            for text in expanded:
                _add(self._phrases, _key(text), self._owned(code, "opt_out"), "phrase")

    # matching -----------------------------------------------------------------------------

    def _rank(self, parts: Sequence[_Word]) -> tuple[str, ...]:
        """Locales where the most parts are valid; those owning more parts first, then order."""
        scored: list[tuple[int, int, int, str]] = []
        for index, code in enumerate(self._order):
            valid = sum(1 for part in parts if part.universal or code in part.owners)
            if valid:
                owned = sum(1 for part in parts if code in part.owners)
                scored.append((-valid, -owned, index, code))
        if not scored:
            return ()
        best = min(score[0] for score in scored)
        return tuple(score[3] for score in sorted(scored) if score[0] == best)

    @staticmethod
    def _choose(candidates: tuple[str, ...], preferred: str | None) -> str:
        if preferred is not None and preferred in candidates:
            return preferred
        return candidates[0]

    def _keyword_locale(
        self,
        command: Command,
        parts: Sequence[_Word],
        candidates: tuple[str, ...],
        preferred: str | None,
        fallback: str | None,
    ) -> str:
        """The language to answer a keyword in (and to record as the contact's).

        The contact's language when it owns the words (else, for a contact whose language is
        not known yet, the business's default when it owns them: "MENU"); STOP and START, which
        every locale's messages name, keep that language too. Otherwise the words' language
        when exactly one locale owns them: an English HELP after BAJA is answered in English.
        A word several languages share that is not the contact's own ("SI" from an English
        contact) does not switch a contact whose language is known.
        """
        owned = {code: sum(1 for p in parts if code in p.owners) for code in candidates}
        most = max(owned.values(), default=0)
        top = [code for code in candidates if most and owned[code] == most]
        current = preferred or fallback
        if current is not None and current in top:
            return current
        if current is not None and command in _UNIVERSAL_COMMANDS and current in candidates:
            return current
        if len(top) == 1:
            return top[0]
        if preferred is not None and preferred in self._order:
            return preferred
        return top[0] if top else candidates[0]

    def _category_command(self, words: tuple[str, ...]) -> tuple[_Word, _Word] | None:
        """(verb, alias) when `words` is a category verb and a category word, in either order."""
        if len(words) < 2 or len(words) > self._max_verb + self._max_alias:
            return None
        for split in range(1, len(words)):
            head, tail = " ".join(words[:split]), " ".join(words[split:])
            verb, alias = self._verbs.get(head), self._aliases.get(tail)
            if verb is not None and alias is not None:
                return verb, alias
            verb, alias = self._verbs.get(tail), self._aliases.get(head)
            if verb is not None and alias is not None:
                return verb, alias
        return None

    def _keyword(
        self,
        normalised: str,
        words: tuple[str, ...],
        preferred: str | None,
        fallback: str | None = None,
    ) -> KeywordMatch | None:
        for key in (normalised, " ".join(words)):
            word = self._whole.get(key)
            if word is not None and isinstance(word.meaning, Command) and self._ranked[key]:
                candidates = self._ranked[key]
                locale = self._keyword_locale(word.meaning, [word], candidates, preferred, fallback)
                return KeywordMatch(word.meaning, None, locale, candidates)
        found = self._category_command(words)
        if found is None:
            return None
        verb, alias = found
        candidates = self._rank([verb, alias])
        if not candidates or not isinstance(verb.meaning, Command):
            return None
        locale = self._keyword_locale(verb.meaning, [verb, alias], candidates, preferred, fallback)
        return KeywordMatch(verb.meaning, str(alias.meaning), locale, candidates)

    def match(
        self,
        text: str,
        *,
        preferred_locale: str | None = None,
        fallback_locale: str | None = None,
    ) -> KeywordMatch | None:
        """The keyword command `text` is, or None when the whole message is not a keyword.

        `preferred_locale` is the contact's known language, `fallback_locale` the business's
        default for a contact whose language is not known yet (see `_keyword_locale`).

        The text as written first, then as it reads on screen (see the module docstring).
        """
        normalised = normalise_text(text)
        if normalised:
            words = split_words(normalised)
            found = self._keyword(normalised, words, preferred_locale, fallback_locale)
            if found is not None:
                return found
        return self._disguised(text, normalised, preferred_locale, fallback_locale)

    def _disguised(
        self, text: str, normalised: str, preferred: str | None, fallback: str | None
    ) -> KeywordMatch | None:
        """A keyword hidden by invisible or look-alike characters, or an opt-out word spelled
        letter by letter."""
        unmasked = normalise_text(unmask(text))
        if not unmasked:
            return None
        words = split_words(unmasked)
        if unmasked != normalised:
            found = self._keyword(unmasked, words, preferred, fallback)
            if found is not None:
                return found
        spelled = spelled_out(words)
        if spelled is None:
            return None
        word = self._whole.get(spelled)
        if word is None or word.meaning is not Command.STOP_ALL:
            return None
        candidates = self._ranked[spelled]
        if not candidates:
            return None
        return KeywordMatch(Command.STOP_ALL, None, self._choose(candidates, preferred), candidates)

    def opt_out_intent(
        self, text: str, *, preferred_locale: str | None = None
    ) -> IntentMatch | None:
        """An unclear wish to stop receiving messages, or None.

        Detected when the normalised message contains a locale's opt-out phrase at word
        boundaries, or when it is a stop verb followed by exactly one word that is not a category
        ("STOP PROMOTINS"). The category is reported when the message names exactly one. A
        message that is a keyword (see `match`) is never an intent: it is already clear. Like
        `match`, a message with no intent as written is read again as it reads on screen.
        """
        if self.match(text) is not None:
            return None
        normalised = normalise_text(text)
        found = self._intent(split_words(normalised), preferred_locale)
        if found is None:
            unmasked = normalise_text(unmask(text))
            if unmasked != normalised:
                found = self._intent(split_words(unmasked), preferred_locale)
        return found

    def _intent(self, words: tuple[str, ...], preferred_locale: str | None) -> IntentMatch | None:
        if not words:
            return None
        matched: list[_Word] = []
        first = ""
        categories: set[str] = set()
        for start in range(len(words)):
            for end in range(start + 1, min(start + self._max_phrase, len(words)) + 1):
                key = " ".join(words[start:end])
                phrase = self._phrases.get(key)
                if phrase is not None:
                    matched.append(phrase)
                    first = first or key
                alias = self._aliases.get(key)
                if alias is not None:
                    categories.add(str(alias.meaning))
        if not matched and len(words) >= 2:
            verb = self._stop_verbs.get(" ".join(words[:-1]))
            if verb is not None:
                matched.append(verb)
                first = " ".join(words)
        if not matched:
            return None
        candidates = self._rank(matched)
        if not candidates:
            return None
        category = next(iter(categories)) if len(categories) == 1 else None
        return IntentMatch(self._choose(candidates, preferred_locale), category, first)
