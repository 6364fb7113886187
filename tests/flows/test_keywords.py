# ruff: noqa: RUF001
"""Keyword and opt-out intent matching over the shipped locale files."""

from __future__ import annotations

import re
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.locales import load_locales
from flows.keywords import Command, IntentMatch, KeywordMatch, KeywordMatcher
from flows.locale_catalog import BUILTIN_CATEGORIES, CategoryText, LocaleCatalog
from flows.text import normalise_text, split_words

CATALOGS = load_locales()
MATCHER = KeywordMatcher(CATALOGS, BUILTIN_CATEGORIES)
LOCALES = sorted(CATALOGS)

CONTRACT = {
    Command.STOP_ALL: [
        "STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE",
        "OPTOUT", "OPT OUT",
    ],
    Command.START_ALL: ["START", "UNSTOP", "RESUME", "SUBSCRIBE"],
    Command.YES: ["YES"],
    Command.HELP: ["HELP", "INFO"],
    Command.PREFERENCES: ["PREFERENCES", "SETTINGS", "MENU"],
}  # fmt: skip

# Words the product issue names; each must be in its locale with this meaning.
ISSUE_WORDS = {
    Command.STOP_ALL: {
        "es": ["BAJA", "PARAR"], "pt": ["SAIR"], "fr": ["ARRET", "ARRÊT"],
        "de": ["STOPP", "ABMELDEN"], "it": ["BASTA"], "id": ["BERHENTI"], "ar": ["توقف"],
        "tr": ["DUR"], "hi": ["रोकें"],
    },
    Command.NO: {
        "en": ["NO"], "es": ["NO"], "it": ["NO"], "pt": ["NÃO"], "fr": ["NON"], "de": ["NEIN"],
        "hi": ["नहीं"], "id": ["TIDAK"], "ar": ["لا"], "tr": ["HAYIR"],
    },
    Command.YES: {
        "en": ["YES"], "es": ["SÍ", "SI"], "it": ["SÌ", "SI"], "pt": ["SIM"], "fr": ["OUI"],
        "de": ["JA"], "hi": ["हाँ", "हां"], "id": ["YA"], "ar": ["نعم"], "tr": ["EVET"],
    },
}  # fmt: skip

WHOLE_KINDS = {
    "stop_all": Command.STOP_ALL,
    "start_all": Command.START_ALL,
    "yes": Command.YES,
    "no": Command.NO,
    "help": Command.HELP,
    "preferences": Command.PREFERENCES,
}


def typed_variants(word: str) -> list[str]:
    """How people type a keyword: cases, punctuation, emoji, spaces, full width (ASCII)."""
    variants = [
        word,
        word.lower(),
        word.capitalize(),
        f"{word}!",
        f" {word.lower()} ",
        f"{word} 🙏",
        f"🛑{word}🛑",
        f"{word}!!! 😡",
        f"\n{word}.\n",
        f"¡{word}!",
    ]
    if word.isascii():
        variants.append("".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word))
    return variants  # fmt: skip


def _match(text: str, locale: str | None = None) -> KeywordMatch:
    found = MATCHER.match(text, preferred_locale=locale)
    assert found is not None, f"{text!r} should be a keyword ({locale})"
    return found


# -- whole-message keywords ---------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(WHOLE_KINDS))
def test_every_listed_word_matches_as_typed(locale: str, kind: str) -> None:
    for word in CATALOGS[locale].keywords[kind]:
        for typed in typed_variants(word):
            found = _match(typed, locale)
            assert found.command is WHOLE_KINDS[kind], typed
            assert found.category is None
            assert found.locale == locale
            assert locale in found.candidates


@pytest.mark.parametrize("locale", LOCALES)
def test_locale_words_report_their_own_locale_without_a_preference(locale: str) -> None:
    for kind in WHOLE_KINDS:
        for word in CATALOGS[locale].keywords[kind]:
            found = _match(word)
            assert found.candidates[0] == found.locale
            assert locale in found.candidates


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("command", list(CONTRACT))
def test_contract_english_keywords_work_in_every_locale(locale: str, command: Command) -> None:
    """Every contract word works for every contact. STOP and START (which every locale's
    messages name) keep the contact's language; another English word is answered in the
    contact's language or in English."""
    universal = command in {Command.STOP_ALL, Command.START_ALL}
    for word in CONTRACT[command]:
        for typed in typed_variants(word):
            found = _match(typed, locale)
            assert found.command is command, typed
            assert found.locale == locale if universal else found.locale in {locale, "en"}


