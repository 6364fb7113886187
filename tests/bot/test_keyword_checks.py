"""The rules of a keywords overlay: each refusal names its line and why."""

from __future__ import annotations

import pytest

from bot.keyword_checks import CARRIER_OPT_OUT_WORDS, check_overlay
from bot.keyword_overrides import (
    OverlayRefused,
    Problem,
    apply_overlay,
    overlay_from_data,
    parse_overlay,
)
from bot.locales import load_locales
from flows.keywords import Command, KeywordMatcher
from flows.locale_catalog import LocaleCatalog

CATALOGS = load_locales()
CATEGORIES = ["marketing", "order_updates", "reminders", "account_alerts"]


def problems(text: str) -> list[Problem]:
    """Every refusal of `text`, structural or semantic."""
    try:
        overlay, lines = parse_overlay(text, CATALOGS)
    except OverlayRefused as refused:
        return list(refused.problems)
    return check_overlay(overlay, CATALOGS, lines, CATEGORIES)


def accepted(text: str) -> dict[str, LocaleCatalog]:
    overlay, lines = parse_overlay(text, CATALOGS)
    assert check_overlay(overlay, CATALOGS, lines, CATEGORIES) == []
    return apply_overlay(overlay, CATALOGS)


def only(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# -- refusals, each with its line ---------------------------------------------------------------


@pytest.mark.parametrize("word", sorted(CARRIER_OPT_OUT_WORDS))
def test_removing_a_carrier_opt_out_word_is_refused_on_its_line(word: str) -> None:
    problem = only(f'# keep the rest\n[en.opt_out]\nremove = [\n  "STOP IT",\n  "{word}",\n]\n')
    assert problem.line == 5
    assert problem.key == "en.opt_out.remove"
    assert "US carriers and the FCC" in problem.reason and repr(word) in problem.reason


def test_a_carrier_word_written_differently_is_still_refused() -> None:
    problem = only('[en.opt_out]\nremove = ["opt-out"]\n')
    assert "cannot be removed" in problem.reason


def test_a_reply_without_the_business_is_refused_naming_why() -> None:
    problem = only(
        '[en.replies]\n\nstop_all_confirmation = "You are unsubscribed. Reply START to return."\n'
    )
    assert (problem.line, problem.key) == (3, "en.replies.stop_all_confirmation")
    assert problem.reason == "no longer names the business: {business} is missing"


def test_a_reply_with_a_missing_or_unknown_placeholder_is_refused() -> None:
    missing = only('[en.replies]\nstop_category_confirmation = "{business} stopped. STOP."\n')
    assert missing.line == 2 and "missing placeholder {category}" in missing.reason
    extra = only('[en.replies]\nclarify_kept = "{business} keeps {name} subscribed"\n')
    assert extra.line == 2 and "unknown placeholder {name}" in extra.reason
    broken = only('[en.replies]\nclarify_kept = "{business} {0!r}"\n')
    assert "plain {name}" in broken.reason


def test_a_reply_that_no_longer_names_the_way_back_is_refused() -> None:
    problem = only(
        '[es.replies]\nstop_all_confirmation = "{business} no te enviará más mensajes."\n'
    )
    assert (problem.line, problem.key) == (2, "es.replies.stop_all_confirmation")
    assert "no longer names the way back" in problem.reason and "ALTA" in problem.reason


def test_a_reply_that_no_longer_says_how_to_stop_is_refused() -> None:
    problem = only(
        "[en.replies]\n"
        'optin_prompt = "{business} would like to send you {categories}. Reply YES or NO."\n'
    )
    assert problem.line == 2 and "no longer names how to stop" in problem.reason


def test_removing_the_word_a_reply_tells_customers_to_type_is_refused_on_the_removal() -> None:
    found = problems('[en.opt_in]\nadd = ["COME BACK"]\nremove = ["START"]\n')
    assert found and all(p.line == 3 and p.key == "en.opt_in.remove" for p in found)
    assert any("'stop_all_confirmation' of locale 'en'" in p.reason for p in found)
    # English words work in every locale: German's confirmation names START as its way back.
    assert any("of locale 'de'" in p.reason for p in found)


def test_removing_a_word_no_reply_names_is_accepted() -> None:
    catalogs = accepted('[en.opt_in]\nadd = ["COME BACK"]\nremove = ["RESUME"]\n')
    matcher = KeywordMatcher(catalogs, CATEGORIES)
    assert matcher.match("resume") is None
    found = matcher.match("come back")
    assert found is not None and found.command is Command.START_ALL


def test_a_word_cannot_be_opt_out_and_opt_in() -> None:
    problem = only('[en.opt_in]\nadd = [\n  "COME BACK",\n  "QUIT",\n]\n')
    assert (problem.line, problem.key) == (4, "en.opt_in.add")
    assert "'QUIT' is already a opt-out word of locale 'en'" in problem.reason


def test_a_word_added_with_two_meanings_at_once_is_refused() -> None:
    found = problems('[en.opt_out]\nadd = ["ENOUGH"]\n\n[es.opt_in]\nadd = ["ENOUGH"]\n')
    assert {p.line for p in found} == {2, 5}
    assert all("keeps one meaning" in p.reason for p in found)


def test_a_word_of_another_family_in_another_locale_is_refused() -> None:
    problem = only('[en.opt_out]\nadd = ["AYUDA"]\n')
    assert "help word of locale 'es'" in problem.reason


def test_structure_errors_name_their_lines() -> None:
    found = problems(
        "[en.opt_out]\n"
        'add = ["ENOUGH"]\n'
        'drop = ["X"]\n'
        "[xx.help]\n"
        'add = ["A"]\n'
        "[en.yes]\n"
        'add = ["OK"]\n'
        "[fr.replies]\n"
        'nope = "x"\n'
    )
    by_line = {p.line: p for p in found}
    assert by_line[3].key == "en.opt_out.drop" and "unknown key" in by_line[3].reason
    assert by_line[4].key == "xx" and "no such locale" in by_line[4].reason
    assert by_line[6].key == "en.yes" and "unknown section" in by_line[6].reason
    assert len(found) == 3  # the unknown reply is reported once the structure is right
    reply = only('[fr.replies]\nnope = "x"\n')
    assert (reply.line, reply.reason) == (2, "no such reply (see locales/en.toml)")


def test_words_that_are_not_listed_twice_or_both_added_and_removed_are_refused() -> None:
    missing = only('[en.help]\nremove = ["SOS"]\n')
    assert missing.line == 2 and "not a help word of locale 'en'" in missing.reason
    twice = only('[en.opt_out]\nadd = ["ENOUGH", "enough!"]\n')
    assert "listed twice" in twice.reason
    both = only('[en.opt_out]\nadd = ["ENOUGH"]\nremove = ["ENOUGH"]\n')
    assert both.line == 3 and "both added and removed" in both.reason
    empty = only('[en.opt_out]\nadd = ["!!"]\n')
    assert "empty once normalised" in empty.reason


def test_removing_every_word_of_a_list_is_refused() -> None:
    problem = only('[en.help]\nremove = ["HELP", "INFO"]\n')
    assert "removes every help word" in problem.reason


def test_a_title_over_whatsapps_limit_is_refused() -> None:
    problem = only('[en.replies]\nyes_button = "Yes please, absolutely, go on"\n')
    assert (problem.line, problem.key) == (2, "en.replies.yes_button")
    assert "longer than 20 characters" in problem.reason


def test_a_syntax_error_names_its_line() -> None:
    problem = only('[en.opt_out]\nadd = ["ENOUGH"\n\n[en.help]\n')
    assert problem.line is not None and problem.line >= 2
    assert problem.reason.startswith("not valid TOML")


def test_dotted_keys_and_inline_tables_find_their_lines() -> None:
    dotted = only('[en]\nopt_out.add = ["ENOUGH"]\nopt_out.remove = ["QUIT"]\n')
    assert (dotted.line, dotted.key) == (3, "en.opt_out.remove")
    inline = only('en = { opt_out = { remove = ["QUIT"] } }\n')
    assert inline.line == 1


def test_the_refusal_message_names_the_file_line_and_why() -> None:
    with pytest.raises(OverlayRefused) as caught:
        raise OverlayRefused(problems('[en.opt_out]\nremove = ["STOP"]\n'), "keywords.toml")
    assert str(caught.value).startswith("keywords.toml:2: en.opt_out.remove: 'STOP' is one")
    assert Problem(4, "en.help", "why").describe() == "line 4: en.help: why"
    assert Problem(None, "en.help", "why").describe() == "en.help: why"


def test_json_overlays_are_checked_the_same_and_name_the_key() -> None:
    overlay = overlay_from_data({"en": {"opt_out": {"remove": ["END"]}}}, CATALOGS)
    (problem,) = check_overlay(overlay, CATALOGS, None, CATEGORIES)
    assert problem.line is None and problem.key == "en.opt_out.remove"
    with pytest.raises(OverlayRefused, match="expected a list of strings"):
        overlay_from_data({"en": {"opt_out": {"add": "ENOUGH"}}}, CATALOGS)
    with pytest.raises(OverlayRefused, match="expected a table of locales"):
        overlay_from_data(["en"], CATALOGS)
