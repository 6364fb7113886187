"""Chaos: separate `web`, `worker` and `sender` processes keep their promises while their database
and Redis connections are killed every 2 seconds.

While CHAOS_CUSTOMERS customers send STOP and a re-consent campaign goes to CHAOS_RECIPIENTS
recipients (2,000 each by default), the test kills every connection to its own database
(`pg_terminate_backend`) and every Redis connection of the three processes (`CLIENT KILL ID`, only
the clients named with this test's `REDIS_CLIENT_NAME`) every 2 s, at least 10 times. Nobody
restarts a process. Afterwards:

* every STOP is recorded exactly once (one `withdrawn` ledger event per category and message);
* every campaign template went out exactly once;
* every STOP confirmation went out at least once (duplicates are counted and printed: a
  confirmation whose send Meta took but whose record was killed may go out again);
* the supervisors restarted tasks by themselves, and `/healthz` is 200 again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as redis_async
from sqlalchemy.engine import make_url

from bot.db.engine import create_engine
from tests.fakes.consent_seed import seed_opted_in, wa_id_of
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook
from tests.faults.cluster import count, free_port, live_env, logs_of, processes, wait_up

pytestmark = [pytest.mark.services, pytest.mark.slow]
CUSTOMERS = int(os.environ.get("CHAOS_CUSTOMERS", "2000"))
RECIPIENTS = int(os.environ.get("CHAOS_RECIPIENTS", "2000"))
SECRET = "chaos-secret"
API_TOKEN = "chaos-token"
INTERVAL = 2.0
MIN_ROUNDS = 10
WITHIN = 600.0  # ten minutes for everything
#: The checkout under test, first on the processes' path (not an installed copy of `bot`).
ROOT = Path(__file__).resolve().parents[2]


def customer(n: int) -> str:
    return f"1777{n:07d}"


async def kill_database_connections(database_url: str) -> int:
    """`pg_terminate_backend` on this test's own database, never another."""
    url = make_url(database_url)
    assert url.database is not None and url.database.startswith("optin_t_")
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username or "postgres", database="postgres"
    )
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            url.database,
        )
    finally:
        await conn.close()
    return len(rows)


async def kill_redis_clients(admin: redis_async.Redis, name: str) -> int:
    """CLIENT KILL by id, of the connections named `name` (the processes' own) only."""
    killed = 0
    for client in await admin.client_list():
        if client.get("name") == name:
            with contextlib.suppress(Exception):
                killed += int(await admin.execute_command("CLIENT", "KILL", "ID", client["id"]))
    return killed