@pytest.mark.parametrize("locale", [code for code in LOCALES if code != "en"])
def test_an_english_help_is_answered_in_english(locale: str) -> None:
    """Bug pinned: after BAJA, an English HELP was answered in Spanish. HELP and INFO are
    English words only English owns, so the customer wrote English."""
    for word in ("HELP", "help", "Help!"):
        assert _match(word, locale).locale == "en"


def test_a_word_several_languages_share_does_not_switch_the_contact() -> None:
    """Bug pinned: "SI" switched an English contact to Spanish."""
    found = _match("SI", "en")
    assert found.command is Command.YES and found.locale == "en"
    assert _match("BASTA", "en").locale == "en"
    assert _match("BAJA", "en").locale == "es"  # one language owns it: they wrote Spanish


@pytest.mark.parametrize("command", list(ISSUE_WORDS))
def test_words_named_by_the_issue(command: Command) -> None:
    for locale, words in ISSUE_WORDS[command].items():
        for word in words:
            found = _match(word)
            assert found.command is command, word
            assert locale in found.candidates, word
            assert _match(word, locale).locale == locale


def test_english_is_first_for_english_words_without_a_preference() -> None:
    stop = _match("stop")
    assert stop.locale == "en"
    assert set(stop.candidates) == set(LOCALES)


def test_shared_word_prefers_the_contact_locale_and_never_switches_them() -> None:
    no = _match("no")
    assert no.command is Command.NO
    assert no.candidates[:3] == ("en", "es", "it")  # locales listing NO, in stable order
    assert _match("no", "it").locale == "it"
    assert _match("no", "es").locale == "es"
    assert _match("no").locale == "en"
    assert _match("no", "xx").locale == "en"
    si = _match("Sí")
    assert si.candidates == ("es", "it")
    assert si.locale == "es"
    assert _match("si", "it").locale == "it"
    # A German contact typed a word Spanish and Italian share: which one they meant is unknown,
    # so they stay German (it used to switch them to Spanish).
    assert _match("si", "de").locale == "de"


def test_locale_of_a_non_english_word_wins_over_the_recorded_locale() -> None:
    assert _match("BAJA", "en").locale == "es"
    assert _match("STOPP", "fr").locale == "de"
    assert _match("توقف", "en").locale == "ar"


def test_hindi_stop_word_keeps_its_vowel_sign_and_matches() -> None:
    assert normalise_text("रोकें") == "रोकें"
    for typed in ("रोकें", " रोकें! ", "रोकें 🙏", "रोकें।"):
        found = _match(typed)
        assert (found.command, found.locale) == (Command.STOP_ALL, "hi")
    assert MATCHER.match("रोक") is None  # without its vowel sign and nasal mark it is not a word


def test_arabic_stop_word_with_tatweel_matches_but_vowel_marks_are_spelling() -> None:
    for typed in ("توقف", "تـوقـف", "توقف!", "توقف 🙏", "  توقف  "):
        found = _match(typed)
        assert (found.command, found.locale) == (Command.STOP_ALL, "ar")
    # Harakat are kept like every non-Latin mark (documented in flows/text.py): a fully vowelled
    # spelling is another string, so it is not the keyword; people do not type them in chat.
    assert MATCHER.match("تَوَقَّف") is None


@pytest.mark.parametrize("text", ["STOP ALL", "stopall", "Stop all!", "STOP   ALL", "opt-out"])
def test_stop_all_forms(text: str) -> None:
    assert _match(text).command is Command.STOP_ALL


def test_no_is_never_a_stop_word() -> None:
    for locale in LOCALES:
        for word in ("NO", "NON", "NÃO", "NEIN", "नहीं", "TIDAK", "لا", "HAYIR", "N"):
            found = MATCHER.match(word, preferred_locale=locale)
            assert found is None or found.command is Command.NO, (word, locale)


# -- category keywords --------------------------------------------------------------------------


def _category_words(catalog: LocaleCatalog, category: str) -> list[str]:
    text = catalog.categories[category]
    return [text.display, *text.aliases, category, category.replace("_", " ")]


