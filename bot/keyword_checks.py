"""The rules an overlay of keywords and replies must keep (`bot.keyword_overrides`), with the
locale files' own checks (`bot.locales`): a mistake here reaches customers as surely as one
there.

- A reply keeps exactly the locale file's placeholders, so it still names the business.
- A reply that told the customer how to stop or how to come back (STOP, START, ALTA...) still
  names a word that does it, after its text changed or after a word it named was removed
  (English words work in every locale, so removing one is checked against every locale).
- Titles fit WhatsApp's limits.
- A word keeps one meaning in every locale: never opt-out and opt-in at once.
- None of the words US carriers and the FCC treat as opt-outs (`CARRIER_OPT_OUT_WORDS`) is
  removed, a removed word is in the list, and no list is emptied.

Every problem comes with its line (`Problem`), all of them at once.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from bot.keyword_overrides import (
    OVERLAY_KINDS,
    REPLIES,
    KeywordOverlay,
    LocaleOverlay,
    Problem,
    apply_overlay,
    line_of,
)
from bot.locales import LocaleError, check_limits, keyword_key, template_placeholders
from bot.toml_lines import NoLines, TomlLines
from flows.keywords import UNIVERSAL_LOCALE, KeywordMatcher
from flows.locale_catalog import REQUIRED_MESSAGES, LocaleCatalog

__all__ = ["CARRIER_OPT_OUT_WORDS", "check_overlay"]

_WORD_NAMES: Final = {"opt_out": "opt-out", "opt_in": "opt-in", "help": "help"}
CARRIER_OPT_OUT_WORDS: Final = frozenset(
    keyword_key(word)
    for word in ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPT OUT")
)
"""The words US carriers and the FCC treat as opt-outs: an overlay may never remove them."""

#: Keyword families, as the locale loader counts them: one meaning per word in every locale.
_FAMILY: Final = {
    "stop_all": "stop",
    "stop_one": "stop",
    "start_all": "start",
    "start_one": "start",
}
_FAMILY_NAMES: Final = {
    "stop": "opt-out",
    "start": "opt-in",
    "yes": "yes",
    "no": "no",
    "help": "help",
    "preferences": "preferences",
}
#: What a reply may tell the customer to type: how to stop, how to come back.
_WAY_FAMILIES: Final = {"stop": "how to stop", "start": "the way back"}


def _letter(char: str) -> bool:
    return unicodedata.category(char)[0] in "LMN"


def _names(text: str, word: str) -> bool:
    """`word` is written in `text` as a word of its own (not inside a longer word), as the
    locale file writes it (upper case where the script has cases)."""
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or not _letter(text[start - 1])) and (
            end == len(text) or not _letter(text[end])
        ):
            return True
        start = text.find(word, start + 1)
    return False


_CATEGORY_KEYWORD: Final = "{category_keyword}"


def _ways(text: str, catalogs: Mapping[str, LocaleCatalog], code: str, family: str) -> set[str]:
    """The words of `family` ("stop" or "start") that `text` tells a customer of locale `code`
    to type and that work: a whole-message keyword (`stop_all`, `start_all`) named anywhere, or
    a category verb (`stop_one`, `start_one`) named just before `{category_keyword}`. The
    locale's own words and the universal (English) ones count."""
    found: set[str] = set()
    for owner in {code, UNIVERSAL_LOCALE}:
        catalog = catalogs.get(owner)
        if catalog is None:
            continue
        found.update(w for w in catalog.keywords[f"{family}_all"] if _names(text, w))
        found.update(
            w for w in catalog.keywords[f"{family}_one"] if f"{w} {_CATEGORY_KEYWORD}" in text
        )
    return found


def check_overlay(
    overlay: KeywordOverlay,
    base: Mapping[str, LocaleCatalog],
    locator: TomlLines | None = None,
    categories: Sequence[str] = (),
) -> list[Problem]:
    """Every reason `overlay` cannot be laid over `base`, each with its line (see the module
    docstring for the rules). Empty: it can."""
    locator = locator or NoLines()
    problems: list[Problem] = []
    for code, changes in overlay.locales.items():
        problems.extend(_check_words(code, changes, base[code], locator))
        problems.extend(_check_templates(code, changes, locator))
    if problems:
        return problems
    applied = apply_overlay(overlay, base)
    problems.extend(_check_meanings(overlay, applied, locator))
    # English words work in every locale: removing one can break any locale's replies.
    touched = set(base) if UNIVERSAL_LOCALE in overlay.locales else set(overlay.locales)
    for code in sorted(touched):
        problems.extend(_check_ways(code, overlay, base, applied, locator))
    if not problems:
        for code in overlay.locales:
            try:
                check_limits(Path(f"{code}.replies"), applied[code])
            except LocaleError as exc:
                path = (code, REPLIES, exc.key.removeprefix("messages."))
                problems.append(Problem(line_of(locator, path), ".".join(path), exc.problem))
    if not problems:
        try:
            KeywordMatcher(applied, categories)
        except ValueError as exc:
            problems.append(Problem(line_of(locator, ()), "", str(exc)))
    return problems


