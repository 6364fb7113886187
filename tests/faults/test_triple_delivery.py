"""Every webhook delivered three times, concurrently, to three different web processes: one effect.

Meta retries a webhook it thinks failed, and behind a load balancer each copy can land on another
`optin-bot web` process at the same instant. Three web, two worker and one sender processes share
one Redis and one PostgreSQL; every webhook of a mix of customers (START+YES+STOP, STOP alone,
START+YES) is posted to all three web ports at once with `asyncio.gather`. Afterwards each
inbound message is recorded once, each decision is one ledger row, and the recording fake Graph
server saw exactly one reply per message that asks for one.
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
    logs_of,
    processes,
    wait_up,
)

pytestmark = [pytest.mark.services, pytest.mark.slow]
CUSTOMERS = int(os.environ.get("TRIPLE_CUSTOMERS", "150"))
SECRET = "triple-secret"
CATEGORIES = 4  # the default categories file

# What each kind of customer says, in order, and how many replies that earns.
SCRIPTS: dict[int, tuple[str, ...]] = {
    0: ("START", "YES", "STOP"),  # prompt, confirmation, STOP confirmation
    1: ("STOP",),  # STOP confirmation (a new contact is opted out of everything)
    2: ("START", "YES"),  # prompt, confirmation
}


def script_of(n: int) -> tuple[str, ...]:
    return SCRIPTS[n % len(SCRIPTS)]


def wa_id(n: int) -> str:
    return f"1777{n:07d}"


async def test_three_concurrent_deliveries_to_three_web_processes_have_one_effect(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    database_url, redis_url = real_stack_urls
    web_ports = [free_port() for _ in range(3)]
    by_script = Counter(n % len(SCRIPTS) for n in range(CUSTOMERS))
    stoppers = by_script[0] + by_script[1]
    joiners = by_script[0] + by_script[2]
    messages = sum(len(script_of(n)) for n in range(CUSTOMERS))
    async with FakeGraph(validate=False) as graph:
        env = live_env(database_url, redis_url, graph.base_url, SECRET)
        commands = [["web", "--port", str(p)] for p in web_ports]
        commands += [["worker"], ["worker"], ["sender"]]
        async with (
            processes(env, tmp_path, *commands) as procs,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=96)) as session,
        ):
            await wait_up(session, web_ports, procs, tmp_path)
            semaphore = asyncio.Semaphore(32)

            async def deliver(port: int, body: bytes) -> None:
                async with session.post(
                    f"http://127.0.0.1:{port}/webhook", data=body, headers=signed(body, SECRET)
                ) as r:
                    assert r.status == 200

            async def thrice(body: bytes) -> None:
                async with semaphore:
                    await asyncio.gather(*(deliver(port, body) for port in web_ports))

            for step in range(max(len(s) for s in SCRIPTS.values())):
                await asyncio.gather(
                    *(
                        thrice(
                            dumps(
                                text_webhook(
                                    wa_id=wa_id(n),
                                    text=script_of(n)[step],
                                    wamid=f"wamid.triple.{step}.{n}",
                                )
                            )
                        )
                        for n in range(CUSTOMERS)
                        if step < len(script_of(n))
                    )
                )
                # Let this step's replies settle before the next message of the same customer.
                await asyncio.sleep(0.5)

            async def settled() -> bool:
                assert all(p.returncode is None for p in procs), logs_of(tmp_path)
                decided = await count(
                    database_url,
                    "SELECT count(*) FROM consent_states WHERE status IN ('opted_out', 'opted_in')",
                )
                return decided == CUSTOMERS * CATEGORIES and len(graph.requests) >= messages

            await eventually(settled, within=300, interval=1.0)
            await asyncio.sleep(2)  # anything extra would arrive now
    per_recipient = Counter(req.json["to"] for req in graph.requests if req.json)
    assert per_recipient == {wa_id(n): len(script_of(n)) for n in range(CUSTOMERS)}, (
        "one reply per message, not one per delivery"
    )
    assert len(graph.requests) == messages
    inbound = await count(
        database_url, "SELECT count(*) FROM transcript_entries WHERE direction = 'inbound'"
    )
    assert inbound == messages, "each inbound message recorded once"
    withdrawn = await count(
        database_url, "SELECT count(*) FROM consent_events WHERE action = 'withdrawn'"
    )
    granted = await count(
        database_url, "SELECT count(*) FROM consent_events WHERE action = 'granted'"
    )
    assert (withdrawn, granted) == (stoppers * CATEGORIES, joiners * CATEGORIES)
    opted_in = await count(
        database_url, "SELECT count(*) FROM consent_states WHERE status = 'opted_in'"
    )
    assert opted_in == by_script[2] * CATEGORIES
    assert await ledger_chains_verified(database_url) == CUSTOMERS
