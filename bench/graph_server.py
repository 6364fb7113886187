"""A bare stand-in for Meta's messages endpoint, for bench/campaign.py.

Run as `python bench/graph_server.py PORT`. It answers every POST to
`/{version}/{phone_number_id}/messages` with a success body and a fresh wamid, validates
nothing, and counts: `GET /stats` returns how many messages arrived, how many distinct
recipients, when the first and last arrived (monotonic seconds) and the busiest second.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from aiohttp import web

received = 0
first = 0.0
last = 0.0
recipients: set[str] = set()
per_second: Counter[int] = Counter()


async def message(request: web.Request) -> web.Response:
    global received, first, last
    body = await request.json()
    now = time.monotonic()
    if received == 0:
        first = now
    received += 1
    last = now
    per_second[int(now)] += 1
    recipients.add(str(body.get("to") or body.get("recipient")))
    return web.json_response(
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
            "messages": [{"id": f"wamid.bench{received}"}],
        }
    )


async def stats(_: web.Request) -> web.Response:
    return web.json_response(
        {
            "received": received,
            "recipients": len(recipients),
            "first": first,
            "last": last,
            "busiest_second": max(per_second.values(), default=0),
        }
    )


def main() -> None:
    app = web.Application()
    app.router.add_post("/{version}/{phone_number_id}/messages", message)
    app.router.add_get("/stats", stats)
    # A long keep-alive and a deep accept queue: the client's pooled connections are never
    # closed under it mid-run (each such close costs the client a retry with backoff).
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
        keepalive_timeout=3600,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
