"""2 web + 2 worker + 2 sender processes on one Redis and one PostgreSQL, many customers.

Each customer writes START, YES, STOP, spread over both web processes (as a load balancer
would), every webhook delivered twice (Meta retries). At the end every customer is opted out of
everything (so their three messages were handled in order, whichever worker took them), every
STOP has exactly one confirmation at the fake Graph server, and every ledger chain verifies.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook
from tests.faults.cluster import (
    count,
    free_port,
    ledger_chains_verified,
    live_env,
    processes,
    wait_up,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]
# CI runs 500 customers (about two minutes on 2 cores); SCALE_CUSTOMERS=5000 is the full run.
CUSTOMERS = int(os.environ.get("SCALE_CUSTOMERS", "500"))
SECRET = "scale-secret"


async def test_two_of_each_role_handle_every_customer_once_and_in_order(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    database_url, redis_url = real_stack_urls
    web_ports = [free_port(), free_port()]
    async with FakeGraph(validate=False) as graph:
        env = live_env(database_url, redis_url, graph.base_url, SECRET)
        commands = [["web", "--port", str(p)] for p in web_ports]
        commands += [["worker"], ["worker"], ["sender"], ["sender"]]
        async with (
            processes(env, tmp_path, *commands) as procs,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session,
        ):
            await wait_up(session, web_ports, procs, tmp_path)
            semaphore = asyncio.Semaphore(48)

            async def post(n: int, body: bytes) -> None:
                async with semaphore:
                    for attempt in range(2):  # Meta delivers twice, to different processes
                        port = web_ports[(n + attempt) % 2]
                        async with session.post(
                            f"http://127.0.0.1:{port}/webhook",
                            data=body,
                            headers=signed(body, SECRET),
                        ) as r:
                            assert r.status == 200

            for step, word in enumerate(("START", "YES", "STOP")):
                await asyncio.gather(
                    *(
                        post(
                            n,
                            dumps(
                                text_webhook(
                                    wa_id=f"1666{n:07d}", text=word, wamid=f"wamid.{step}.{n}"
                                )
                            ),
                        )
                        for n in range(CUSTOMERS)
                    )
                )

            async def all_out() -> bool:
                opted_out = await count(
                    database_url,
                    "SELECT count(*) FROM consent_states WHERE status = 'opted_out'",
                )
                return opted_out == CUSTOMERS * 4

            await eventually(all_out, within=600, interval=2.0)

            async def all_sent() -> bool:
                return len(graph.accepted) >= CUSTOMERS * 3

            await eventually(all_sent, within=300, interval=1.0)
            await asyncio.sleep(2)
    per_recipient = Counter(
        (req.json["to"], req.json.get("type")) for req in graph.requests if req.json
    )
    assert len(graph.requests) == CUSTOMERS * 3, "prompt, confirmation, STOP confirmation: once"
    assert set(per_recipient.values()) == {1, 2}  # interactive prompt; text confirmations x2
    withdrawn = await count(
        database_url,
        "SELECT count(*) FROM consent_events WHERE action = 'withdrawn'",
    )
    assert withdrawn == CUSTOMERS * 4, "every STOP recorded once"
    assert await ledger_chains_verified(database_url) == CUSTOMERS