@pytest.mark.parametrize("locale", LOCALES)
def test_verb_with_each_alias_in_both_orders(locale: str) -> None:
    catalog = CATALOGS[locale]
    kinds = {"stop_one": Command.STOP_CATEGORY, "start_one": Command.START_CATEGORY}
    for kind, command in kinds.items():
        for verb in catalog.keywords[kind]:
            for category in BUILTIN_CATEGORIES:
                for alias in _category_words(catalog, category):
                    for text in (f"{verb} {alias}", f"{alias.lower()} {verb.lower()}!"):
                        found = _match(text, locale)
                        assert (found.command, found.category) == (command, category), text
                        assert found.locale == locale


@pytest.mark.parametrize(
    ("text", "command", "category", "locale"),
    [
        ("STOP PROMOTIONS", Command.STOP_CATEGORY, "marketing", "en"),
        ("stop promotions!", Command.STOP_CATEGORY, "marketing", "en"),
        ("STOP order updates", Command.STOP_CATEGORY, "order_updates", "en"),
        ("stop order_updates", Command.STOP_CATEGORY, "order_updates", "en"),
        ("STOP: promotions", Command.STOP_CATEGORY, "marketing", "en"),
        ("START reminders", Command.START_CATEGORY, "reminders", "en"),
        ("start ACCOUNT ALERTS", Command.START_CATEGORY, "account_alerts", "en"),
        ("BAJA OFERTAS", Command.STOP_CATEGORY, "marketing", "es"),
        ("baja ofertas", Command.STOP_CATEGORY, "marketing", "es"),
        ("STOP ofertas", Command.STOP_CATEGORY, "marketing", "es"),
        ("alta promociones", Command.START_CATEGORY, "marketing", "es"),
        ("Arrêt promos", Command.STOP_CATEGORY, "marketing", "fr"),
        ("STOPP Werbung", Command.STOP_CATEGORY, "marketing", "de"),
        ("Basta promozioni", Command.STOP_CATEGORY, "marketing", "it"),
        ("sair promoções", Command.STOP_CATEGORY, "marketing", "pt"),
        ("प्रचार बंद करें", Command.STOP_CATEGORY, "marketing", "hi"),
        ("berhenti promosi", Command.STOP_CATEGORY, "marketing", "id"),
        ("إيقاف العروض", Command.STOP_CATEGORY, "marketing", "ar"),
        ("kampanyaları durdur", Command.STOP_CATEGORY, "marketing", "tr"),
        ("DUR kampanyalar", Command.STOP_CATEGORY, "marketing", "tr"),
    ],
)
def test_category_commands(text: str, command: Command, category: str, locale: str) -> None:
    found = _match(text)
    assert (found.command, found.category, found.locale) == (command, category, locale)


def test_english_alias_with_a_locale_verb_reports_the_locale() -> None:
    found = _match("BAJA PROMOTIONS")
    assert (found.command, found.category, found.locale) == (
        Command.STOP_CATEGORY,
        "marketing",
        "es",
    )


@pytest.mark.parametrize(
    "text",
    ["STOP PROMOTINS", "STOP NOW", "STOP ORDER", "STOP MY ORDER", "BAJA ESO", "START OVER"],
)
def test_verb_with_an_unknown_word_is_not_a_keyword(text: str) -> None:
    assert MATCHER.match(text) is None


def test_unknown_category_word_goes_to_intent_detection() -> None:
    assert MATCHER.opt_out_intent("STOP PROMOTINS") == IntentMatch("en", None)
    assert MATCHER.opt_out_intent("baja ofertaz", preferred_locale="es") == IntentMatch("es", None)


def test_categories_not_in_use_are_not_recognised() -> None:
    matcher = KeywordMatcher(CATALOGS, ["marketing"])
    assert matcher.match("STOP PROMOTIONS") is not None
    assert matcher.match("STOP REMINDERS") is None
    assert matcher.match("STOP") is not None


def test_extra_aliases_for_a_custom_category() -> None:
    matcher = KeywordMatcher(
        CATALOGS,
        [*BUILTIN_CATEGORIES, "vip_news"],
        {"es": {"vip_news": ["NOTICIAS VIP", "OFERTAS"]}, "en": {"vip_news": ["VIP"]}},
    )
    assert _category(matcher, "BAJA NOTICIAS VIP") == ("vip_news", "es")
    assert _category(matcher, "STOP VIP") == ("vip_news", "en")
    assert _category(matcher, "START vip news", "de") == ("vip_news", "de")
    assert _category(matcher, "STOP VIP_NEWS") == ("vip_news", "en")
    assert _category(matcher, "BAJA OFERTAS") == ("vip_news", "es")  # operator's word wins
    assert _category(matcher, "BAJA PROMOCIONES") == ("marketing", "es")