def _check_words(
    code: str, changes: LocaleOverlay, catalog: LocaleCatalog, locator: TomlLines
) -> list[Problem]:
    problems: list[Problem] = []
    for section, change in changes.words.items():
        kind = OVERLAY_KINDS[section]
        path = (code, section, "remove")
        where = ".".join(path)
        listed = {keyword_key(word) for word in catalog.keywords[kind]}
        for word in change.remove:
            normal = keyword_key(word)
            line = line_of(locator, path, word)
            if normal in CARRIER_OPT_OUT_WORDS and section == "opt_out":
                problems.append(
                    Problem(
                        line,
                        where,
                        f"{word!r} is one of the words US carriers and the FCC treat as "
                        f"opt-outs (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, "
                        f"OPT OUT); it cannot be removed",
                    )
                )
            elif normal not in listed:
                problems.append(
                    Problem(
                        line,
                        where,
                        f"{word!r} is not a {_WORD_NAMES[section]} word of locale {code!r} "
                        f"(locales/{code}.toml, keywords.{kind})",
                    )
                )
        added = {keyword_key(word) for word in change.add}
        left = listed - {keyword_key(word) for word in change.remove}
        if not left and not added:
            problems.append(
                Problem(
                    line_of(locator, path),
                    where,
                    f"removes every {_WORD_NAMES[section]} word of locale {code!r}; keep one",
                )
            )
    return problems


def _check_meanings(
    overlay: KeywordOverlay, applied: Mapping[str, LocaleCatalog], locator: TomlLines
) -> list[Problem]:
    """An added word must not already mean something else in any locale (nor be added with
    two meanings): a word keeps one meaning everywhere, as in the locale files."""
    meanings: dict[str, set[tuple[str, str]]] = {}
    for code, catalog in applied.items():
        for kind, words in catalog.keywords.items():
            family = _FAMILY.get(kind, kind)
            for word in words:
                meanings.setdefault(keyword_key(word), set()).add((family, code))
    problems: list[Problem] = []
    for code, changes in overlay.locales.items():
        for section, change in changes.words.items():
            own = _FAMILY.get(OVERLAY_KINDS[section], OVERLAY_KINDS[section])
            path = (code, section, "add")
            for word in change.add:
                others = sorted(
                    (family, owner)
                    for family, owner in meanings.get(keyword_key(word), set())
                    if family != own
                )
                if others:
                    family, owner = others[0]
                    problems.append(
                        Problem(
                            line_of(locator, path, word),
                            ".".join(path),
                            f"{word!r} is already a {_FAMILY_NAMES[family]} word of locale "
                            f"{owner!r}; a word keeps one meaning in every locale",
                        )
                    )
    return problems


def _check_templates(code: str, changes: LocaleOverlay, locator: TomlLines) -> list[Problem]:
    """Each reply is a known message key with exactly the locale file's placeholders."""
    problems: list[Problem] = []
    for key, text in changes.replies.items():
        path = (code, REPLIES, key)
        where = ".".join(path)
        line = line_of(locator, path)
        required = REQUIRED_MESSAGES.get(key)
        if required is None:
            problems.append(Problem(line, where, "no such reply (see locales/en.toml)"))
            continue
        try:
            used = template_placeholders(Path(f"{code}.replies"), key, text)
        except LocaleError as exc:
            problems.append(Problem(line, where, exc.problem))
            continue
        if "business" in required and "business" not in used:
            problems.append(
                Problem(line, where, "no longer names the business: {business} is missing")
            )
            continue
        missing, extra = sorted(required - used), sorted(used - required)
        if missing:
            problems.append(Problem(line, where, f"missing placeholder {{{missing[0]}}}"))
        elif extra:
            problems.append(Problem(line, where, f"unknown placeholder {{{extra[0]}}}"))
    return problems


def _check_ways(
    code: str,
    overlay: KeywordOverlay,
    base: Mapping[str, LocaleCatalog],
    applied: Mapping[str, LocaleCatalog],
    locator: TomlLines,
) -> list[Problem]:
    """A reply that told the customer how to stop or how to come back still names a word
    that does it: after its text changed, or after a word it names was removed."""
    changes = overlay.locales.get(code, LocaleOverlay())
    problems: list[Problem] = []
    for key in REQUIRED_MESSAGES:
        before, after = base[code].messages[key], applied[code].messages[key]
        for family, what in _WAY_FAMILIES.items():
            named = _ways(before, base, code, family)
            if not named or _ways(after, applied, code, family):
                continue
            if key in changes.replies:
                path = (code, REPLIES, key)
                problems.append(
                    Problem(
                        line_of(locator, path),
                        ".".join(path),
                        f"no longer names {what} (the locale file's text names "
                        f"{', '.join(sorted(named))}); name one of the "
                        f"{_FAMILY_NAMES[family]} words of locale {code!r}",
                    )
                )
            else:
                problems.append(_removed_way(code, key, before, what, overlay, locator))
    return problems


def _removed_way(
    code: str,
    key: str,
    text: str,
    what: str,
    overlay: KeywordOverlay,
    locator: TomlLines,
) -> Problem:
    """The refusal of a removal that leaves a reply of locale `code` naming no working word."""
    for owner in (code, UNIVERSAL_LOCALE):
        changes = overlay.locales.get(owner, LocaleOverlay())
        for section, change in changes.words.items():
            for word in change.remove:
                if _names(text, word):
                    path = (owner, section, "remove")
                    return Problem(
                        line_of(locator, path, word),
                        ".".join(path),
                        f"{word!r} is {what} the reply {key!r} of locale {code!r} names; "
                        f"replace that reply in [{code}.replies] too",
                    )
    return Problem(line_of(locator, (code,)), code, f"the reply {key!r} no longer names {what}")
