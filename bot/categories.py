"""The business's message categories: the built-in four, or a TOML file (`CATEGORIES_FILE`).

    [categories.marketing]
    kind = "marketing"          # "marketing" needs opt-in; "utility" may answer in the window
    default = true              # included when a customer sends a bare START
    [categories.marketing.names]
    en = "promotions"           # shown to customers (at most 24 characters)
    [categories.marketing.aliases]
    en = ["promos", "deals"]    # words customers type after STOP / START

Names and aliases of the built-in categories come from the locale files; a file may add to them.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from flows.consent import Category, CategoryKind

BUILTIN = (
    Category("marketing", CategoryKind.MARKETING, default=True),
    Category("order_updates", CategoryKind.UTILITY, default=True),
    Category("reminders", CategoryKind.UTILITY, default=True),
    Category("account_alerts", CategoryKind.UTILITY, default=True),
)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_CATEGORIES = 10  # the preferences menu is a WhatsApp list: at most 10 rows


class CategoriesError(ValueError):
    def __init__(self, path: Path, key: str, problem: str) -> None:
        super().__init__(f"CATEGORIES_FILE {path}: {key}: {problem}")


def load_categories(path: str | None) -> tuple[Category, ...]:
    if path is None:
        return BUILTIN
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CategoriesError(file, "file", str(exc)) from None
    table = data.get("categories")
    if not isinstance(table, dict) or not table:
        raise CategoriesError(file, "categories", "expected [categories.<name>] tables")
    if len(table) > MAX_CATEGORIES:
        raise CategoriesError(file, "categories", f"at most {MAX_CATEGORIES} categories")
    return tuple(_category(file, name, spec) for name, spec in table.items())


def _category(file: Path, name: str, spec: Any) -> Category:
    key = f"categories.{name}"
    if not _NAME.match(name):
        raise CategoriesError(file, key, "names are lower-case letters, digits and _")
    if not isinstance(spec, dict):
        raise CategoriesError(file, key, "expected a table")
    unknown = set(spec) - {"kind", "default", "names", "aliases"}
    if unknown:
        raise CategoriesError(file, key, f"unknown keys {sorted(unknown)}")
    try:
        kind = CategoryKind(spec.get("kind", "utility"))
    except ValueError:
        raise CategoriesError(file, f"{key}.kind", "expected marketing or utility") from None
    default = spec.get("default", True)
    if not isinstance(default, bool):
        raise CategoriesError(file, f"{key}.default", "expected true or false")
    names = spec.get("names", {})
    if not isinstance(names, dict) or not all(
        isinstance(v, str) and 0 < len(v) <= 24 for v in names.values()
    ):
        raise CategoriesError(file, f"{key}.names", 'expected locale = "name" (1-24 chars)')
    aliases = spec.get("aliases", {})
    if not isinstance(aliases, dict) or not all(
        isinstance(v, list) and all(isinstance(a, str) and a.strip() for a in v)
        for v in aliases.values()
    ):
        raise CategoriesError(file, f"{key}.aliases", 'expected locale = ["word", ...]')
    return Category(
        name=name,
        kind=kind,
        default=default,
        names={str(k): str(v) for k, v in names.items()},
        aliases={str(k): tuple(v) for k, v in aliases.items()},
    )
