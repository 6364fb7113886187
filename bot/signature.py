"""Meta's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`."""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


class SignatureCheck(Enum):
    VALID = "valid"
    MISSING = "missing"
    INVALID = "invalid"


def sign(secret: str, body: bytes) -> str:
    """The header value Meta sends for `body` (also used by the sandbox chat and the tests)."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_signature(secret: str, body: bytes, header: str | None) -> SignatureCheck:
    """Compare in constant time; anything not of the form `sha256=<64 hex>` is invalid."""
    if not header:
        return SignatureCheck.MISSING
    expected = sign(secret, body)
    if hmac.compare_digest(expected.encode(), header.strip().lower().encode()):
        return SignatureCheck.VALID
    return SignatureCheck.INVALID