def _category(matcher: KeywordMatcher, text: str, locale: str | None = None) -> tuple[str, str]:
    found = matcher.match(text, preferred_locale=locale)
    assert found is not None and found.category is not None, text
    return found.category, found.locale


def test_extra_aliases_must_name_known_locales_and_categories() -> None:
    with pytest.raises(ValueError, match="locale"):
        KeywordMatcher(CATALOGS, BUILTIN_CATEGORIES, {"xx": {"marketing": ["X"]}})
    with pytest.raises(ValueError, match="category"):
        KeywordMatcher(CATALOGS, BUILTIN_CATEGORIES, {"es": {"nope": ["X"]}})
    with pytest.raises(ValueError, match="means both"):
        KeywordMatcher(
            CATALOGS,
            [*BUILTIN_CATEGORIES, "a", "b"],
            {"es": {"a": ["SAME"]}, "pt": {"b": ["SAME"]}},
        )


def _catalog(code: str, **keywords: tuple[str, ...]) -> LocaleCatalog:
    kinds = {kind: keywords.get(kind, ()) for kind in (*WHOLE_KINDS, "stop_one", "start_one")}
    return LocaleCatalog(
        code=code,
        name=code,
        direction="ltr",
        keywords=MappingProxyType(kinds),
        categories=MappingProxyType({"marketing": CategoryText("ads", ("ADS",))}),
        opt_out_phrases=("NO MORE {messages}",),
        message_words=("MESSAGES",),
        messages=MappingProxyType({}),
    )


def test_contradictory_catalogs_are_refused() -> None:
    with pytest.raises(ValueError, match="means both"):
        KeywordMatcher(
            {"en": _catalog("en", stop_all=("STOP",)), "xx": _catalog("xx", yes=("STOP",))},
            ["marketing"],
        )


def test_matcher_works_without_english() -> None:
    matcher = KeywordMatcher({"xx": _catalog("xx", stop_all=("HALT",))}, ["marketing"])
    assert matcher.match("halt") == KeywordMatch(Command.STOP_ALL, None, "xx", ("xx",))
    assert matcher.match("STOP") is None
    assert matcher.opt_out_intent("no more ads") == IntentMatch("xx", "marketing")
    assert KeywordMatcher({}, []).match("STOP") is None


# -- near misses --------------------------------------------------------------------------------

NEAR_MISSES = {
    "en": [
        "I want to cancel my order", "stop by the store tomorrow", "don't stop",
        "end of the month?", "yes but later", "STOPPED", "stopp it", "unstoppable", "STOPSTOP",
        "no stop", "please cancel the order", "help me with my order", "the menu please",
        "stop the delivery",
    ],
    "es": ["quiero cancelar mi pedido", "el precio baja mañana", "no puedo parar", "sí pero luego"],
    "pt": ["quero cancelar meu pedido", "vou sair de casa agora", "sim mas depois"],
    "fr": ["je veux annuler ma commande", "l'arrêt de bus est où ?", "oui mais plus tard"],
    "de": ["Ich will mich später abmelden", "ja aber später", "Stopp am Eingang bitte"],
    "it": ["voglio annullare il mio ordine", "basta così, grazie", "sì ma più tardi"],
    "hi": ["मैं अपना ऑर्डर रद्द करना चाहता हूँ", "दुकान बंद है", "हाँ लेकिन बाद में"],
    "id": ["saya mau batalkan pesanan saya", "ya tapi nanti", "berhenti di depan toko"],
    "ar": ["أريد إلغاء طلبي", "نعم لكن لاحقا", "توقف عند المتجر"],
    "tr": ["siparişimi iptal etmek istiyorum", "evet ama sonra", "dur bakalım ne olacak"],
}  # fmt: skip


@pytest.mark.parametrize("locale", LOCALES)
def test_near_misses_are_not_keywords(locale: str) -> None:
    for text in NEAR_MISSES[locale]:
        assert MATCHER.match(text, preferred_locale=locale) is None, text


