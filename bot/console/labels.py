"""Plain words for the codes the console shows (statuses, actions, sources, methods, states),
from `locales/console/<code>.toml`, with the code itself on hover.

An agent reads "opted out by keyword in the WhatsApp chat", not `opted_out`/`keyword`/
`whatsapp_thread`; the code stays one hover away for whoever needs to match it to the API or the
ledger. The words are data (one file per console language, English as the fallback), so a
business can translate them without touching code.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Final

from markupsafe import Markup, escape

LABELS_DIR: Final = Path(__file__).resolve().parents[2] / "locales" / "console"
KINDS: Final = ("statuses", "actions", "sources", "methods", "states", "kinds")


@cache
def load_labels(locale: str) -> Mapping[str, Mapping[str, str]]:
    """The words of `locale`, each table falling back to English word by word."""
    english = _read(LABELS_DIR / "en.toml")
    own = _read(LABELS_DIR / f"{locale}.toml") if locale != "en" else {}
    return {kind: {**english.get(kind, {}), **own.get(kind, {})} for kind in KINDS}


def _read(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {
        kind: {str(code): str(word) for code, word in table.items()}
        for kind, table in data.items()
        if isinstance(table, dict)
    }


def word(labels: Mapping[str, Mapping[str, str]], kind: str, code: str | None) -> str:
    """The plain word for `code`, or the code itself when there is none."""
    if not code:
        return ""
    return labels.get(kind, {}).get(code, code)


def plain(labels: Mapping[str, Mapping[str, str]], kind: str, code: str | None) -> Markup:
    """`<span title="code">word</span>` (escaped): the word to read, the code on hover."""
    if not code:
        return Markup("")
    shown = word(labels, kind, code)
    if shown == code:
        return Markup("{}").format(escape(code))
    return Markup('<span class="c-code" title="{}">{}</span>').format(code, shown)
