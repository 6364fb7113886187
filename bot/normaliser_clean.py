"""The one place where customer-typed text and customer ids are made safe to keep.

Everything a customer can fill in reaches us inside Meta's JSON: the message text, captions,
the profile name that rides on every message, button and list titles and payloads, location
names, contact cards, reaction emoji, order text, referral fields. JSON can carry characters
PostgreSQL's `text` cannot store: NUL (`\\u0000`, refused by PostgreSQL in any text value) and
lone UTF-16 surrogates (`\\ud800`, which have no UTF-8 form at all). One such character in a
profile name made every event of that customer fail to store, so the customer could never opt
out. The normaliser's scalar reader (`bot.normaliser_values.text_or_none`) passes every string
through `clean_text`, so every field of every event is clean once, at the edge, and nothing
downstream has to think about it.

Customer ids are checked here too (`valid_wa_id`, `valid_user_id`), because an id becomes a
contact, a Redis key and an API path: a sender that is not a well-formed id makes its message an
`Unknown` event (reason `invalid_sender`) instead of a contact. The rules:

- `wa_id` (`messages[].from`, `contacts[].wa_id`, `statuses[].recipient_id`, ...): ASCII digits
  only, 1 to 20 of them. A wa_id is the digits of an E.164 number (at most 15) or a test id;
  20 leaves room without letting anything else through.
- user ids (BSUID, `from_user_id`, `contacts[].user_id`, parent user ids): 1 to 128 ASCII
  letters, digits, `.`, `_` and `-`, starting with a letter or digit and without `..`
  (Meta's form is `CC.digits`, parents `CC.ENT.digits`).

The checks are plain string tests (no regex on the common ASCII path) because they run inside
the webhook request.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "INVALID_SENDER",
    "MAX_USER_ID",
    "MAX_WA_ID",
    "clean_text",
    "valid_user_id",
    "valid_wa_id",
]

#: The reason (prefix) of the `Unknown` event a message from a malformed sender id becomes.
INVALID_SENDER: Final = "invalid_sender"
MAX_WA_ID: Final = 20
MAX_USER_ID: Final = 128

# NUL and every surrogate code point: PostgreSQL text cannot hold them (see the module docstring).
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
_USER_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def clean_text(text: str) -> str:
    """`text` without the characters PostgreSQL cannot store (NUL, lone surrogates).

    The characters are removed rather than replaced, so "STOP\\u0000" is the keyword "STOP".
    Text without them (nearly all) is returned as it is, the same object.
    """
    if text.isascii():
        return text.replace("\x00", "") if "\x00" in text else text
    return _UNSTORABLE.sub("", text) if _UNSTORABLE.search(text) else text


def valid_wa_id(wa_id: str) -> bool:
    """True for a well-formed wa_id: 1 to 20 ASCII digits."""
    return 0 < len(wa_id) <= MAX_WA_ID and wa_id.isascii() and wa_id.isdigit()


def valid_user_id(user_id: str) -> bool:
    """True for a well-formed business-scoped user id (see the module docstring)."""
    return (
        0 < len(user_id) <= MAX_USER_ID
        and ".." not in user_id
        and _USER_ID.fullmatch(user_id) is not None
    )
