"""The locale loader: shipped files are complete and consistent, broken files are refused with
the file and the key named."""

from __future__ import annotations

import re
import string
from itertools import product
from pathlib import Path

import pytest

from bot.locales import DEFAULT_LOCALES_DIR, LocaleError, load_locale_file, load_locales
from flows.keywords import KEYWORD_COMMANDS, Command
from flows.locale_catalog import (
    BUILTIN_CATEGORIES,
    CATEGORY_NAME_LIMIT,
    KEYWORD_KINDS,
    MESSAGE_LIMITS,
    REQUIRED_MESSAGES,
    LocaleCatalog,
    MissingMessage,
    MissingValue,
    whatsapp_length,
)
from flows.text import normalise_text, split_words

EXPECTED_LOCALES = {"en", "es", "pt", "fr", "de", "it", "hi", "id", "ar", "tr"}
CATALOGS = load_locales()
LOCALES = sorted(CATALOGS)
UI_PIECES = {
    "yes_button", "no_button", "clarify_stop_all_button", "clarify_stop_category_button",
    "clarify_keep_button", "preferences_button", "preferences_section", "status_on",
    "status_off", "preferences_row_description", "category_list_separator",
    "category_list_last_separator", "choose_button", "optin_choices_button",
    "opt_out_footer",  # the line appended to the business's own marketing text
}  # fmt: skip


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


# -- the shipped files --------------------------------------------------------------------------


def test_all_required_locales_are_shipped() -> None:
    assert set(CATALOGS) >= EXPECTED_LOCALES
    assert load_locales(DEFAULT_LOCALES_DIR).keys() == CATALOGS.keys()
    assert CATALOGS["ar"].direction == "rtl"
    assert all(CATALOGS[code].direction == "ltr" for code in EXPECTED_LOCALES - {"ar"})


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_has_exactly_its_placeholders(locale: str) -> None:
    messages = CATALOGS[locale].messages
    assert set(messages) == set(REQUIRED_MESSAGES)
    for key, placeholders in REQUIRED_MESSAGES.items():
        assert _fields(messages[key]) == placeholders, key


def test_every_consent_message_names_the_business() -> None:
    for key, placeholders in REQUIRED_MESSAGES.items():
        assert ("business" in placeholders) == (key not in UI_PIECES), key


@pytest.mark.parametrize("locale", LOCALES)
def test_titles_fit_whatsapp_limits_with_the_longest_values(locale: str) -> None:
    catalog = CATALOGS[locale]
    names = [catalog.category_name(category) for category in BUILTIN_CATEGORIES]
    statuses = [catalog.messages["status_on"], catalog.messages["status_off"]]
    assert max(whatsapp_length(name) for name in names) <= CATEGORY_NAME_LIMIT
    for key, limit in MESSAGE_LIMITS.items():
        for category, status in product(names, statuses):
            text = catalog.render(key, category=category, status=status)
            assert whatsapp_length(text) <= limit, (key, text)
    assert MESSAGE_LIMITS["clarify_stop_category_button"] == 20
    assert MESSAGE_LIMITS["preferences_section"] == 24
    assert MESSAGE_LIMITS["preferences_row_description"] == 72


@pytest.mark.parametrize("locale", LOCALES)
def test_categories_and_keywords_are_complete(locale: str) -> None:
    catalog = CATALOGS[locale]
    assert set(catalog.categories) == set(BUILTIN_CATEGORIES)
    for text in catalog.categories.values():
        assert text.display and text.aliases
    assert set(catalog.keywords) == set(KEYWORD_KINDS)
    assert all(catalog.keywords[kind] for kind in KEYWORD_KINDS)
    assert catalog.opt_out_phrases and catalog.message_words


