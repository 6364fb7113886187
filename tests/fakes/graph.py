"""A recording fake of Meta's Graph API messages endpoint, served on 127.0.0.1.

Tests never reach the internet, yet the Cloud API client, the sender and the whole service must
be exercised over real HTTP: connection pooling, timeouts, resets and retry behaviour only show up
on a socket. `FakeGraph` answers `POST /{version}/{phone_number_id}/messages` like Meta does
(success bodies with a unique wamid, Meta-shaped error bodies), records every request, and can be
scripted to fail, stall, reset connections or answer anything a test needs. When Meta's OpenAPI
description is available it checks every body against `components/schemas/Message` and answers
400 like Meta would, so a malformed message fails the test that sent it.

It also serves the account's template list, `GET /{version}/{waba_id}/message_templates`, paged
like Meta's (`limit`, the `after` cursor, `paging.next` on every page but the last), from
`templates` (by default `default_templates()`: marketing templates with and without a way out,
a utility one); `template_requests` records those reads.

    async with FakeGraph() as graph:
        client = CloudApiClient(session, base_url=graph.base_url, phone_number_id="123", ...)
        graph.fail_next(2, status=500)
        ...
        assert graph.requests[-1].json["to"] == "15551234567"
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import secrets
import socket
import struct
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from bot.graph.errors import META_TITLES
from tests.fakes.meta_schema import OPENAPI_PATH, MessageSchema, message_schema_or_none


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as it arrived, and what the fake decided to do with it.

    `json` is the parsed body (None when it was not JSON), `received_at` the `time.monotonic()`
    of arrival, `validation_error` why the body broke Meta's schema (None when it passed or was
    not checked), `action` one of "accepted", "invalid", "unauthorized", "failed", "reset",
    "custom", "read".
    """

    method: str
    path: str
    version: str
    phone_number_id: str
    headers: CIMultiDictProxy[str]
    body: bytes
    json: Any
    received_at: float
    validation_error: str | None
    action: str


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """A message the fake acknowledged with a default success body."""

    wamid: str
    body: Mapping[str, Any]
    phone_number_id: str


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    """What a custom responder wants answered: status, JSON body, extra headers."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


Responder = Callable[
    [RecordedRequest], "ScriptedResponse | Awaitable[ScriptedResponse | None] | None"
]


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    code: int | None
    retry_after: float | str | None
    message: str | None
    details: str | None
    error_subcode: int | None


@dataclass(frozen=True, slots=True)
class _Stall:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Reset:
    pass


_Scripted = _Failure | _Stall | _Reset


def meta_error_body(
    code: int,
    *,
    message: str | None = None,
    details: str | None = None,
    error_subcode: int | None = None,
    error_type: str = "OAuthException",
) -> dict[str, Any]:
    """A Graph API error body shaped like Meta's."""
    error: dict[str, Any] = {
        "message": message or f"(#{code}) {META_TITLES.get(code, 'Error')}",
        "type": error_type,
        "code": code,
    }
    if error_subcode is not None:
        error["error_subcode"] = error_subcode
    error["error_data"] = {
        "messaging_product": "whatsapp",
        "details": details or META_TITLES.get(code, "Error"),
    }
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
    return {"error": error}


def template_entry(
    name: str,
    language: str,
    category: str,
    *,
    footer: str | None = None,
    quick_replies: tuple[str, ...] = (),
    body: str = "Hi {{1}}, this is a message from us.",
) -> dict[str, Any]:
    """One entry of Meta's template list."""
    components: list[dict[str, Any]] = [{"type": "BODY", "text": body}]
    if footer is not None:
        components.append({"type": "FOOTER", "text": footer})
    if quick_replies:
        components.append(
            {
                "type": "BUTTONS",
                "buttons": [{"type": "QUICK_REPLY", "text": t} for t in quick_replies],
            }
        )
    return {
        "name": name,
        "language": language,
        "category": category,
        "components": components,
        "status": "APPROVED",
        "id": str(zlib.crc32(f"{name}:{language}".encode())),
    }