@pytest.mark.parametrize("locale", LOCALES)
def test_stop_word_inside_a_sentence_is_not_a_keyword(locale: str) -> None:
    for word in CATALOGS[locale].keywords["stop_all"]:
        for text in (f"please {word} the delivery tomorrow", f"I said {word} yesterday, ok?"):
            assert MATCHER.match(text, preferred_locale=locale) is None, text


# -- unclear opt-out intent ---------------------------------------------------------------------

INTENT_POSITIVE: dict[str, list[tuple[str, str | None]]] = {
    "en": [
        ("please stop sending me these", None), ("no more promotions", "marketing"),
        ("unsubscribe me", None), ("Can you stop sending me messages?", None),
        ("How do I opt out?", None), ("I don't want reminders", "reminders"),
        ("Please remove me from your list", None),
        ("stop sending me order updates", "order_updates"),
        ("Stop promotins", None),
    ],
    "es": [
        ("por favor dejen de enviarme mensajes", None), ("no más promociones", "marketing"),
        ("quiero darme de baja", None), ("no quiero recibir recordatorios", "reminders"),
    ],
    "pt": [
        ("parem de me enviar mensagens", None), ("chega de promoções", "marketing"),
        ("quero sair da lista", None), ("não quero mais lembretes", "reminders"),
    ],
    "fr": [
        ("Arrêtez de m’envoyer des messages", None),
        ("je ne veux plus de promotions", "marketing"), ("comment me désabonner ?", None),
        ("désabonnez-moi svp", None),
    ],
    "de": [
        ("Bitte keine Werbung mehr", "marketing"), ("Hört auf, mir zu schreiben", None),
        ("Wie kann ich mich abmelden?", None), ("Ich möchte keine Erinnerungen", "reminders"),
    ],
    "it": [
        ("smettete di inviarmi messaggi", None), ("basta promozioni per favore", "marketing"),
        ("non voglio più ricevere promemoria", "reminders"), ("toglietemi dalla lista", None),
    ],
    "hi": [
        ("मुझे प्रचार मैसेज नहीं चाहिए", "marketing"), ("कृपया मैसेज मत भेजो", None),
        ("message mat bhejo", None), ("मुझे रिमाइंडर नहीं चाहिए", "reminders"),
    ],
    "id": [
        ("tolong berhenti kirim pesan", None), ("jangan kirim promosi lagi", "marketing"),
        ("hapus saya dari daftar", None),
    ],
    "ar": [
        ("توقفوا عن إرسال الرسائل", None), ("لا أريد العروض", "marketing"),
        ("أريد إلغاء الاشتراك من فضلك", None),
    ],
    "tr": [
        ("lütfen mesaj göndermeyin", None), ("kampanyalar istemiyorum", "marketing"),
        ("beni listeden çıkarın", None),
    ],
}  # fmt: skip

INTENT_NEGATIVE = {
    "en": [
        "I want to cancel my order", "stop by the store tomorrow", "don't stop",
        "end of the month?", "yes but later", "Please don't send me the invoice yet",
        "I have no more questions", "The promotion ends tomorrow",
        "I don't want to receive the parcel on Monday", "can you stop the delivery?",
        "I did not receive any more items", "thanks!", "",
    ],
    "es": [
        "quiero cancelar mi pedido", "no me envíen el pedido todavía",
        "no quiero recibir el paquete el lunes", "el precio baja mañana",
    ],
    "pt": [
        "quero cancelar meu pedido", "não quero receber a encomenda segunda", "vou sair de casa",
    ],
    "fr": ["je veux annuler ma commande", "l'arrêt de bus est où ?", "oui mais plus tard"],
    "de": [
        "Ich möchte meine Bestellung stornieren", "Wann hört der Regen auf?",
        "Ich habe keine Bestellinfos bekommen",
    ],
    "it": ["voglio annullare il mio ordine", "basta così, grazie", "cancellami l'ordine di ieri"],
    "hi": ["मैं अपना ऑर्डर रद्द करना चाहता हूँ", "पार्सल अभी मत भेजो", "दुकान बंद है"],
    "id": ["saya mau batalkan pesanan saya", "jangan kirim paketnya dulu"],
    "ar": ["أريد إلغاء طلبي", "لا ترسل الطلب الآن"],
    "tr": ["siparişimi iptal etmek istiyorum", "kargoyu henüz göndermeyin"],
}  # fmt: skip