@pytest.mark.parametrize("locale", LOCALES)
def test_stop_messages_say_what_stopped_and_how_to_resume(locale: str) -> None:
    catalog = CATALOGS[locale]
    text = catalog.render("stop_all_confirmation", business="Acme Shoes")
    assert "Acme Shoes" in text
    assert "START" in text or any(w in text for w in catalog.keywords["start_all"])
    prompt = catalog.render("optin_prompt", business="Acme", categories="XYZ")
    assert "XYZ" in prompt
    assert any(normalise_text(w) in normalise_text(prompt) for w in catalog.keywords["yes"])


def test_shared_words_keep_one_meaning_across_locales() -> None:
    meaning: dict[str, set[str]] = {}
    locales: dict[str, set[str]] = {}
    family = {"stop_one": "stop_all", "start_one": "start_all"}
    for code, catalog in CATALOGS.items():
        for kind, words in catalog.keywords.items():
            for word in words:
                key = " ".join(split_words(normalise_text(word)))
                meaning.setdefault(key, set()).add(family.get(kind, kind))
                locales.setdefault(key, set()).add(code)
    assert all(len(kinds) == 1 for kinds in meaning.values())
    assert {"en", "es", "it"} <= locales["NO"]  # shared across locales, same meaning
    assert {"es", "it", "pt"} <= locales["BASTA"]
    for word in ("NO", "NON", "NAO", "NEIN", "N", "नहीं", "TIDAK", "لا", "HAYIR"):
        assert "stop_all" not in meaning.get(word, set()), word


def test_verb_and_category_never_spell_a_keyword_of_another_meaning() -> None:
    whole: dict[str, Command] = {}
    for catalog in CATALOGS.values():
        for kind, words in catalog.keywords.items():
            if kind not in ("stop_one", "start_one"):
                whole.update({" ".join(split_words(normalise_text(w))): KEYWORD_COMMANDS[kind]
                              for w in words})  # fmt: skip
    stop_like = {Command.STOP_ALL, Command.STOP_CATEGORY}
    for catalog in CATALOGS.values():
        for kind in ("stop_one", "start_one"):
            for verb, text in product(catalog.keywords[kind], catalog.categories.values()):
                for alias in (text.display, *text.aliases):
                    for spelled in (f"{verb} {alias}", f"{alias} {verb}"):
                        command = whole.get(" ".join(split_words(normalise_text(spelled))))
                        own = KEYWORD_COMMANDS[kind]
                        assert command is None or (command in stop_like) == (own in stop_like)


# -- the catalog helpers ------------------------------------------------------------------------


def test_render_fills_placeholders_and_ignores_extra_values() -> None:
    catalog = CATALOGS["en"]
    text = catalog.render("optin_declined", business="Acme", categories="promotions", unused="x")
    assert text == "No problem: Acme will not send you promotions."
    assert catalog.render("yes_button") == "Yes"
    # values are not templates
    assert "{x}" in catalog.render("optin_declined", business="{x}", categories="{y}")


def test_render_errors_are_clear() -> None:
    catalog = CATALOGS["es"]
    with pytest.raises(MissingMessage, match="'es' has no message 'nope'"):
        catalog.render("nope")
    with pytest.raises(MissingValue, match=r"\{business\}"):
        catalog.render("optin_declined")


def test_category_names_keywords_and_lists() -> None:
    es = CATALOGS["es"]
    assert es.category_name("marketing") == "promociones"
    assert es.category_name("vip_news") == "vip news"
    assert es.category_keyword("marketing") == "PROMOCIONES"
    assert es.category_keyword("vip_news") == "VIP NEWS"
    assert es.join_categories(["marketing"]) == "promociones"
    assert es.join_categories([]) == ""
    assert es.join_categories(["marketing", "reminders", "order_updates"]) == (
        "promociones, recordatorios y avisos de pedido"
    )
    assert CATALOGS["ar"].join_categories(["marketing", "reminders"]) == "العروض والتذكيرات"


# -- broken files -------------------------------------------------------------------------------

EN = (DEFAULT_LOCALES_DIR / "en.toml").read_text(encoding="utf-8")
ES = (DEFAULT_LOCALES_DIR / "es.toml").read_text(encoding="utf-8")