def default_templates() -> list[dict[str, Any]]:
    """The fake account's templates: the campaigns' and the API tests' names with a way out,
    a utility template, and a marketing template without one."""
    return [
        template_entry("spring_sale", "es", "MARKETING", quick_replies=("Stop promotions",)),
        template_entry("spring_sale", "en_US", "MARKETING", quick_replies=("Stop promotions",)),
        template_entry(
            "reconsent_v2",
            "en_US",
            "MARKETING",
            footer="Reply STOP to unsubscribe.",
            quick_replies=("Yes", "No, thanks"),
        ),
        template_entry(
            "weekly_deals", "es", "MARKETING", footer="Responde BAJA para darte de baja."
        ),
        template_entry("order_shipped", "en_US", "UTILITY"),
        template_entry("flash_sale_no_opt_out", "en_US", "MARKETING", quick_replies=("Shop now",)),
    ]


def default_code_for_status(status: int) -> int:
    """The Meta code a failure of this HTTP status most likely carries."""
    if status == 429:
        return 130429
    if status in (401, 403):
        return 190
    if status >= 500:
        return 131000
    return 100


class FakeGraph:
    """The fake server. Use as `async with FakeGraph() as graph:` (or `start()` / `close()`).

    `phone_number_id` restricts the accepted sender ids (None accepts any); `access_token`, when
    set, makes requests without `Authorization: Bearer <token>` fail with Meta's 401 / code 190;
    `validate` checks bodies against Meta's Message schema when the OpenAPI file exists.

    Each request meets, in order: the token check, the phone-number-id check, the schema check,
    read receipts (`{"status": "read", ...}`, answered `{"success": true}`), then the next
    scripted action (`fail_next` / `stall_next` / `reset_next`, first in first out), then the
    custom responder, then the default success. Refused requests consume no scripted action.
    `latency` (seconds) delays every answer.
    """

    def __init__(
        self,
        *,
        version: str = "v25.0",
        phone_number_id: str | None = None,
        access_token: str | None = None,
        validate: bool = True,
        openapi_path: Path = OPENAPI_PATH,
    ) -> None:
        self.version = version
        self.phone_number_id = phone_number_id
        self.access_token = access_token
        self.validate = validate
        self.latency = 0.0
        self.requests: list[RecordedRequest] = []
        self.accepted: list[AcceptedMessage] = []
        self.templates: list[dict[str, Any]] = default_templates()
        self.template_requests: list[RecordedRequest] = []
        self._template_failures: deque[int] = deque()
        #: Names another host in the template list's `paging.next` (a test of where the
        #: client refuses to send its token); None: this server.
        self.next_page_host: str | None = None
        self._openapi_path = openapi_path
        self._schema: MessageSchema | None = None
        self._script: deque[_Scripted] = deque()
        self._responder: Responder | None = None
        self._server: TestServer | None = None
        self._closing = asyncio.Event()
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> FakeGraph:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind an ephemeral port on 127.0.0.1 and start serving."""
        if self._server is not None:
            return
        self._closing = asyncio.Event()
        if self.validate:
            self._schema = message_schema_or_none(self._openapi_path)
        app = web.Application()
        app.router.add_post("/{version}/{phone_number_id}/messages", self._handle)
        app.router.add_get("/{version}/{waba_id}/message_templates", self._template_list)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()

    async def close(self) -> None:
        """Release stalled handlers and stop the server."""
        self._closing.set()
        if self._server is not None:
            await self._server.close()
            self._server = None

    @property
    def port(self) -> int:
        if self._server is None or self._server.port is None:
            raise RuntimeError("FakeGraph is not started")
        return int(self._server.port)

    @property
    def base_url(self) -> str:
        """What `GRAPH_API_URL` should be: `http://127.0.0.1:<port>/<version>`."""
        return f"http://127.0.0.1:{self.port}/{self.version}"

    def messages_url(self, phone_number_id: str) -> str:
        return f"{self.base_url}/{phone_number_id}/messages"

    @property
    def schema_available(self) -> bool:
        """Whether bodies are being checked against Meta's schema."""
        if not self.validate:
            return False
        if self._schema is None:
            self._schema = message_schema_or_none(self._openapi_path)
        return self._schema is not None

    @property
    def bodies(self) -> list[Any]:
        """The parsed JSON of every request, in arrival order."""
        return [request.json for request in self.requests]

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        code: int | None = None,
        retry_after: float | str | None = None,
        *,
        message: str | None = None,
        details: str | None = None,
        error_subcode: int | None = None,
    ) -> None:
        """Answer the next `n` requests with a Meta-shaped error (code defaults by status)."""
        failure = _Failure(status, code, retry_after, message, details, error_subcode)
        self._script.extend(failure for _ in range(n))

    def stall_next(self, n: int = 1, seconds: float = 30.0) -> None:
        """Hold the next `n` requests for `seconds` before answering normally."""
        self._script.extend(_Stall(seconds) for _ in range(n))

    def reset_next(self, n: int = 1) -> None:
        """Reset (TCP RST) the connection of the next `n` requests without answering."""
        self._script.extend(_Reset() for _ in range(n))

    def respond_with(self, responder: Responder | None) -> None:
        """Let `responder` answer requests no scripted action claims; None falls through to
        the default success. Pass None to remove it."""
        self._responder = responder

    def fail_template_lists(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` template list reads with Meta's error of `status`."""
        self._template_failures.extend(status for _ in range(n))

    async def _template_list(self, request: web.Request) -> web.StreamResponse:
        """Meta's template list, `limit` entries a page from the `after` cursor."""
        self.template_requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path_qs,
                version=request.match_info["version"],
                phone_number_id=request.match_info["waba_id"],
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                body=b"",
                json=None,
                received_at=time.monotonic(),
                validation_error=None,
                action="templates",
            )
        )
        if self.access_token is not None and (
            request.headers.get("Authorization") != f"Bearer {self.access_token}"
        ):
            return _json_response(401, meta_error_body(190))
        if self._template_failures:
            status = self._template_failures.popleft()
            return _json_response(status, meta_error_body(default_code_for_status(status)))
        limit = max(1, min(int(request.query.get("limit", "25")), 1000))
        start = int(request.query.get("after") or "0")
        page = self.templates[start : start + limit]
        body: dict[str, Any] = {
            "data": page,
            "paging": {"cursors": {"before": str(start), "after": str(start + len(page))}},
        }
        if start + limit < len(self.templates):
            following = request.url.update_query({"after": str(start + limit)})
            if self.next_page_host is not None:
                following = following.with_host(self.next_page_host)
            body["paging"]["next"] = str(following)
        return _json_response(200, body)

    def clear(self) -> None:
        """Forget recorded requests, pending scripted actions, the responder and latency."""
        self.requests.clear()
        self.accepted.clear()
        self._script.clear()
        self._responder = None
        self.latency = 0.0

    async def wait_for_requests(self, count: int, within: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least `count` requests arrived; raise TimeoutError after `within`
        seconds otherwise."""
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.requests)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        version = request.match_info["version"]
        sender = request.match_info["phone_number_id"]

        response: web.StreamResponse | None
        validation_error: str | None = None
        scripted: _Scripted | None = None
        if self.access_token is not None and (
            request.headers.get("Authorization") != f"Bearer {self.access_token}"
        ):
            action = "unauthorized"
            response = _json_response(
                401,
                meta_error_body(
                    190, message="Invalid OAuth access token - Cannot parse access token"
                ),
            )
        elif self.phone_number_id is not None and sender != self.phone_number_id:
            action = "invalid"
            response = _json_response(
                400,
                meta_error_body(
                    100,
                    message=f"Unsupported post request. Object with ID '{sender}' does not exist",
                    error_subcode=33,
                    error_type="GraphMethodException",
                ),
            )
        elif (validation_error := self._validation_error(parsed)) is not None:
            action = "invalid"
            response = _json_response(
                400,
                meta_error_body(100, message="(#100) Invalid parameter", details=validation_error),
            )
        elif _is_read_receipt(parsed):
            action = "read"
            response = _json_response(200, {"success": True})
        else:
            scripted = self._script.popleft() if self._script else None
            action, response = self._scripted_or_default(scripted, parsed, sender)

        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            version=version,
            phone_number_id=sender,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=raw,
            json=parsed,
            received_at=time.monotonic(),
            validation_error=validation_error,
            action=action,
        )
        self.requests.append(recorded)
        self._arrived.set()

        if isinstance(scripted, _Reset):
            return await self._reset(request)
        if response is None:
            response = await self._custom_response(recorded)
        delay = self.latency + (scripted.seconds if isinstance(scripted, _Stall) else 0.0)
        if delay > 0:
            await self._pause(delay)
        return response

    def _scripted_or_default(
        self, scripted: _Scripted | None, parsed: Any, sender: str
    ) -> tuple[str, web.StreamResponse | None]:
        """The action for a well-formed request and its response (None: decided later, by
        the custom responder or the reset)."""
        if isinstance(scripted, _Failure):
            headers = {}
            if scripted.retry_after is not None:
                headers["Retry-After"] = str(scripted.retry_after)
            code = scripted.code
            if code is None:
                code = default_code_for_status(scripted.status)
            body = meta_error_body(
                code,
                message=scripted.message,
                details=scripted.details,
                error_subcode=scripted.error_subcode,
            )
            return "failed", _json_response(scripted.status, body, headers)
        if isinstance(scripted, _Reset):
            return "reset", None
        if self._responder is not None:
            return "custom", None
        return "accepted", self._accept(parsed, sender)

    async def _custom_response(self, recorded: RecordedRequest) -> web.StreamResponse:
        assert self._responder is not None
        outcome = self._responder(recorded)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome is None:
            return self._accept(recorded.json, recorded.phone_number_id)
        return _json_response(outcome.status, outcome.body, outcome.headers)

    def _accept(self, parsed: Any, sender: str) -> web.Response:
        wamid = "wamid." + uuid.uuid4().hex.upper()
        body = parsed if isinstance(parsed, dict) else {}
        contact: dict[str, str] = {}
        if isinstance(body.get("to"), str):
            contact = {"input": body["to"], "wa_id": body["to"].removeprefix("+")}
        elif isinstance(body.get("recipient"), str):
            contact = {"input": body["recipient"], "user_id": body["recipient"]}
        message: dict[str, str] = {"id": wamid}
        if body.get("type") == "template":
            message["message_status"] = "accepted"
        self.accepted.append(AcceptedMessage(wamid=wamid, body=body, phone_number_id=sender))
        return _json_response(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [contact] if contact else [],
                "messages": [message],
            },
        )

    def _validation_error(self, parsed: Any) -> str | None:
        if not self.validate:
            return None
        if parsed is None:
            return "(body): the request body is not JSON"
        if _is_read_receipt(parsed):
            return None
        if self._schema is None:
            self._schema = message_schema_or_none(self._openapi_path)
        if self._schema is None:
            return None
        return self._schema.first_error(parsed)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # The handler is cancelled once aiohttp notices the lost connection.
        await self._pause(60.0)
        return web.Response(status=500)


def _is_read_receipt(parsed: Any) -> bool:
    return isinstance(parsed, dict) and parsed.get("status") == "read" and "message_id" in parsed


def _json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=dict(headers or {}),
    )


class RecordingSleep:
    """An injectable `sleep` that records the requested delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