async def test_promises_hold_while_connections_are_killed_every_two_seconds(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    database_url, redis_url = real_stack_urls
    client_name = f"chaos-{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url)
    try:
        await seed_opted_in(engine, RECIPIENTS, since=datetime.now(UTC) - timedelta(days=400))
    finally:
        await engine.dispose()
    port = free_port()
    admin = redis_async.from_url(redis_url, decode_responses=True)
    async with FakeGraph(validate=False) as graph:
        env = {
            **live_env(database_url, redis_url, graph.base_url, SECRET),
            "API_TOKEN": API_TOKEN,
            "REDIS_CLIENT_NAME": client_name,
            "SEND_RATE": "400",
            "SEND_GUARD_GRACE_SECONDS": "20",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        commands = [["web", "--port", str(port)], ["worker"], ["sender"]]
        async with (
            processes(env, tmp_path, *commands) as procs,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session,
        ):
            base = f"http://127.0.0.1:{port}"
            await wait_up(session, [port], procs, tmp_path)
            started = time.monotonic()

            async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
                for _ in range(100):  # the web process answers 503 while storage is away
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.request(
                            method,
                            base + path,
                            json=body,
                            headers={"Authorization": f"Bearer {API_TOKEN}"},
                        ) as r:
                            if r.status < 500:
                                return r.status, await r.json()
                    await asyncio.sleep(0.5)
                raise AssertionError(f"{method} {path} kept failing\n{logs_of(tmp_path)}")

            status, campaign = await call(
                "POST",
                "/v1/campaigns",
                {
                    "name": "chaos",
                    "template": {"name": "reconsent_v2", "language": "en_US"},
                    "audience": {"categories": ["marketing"], "older_than_days": 365},
                    "policy_version": "2",
                    "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                    "rate": 200,
                },
            )
            assert status == 201, campaign
            status, body = await call("POST", f"/v1/campaigns/{campaign['id']}/start")
            assert status == 200, body

            semaphore = asyncio.Semaphore(16)

            async def post(n: int) -> None:
                body = dumps(text_webhook(wa_id=customer(n), text="STOP", wamid=f"wamid.chaos.{n}"))
                async with semaphore:
                    while True:  # as Meta does: redeliver until a 200
                        with contextlib.suppress(aiohttp.ClientError):
                            async with session.post(
                                base + "/webhook", data=body, headers=signed(body, SECRET)
                            ) as r:
                                if r.status == 200:
                                    return
                        await asyncio.sleep(0.5)

            def confirmations() -> Counter[str]:
                return Counter(
                    str(r.json["to"])
                    for r in graph.requests
                    if r.json and r.json.get("type") == "text"
                )

            def templates() -> Counter[str]:
                return Counter(
                    str(r.json["to"])
                    for r in graph.requests
                    if r.json and r.json.get("type") == "template"
                )

            async def done() -> bool:
                if len(confirmations()) < CUSTOMERS or len(templates()) < RECIPIENTS:
                    return False
                recorded = await count(
                    database_url,
                    "SELECT count(DISTINCT contact_id) FROM consent_events "
                    "WHERE action = 'withdrawn' AND event_key LIKE 'msg:wamid.chaos.%'",
                )
                return recorded >= CUSTOMERS

            posting = asyncio.gather(*(post(n) for n in range(CUSTOMERS)))
            rounds = 0
            killed_db = killed_redis = 0
            try:
                while time.monotonic() - started < WITHIN:
                    await asyncio.sleep(INTERVAL)
                    assert all(p.returncode is None for p in procs), logs_of(tmp_path)
                    if rounds >= MIN_ROUNDS and posting.done() and await done():
                        break
                    killed_db += await kill_database_connections(database_url)
                    killed_redis += await kill_redis_clients(admin, client_name)
                    rounds += 1
                await posting
                await eventually(done, within=max(1.0, WITHIN - (time.monotonic() - started)))
            finally:
                if not posting.done():
                    posting.cancel()
            # Late resends (an interrupted template waits out its grace) would show here.
            await asyncio.sleep(3)

            status, body = 0, {}
            for _ in range(120):
                async with session.get(base + "/healthz") as r:
                    status, body = r.status, await r.json()
                if status == 200:
                    break
                await asyncio.sleep(0.5)
            assert all(p.returncode is None for p in procs), logs_of(tmp_path)
    await admin.aclose()

    print(
        f"chaos: {rounds} rounds in {time.monotonic() - started:.0f} s, killed {killed_db} "
        f"database and {killed_redis} Redis connections"
    )
    assert rounds >= MIN_ROUNDS
    assert killed_db > 0 and killed_redis > 0
    assert status == 200, body

    # Every STOP recorded exactly once: one withdrawn event per category of each message.
    events = await count(
        database_url,
        "SELECT count(*) FROM consent_events "
        "WHERE action = 'withdrawn' AND event_key LIKE 'msg:wamid.chaos.%'",
    )
    keys = await count(
        database_url,
        "SELECT count(DISTINCT event_key) FROM consent_events "
        "WHERE action = 'withdrawn' AND event_key LIKE 'msg:wamid.chaos.%'",
    )
    stops = await count(
        database_url,
        "SELECT count(DISTINCT split_part(event_key, ':', 2)) FROM consent_events "
        "WHERE action = 'withdrawn' AND event_key LIKE 'msg:wamid.chaos.%'",
    )
    assert stops == CUSTOMERS
    assert events == keys

    # Every campaign message exactly once.
    sent_templates = templates()
    assert set(sent_templates) == {wa_id_of(n) for n in range(RECIPIENTS)}
    assert {n: c for n, c in sent_templates.items() if c > 1} == {}

    # Every confirmation at least once; duplicates counted.
    sent_confirmations = confirmations()
    assert {customer(n) for n in range(CUSTOMERS)} <= set(sent_confirmations)
    duplicates = sum(c - 1 for c in sent_confirmations.values())
    print(f"chaos: {duplicates} duplicate confirmation(s) out of {CUSTOMERS}")

    restarts = sum(int(task.get("restarts") or 0) for task in body["tasks"])
    print(f"chaos: {restarts} task restart(s) reported by the heartbeats")
    assert restarts > 0, body["tasks"]
    assert {task["task"] for task in body["tasks"]} >= {"inbound-worker", "sender"}
