"""Keyed, irreversible pseudonyms for the identifiers of erased contacts.

Erasing a contact must remove their number, yet the service must still recognise that number
if it writes again (or is imported again) so it is never messaged by mistake. A keyed hash does
both: ``HMAC-SHA256(PSEUDONYM_KEY, "<kind>:<value>")`` cannot be reversed or recomputed without
the key (a plain hash of a phone number could: there are few enough numbers to try them all),
and the service, which holds the key, recomputes it for any incoming identifier and finds the
erased record. The pseudonym fits the ``wa_id`` column (32 characters) and starts with
``erased:``, which no real wa_id (digits) or BSUID (``CC.…``) does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final

from bot.db.models import IdentityKind

PSEUDONYM_PREFIX: Final = "erased:"

#: Bytes of the HMAC kept: 120 bits, 24 base32 characters, 31 with the prefix.
_KEPT_BYTES: Final = 15


def is_pseudonym(value: str | None) -> bool:
    """Whether ``value`` is an identifier replaced at erasure."""
    return value is not None and value.startswith(PSEUDONYM_PREFIX)


def is_erased(wa_id: str | None, user_id: str | None) -> bool:
    """Whether a contact with these identifiers is erased: it has only pseudonyms (a contact
    that wrote again after its erasure has its real identifier back)."""
    present = [value for value in (wa_id, user_id) if value is not None]
    return bool(present) and all(is_pseudonym(value) for value in present)


class Pseudonymiser:
    """Turns a contact identifier into its pseudonym under one secret key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a pseudonym key needs at least 16 bytes")
        self._key = key

    def of(self, kind: IdentityKind, value: str) -> str:
        """The pseudonym of identifier ``value`` of ``kind`` (a pseudonym is returned as is)."""
        if is_pseudonym(value):
            return value
        digest = hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).digest()
        encoded = base64.b32encode(digest[:_KEPT_BYTES]).decode("ascii").lower()
        return PSEUDONYM_PREFIX + encoded
