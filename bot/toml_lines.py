"""Where a key is written in a TOML text, for error messages that name the line.

tomllib keeps no positions, so a refusal of a value ("line 7: en.opt_out.remove: 'STOP' …")
needs the text read again: this finds the line of a dotted key, and of one value inside its
array when the array spans several lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = ["NoLines", "TomlLines"]

_HEADER: Final = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")
_PART: Final = r"""(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)"""
_KEY_LINE: Final = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")
_KEY_PART: Final = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|$)""")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _KEY_PART.findall(text))


class TomlLines:
    """Finds the line of a key (and of a value inside its array) in a TOML text, for the
    refusals; tomllib keeps no positions. Understands tables, dotted keys and arrays over
    several lines; anything else falls back to the nearest enclosing key, then line 1."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        self._first: dict[tuple[str, ...], int] = {}
        self._spans: dict[tuple[str, ...], tuple[int, int]] = {}
        table: tuple[str, ...] = ()
        last: tuple[tuple[str, ...], int] | None = None
        for number, line in enumerate(self._lines, 1):
            header = _HEADER.match(line)
            key = None if header else _KEY_LINE.match(line)
            if header is None and key is None:
                continue
            if last is not None:
                self._spans.setdefault(last[0], (last[1], number - 1))
                last = None
            if header is not None:
                table = _dotted(header.group(1))
                self._note(table, number)
            elif key is not None:
                path = (*table, *_dotted(key.group(1)))
                self._note(path, number)
                last = (path, number)
        if last is not None:
            self._spans.setdefault(last[0], (last[1], len(self._lines)))

    def _note(self, path: tuple[str, ...], number: int) -> None:
        for end in range(1, len(path) + 1):
            self._first.setdefault(path[:end], number)

    def line(self, path: Sequence[str], value: str | None = None) -> int:
        key = tuple(path)
        if value is not None and key in self._spans:
            start, end = self._spans[key]
            # The value as a whole string first ("STOP", not the start of "STOP IT").
            for written in (f'"{value}"', f"'{value}'", value):
                for number in range(start, end + 1):
                    if written in self._lines[number - 1]:
                        return number
        for end in range(len(key), 0, -1):
            found = self._first.get(key[:end])
            if found is not None:
                return found
        return 1


class NoLines(TomlLines):
    """A JSON overlay has no lines: problems name the key only."""

    def __init__(self) -> None:
        super().__init__("")
