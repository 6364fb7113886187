"""Lines of keys in a TOML text: what a refused keywords file is reported with."""

from __future__ import annotations

from bot.toml_lines import NoLines, TomlLines

TEXT = """# comment
[en.opt_out]
add = ["ENOUGH"]
remove = [
    "STOP IT",
    "STOP",  # not "STOP IT"
]

[ "es" ]
opt_in.add = ['VOLVER']
"en".help = { add = ["SUPPORT"] }
"""


def test_keys_values_and_tables_are_found() -> None:
    lines = TomlLines(TEXT)
    assert lines.line(("en", "opt_out")) == 2
    assert lines.line(("en", "opt_out", "add")) == 3
    assert lines.line(("en", "opt_out", "remove")) == 4
    assert lines.line(("en", "opt_out", "remove"), "STOP IT") == 5
    assert lines.line(("en", "opt_out", "remove"), "STOP") == 6
    assert lines.line(("es",)) == 9
    assert lines.line(("es", "opt_in", "add"), "VOLVER") == 10
    assert lines.line(("es", "en", "help", "add")) == 11  # the enclosing dotted key


def test_unknown_keys_fall_back_to_the_nearest_known_one_then_line_1() -> None:
    lines = TomlLines(TEXT)
    assert lines.line(("en", "opt_out", "drop")) == 2
    assert lines.line(("fr", "help")) == 1
    assert NoLines().line(("en",)) == 1
