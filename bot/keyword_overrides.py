"""The business's own keywords and reply texts, laid over the locale files: parse, check, apply.

A business tunes its words without code, as Twilio's Advanced Opt-Out and the big WhatsApp
providers allow: a TOML file (`KEYWORDS_FILE`, or the same text through `PUT /v1/keywords`)
adds or removes opt-out, opt-in and help words per locale and replaces any reply text:

    [en.opt_out]
    add = ["ENOUGH"]
    remove = ["STOP IT"]

    [es.replies]
    stop_all_confirmation = "{business}: no recibirás más mensajes. Para volver, responde ALTA."

The overlay is checked against the locale files it changes, with the locale files' own rules
(`bot.locales`), because a mistake here reaches customers as surely as one there: a reply keeps
exactly its placeholders, so it still names the business; a reply that told the customer how to
stop or how to come back (STOP, START, ALTA...) still names a word that does it; titles fit
WhatsApp's limits; a word keeps one meaning in every locale (never opt-out and opt-in at once);
and none of the words US carriers and the FCC treat as opt-outs (`CARRIER_OPT_OUT_WORDS`) can be
removed. Every refusal names the line of the TOML text and why, all of them at once.

Everything here is pure (no I/O): `bot.keywords_store` stores versions, `bot.live_language`
swaps them into running workers. A version is the canonical overlay's SHA-256 (`digest`) plus
the store's increasing number; `version_label` is what the ledger's evidence records.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from bot.locales import LocaleError, check_limits, keyword_key, template_placeholders
from bot.toml_lines import NoLines, TomlLines
from flows.keywords import UNIVERSAL_LOCALE, KeywordMatcher
from flows.locale_catalog import REQUIRED_MESSAGES, LocaleCatalog

__all__ = [
    "CARRIER_OPT_OUT_WORDS",
    "EMPTY",
    "OVERLAY_KINDS",
    "KeywordOverlay",
    "LocaleOverlay",
    "OverlayRefused",
    "Problem",
    "WordChange",
    "apply_overlay",
    "check_overlay",
    "overlay_from_data",
    "parse_overlay",
    "render_toml",
    "version_label",
]

#: Sections of a locale's overlay that change words -> the locale file's keyword kind.
OVERLAY_KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {"opt_out": "stop_all", "opt_in": "start_all", "help": "help"}
)
_WORD_NAMES: Final = {"opt_out": "opt-out", "opt_in": "opt-in", "help": "help"}
REPLIES: Final = "replies"
_CHANGES: Final = ("add", "remove")

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


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """Why (part of) an overlay is refused: the line of its TOML text (None for JSON), the
    dotted key and the reason."""

    line: int | None
    key: str
    reason: str

    def describe(self, source: str = "") -> str:
        """`source:line: key: reason` (`line N: …` without a source)."""
        if self.line is None:
            where = source
        else:
            where = f"{source}:{self.line}" if source else f"line {self.line}"
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.key}: {self.reason}" if self.key else f"{prefix}{self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "key": self.key, "reason": self.reason}


class OverlayRefused(ValueError):
    """An overlay that cannot be used; `problems` says every reason, with its line."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.line or 0, p.key, p.reason)))
        self.source = source
        super().__init__("; ".join(p.describe(source) for p in self.problems))


