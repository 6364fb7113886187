"""Every way a customer says stop (flows/stop_intent.py), measured on tests/corpus/.

Before the scorer the bot said nothing at all to "stpo", "remove me", a lone "🛑", "cancella
iscrizione", "لا ترسل لي رسائل", "not interested", "wrong number", "who is this? stop"... and asked
"stop?" to "jangan berhenti kirim promo ya" ("don't stop the promos"). The tuning lists pin that
every wish to stop gets at least the question and no near miss does; the held-out lists measure
recall and false alarms on messages the data was not tuned on (see tests/corpus/README.md).
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest

from bot.categories import BUILTIN
from bot.locales import LocaleError, load_locales, load_stop_words
from flows import events as ev
from flows.classify import Classifier
from flows.keywords import KeywordMatcher
from flows.machine import Trigger
from flows.stop_intent import EVIDENCE_KEY, StopIntentScorer, StopWords

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WHO = ev.ContactRef(wa_id="15551234567", user_id=None)
ASKED_OR_STOPPED = frozenset({Trigger.STOP_ALL, Trigger.STOP_CATEGORY, Trigger.OPT_OUT_INTENT})
#: Regression floors of the held-out measure, set just below the last blind figures (round
#: six: recall 0.73, near misses asked 0.04); the goal is 1.00 and at most 0.02, and no near
#: miss is ever opted out (tests/corpus/README.md reports every round).
RECALL_FLOOR = 0.7
ASKED_CEILING = 0.05


@cache
def corpus() -> dict[str, dict[str, list[str]]]:
    return {p.stem: tomllib.loads(p.read_text("utf-8")) for p in sorted(CORPUS.glob("*.toml"))}


@cache
def scorer() -> StopIntentScorer:
    catalogs = load_locales()
    matcher = KeywordMatcher(catalogs, [c.name for c in BUILTIN])
    return StopIntentScorer(matcher, catalogs, load_stop_words(locales=list(catalogs)))


@cache
def classifier() -> Classifier:
    catalogs = load_locales()
    matcher = KeywordMatcher(catalogs, [c.name for c in BUILTIN])
    return Classifier(matcher, BUILTIN, stop_intent=scorer())


def classify(body: str, locale: str | None = "en") -> tuple[Trigger, dict[str, str]]:
    event = ev.TextMessage(
        event_id="msg:w1", phone_number_id="1", occurred_at=NOW, contact=WHO, wamid="w1", body=body
    )
    flow = classifier().classify(event, preferred_locale=locale).flow
    assert flow is not None
    return flow.trigger, dict(flow.evidence)


def asked_or_stopped(body: str, locale: str) -> bool:
    return classify(body, locale)[0] in ASKED_OR_STOPPED


def cases(kind: str) -> list[tuple[str, str]]:
    return [(code, text) for code, data in corpus().items() for text in data[kind]]


# the corpus itself --------------------------------------------------------------------------


def test_the_corpus_covers_every_locale_with_a_quarter_held_out() -> None:
    # Each round's held-out lists join the tuning lists once measured; the newest round is the
    # held-out share, at least a quarter (README "How it was built").
    assert set(corpus()) == set(load_locales())
    for code, data in corpus().items():
        assert data["locale"] == code
        for kind in ("stop", "near_miss"):
            tuning, held_out = data[kind], data[f"held_out_{kind}"]
            assert len(tuning) + len(held_out) >= 40, (code, kind)
            assert len(held_out) * 4 >= len(tuning) + len(held_out), (code, kind)
            assert not set(tuning) & set(held_out), (code, kind)


# tuning lists -------------------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "text"), cases("stop"))
def test_every_wish_to_stop_gets_at_least_the_question(locale: str, text: str) -> None:
    assert asked_or_stopped(text, locale)


@pytest.mark.parametrize(("locale", "text"), cases("near_miss"))
def test_no_near_miss_is_asked_or_stopped(locale: str, text: str) -> None:
    trigger, evidence = classify(text, locale)
    assert trigger not in ASKED_OR_STOPPED, evidence.get(EVIDENCE_KEY)


# held-out measure ---------------------------------------------------------------------------


def outcome(body: str, locale: str) -> str:
    """ "stopped" (a keyword acted on), "asked" (the clarifying question) or "none"."""
    trigger = classify(body, locale)[0]
    if trigger is Trigger.OPT_OUT_INTENT:
        return "asked"
    return "stopped" if trigger in ASKED_OR_STOPPED else "none"


def test_held_out_recall_and_false_alarms(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"{'locale':8}{'n':>4}{'recall':>12}{'near misses stopped':>22}{'asked':>9}"]
    recalled = stops = stopped = asked = misses = 0
    for code, data in corpus().items():
        wishes, near = data["held_out_stop"], data["held_out_near_miss"]
        hits = sum(outcome(t, code) != "none" for t in wishes)
        near_outcomes = [outcome(t, code) for t in near]
        n_stopped, n_asked = near_outcomes.count("stopped"), near_outcomes.count("asked")
        recalled, stops = recalled + hits, stops + len(wishes)
        stopped, asked, misses = stopped + n_stopped, asked + n_asked, misses + len(near)
        lines.append(
            f"{code:8}{len(wishes):>4}{hits:>7}/{len(wishes):<4}"
            f"{n_stopped:>17}/{len(near):<4}{n_asked:>5}/{len(near)}"
        )
    recall, asked_rate = recalled / stops, asked / misses
    lines.append(
        f"{'all':8}{stops:>4}{recall:>12.2f}{stopped:>17}/{misses:<4}{asked_rate:>9.2f}"
        f"   (goal: 1.00, 0, <= 0.02)"
    )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert stopped == 0, "a near miss was opted out"
    assert recall >= RECALL_FLOOR
    assert asked_rate <= ASKED_CEILING


# the bugs, one by one -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "locale", "reason"),
    [
        ("stpo", "en", "typo of STOP (en, de)"),
        ("unsubscirbe", "en", "typo of UNSUBSCRIBE (en)"),
        ("remove me", "en", 'phrase "remove me" (en)'),
        ("🛑", "en", "stop-sign emoji 🛑 on its own"),
        ("cancella iscrizione", "it", 'phrase "cancella iscrizione" (it)'),
        ("not interested", "es", 'phrase "not interested" (en)'),
        ("too many messages", "en", 'phrase "too many messages" (en)'),
        ("wrong number", "en", 'phrase "wrong number" (en)'),
        ("who is this? stop", "en", 'sentence "stop" is the keyword STOP (en)'),
        ("no me interesa", "es", 'phrase "no me interesa" (es)'),
        ("لا ترسل لي رسائل", "ar", 'phrase "لا ترسل لي" (ar)'),
    ],
)
def test_messages_the_bot_ignored_now_get_the_question_with_their_reason(
    text: str, locale: str, reason: str
) -> None:
    """Regression: each of these was OTHER_MESSAGE (no answer at all) before the scorer."""
    trigger, evidence = classify(text, locale)
    assert trigger is Trigger.OPT_OUT_INTENT
    assert evidence[EVIDENCE_KEY] == reason


@pytest.mark.parametrize(
    ("text", "locale"),
    [
        ("jangan berhenti kirim promo ya", "id"),
        ("don't stop the promos", "en"),
        ("no paren de mandar ofertas", "es"),
        ("nicht aufhören mit den angeboten", "de"),
        ("ऑफर भेजना बंद मत करो", "hi"),
    ],
)
def test_a_negated_stop_is_not_asked_about(text: str, locale: str) -> None:
    """Regression: "jangan berhenti kirim promo ya" ("don't stop the promos") got "stop?"."""
    assert classify(text, locale)[0] is Trigger.OTHER_MESSAGE
    assert scorer().negation(text) is not None


def test_keywords_still_act_at_once_and_carry_no_question() -> None:
    assert classify("STOP")[0] is Trigger.STOP_ALL
    assert classify("baja", "es")[0] is Trigger.STOP_ALL
    assert EVIDENCE_KEY not in classify("STOP")[1]


def test_an_existing_intent_phrase_keeps_its_category_and_names_the_phrase() -> None:
    trigger, evidence = classify("no more promotions")
    assert trigger is Trigger.OPT_OUT_INTENT
    assert evidence[EVIDENCE_KEY] == 'phrase "no more promotions" (en)'
    found = scorer().assess("no more promotions", preferred_locale="en")
    assert found is not None and found.category == "marketing"


def test_a_short_phrase_counts_only_when_it_ends_the_sentence() -> None:
    assert classify("i am not interested")[0] is Trigger.OPT_OUT_INTENT
    assert classify("not interested in the blue one")[0] is Trigger.OTHER_MESSAGE
    assert classify("you sent the wrong number of items")[0] is Trigger.OTHER_MESSAGE


def test_ordinary_words_near_a_keyword_are_not_typos() -> None:
    assert classify("shop")[0] is Trigger.OTHER_MESSAGE
    # Accents tell "arrêté" (stopped) from "arrete" (stop, typed without its accent).
    assert classify("ARRÊTÉ", "fr")[0] is Trigger.OTHER_MESSAGE
    assert classify("arrete", "fr")[0] is Trigger.OPT_OUT_INTENT


def test_an_english_phrase_keeps_the_contacts_language() -> None:
    found = scorer().assess("wrong number", preferred_locale="tr")
    assert found is not None and found.locale == "tr"
    found = scorer().assess("no me interesa", preferred_locale="en")
    assert found is not None and found.locale == "es"


def test_stop_data_for_an_unknown_locale_is_refused() -> None:
    catalogs = load_locales()
    matcher = KeywordMatcher(catalogs, [c.name for c in BUILTIN])
    with pytest.raises(ValueError, match="unknown locales: xx"):
        StopIntentScorer(matcher, catalogs, {"xx": StopWords(code="xx")})


def test_a_broken_stop_data_file_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "en.toml").write_text(
        'phrases = ["a"]\nshort_phrases = ["b"]\nmax_words_before = -1\n'
        'negations = ["c"]\nfillers = ["d"]\nnot_typos = ["e"]\nstop_words = ["f"]\n'
        'message_words = ["g"]\ncontact_words = ["h"]\nrefusals = ["i"]\ntoo_many = ["k"]\n'
        'business_words = ["j"]\n',
        "utf-8",
    )
    with pytest.raises(LocaleError, match="max_words_before"):
        load_stop_words(tmp_path)
    (tmp_path / "en.toml").write_text(
        (tmp_path / "en.toml").read_text("utf-8").replace("-1", "2"), "utf-8"
    )
    assert load_stop_words(tmp_path)["en"].max_words_before == 2
    with pytest.raises(LocaleError, match=r"es\.toml"):
        load_stop_words(tmp_path, locales=["en", "es"])


# cue words (flows/stop_cues.py) ---------------------------------------------------------------
# Before them the scorer knew only whole listed phrases: round two's wishes, written apart from
# the data, were recalled one in two ("unsubscribing me from all these", "pls take my number
# off" in another form, "bitte keine werbung mehr schicken").


@pytest.mark.parametrize(
    ("text", "locale", "reason"),
    [
        ("cancel all these notifications", "en", 'words "cancel" + "these" (en)'),
        ("quero que parem com as propagandas", "pt", 'words "parem" + "propaganda*" (pt)'),
        ("smettete con sti messaggi", "it", 'words "smett*" + "messag*" (it, en)'),
        ("i want to be unsubscirbed", "en", 'words "unsub*" + "want" (en)'),
        ("pls block", "en", 'word "block*" in a short sentence (en)'),
    ],
)
def test_cue_words_recognise_unlisted_phrasings_and_say_why(
    text: str, locale: str, reason: str
) -> None:
    found = scorer().assess(text, preferred_locale=locale)
    assert found is not None and found.reason.startswith(reason), found


@pytest.mark.parametrize(
    ("text", "locale"),
    [
        ("can i remove the gift wrap from my order", "en"),
        ("ich will mich anmelden", "de"),  # one letter from "abmelden": never a typo of it
        ("kampanya ne zaman bitiyor?", "tr"),  # Turkish "ne" (what) is not French "ne"
        ("annuler l'échange possible ?", "fr"),  # "l'échange": the elided article is seen
        ("jangan berhenti kirim promonya", "id"),
    ],
)
def test_cue_words_stay_quiet_about_the_business_and_across_languages(
    text: str, locale: str
) -> None:
    assert scorer().assess(text, preferred_locale=locale) is None
