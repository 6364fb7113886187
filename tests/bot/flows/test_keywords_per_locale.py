"""Every locale's own stop word opts out and is answered in that locale; near misses never are."""

from __future__ import annotations

import pytest

from flows.locale_catalog import LocaleCatalog
from tests.bot.flows.conftest import BUSINESS, every, fresh_chat
from tests.fakes.chat import Chat

STOP_WORDS = {
    "en": "STOP",
    "es": "BAJA",
    "pt": "SAIR",
    "fr": "arret",
    "de": "Stopp",
    "it": "FERMA",
    "id": "BERHENTI",
    "ar": "توقف",
    "tr": "DUR",
    "hi": "रोकें",
}

NEAR_MISSES = {
    "en": ["I want to cancel my order", "stop by the store", "STOPPED"],
    "es": ["quiero cancelar mi pedido", "¿el precio baja mañana?", "BAJADA"],
    "pt": ["quero cancelar meu pedido", "vou sair de casa agora", "SAIRAM"],
    "fr": ["je veux annuler ma commande", "arrêt de bus", "ARRÊTÉ"],
    "de": ["ich möchte meine Bestellung stornieren", "Ende der Woche", "STOPPSCHILD"],
    "it": ["voglio annullare il mio ordine", "basta così per oggi grazie", "BASTANO"],
    "id": ["saya mau batalkan pesanan saya", "berhenti di halte", "BERHENTINYA"],
    "ar": ["أريد إلغاء طلبي", "توقفت"],
    "tr": ["siparişimi iptal etmek istiyorum", "durak nerede", "DURUM"],
    "hi": ["मैं अपना ऑर्डर रद्द करना चाहता हूँ", "रोकेंगे", "बंदर"],
}


def test_every_locale_is_covered(locales: dict[str, LocaleCatalog]) -> None:
    assert set(STOP_WORDS) == set(locales) == set(NEAR_MISSES)


async def assert_stopped_in(chat: Chat, catalog: LocaleCatalog, word: str) -> None:
    assert await chat.consent() == every("opted_out")
    rows = await chat.ledger()
    assert len(rows) == 4 and {(r.action, r.method) for r in rows} == {("withdrawn", "keyword")}
    assert rows[0].evidence["text"] == word
    (reply,) = await chat.replies()
    assert reply.text == catalog.render("stop_all_confirmation", business=BUSINESS)


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("locale", "word"), list(STOP_WORDS.items()))
async def test_the_locales_stop_word_opts_out_and_confirms_in_that_locale(
    shared_app: Chat, locales: dict[str, LocaleCatalog], locale: str, word: str
) -> None:
    chat = fresh_chat(shared_app)
    await chat.say(word)
    await assert_stopped_in(chat, locales[locale], word)
    assert (await chat.contact()).locale == locale


@pytest.mark.asyncio(loop_scope="module")
async def test_near_misses_never_opt_out_in_any_locale(shared_app: Chat) -> None:
    tried = []
    for locale, texts in NEAR_MISSES.items():
        for text in texts:
            chat = fresh_chat(shared_app)
            tried.append((chat, locale, text))
            await chat.say(text, wait=False)
    await shared_app.wait_idle()

    for chat, locale, text in tried:
        assert await chat.consent() == every("none"), (locale, text)
        assert await chat.ledger() == [], (locale, text)
        assert await chat.replies() == [], (locale, text)


async def test_an_arabic_stop_on_each_stack(chat: Chat, locales: dict[str, LocaleCatalog]) -> None:
    await chat.say("توقف")
    await assert_stopped_in(chat, locales["ar"], "توقف")


async def test_english_stop_is_answered_in_the_contacts_known_language(
    chat: Chat, locales: dict[str, LocaleCatalog]
) -> None:
    chat = chat
    await chat.say("AYUDA")
    await chat.replies()

    await chat.say("STOP")

    await assert_stopped_in(chat, locales["es"], "STOP")


async def test_a_stop_word_several_languages_share_follows_the_contacts_language(
    chat: Chat, locales: dict[str, LocaleCatalog]
) -> None:
    chat = chat
    await chat.say("AIUTO")  # Italian: now we know the contact's language
    await chat.replies()

    await chat.say("BASTA")  # a stop word in es, it and pt

    await assert_stopped_in(chat, locales["it"], "BASTA")


async def test_an_english_help_after_baja_is_answered_in_english(
    chat: Chat, locales: dict[str, LocaleCatalog]
) -> None:
    """Bug pinned: after BAJA, an English HELP was answered in Spanish."""
    await chat.say("BAJA")
    await chat.replies()

    await chat.say("HELP")

    (answer,) = await chat.replies()
    assert answer.text.startswith("This is Acme Shoes on WhatsApp.")
    assert (await chat.contact()).locale == "en"


async def test_a_word_several_languages_share_does_not_switch_an_english_contact(
    chat: Chat,
) -> None:
    """Bug pinned: "SI" switched a UK contact to Spanish."""
    await chat.say("HELP")
    await chat.say("START")
    await chat.replies()

    await chat.say("SI")

    assert await chat.consent() == every("opted_in")
    (answer,) = await chat.replies()
    assert answer.text.startswith("Thank you.")
    assert (await chat.contact()).locale == "en"
