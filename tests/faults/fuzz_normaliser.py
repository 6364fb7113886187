"""Coverage-guided fuzzing of what POST /webhook does with a body, with atheris (libFuzzer).

Hypothesis (tests/faults/test_fuzz_webhook.py) explores the shapes we thought of; atheris mutates
bytes guided by the branches they reach in the normaliser, and finds the shapes we did not. Each
input goes the webhook's way: UTF-8, JSON, `normalise`, then every event through the stream codec.
The only exceptions allowed are the ones the webhook turns into a 400; anything else, or an event
that does not survive `encode_event`/`decode_event`, is a crash that libFuzzer reports with the
input that caused it.

    python tests/faults/fuzz_normaliser.py [CORPUS_DIR] -runs=100000 -max_len=65536

With a corpus directory it starts from the files there (test_atheris_fuzz.py writes the real
envelopes of the other tests into one). atheris is in the `test` extra; it installs from a
binary wheel on Linux x86-64 for CPython 3.11.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import atheris

NORMALISER_MODULES = [
    "bot.normaliser",
    "bot.normaliser_change",
    "bot.normaliser_messages",
    "bot.normaliser_updates",
    "bot.normaliser_values",
]

with atheris.instrument_imports(include=NORMALISER_MODULES):
    from bot import normaliser
    from bot.eventcodec import decode_event, encode_event

RECEIVED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def one_body(data: bytes) -> None:
    try:
        payload = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # what the webhook answers 400 to
        return
    try:
        events = normaliser.normalise(payload, received_at=RECEIVED_AT)
    except normaliser.NotAnEnvelope:
        return
    for event in events:
        text = encode_event(event)
        text.encode("utf-8")  # what the Redis client does with it
        if decode_event(text) != event:
            raise AssertionError(f"{type(event).__name__} does not survive the stream codec")


def main() -> None:
    atheris.Setup(sys.argv, one_body)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
