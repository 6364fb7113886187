"""`formula_safe`: the OWASP rule for CSV cells, and nothing more."""

from __future__ import annotations

import pytest

from bot.csvsafe import formula_safe, formula_safe_row


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_starting_like_a_formula_gets_a_quote(start: str) -> None:
    assert formula_safe(f"{start}1+1") == f"'{start}1+1"


@pytest.mark.parametrize(
    "value", ["15550001001", "CC.1234", '{"ip": "=1"}', "a=b", "", " =1", "'=1", None, -5, 2.5]
)
def test_other_cells_are_left_as_they_are(value: object) -> None:
    assert formula_safe(value) == value


def test_every_cell_of_a_row() -> None:
    assert formula_safe_row({"a": "=1", "b": "x", "c": None}) == {"a": "'=1", "b": "x", "c": None}


def test_every_csv_writer_of_the_service_uses_it() -> None:
    """A module of the service that writes CSV (csv.writer, csv.DictWriter) imports
    `bot.csvsafe`: a new export cannot forget formula escaping unnoticed."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "bot"
    writers = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        writes = any(
            isinstance(node, ast.Attribute)
            and node.attr in ("writer", "DictWriter")
            and isinstance(node.value, ast.Name)
            and node.value.id == "csv"
            for node in ast.walk(tree)
        )
        if writes:
            writers.append(path.name)
            imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
            assert "bot.csvsafe" in imports, f"{path} writes CSV without bot.csvsafe"
    assert writers, "no CSV writer found: the scan is broken"
