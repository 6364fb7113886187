"""The business's own keywords and reply texts, laid over the locale files: parse and apply.

A business tunes its words without code, as Twilio's Advanced Opt-Out and the big WhatsApp
providers allow: a TOML file (`KEYWORDS_FILE`, or the same text through `PUT /v1/keywords`)
adds or removes opt-out, opt-in and help words per locale and replaces any reply text:

    [en.opt_out]
    add = ["ENOUGH"]
    remove = ["STOP IT"]

    [es.replies]
    stop_all_confirmation = "{business}: no recibirás más mensajes. Para volver, responde ALTA."

The overlay is checked (`bot.keyword_checks.check_overlay`) against the locale files it
changes, with their own rules, and every refusal names the line of the TOML text and why, all
of them at once; this module parses, applies and renders it.

Everything here is pure (no I/O): `bot.keywords_store` stores versions, `bot.live_language`
swaps them into running workers. A version is the canonical overlay's SHA-256 (`digest`) plus
the store's increasing number; `version_label` is what the ledger's evidence records.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from bot.locales import keyword_key
from bot.toml_lines import NoLines, TomlLines
from flows.locale_catalog import LocaleCatalog

__all__ = [
    "EMPTY",
    "OVERLAY_KINDS",
    "KeywordOverlay",
    "LocaleOverlay",
    "OverlayRefused",
    "Problem",
    "WordChange",
    "apply_overlay",
    "line_of",
    "overlay_from_data",
    "parse_overlay",
    "render_toml",
    "version_label",
]

#: Sections of a locale's overlay that change words -> the locale file's keyword kind.
OVERLAY_KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {"opt_out": "stop_all", "opt_in": "start_all", "help": "help"}
)
REPLIES: Final = "replies"
_CHANGES: Final = ("add", "remove")


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


def line_of(locator: TomlLines, path: Sequence[str], value: str | None = None) -> int | None:
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
        problems.append(Problem(line_of(locator, path), where, "expected a list of strings"))
        return ()
    seen: dict[str, str] = {}
    words: list[str] = []
    for item in value:
        normal = keyword_key(item)
        if not normal:
            problems.append(
                Problem(line_of(locator, path, item), where, f"{item!r} is empty once normalised")
            )
        elif normal in seen:
            problems.append(
                Problem(
                    line_of(locator, path, item),
                    where,
                    f"{item!r} is listed twice (as {seen[normal]!r})",
                )
            )
        else:
            seen[normal] = item
            words.append(item)
    return tuple(words)


def _structure(data: object, known_locales: Iterable[str], locator: TomlLines) -> KeywordOverlay:
    """The overlay of parsed data, every shape problem refused at once with its line."""
    known = sorted(known_locales)
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise OverlayRefused([Problem(None, "", "expected a table of locales")])
    locales: dict[str, LocaleOverlay] = {}
    for code, table in data.items():
        line = line_of(locator, (code,))
        if code not in known:
            problems.append(Problem(line, code, f"no such locale (known: {', '.join(known)})"))
        elif not isinstance(table, dict):
            problems.append(Problem(line, code, "expected a table"))
        else:
            locales[code] = _locale_structure(code, table, locator, problems)
    if problems:
        raise OverlayRefused(problems)
    return KeywordOverlay(MappingProxyType(locales))


def _locale_structure(
    code: str, table: Mapping[str, Any], locator: TomlLines, problems: list[Problem]
) -> LocaleOverlay:
    words: dict[str, WordChange] = {}
    replies: dict[str, str] = {}
    for section, body in table.items():
        path = (code, section)
        where = ".".join(path)
        if section not in (*OVERLAY_KINDS, REPLIES):
            expected = ", ".join((*OVERLAY_KINDS, REPLIES))
            problems.append(
                Problem(line_of(locator, path), where, f"unknown section (expected {expected})")
            )
        elif not isinstance(body, dict):
            problems.append(Problem(line_of(locator, path), where, "expected a table"))
        elif section == REPLIES:
            replies.update(_replies_structure(path, body, locator, problems))
        else:
            words[section] = _words_structure(path, body, locator, problems)
    return LocaleOverlay(MappingProxyType(words), MappingProxyType(replies))


def _replies_structure(
    path: tuple[str, ...], body: Mapping[str, Any], locator: TomlLines, problems: list[Problem]
) -> dict[str, str]:
    replies: dict[str, str] = {}
    for key, text in body.items():
        if isinstance(text, str) and text.strip():
            replies[key] = text
        else:
            where = ".".join((*path, key))
            line = line_of(locator, (*path, key))
            problems.append(Problem(line, where, "expected a non-empty string"))
    return replies


def _words_structure(
    path: tuple[str, ...], body: Mapping[str, Any], locator: TomlLines, problems: list[Problem]
) -> WordChange:
    where = ".".join(path)
    for name in body:
        if name not in _CHANGES:
            line = line_of(locator, (*path, name))
            problems.append(Problem(line, f"{where}.{name}", "unknown key (expected add, remove)"))
    add = _strings(body.get("add", []), (*path, "add"), locator, problems)
    remove = _strings(body.get("remove", []), (*path, "remove"), locator, problems)
    added = {keyword_key(word) for word in add}
    for word in remove:
        if keyword_key(word) in added:
            line = line_of(locator, (*path, "remove"), word)
            problems.append(Problem(line, f"{where}.remove", f"{word!r} is both added and removed"))
    return WordChange(add, remove)


# -- applying -----------------------------------------------------------------------------------


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
