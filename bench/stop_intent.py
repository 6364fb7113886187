"""Cost of understanding every way a customer says stop, against the plain keyword matcher.

Classifies every message of the stop-intent corpus (`tests/corpus/*.toml`, all lists, as from a
contact of the file's locale) with, in the same run and alternating round by round so a noisy
moment hurts all three:

- the plain keyword matcher (`KeywordMatcher.match`): the baseline;
- the keyword matcher then the locale files' `[intents]` phrases (the path before the scorer);
- the keyword matcher then the stop-intent scorer (`StopIntentScorer.assess`), today's path.

Prints microseconds per message for each (best round) and the ratios to the baseline. Pure CPU,
no services.

    python bench/stop_intent.py [--rounds 5] [--repeat 20]
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.categories import BUILTIN  # noqa: E402
from bot.locales import load_locales, load_stop_words  # noqa: E402
from flows.keywords import KeywordMatcher  # noqa: E402
from flows.stop_intent import StopIntentScorer  # noqa: E402

Message = tuple[str, str]


def corpus() -> list[Message]:
    messages = []
    for path in sorted((ROOT / "tests" / "corpus").glob("*.toml")):
        data = tomllib.loads(path.read_text("utf-8"))
        for kind in ("stop", "near_miss", "held_out_stop", "held_out_near_miss"):
            messages.extend((data["locale"], text) for text in data[kind])
    return messages


def timed(classify: Callable[[str, str], object], messages: list[Message], repeat: int) -> float:
    """Microseconds per message over `repeat` passes."""
    start = time.perf_counter()
    for _ in range(repeat):
        for locale, text in messages:
            classify(text, locale)
    return (time.perf_counter() - start) / (repeat * len(messages)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    catalogs = load_locales()
    matcher = KeywordMatcher(catalogs, [c.name for c in BUILTIN])
    scorer = StopIntentScorer(matcher, catalogs, load_stop_words(locales=list(catalogs)))
    messages = corpus()

    def keyword(text: str, locale: str) -> object:
        return matcher.match(text, preferred_locale=locale)

    def phrases(text: str, locale: str) -> object:
        return matcher.match(text, preferred_locale=locale) or matcher.opt_out_intent(
            text, preferred_locale=locale
        )

    def stop_intent(text: str, locale: str) -> object:
        return matcher.match(text, preferred_locale=locale) or scorer.assess(
            text, preferred_locale=locale
        )

    paths = {
        "keyword matcher (baseline)": keyword,
        "keywords + [intents] phrases": phrases,
        "keywords + stop-intent scorer": stop_intent,
    }
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(args.rounds):
        for name, classify in paths.items():
            best[name] = min(best[name], timed(classify, messages, args.repeat))
    baseline = best["keyword matcher (baseline)"]
    print(f"{len(messages)} messages, {args.rounds} rounds of {args.repeat} passes (best round)")
    for name, micros in best.items():
        print(f"{name:32} {micros:8.1f} us/message   ratio {micros / baseline:5.1f}x")


if __name__ == "__main__":
    main()
