"""2 web + 2 worker + 2 sender processes on one Redis and one PostgreSQL, many customers.

Each customer writes START, YES, STOP, spread over both web processes (as a load balancer
would), every webhook delivered twice (Meta retries). At the end every customer is opted out of
everything (so their three messages were handled in order, whichever worker took them), every
STOP has exactly one confirmation at the fake Graph server, and every ledger chain verifies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from bot.db.engine import create_engine, session_factory
from bot.db.ledger import LedgerRepository
from tests.fakes.graph import FakeGraph
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook

pytestmark = [pytest.mark.services, pytest.mark.slow]
# CI runs 500 customers (about two minutes on 2 cores); SCALE_CUSTOMERS=5000 is the full run.
CUSTOMERS = int(os.environ.get("SCALE_CUSTOMERS", "500"))
SECRET = "scale-secret"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def processes(
    env: dict[str, str], cwd: Path, *commands: list[str]
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Start the roles, each logging to a file in `cwd` (read back when one dies)."""
    procs = []
    for n, command in enumerate(commands):
        with (cwd / f"{n}-{command[0]}.log").open("w") as log:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bot",
                    "--log-level",
                    "WARNING",
                    *command,
                    env=env,
                    cwd=cwd,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def logs_of(cwd: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(cwd.glob("*.log")))


async def count(database_url: str, sql: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text(sql))).scalar_one())
    finally:
        await engine.dispose()


async def test_two_of_each_role_handle_every_customer_once_and_in_order(
    tmp_path: Path, real_stack_urls: tuple[str, str]
) -> None:
    database_url, redis_url = real_stack_urls
    web_ports = [free_port(), free_port()]
    async with FakeGraph(validate=False) as graph:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WHATSAPP_")},
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "WHATSAPP_ACCESS_TOKEN": "token",
            "WHATSAPP_APP_SECRET": SECRET,
            "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
            "GRAPH_API_URL": graph.base_url,
            "SEND_RATE": "1000",
            "PSEUDONYM_KEY": "scale-test-pseudonym-key",
            "BUSINESS_NAME": "Acme",
        }
        commands = [["web", "--port", str(p)] for p in web_ports]
        commands += [["worker"], ["worker"], ["sender"], ["sender"]]
        async with (
            processes(env, tmp_path, *commands) as procs,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session,
        ):

            async def up() -> bool:
                assert all(p.returncode is None for p in procs), logs_of(tmp_path)
                try:
                    for port in web_ports:
                        async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                            if r.status != 200:
                                return False
                    return True
                except aiohttp.ClientError:
                    return False

            await eventually(up, within=60, interval=0.3)
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
    engine = create_engine(database_url)
    try:
        report = await LedgerRepository(session_factory(engine)).verify()
    finally:
        await engine.dispose()
    assert report.ok and report.chains_checked == CUSTOMERS
