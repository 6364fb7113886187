"""Cross-site request forgery protection for the sandbox's state-changing requests.

The sandbox has no login (it is only on without a WhatsApp token), so any page the person opens
could otherwise make their browser post messages or start campaigns here. Each browser gets a
random session id in a `SameSite=Strict`, HttpOnly cookie; the page carries a token that is the
HMAC of that id under a key made when the process starts. A request must send the token back
(header `X-CSRF-Token` or form field `csrf_token`) and, when the browser names an `Origin`, come
from this origin. Another site can neither read the token nor send the cookie.
A restart makes a new key, so a page opened before it asks to be reloaded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

COOKIE = "optin_sandbox"
COOKIE_PATH = "/sandbox"
HEADER = "X-CSRF-Token"
FORM_FIELD = "csrf_token"


class CsrfGuard:
    """Issues page tokens bound to the browser's cookie and checks them."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def token_for(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode(), hashlib.sha256).hexdigest()

    def session_for_page(self, request: web.Request) -> tuple[str, bool]:
        """(session id, whether it is new and must be set as the cookie)."""
        current = request.cookies.get(COOKIE, "")
        if len(current) == 43 and current.replace("-", "").replace("_", "").isalnum():
            return current, False
        return secrets.token_urlsafe(32), True

    @staticmethod
    def set_cookie(response: web.StreamResponse, session_id: str) -> None:
        response.set_cookie(COOKIE, session_id, path=COOKIE_PATH, httponly=True, samesite="Strict")

    def check(self, request: web.Request, supplied: str | None) -> str | None:
        """None when the request is genuine, else why it is refused."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return "the request comes from another site"
        session_id = request.cookies.get(COOKIE)
        if not session_id or not supplied:
            return "the page's security token is missing; reload the page"
        if not hmac.compare_digest(self.token_for(session_id), supplied):
            return "the page's security token is out of date; reload the page"
        return None


CSRF: web.AppKey[CsrfGuard] = web.AppKey("sandbox_csrf", CsrfGuard)