def _write(directory: Path, code: str, text: str) -> Path:
    path = directory / f"{code}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _line(text: str, key: str) -> str:
    found = re.search(rf"^{re.escape(key)} = .*$", text, flags=re.MULTILINE)
    assert found is not None, key
    return found.group(0)


def _refused(directory: Path) -> LocaleError:
    with pytest.raises(LocaleError) as caught:
        load_locales(directory)
    return caught.value


def test_the_unchanged_copies_load(tmp_path: Path) -> None:
    _write(tmp_path, "en", EN)
    _write(tmp_path, "es", ES)
    loaded = load_locales(tmp_path)
    assert set(loaded) == {"en", "es"}
    assert all(isinstance(catalog, LocaleCatalog) for catalog in loaded.values())


BROKEN = [
    pytest.param(
        lambda t: t.replace(_line(t, "optin_declined") + "\n", ""),
        "messages.optin_declined", "missing", id="missing-message",
    ),
    pytest.param(
        lambda t: _replace(t, "{business} would like", "{business} {shop} would like"),
        "messages.optin_prompt", "unknown placeholder {shop}", id="extra-placeholder",
    ),
    pytest.param(
        lambda t: _replace(t, "you {categories} on WhatsApp. Reply", "you X. Reply"),
        "messages.optin_prompt", "missing placeholder {categories}", id="missing-placeholder",
    ),
    pytest.param(
        lambda t: _replace(t, "[messages]\n", '[messages]\noptin_expired = "Expired."\n'),
        "messages.optin_expired", "unknown key", id="unknown-message",
    ),
    pytest.param(
        lambda t: _replace(t, 'yes_button = "Yes"', 'yes_button = "Yes, send me everything"'),
        "messages.yes_button", "longer than 20", id="long-button",
    ),
    pytest.param(
        lambda t: _replace(t, 'display = "account alerts"', 'display = "security account alerts"'),
        "messages.clarify_stop_category_button", "longer than 20", id="long-category-button",
    ),
    pytest.param(
        lambda t: _replace(t, 'display = "reminders"', 'display = "appointment reminders for you"'),
        "categories.reminders.display", "longer than 24", id="long-category-name",
    ),
    pytest.param(
        lambda t: _replace(t, 'preferences_section = "Message categories"',
                           'preferences_section = "All the categories of messages"'),
        "messages.preferences_section", "longer than 24", id="long-section",
    ),
    pytest.param(
        lambda t: _replace(t, 'preferences_row_description = "Currently {status}. Tap to change."',
                           'preferences_row_description = "' + "x" * 70 + ' {status}"'),
        "messages.preferences_row_description", "longer than 72", id="long-row-description",
    ),
    pytest.param(
        lambda t: _replace(t, 'yes_button = "Yes"', 'yes_button = "Yes {business!r}"'),
        "messages.yes_button", "plain", id="fancy-placeholder",
    ),
    pytest.param(
        lambda t: _replace(t, 'yes_button = "Yes"', 'yes_button = "Yes {"'),
        "messages.yes_button", "not a valid template", id="bad-template",
    ),
    pytest.param(
        lambda t: _replace(t, 'help = ["HELP", "INFO"]', "help = []"),
        "keywords.help", "non-empty list", id="empty-keywords",
    ),
    pytest.param(
        lambda t: _replace(t, 'help = ["HELP", "INFO"]', 'help = ["HELP", "help!"]'),
        "keywords.help", "listed twice", id="duplicate-keyword",
    ),
    pytest.param(
        lambda t: _replace(t, 'help = ["HELP", "INFO"]', 'help = ["HELP", "INFO"]\nhlep = ["X"]'),
        "keywords.hlep", "unknown key", id="unknown-keyword-kind",
    ),
    pytest.param(
        lambda t: _replace(t, 'stop_all = [\n', 'stop_all = [\n    "NO",\n'),
        "keywords.", "'NO'", id="no-as-stop-word",
    ),
    pytest.param(
        lambda t: _replace(t, 'yes = ["YES",', 'yes = ["YES", "START",'),
        "keywords.", "'START'", id="start-as-yes-word",
    ),
    pytest.param(
        lambda t: _replace(t, '"REMINDERS", "REMINDER",', '"REMINDERS", "PROMOS",'),
        "categories.", "'PROMOS'", id="alias-of-two-categories",
    ),
    pytest.param(
        lambda t: _replace(t, "[categories.reminders]", "[categories.reminder_list]"),
        "categories.reminder_list", "unknown key", id="unknown-category",
    ),
    pytest.param(
        lambda t: _replace(t, 'aliases = ["REMINDERS", "REMINDER", "APPOINTMENT REMINDERS"]\n', ""),
        "categories.reminders.aliases", "missing", id="category-without-aliases",
    ),
    pytest.param(
        lambda t: _replace(t, '"NO MORE {messages}",', '"NO MORE {stuff}",'),
        "intents.opt_out", "{messages}", id="unknown-phrase-placeholder",
    ),
    pytest.param(
        lambda t: _replace(t, 'code = "en"', 'code = "es"'),
        "locale.code", "file name", id="code-differs-from-file",
    ),
    pytest.param(
        lambda t: _replace(t, 'direction = "ltr"', 'direction = "up"'),
        "locale.direction", "ltr", id="bad-direction",
    ),
    pytest.param(
        lambda t: _replace(t, "\n[intents]\n", "\n[intent]\n"),
        "intent", "unknown key", id="unknown-section",
    ),
    pytest.param(
        lambda t: _replace(t, 'yes_button = "Yes"', "yes_button = Yes"),
        "(syntax)", "", id="toml-syntax",
    ),
    pytest.param(
        lambda t: _replace(t, '"Reply STOP to unsubscribe."', '"You may unsubscribe any time."'),
        "messages.opt_out_footer", "stop_all", id="opt-out-line-without-a-stop-word",
    ),
    pytest.param(
        lambda t: _replace(t, '"Reply STOP to unsubscribe."', '"Reply stop to unsubscribe."'),
        "messages.opt_out_footer", "stop_all", id="opt-out-line-stop-word-not-as-typed",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "key", "problem"), BROKEN)