@pytest.mark.parametrize("locale", LOCALES)
def test_intent_phrases_are_detected_with_their_locale_and_category(locale: str) -> None:
    for text, category in INTENT_POSITIVE[locale]:
        for preferred in (None, locale, "en"):
            found = MATCHER.opt_out_intent(text, preferred_locale=preferred)
            assert found is not None, text
            assert found.category == category, text
            assert found.locale == locale, (text, preferred)


@pytest.mark.parametrize("locale", LOCALES)
def test_near_misses_are_not_intent(locale: str) -> None:
    for text in INTENT_NEGATIVE[locale]:
        assert MATCHER.opt_out_intent(text, preferred_locale=locale) is None, text


@pytest.mark.parametrize("text", ["STOP", "unsubscribe", "STOP PROMOTIONS", "BAJA", "no", "yes"])
def test_a_keyword_is_never_an_unclear_intent(text: str) -> None:
    assert MATCHER.match(text) is not None
    assert MATCHER.opt_out_intent(text) is None


def test_intent_names_no_category_when_several_are_mentioned() -> None:
    found = MATCHER.opt_out_intent("no more promotions and no more reminders")
    assert found == IntentMatch("en", None)


def test_english_intent_of_a_spanish_contact_keeps_spanish() -> None:
    assert MATCHER.opt_out_intent("no more promotions", preferred_locale="es") == IntentMatch(
        "es", "marketing"
    )


# -- message texts and keywords agree ------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_category_keyword_suggested_by_messages_works(locale: str) -> None:
    catalog = CATALOGS[locale]
    cases = {
        "stop_category_confirmation": Command.START_CATEGORY,
        "start_category_confirmation": Command.STOP_CATEGORY,
    }
    for key, command in cases.items():
        verb = re.search(r"(\S+) \{category_keyword\}", catalog.messages[key])
        assert verb is not None, key
        for category in BUILTIN_CATEGORIES:
            text = f"{verb.group(1)} {catalog.category_keyword(category)}"
            found = _match(text, locale)
            assert (found.command, found.category, found.locale) == (command, category, locale)


@pytest.mark.parametrize("locale", LOCALES)
def test_upper_case_words_in_messages_are_keywords_of_the_locale(locale: str) -> None:
    catalog = CATALOGS[locale]
    known: set[str] = set()
    for source in (catalog, CATALOGS["en"]):
        for words in source.keywords.values():
            known.update(w for word in words for w in split_words(normalise_text(word)))
        for category in source.categories.values():
            known.update(
                w for alias in category.aliases for w in split_words(normalise_text(alias))
            )
    values = {"business": "Acme", "categories": "x", "category": "x", "status": "x"}
    checked: set[str] = set()
    for key in catalog.messages:
        text = catalog.render(
            key,
            **values,
            category_keyword=catalog.category_keyword("marketing"),
            status_list="x",
        )
        for word in re.findall(r"[^\W\d_]{2,}", text):
            if word == word.upper() and word != word.lower():
                assert normalise_text(word) in known, (key, word)
                checked.add(normalise_text(word))
    assert {"STOP", "START", "HELP"} <= checked  # every locale also names the English keywords


# -- robustness ---------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.text(max_size=80), st.sampled_from([None, "en", "es", "hi", "xx"]))
def test_matcher_never_raises(text: str, locale: str | None) -> None:
    found = MATCHER.match(text, preferred_locale=locale)
    if found is not None:
        assert found.locale in found.candidates
    intent = MATCHER.opt_out_intent(text, preferred_locale=locale)
    assert intent is None or intent.locale in CATALOGS


@settings(max_examples=200)
@given(
    st.lists(
        st.sampled_from(["STOP", "stop", "NO", "more", "promotions", "me", "सेंड", "!", "🙏"]),
        max_size=8,
    )
)
def test_matching_depends_only_on_the_normalised_text(words: list[str]) -> None:
    text = " ".join(words)
    normalised = normalise_text(text)
    assert MATCHER.match(text) == MATCHER.match(normalised)
    assert MATCHER.match(text.lower(), preferred_locale="es") == MATCHER.match(
        normalised, preferred_locale="es"
    )
    assert MATCHER.opt_out_intent(text) == MATCHER.opt_out_intent(normalised)
