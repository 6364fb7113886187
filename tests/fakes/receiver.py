"""A recording fake of a business's CRM webhook receiver, served on 127.0.0.1.

It checks the `X-Optin-Signature-256` of every request against its secret, records what
arrived (and what it answered), and answers 200 unless told otherwise: per event id, a script
of statuses to answer first (say 500, 500, then the default 200), or a default status for
everything.

    async with FakeReceiver() as receiver:
        receiver.script("consent:1", 500, 500)
        ...
        assert receiver.delivered_ids() == ["consent:1"]
"""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from bot.signature import SignatureCheck, check_signature

RECEIVER_SECRET = "crm-receiver-secret"


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One POST as it arrived: headers, raw body, parsed JSON, whether its signature held, the
    status the fake answered and the `time.monotonic()` of arrival."""

    event_id: str
    attempt: int
    headers: CIMultiDictProxy[str]
    body: bytes
    json: Any
    signature_valid: bool
    status: int
    received_at: float

    @property
    def delivered(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


class FakeReceiver:
    """The receiver; `url` is where to point BUSINESS_WEBHOOK_URL."""

    def __init__(self, secret: str = RECEIVER_SECRET, *, path: str = "/hooks/optin") -> None:
        self.secret = secret
        self.path = path
        self.default_status = 200
        self.requests: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[_Answer]] = defaultdict(deque)
        app = web.Application()
        app.router.add_post(path, self._handle)
        self._server = TestServer(app, host="127.0.0.1")

    async def __aenter__(self) -> FakeReceiver:
        await self._server.start_server()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.close()

    @property
    def url(self) -> str:
        return str(self._server.make_url(self.path))

    def script(
        self, event_id: str, *statuses: int, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next requests for `event_id` with `statuses`, in order, then the default."""
        for status in statuses:
            self._scripts[event_id].append(_Answer(status, dict(headers or {})))

    def delivered(self) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.delivered]

    def delivered_ids(self) -> list[str]:
        return [r.event_id for r in self.delivered()]

    def attempts_of(self, event_id: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.event_id == event_id]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event_id = request.headers.get("X-Optin-Event-Id", "")
        script = self._scripts.get(event_id)
        answer = script.popleft() if script else _Answer(self.default_status)
        check = check_signature(self.secret, body, request.headers.get("X-Optin-Signature-256"))
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        self.requests.append(
            ReceivedRequest(
                event_id=event_id,
                attempt=int(request.headers.get("X-Optin-Delivery-Attempt", "0")),
                headers=request.headers,
                body=body,
                json=parsed,
                signature_valid=check is SignatureCheck.VALID,
                status=answer.status,
                received_at=time.monotonic(),
            )
        )
        return web.json_response(
            {"ok": 200 <= answer.status < 300}, status=answer.status, headers=answer.headers
        )
