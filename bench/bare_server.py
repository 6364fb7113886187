"""The baselines of the benchmarks: bare aiohttp handlers doing the least their endpoint must.

Run as `python bench/bare_server.py PORT [REDIS_URL]`. `POST /webhook` reads the body and answers
200 (bench/ingest.py's baseline: what any webhook receiver must do). With a Redis URL,
`GET /v1/contacts/{contact}/can-send` does one Redis GET and answers with it (bench/gate.py's
baseline: the cheapest lookup a consent check could be). The ratio against them shows what
optin-bot's checks, durable hand-off and consent rules cost.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import Redis

REDIS = web.AppKey("redis", Redis)


async def receive(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "accepted"})


async def can_send(request: web.Request) -> web.Response:
    value = await request.app[REDIS].get(f"bench:consent:{request.match_info['contact']}")
    return web.json_response({"allowed": value == "1"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhook", receive)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))
    if len(sys.argv) > 2:
        url = sys.argv[2]

        async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
            app[REDIS] = Redis.from_url(url, decode_responses=True)
            yield
            await app[REDIS].aclose()

        app.cleanup_ctx.append(redis_ctx)
        app.router.add_get("/v1/contacts/{contact}/can-send", can_send)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