@dataclass(frozen=True, slots=True)
class WordChange:
    """Words added to and removed from one keyword list, as written."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LocaleOverlay:
    """One locale's changes: words per `OVERLAY_KINDS` section, replies by message key."""

    words: Mapping[str, WordChange] = field(default_factory=dict)
    replies: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeywordOverlay:
    """The business's changes to the locale files, by locale code."""

    locales: Mapping[str, LocaleOverlay] = field(default_factory=dict)

    def canonical(self) -> dict[str, Any]:
        """The overlay as plain data in one order (sorted keys, words sorted, empty parts left
        out): two texts that change the same things have the same canonical form."""
        data: dict[str, Any] = {}
        for code in sorted(self.locales):
            overlay = self.locales[code]
            entry: dict[str, Any] = {}
            for kind in sorted(overlay.words):
                change = overlay.words[kind]
                parts = {
                    name: sorted(words)
                    for name, words in (("add", change.add), ("remove", change.remove))
                    if words
                }
                if parts:
                    entry[kind] = parts
            if overlay.replies:
                entry[REPLIES] = dict(sorted(overlay.replies.items()))
            if entry:
                data[code] = entry
        return data

    def digest(self) -> str:
        """SHA-256 of the canonical form, hex: the content part of a version."""
        text = json.dumps(
            self.canonical(), ensure_ascii=False, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def empty(self) -> bool:
        return not self.canonical()


EMPTY: Final = KeywordOverlay()


def version_label(number: int, digest: str) -> str:
    """The version recorded as `keywords_version` in the ledger's evidence: `<number>-<hash>`
    (12 hex digits of the digest); `0-…` is the locale files alone."""
    return f"{number}-{digest[:12]}"


def _line(locator: TomlLines, path: Sequence[str], value: str | None = None) -> int | None:
    return None if isinstance(locator, NoLines) else locator.line(path, value)


# -- parsing ------------------------------------------------------------------------------------

_SYNTAX_LINE: Final = re.compile(r"at line (\d+)")


def parse_overlay(text: str, known_locales: Iterable[str]) -> tuple[KeywordOverlay, TomlLines]:
    """The overlay of a TOML text and where its keys are; `OverlayRefused` for a text that is
    not TOML or not shaped like an overlay (semantic checks: `check_overlay`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _SYNTAX_LINE.search(str(exc))
        line = int(found.group(1)) if found else 1
        raise OverlayRefused([Problem(line, "", f"not valid TOML: {exc}")]) from None
    locator = TomlLines(text)
    return _structure(data, known_locales, locator), locator


def overlay_from_data(data: object, known_locales: Iterable[str]) -> KeywordOverlay:
    """The overlay of JSON-shaped data (`PUT /v1/keywords` with a JSON body)."""
    return _structure(data, known_locales, NoLines())


def _strings(
    value: object, path: tuple[str, ...], locator: TomlLines, problems: list[Problem]
) -> tuple[str, ...]:
    where = ".".join(path)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append(Problem(_line(locator, path), where, "expected a list of strings"))
        return ()
    seen: dict[str, str] = {}
    words: list[str] = []
    for item in value:
        normal = keyword_key(item)
        if not normal:
            problems.append(
                Problem(_line(locator, path, item), where, f"{item!r} is empty once normalised")
            )
        elif normal in seen:
            problems.append(
                Problem(
                    _line(locator, path, item),
                    where,
                    f"{item!r} is listed twice (as {seen[normal]!r})",
                )
            )
        else:
            seen[normal] = item
            words.append(item)
    return tuple(words)


def _structure(data: object, known_locales: Iterable[str], locator: TomlLines) -> KeywordOverlay:
    known = sorted(known_locales)
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise OverlayRefused([Problem(None, "", "expected a table of locales")])
    locales: dict[str, LocaleOverlay] = {}
    for code, table in data.items():
        if code not in known:
            problems.append(
                Problem(
                    _line(locator, (code,)),
                    code,
                    f"no such locale (known: {', '.join(known)})",
                )
            )
            continue
        if not isinstance(table, dict):
            problems.append(Problem(_line(locator, (code,)), code, "expected a table"))
            continue
        words: dict[str, WordChange] = {}
        replies: dict[str, str] = {}
        for section, body in table.items():
            path = (code, section)
            where = ".".join(path)
            if section == REPLIES:
                if not isinstance(body, dict):
                    problems.append(Problem(_line(locator, path), where, "expected a table"))
                    continue
                for key, text in body.items():
                    if not isinstance(text, str) or not text.strip():
                        problems.append(
                            Problem(
                                _line(locator, (*path, key)),
                                f"{where}.{key}",
                                "expected a non-empty string",
                            )
                        )
                    else:
                        replies[key] = text
                continue
            if section not in OVERLAY_KINDS:
                expected = ", ".join((*OVERLAY_KINDS, REPLIES))
                problems.append(
                    Problem(_line(locator, path), where, f"unknown section (expected {expected})")
                )
                continue
            if not isinstance(body, dict):
                problems.append(Problem(_line(locator, path), where, "expected a table"))
                continue
            for name in body:
                if name not in _CHANGES:
                    problems.append(
                        Problem(
                            _line(locator, (*path, name)),
                            f"{where}.{name}",
                            "unknown key (expected add, remove)",
                        )
                    )
            add = _strings(body.get("add", []), (*path, "add"), locator, problems)
            remove = _strings(body.get("remove", []), (*path, "remove"), locator, problems)
            both = {keyword_key(w) for w in add} & {keyword_key(w) for w in remove}
            for word in remove:
                if keyword_key(word) in both:
                    problems.append(
                        Problem(
                            _line(locator, (*path, "remove"), word),
                            f"{where}.remove",
                            f"{word!r} is both added and removed",
                        )
                    )
            words[section] = WordChange(add, remove)
        locales[code] = LocaleOverlay(MappingProxyType(words), MappingProxyType(replies))
    if problems:
        raise OverlayRefused(problems)
    return KeywordOverlay(MappingProxyType(locales))


# -- checking and applying ------------------------------------------------------------------------


def apply_overlay(
    overlay: KeywordOverlay, base: Mapping[str, LocaleCatalog]
) -> dict[str, LocaleCatalog]:
    """New catalogs: `base` with the overlay's words added and removed and replies replaced.
    Assumes a checked overlay (`check_overlay`); the base catalogs are not changed."""
    catalogs = dict(base)
    for code, changes in overlay.locales.items():
        catalog = base[code]
        keywords = dict(catalog.keywords)
        for section, change in changes.words.items():
            kind = OVERLAY_KINDS[section]
            removed = {keyword_key(word) for word in change.remove}
            kept = [word for word in keywords[kind] if keyword_key(word) not in removed]
            present = {keyword_key(word) for word in kept}
            kept.extend(word for word in change.add if keyword_key(word) not in present)
            keywords[kind] = tuple(kept)
        messages = {**catalog.messages, **changes.replies}
        catalogs[code] = replace(
            catalog,
            keywords=MappingProxyType(keywords),
            messages=MappingProxyType(messages),
        )
    return catalogs


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
                problems.append(Problem(_line(locator, path), ".".join(path), exc.problem))
    if not problems:
        try:
            KeywordMatcher(applied, categories)
        except ValueError as exc:
            problems.append(Problem(_line(locator, ()), "", str(exc)))
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
            line = _line(locator, path, word)
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
                    _line(locator, path),
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
                            _line(locator, path, word),
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
        line = _line(locator, path)
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
                        _line(locator, path),
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
                        _line(locator, path, word),
                        ".".join(path),
                        f"{word!r} is {what} the reply {key!r} of locale {code!r} names; "
                        f"replace that reply in [{code}.replies] too",
                    )
    return Problem(_line(locator, (code,)), code, f"the reply {key!r} no longer names {what}")


# -- writing ------------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    # JSON's string escapes are all valid in a TOML basic string.
    return json.dumps(text, ensure_ascii=False)


def render_toml(overlay: KeywordOverlay) -> str:
    """The overlay as a TOML text (how a JSON overlay is kept and shown)."""
    lines: list[str] = []
    for code, entry in overlay.canonical().items():
        for section, body in entry.items():
            lines.append(f"[{code}.{section}]")
            for key, value in body.items():
                if isinstance(value, list):
                    words = ", ".join(_toml_string(word) for word in value)
                    lines.append(f"{key} = [{words}]")
                else:
                    lines.append(f"{key} = {_toml_string(value)}")
            lines.append("")
    return "\n".join(lines)
