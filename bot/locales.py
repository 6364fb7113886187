"""Loads and validates the locale files (`locales/<code>.toml`) into `LocaleCatalog`s.

Translations are edited by people who do not run the code, so every mistake that could reach a
customer is refused at startup with a `LocaleError` naming the file and the key: a missing or
unknown message, a placeholder missing or extra (`flows.locale_catalog.REQUIRED_MESSAGES` is the
reference), a button or list title over WhatsApp's limit once the longest category name is put
in, an empty keyword list, a built-in category without a name or aliases, and a keyword that
means two different things. That last check runs across all files: a word must belong to one
family (stop, start, yes, no, help, preferences) in every locale, because English words work in
every locale and a reply like "NO" must never be read as STOP anywhere. Likewise a category word
names one category everywhere.

The file layout is documented at the top of `locales/en.toml`. The stop-intent data
(`locales/stop_intent/<code>.toml`, documented at the top of its `en.toml`) is loaded and
checked the same way by `load_stop_words`.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flows.locale_catalog import (
    BUILTIN_CATEGORIES,
    CATEGORY_NAME_LIMIT,
    KEYWORD_KINDS,
    MESSAGE_LIMITS,
    REQUIRED_MESSAGES,
    CategoryText,
    LocaleCatalog,
    whatsapp_length,
)
from flows.stop_intent import StopWords
from flows.text import normalise_text, split_words

__all__ = [
    "DEFAULT_LOCALES_DIR",
    "LocaleError",
    "check_limits",
    "keyword_key",
    "load_locale_file",
    "load_locales",
    "load_stop_words",
    "template_placeholders",
]

DEFAULT_LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"

_SECTIONS = ("locale", "keywords", "categories", "intents", "messages")
_LOCALE_KEYS = ("code", "name", "direction")
_DIRECTIONS = ("ltr", "rtl")
_CATEGORY_KEYS = ("display", "aliases")
_INTENT_KEYS = ("opt_out", "message_words")
_FAMILY = {"stop_all": "stop", "stop_one": "stop", "start_all": "start", "start_one": "start"}
_PHRASE_PLACEHOLDER = "messages"


class LocaleError(ValueError):
    """A locale file that cannot be used, naming the file and the offending key."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class _Origin:
    path: Path
    key: str
    meaning: str


def _table(path: Path, data: Mapping[str, Any], key: str, allowed: Sequence[str]) -> None:
    """Refuse unknown and missing keys of one TOML table."""
    for name in data:
        if name not in allowed:
            raise LocaleError(path, f"{key}.{name}" if key else name, "unknown key")
    for name in allowed:
        if name not in data:
            raise LocaleError(path, f"{key}.{name}" if key else name, "missing")


def keyword_key(word: str) -> str:
    """The form two keywords are compared in: normalised, words joined by one space."""
    return " ".join(split_words(normalise_text(word)))


