"""The baseline of bench/ingest.py: a bare aiohttp handler that reads the body and answers 200.

Run as `python bench/bare_server.py PORT`. It does the least any webhook receiver must do, so the
ratio against it shows what optin-bot's checks and its durable hand-off cost.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def receive(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "accepted"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhook", receive)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
