"""Does a template carry a way out? Read from its components as Meta's template list gives them.

A marketing template must let the customer stop: WhatsApp's own policy, the TCPA's STOP and
GDPR's withdrawable consent all ask for it. Meta lists each approved template's components
(`HEADER`, `BODY`, `FOOTER`, `BUTTONS`); a template carries a way out when

- one of its `QUICK_REPLY` buttons is, as a whole, a stop the bot itself acts on: the text the
  customer's tap sends back ("STOP", "Stop promotions", "BAJA", "Darme de baja") is read by the
  same `KeywordMatcher` as a typed message, so a button that counts here is one that works; or
- its `FOOTER` tells the customer such a stop: a stop verb with a category ("Tap Stop
  promotions", in any case), or a stop word written in capitals as the customer is told to type
  it ("Reply STOP to unsubscribe", "Responde BAJA"). Capitals are required for a lone stop word
  because several are everyday words in a sentence ("ofertas PARA socios" is no way out, "para
  socios" neither); in scripts without capitals (Arabic, Devanagari) any occurrence counts.

The words are every locale file's `stop_all` and `stop_one` keywords and category words, never an
English list: a Spanish template's "BAJA" counts as surely as "STOP".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from flows.keywords import Command, KeywordMatcher

#: The longest run of footer words tried as one stop ("OPT OUT ORDER NOTIFICATIONS" is 4).
MAX_PHRASE_WORDS: Final = 6
_STOPS: Final = frozenset({Command.STOP_ALL, Command.STOP_CATEGORY})


def _upper(value: object) -> str:
    return value.upper() if isinstance(value, str) else ""


def _in_capitals(text: str) -> bool:
    """No lower-case letter: "STOP", "BAJA", "توقف" (no case at all) are; "Stop" is not."""
    return not any(char.islower() for char in text)


def _is_stop(matcher: KeywordMatcher, text: str) -> Command | None:
    found = matcher.match(text)
    if found is None or found.command not in _STOPS:
        return None
    return found.command


def quick_reply_opt_out(matcher: KeywordMatcher, text: str) -> bool:
    """Whether tapping a quick reply titled `text` is a stop the bot acts on."""
    return _is_stop(matcher, text) is not None


def footer_opt_out(matcher: KeywordMatcher, text: str) -> str | None:
    """The words of `text` that tell the customer how to stop, or None (see the module)."""
    tokens = text.split()
    for start in range(len(tokens)):
        for end in range(start + 1, min(start + MAX_PHRASE_WORDS, len(tokens)) + 1):
            phrase = " ".join(tokens[start:end])
            command = _is_stop(matcher, phrase)
            if command is Command.STOP_CATEGORY or (
                command is Command.STOP_ALL and _in_capitals(phrase)
            ):
                return phrase
    return None


def opt_out_of(matcher: KeywordMatcher, components: Iterable[Mapping[str, Any]]) -> str | None:
    """How a template's components let the customer stop (for logs and answers), or None."""
    for component in components:
        kind = _upper(component.get("type"))
        if kind == "BUTTONS":
            for button in component.get("buttons") or ():
                if not isinstance(button, Mapping) or _upper(button.get("type")) != "QUICK_REPLY":
                    continue
                title = button.get("text")
                if isinstance(title, str) and quick_reply_opt_out(matcher, title):
                    return f"quick reply {title!r}"
        elif kind == "FOOTER":
            footer = component.get("text")
            if isinstance(footer, str) and footer_opt_out(matcher, footer) is not None:
                return f"footer {footer!r}"
    return None