def _text(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LocaleError(path, key, "expected a non-empty string")
    return value


def _words(path: Path, key: str, value: object) -> tuple[str, ...]:
    """A non-empty list of strings, each non-empty after normalisation and listed once."""
    if not isinstance(value, list) or not value:
        raise LocaleError(path, key, "expected a non-empty list of strings")
    seen: dict[str, str] = {}
    for item in value:
        text = _text(path, key, item)
        normal = " ".join(split_words(normalise_text(text)))
        if not normal:
            raise LocaleError(path, key, f"{text!r} is empty once normalised")
        if normal in seen:
            raise LocaleError(path, key, f"{text!r} is listed twice (as {seen[normal]!r})")
        seen[normal] = text
    return tuple(value)


def template_placeholders(path: Path, key: str, template: str) -> set[str]:
    """The named `{placeholders}` of a str.format template; anything fancier is refused."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise LocaleError(path, key, f"not a valid template: {exc}") from None
    names: set[str] = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise LocaleError(path, key, f"placeholder {{{field}}} must be a plain {{name}}")
        names.add(field)
    return names


def _keywords(path: Path, data: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(data, dict):
        raise LocaleError(path, "keywords", "expected a table")
    _table(path, data, "keywords", KEYWORD_KINDS)
    return {kind: _words(path, f"keywords.{kind}", data[kind]) for kind in KEYWORD_KINDS}


def _categories(path: Path, data: object) -> dict[str, CategoryText]:
    if not isinstance(data, dict):
        raise LocaleError(path, "categories", "expected a table")
    _table(path, data, "categories", BUILTIN_CATEGORIES)
    categories: dict[str, CategoryText] = {}
    for name in BUILTIN_CATEGORIES:
        key = f"categories.{name}"
        table = data[name]
        if not isinstance(table, dict):
            raise LocaleError(path, key, "expected a table")
        _table(path, table, key, _CATEGORY_KEYS)
        display = _text(path, f"{key}.display", table["display"])
        if whatsapp_length(display) > CATEGORY_NAME_LIMIT:
            raise LocaleError(
                path, f"{key}.display", f"longer than {CATEGORY_NAME_LIMIT} characters"
            )
        aliases = _words(path, f"{key}.aliases", table["aliases"])
        categories[name] = CategoryText(display, aliases)
    return categories


def _intents(path: Path, data: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not isinstance(data, dict):
        raise LocaleError(path, "intents", "expected a table")
    _table(path, data, "intents", _INTENT_KEYS)
    phrases = _words(path, "intents.opt_out", data["opt_out"])
    for phrase in phrases:
        names = template_placeholders(path, "intents.opt_out", phrase)
        if names - {_PHRASE_PLACEHOLDER} or phrase.count("{") > 1:
            raise LocaleError(
                path, "intents.opt_out", f"{phrase!r}: only one {{messages}} is allowed"
            )
    return phrases, _words(path, "intents.message_words", data["message_words"])


def _messages(path: Path, data: object) -> dict[str, str]:
    if not isinstance(data, dict):
        raise LocaleError(path, "messages", "expected a table")
    _table(path, data, "messages", tuple(REQUIRED_MESSAGES))
    messages: dict[str, str] = {}
    for name, required in REQUIRED_MESSAGES.items():
        key = f"messages.{name}"
        template = data[name]
        if not isinstance(template, str) or not template:
            raise LocaleError(path, key, "expected a non-empty string")
        used = template_placeholders(path, key, template)
        missing, extra = sorted(required - used), sorted(used - required)
        if missing:
            raise LocaleError(path, key, f"missing placeholder {{{missing[0]}}}")
        if extra:
            raise LocaleError(path, key, f"unknown placeholder {{{extra[0]}}}")
        messages[name] = template
    return messages


def check_limits(path: Path, catalog: LocaleCatalog) -> None:
    """Titles must fit WhatsApp's limits with the longest value the locale can substitute."""
    choices = {
        "category": [text.display for text in catalog.categories.values()],
        "status": [catalog.messages["status_on"], catalog.messages["status_off"]],
    }
    for name, limit in MESSAGE_LIMITS.items():
        fields = sorted(REQUIRED_MESSAGES[name])
        for values in product(*(choices[field] for field in fields)):
            text = catalog.render(name, **dict(zip(fields, values, strict=True)))
            if whatsapp_length(text) > limit:
                raise LocaleError(
                    path, f"messages.{name}", f"{text!r} is longer than {limit} characters"
                )


def _read_toml(path: Path) -> dict[str, Any]:
    """`path` as TOML, or a `LocaleError` naming the file and what is wrong with it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise LocaleError(path, "(syntax)", str(exc)) from None
    except OSError as exc:
        raise LocaleError(path, "(file)", str(exc)) from None


def load_locale_file(path: Path) -> LocaleCatalog:
    """One validated locale file (checks that need the other files are in `load_locales`)."""
    data = _read_toml(path)
    _table(path, data, "", _SECTIONS)
    header = data["locale"]
    if not isinstance(header, dict):
        raise LocaleError(path, "locale", "expected a table")
    _table(path, header, "locale", _LOCALE_KEYS)
    code = _text(path, "locale.code", header["code"])
    if code != path.stem:
        raise LocaleError(path, "locale.code", f"{code!r} differs from the file name")
    direction = _text(path, "locale.direction", header["direction"])
    if direction not in _DIRECTIONS:
        raise LocaleError(path, "locale.direction", f"expected one of {', '.join(_DIRECTIONS)}")
    phrases, message_words = _intents(path, data["intents"])
    catalog = LocaleCatalog(
        code=code,
        name=_text(path, "locale.name", header["name"]),
        direction=direction,
        keywords=MappingProxyType(_keywords(path, data["keywords"])),
        categories=MappingProxyType(_categories(path, data["categories"])),
        opt_out_phrases=phrases,
        message_words=message_words,
        messages=MappingProxyType(_messages(path, data["messages"])),
    )
    check_limits(path, catalog)
    _check_opt_out_footer(path, catalog)
    return catalog


def _check_opt_out_footer(path: Path, catalog: LocaleCatalog) -> None:
    """The line appended to free-form marketing texts must tell the customer a stop word of
    their own language, written as they would type it (capitals where the script has them):
    a way out the customer cannot read is none."""
    line = catalog.messages["opt_out_footer"]
    words = split_words(normalise_text(line))
    raw = line.split()
    for keyword in catalog.keywords["stop_all"]:
        wanted = split_words(normalise_text(keyword))
        size = len(wanted)
        found = any(words[i : i + size] == wanted for i in range(len(words) - size + 1))
        if found and any(keyword in token and token.upper() == token for token in raw):
            return
    raise LocaleError(
        path,
        "messages.opt_out_footer",
        "must name one of the locale's stop_all words as written there (e.g. "
        f"{catalog.keywords['stop_all'][0]!r})",
    )


def _claim(seen: dict[str, _Origin], word: str, origin: _Origin, what: str) -> None:
    """Record that `word` means `origin.meaning`; refuse a second, different meaning."""
    normal = " ".join(split_words(normalise_text(word)))
    known = seen.setdefault(normal, origin)
    if known.meaning != origin.meaning:
        where = "" if known.path == origin.path else f" in {known.path.name}"
        raise LocaleError(
            origin.path,
            origin.key,
            f"{word!r} is a {origin.meaning} {what} here but a {known.meaning} {what} "
            f"at {known.key}{where}",
        )


def _check_consistency(paths: Mapping[str, Path], catalogs: Mapping[str, LocaleCatalog]) -> None:
    """One meaning per keyword and per category word, across every locale."""
    families: dict[str, _Origin] = {}
    categories: dict[str, _Origin] = {}
    for name in BUILTIN_CATEGORIES:
        origin = _Origin(Path("(built-in)"), "category identifiers", name)
        _claim(categories, name, origin, "category word")
    for code, catalog in catalogs.items():
        path = paths[code]
        for kind, words in catalog.keywords.items():
            family = _FAMILY.get(kind, kind)
            for word in words:
                _claim(families, word, _Origin(path, f"keywords.{kind}", family), "keyword")
        for category, text in catalog.categories.items():
            key = f"categories.{category}"
            _claim(categories, text.display, _Origin(path, f"{key}.display", category), "name")
            for alias in text.aliases:
                origin = _Origin(path, f"{key}.aliases", category)
                _claim(categories, alias, origin, "category word")


def load_locales(directory: Path | None = None) -> dict[str, LocaleCatalog]:
    """Every `<code>.toml` of `directory` (default: the repository's `locales/`), by code."""
    directory = DEFAULT_LOCALES_DIR if directory is None else directory
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise LocaleError(directory, "*.toml", "no locale files found")
    catalogs = {path.stem: load_locale_file(path) for path in files}
    _check_consistency({path.stem: path for path in files}, catalogs)
    return catalogs


_STOP_LISTS = (
    "phrases",
    "short_phrases",
    "negations",
    "fillers",
    "not_typos",
    "stop_words",
    "message_words",
    "contact_words",
    "refusals",
    "too_many",
    "business_words",
)


def _stop_words_file(path: Path) -> StopWords:
    data = _read_toml(path)
    _table(path, data, "", (*_STOP_LISTS, "max_words_before"))
    before = data["max_words_before"]
    if not isinstance(before, int) or isinstance(before, bool) or not 0 <= before <= 10:
        raise LocaleError(path, "max_words_before", "expected a whole number from 0 to 10")
    lists = {name: _words(path, name, data[name]) for name in _STOP_LISTS}
    return StopWords(code=path.stem, max_words_before=before, **lists)


def load_stop_words(
    directory: Path | None = None, locales: Sequence[str] | None = None
) -> dict[str, StopWords]:
    """Every `<code>.toml` of `directory` (default: `locales/stop_intent/`), by code; with
    `locales`, a file for each is required and no other is accepted."""
    directory = DEFAULT_LOCALES_DIR / "stop_intent" if directory is None else directory
    words = {path.stem: _stop_words_file(path) for path in sorted(directory.glob("*.toml"))}
    if locales is not None:
        for code in locales:
            if code not in words:
                raise LocaleError(directory / f"{code}.toml", "(file)", "missing")
        for code in words:
            if code not in locales:
                raise LocaleError(directory / f"{code}.toml", "(file)", "no such locale")
    return words
