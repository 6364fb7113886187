"""Redis or PostgreSQL taken away for 10 s under load, with real processes.

`optin-bot serve` runs as a subprocess and reaches both servers through fault proxies
(tests/fakes/proxy.py). While Redis is down the webhook answers 503 (so Meta retries) and
everything it had acknowledged is still processed once Redis is back; while PostgreSQL is down the
webhook keeps accepting (events wait in the streams) and the workers apply them when it returns.
Nothing is restarted by hand: recovery is the service's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from bot.db.contacts import ContactRepository
from bot.db.engine import create_engine, session_factory
from bot.db.ledger import LedgerRepository
from bot.db.migrate import migrate
from flows.consent import ConsentStatus
from tests.conftest import REDIS_TEST_URL, _create_pg_database, _drop_pg_database, _real_redis
from tests.fakes.proxy import FaultProxy
from tests.fakes.webhooks import dumps, eventually, signed, text_webhook

pytestmark = [pytest.mark.services, pytest.mark.slow]
OUTAGE_SECONDS = 10.0
SECRET = "outage-secret"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    url = await _create_pg_database()
    await migrate(url)
    yield url
    await _drop_pg_database(url)


class Load:
    """Posts one STOP per new contact, steadily, and remembers which were acknowledged."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/webhook"
        self.accepted: list[str] = []
        self.statuses: list[int] = []
        self._stop = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession) -> None:
        n = 0
        while not self._stop.is_set():
            wa_id = f"1555{os.getpid() % 1000:03d}{n:05d}"
            n += 1
            body = dumps(text_webhook(wa_id=wa_id, text="STOP"))
            try:
                async with session.post(self.url, data=body, headers=signed(body, SECRET)) as r:
                    self.statuses.append(r.status)
                    if r.status == 200:
                        self.accepted.append(wa_id)
            except aiohttp.ClientError:
                self.statuses.append(0)
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


async def all_opted_out(database_url: str, wa_ids: list[str]) -> bool:
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        contacts, ledger = ContactRepository(sessions), LedgerRepository(sessions)
        for wa_id in wa_ids:
            contact = await contacts.find(wa_id)
            if contact is None or contact.id is None:
                return False
            states = await ledger.current(contact.id)
            if len(states) < 4 or any(
                v.status is not ConsentStatus.OPTED_OUT for v in states.values()
            ):
                return False
        return True
    finally:
        await engine.dispose()


async def run_outage(tmp_path: Path, pg_url: str, which: str) -> Load:
    redis_db = make_url(REDIS_TEST_URL).database or "15"
    await (await _real_redis()).aclose()  # connecting flushes the test database
    pg = make_url(pg_url)
    async with FaultProxy(6379) as redis_proxy, FaultProxy(pg.port or 5432) as pg_proxy:
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "REDIS_"))},
            "REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/{redis_db}",
            "DATABASE_URL": pg.set(port=pg_proxy.port).render_as_string(hide_password=False),
            "WHATSAPP_APP_SECRET": SECRET,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "--log-level",
            "WARNING",
            "serve",
            "--port",
            str(port),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

                async def up() -> bool:
                    assert proc.returncode is None, "the service exited"
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                            return r.status == 200
                    except aiohttp.ClientError:
                        return False

                await eventually(up, within=30, interval=0.2)
                load = Load(port)
                task = asyncio.create_task(load.run(session))
                await asyncio.sleep(2)
                proxy = redis_proxy if which == "redis" else pg_proxy
                proxy.cut()
                await asyncio.sleep(OUTAGE_SECONDS)
                proxy.restore()
                await asyncio.sleep(3)
                load.stop()
                await task

                async def settled() -> bool:
                    return await all_opted_out(pg_url, load.accepted)

                await eventually(settled, within=60, interval=1.0)
                assert await up(), "healthy again without a restart"
            return load
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_redis_outage_answers_503_and_loses_nothing_accepted(
    tmp_path: Path, pg_url: str
) -> None:
    load = await run_outage(tmp_path, pg_url, "redis")
    assert 503 in load.statuses, "the webhook must refuse while it cannot accept durably"
    first_refusal = load.statuses.index(503)
    assert 200 in load.statuses[first_refusal:], "and accept again once Redis is back"
    assert len(load.accepted) > 30


async def test_postgres_outage_keeps_accepting_and_applies_later(
    tmp_path: Path, pg_url: str
) -> None:
    load = await run_outage(tmp_path, pg_url, "postgres")
    assert set(load.statuses) == {200}, "Redis is up: every webhook is accepted"
    assert len(load.accepted) > 100