def test_broken_file_is_refused_naming_file_and_key(
    tmp_path: Path, mutate: object, key: str, problem: str
) -> None:
    assert callable(mutate)
    path = _write(tmp_path, "en", mutate(EN))
    error = _refused(tmp_path)
    assert error.path == path
    assert error.key.startswith(key), error
    assert problem in error.problem, error
    assert str(path) in str(error) and error.key in str(error)


def test_word_with_another_meaning_in_another_locale_names_that_file(tmp_path: Path) -> None:
    _write(tmp_path, "en", EN)
    es = _write(tmp_path, "es", _replace(ES, "stop_all = [\n", 'stop_all = [\n    "NO",\n'))
    error = _refused(tmp_path)
    assert error.path == es
    assert error.key == "keywords.stop_all"
    assert "en.toml" in error.problem


def test_alias_naming_another_category_in_another_locale_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "en", EN)
    aliases = '"RECORDATORIOS", "RECORDATORIO"'
    _write(tmp_path, "es", _replace(ES, aliases, '"RECORDATORIOS", "ALERTS"'))
    error = _refused(tmp_path)
    assert error.key == "categories.reminders.aliases"
    assert "account_alerts" in error.problem


def test_shared_words_with_the_same_meaning_are_allowed(tmp_path: Path) -> None:
    _write(tmp_path, "en", EN)
    _write(tmp_path, "es", _replace(ES, 'no = ["NO", "NO GRACIAS"]', 'no = ["NO", "N", "NOPE"]'))
    assert set(load_locales(tmp_path)) == {"en", "es"}


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    error = _refused(tmp_path)
    assert error.path == tmp_path


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LocaleError) as caught:
        load_locale_file(tmp_path / "xx.toml")
    assert caught.value.key == "(file)"
