"""Storage down during a request: 503 with Retry-After, JSON under /v1; other errors stay 500."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from bot.api.unavailable import unavailable_while_storage_is_down

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def failing(exc: Exception) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise exc

    return handler


async def test_storage_down_is_503_and_a_bug_is_still_500(aiohttp_client: ClientFactory) -> None:
    app = web.Application(middlewares=[unavailable_while_storage_is_down])
    app.router.add_get("/v1/db", failing(OperationalError("SELECT 1", {}, OSError("gone"))))
    app.router.add_get("/v1/redis", failing(RedisConnectionError("refused")))
    app.router.add_get("/console", failing(ConnectionRefusedError()))
    app.router.add_get("/v1/bug", failing(ValueError("a bug")))
    client = await aiohttp_client(app)

    for path in ("/v1/db", "/v1/redis"):
        response = await client.get(path)
        assert (response.status, response.headers["Retry-After"]) == (503, "5")
        assert (await response.json())["error"] == "unavailable"
    console = await client.get("/console")
    assert console.status == 503 and "unavailable" in await console.text()
    assert (await client.get("/v1/bug")).status == 500
