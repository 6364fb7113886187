"""The keywords overlay as data: an accepted overlay changes exactly what it says, the example
file is accepted, and versions are stable."""

from __future__ import annotations

from pathlib import Path

from bot.keyword_checks import check_overlay
from bot.keyword_overrides import (
    EMPTY,
    KeywordOverlay,
    apply_overlay,
    overlay_from_data,
    parse_overlay,
    render_toml,
    version_label,
)
from bot.locales import load_locales
from flows.keywords import Command, KeywordMatcher
from flows.locale_catalog import LocaleCatalog

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "keywords.toml"
CATALOGS = load_locales()
CATEGORIES = ["marketing", "order_updates", "reminders", "account_alerts"]


def accepted(text: str) -> dict[str, LocaleCatalog]:
    overlay, lines = parse_overlay(text, CATALOGS)
    assert check_overlay(overlay, CATALOGS, lines, CATEGORIES) == []
    return apply_overlay(overlay, CATALOGS)


# -- what an accepted overlay does --------------------------------------------------------------


def test_a_removed_word_stops_matching_and_an_added_word_opts_out() -> None:
    before = KeywordMatcher(CATALOGS, CATEGORIES)
    stop_it = before.match("stop it")
    assert stop_it is not None and stop_it.command is Command.STOP_ALL
    assert before.match("enough") is None
    catalogs = accepted('[en.opt_out]\nadd = ["ENOUGH"]\nremove = ["STOP IT"]\n')
    after = KeywordMatcher(catalogs, CATEGORIES)
    assert after.match("stop it") is None
    enough = after.match("Enough!")
    assert enough is not None and enough.command is Command.STOP_ALL
    stop = after.match("STOP")
    assert stop is not None and stop.command is Command.STOP_ALL
    assert CATALOGS["en"].keywords["stop_all"][-1] == "STOP IT"  # the base is untouched


def test_replies_replace_the_locale_files_text() -> None:
    text = "{business}: no more messages. Reply START to come back."
    catalogs = accepted(f'[en.replies]\nstop_all_confirmation = "{text}"\n')
    assert catalogs["en"].render("stop_all_confirmation", business="Acme") == (
        "Acme: no more messages. Reply START to come back."
    )
    assert catalogs["es"] is CATALOGS["es"]


def test_the_example_file_is_accepted() -> None:
    catalogs = accepted(EXAMPLE.read_text(encoding="utf-8"))
    matcher = KeywordMatcher(catalogs, CATEGORIES)
    for text, command in (
        ("enough", Command.STOP_ALL),
        ("ya no", Command.STOP_ALL),
        ("come back", Command.START_ALL),
        ("support", Command.HELP),
    ):
        found = matcher.match(text)
        assert found is not None and found.command is command, text
    assert matcher.match("stop it") is None


# -- versions ----------------------------------------------------------------------------------


def test_the_digest_is_of_the_canonical_overlay() -> None:
    first, _ = parse_overlay(
        '# a comment\n[en.opt_out]\nadd = ["B", "A"]\n[en.help]\nadd = []\n', CATALOGS
    )
    second, _ = parse_overlay('[en]\nopt_out = { add = ["A", "B"] }\n', CATALOGS)
    assert first.digest() == second.digest() != EMPTY.digest()
    assert first.canonical() == {"en": {"opt_out": {"add": ["A", "B"]}}}
    assert version_label(3, first.digest()) == f"3-{first.digest()[:12]}"
    assert KeywordOverlay().empty and not first.empty


def test_render_toml_reads_back_as_the_same_overlay() -> None:
    overlay, _ = parse_overlay(EXAMPLE.read_text(encoding="utf-8"), CATALOGS)
    again, _ = parse_overlay(render_toml(overlay), CATALOGS)
    assert again.canonical() == overlay.canonical()
    tricky = overlay_from_data(
        {"en": {"replies": {"clarify_kept": 'Say "hi"\\ to {business}\n\tok'}}}, CATALOGS
    )
    assert parse_overlay(render_toml(tricky), CATALOGS)[0].canonical() == tricky.canonical()
