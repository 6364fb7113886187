"""Calling this app's own `/webhook` and business API over HTTP, as Meta and a business would.

Going through HTTP (not calling the handlers) is the point: a customer's message is checked
against `X-Hub-Signature-256` like Meta's, read by the normaliser, de-duplicated and queued, and
handled by the workers exactly as a real message; a business request passes the API's own
validation and bearer token. What works in the sandbox works with Meta and with the API.

The address is the local end of the connection the page's request arrived on, never the `Host`
header: a forged header cannot make the server post anywhere but to itself.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bot.signature import SIGNATURE_HEADER, sign

TIMEOUT_SECONDS = 10.0


class RelayUnavailable(RuntimeError):
    """The request's connection is gone, so there is no address to post to."""


@dataclass(frozen=True, slots=True)
class RelayResult:
    """The app's answer: its HTTP status and JSON body (`{}` when it sent none)."""

    status: int
    answer: Mapping[str, Any]

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def problem(self) -> str:
        """The answer's reason, for a person: the API's `detail`, else its `error`."""
        return str(self.answer.get("detail") or self.answer.get("error") or f"HTTP {self.status}")


def local_base_url(request: web.Request) -> str:
    """`http://HOST:PORT` of the socket this request came in on."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        raise RelayUnavailable("the request's connection has no local address")
    host, port = str(sockname[0]), int(sockname[1])
    if ipaddress.ip_address(host.split("%")[0]).version == 6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class LoopbackClient:
    """One pooled client session for the app's lifetime (see `relay_context`)."""

    def __init__(
        self, session: aiohttp.ClientSession, app_secret: str | None, api_token: str | None
    ) -> None:
        self._session = session
        self._secret = app_secret
        self._api_token = api_token

    def webhook_headers(self, body: bytes) -> dict[str, str]:
        """Meta's headers: JSON, and the body's signature when an app secret is set."""
        headers = {"Content-Type": "application/json"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        return headers

    async def webhook(self, base_url: str, payload: Mapping[str, Any]) -> RelayResult:
        """POST `payload` to `/webhook` as Meta would."""
        body = _dumps(payload)
        return await self._post(f"{base_url}/webhook", body, self.webhook_headers(body))

    async def api(
        self, base_url: str, path: str, payload: Mapping[str, Any], *, idempotency_key: str
    ) -> RelayResult:
        """POST `payload` to the business API at `path` with the API token, if one is set."""
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        if self._api_token is not None:
            headers["Authorization"] = f"Bearer {self._api_token}"
        return await self._post(f"{base_url}{path}", _dumps(payload), headers)

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> RelayResult:
        async with self._session.post(url, data=body, headers=headers) as response:
            try:
                answer = await response.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                answer = {}
            return RelayResult(response.status, answer if isinstance(answer, dict) else {})


def _dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


RELAY: web.AppKey[LoopbackClient] = web.AppKey("sandbox_relay", LoopbackClient)


def relay_context(app_secret: str | None, api_token: str | None) -> Any:
    """A `cleanup_ctx` entry that opens the relay's session and closes it on shutdown."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=16),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
            raise_for_status=False,
        )
        app[RELAY] = LoopbackClient(session, app_secret, api_token)
        try:
            yield
        finally:
            await session.close()

    return context
